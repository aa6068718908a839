/**
 * The one table of what each route of the hub needs. The auth plugin reads it for every request, and the hub
 * refuses to register a route that is missing here (`requirePolicyRows`), so a new route cannot be reachable
 * without a decision about who may use it.
 */

import type { FastifyInstance } from 'fastify';
import type { Role, Scope } from './roles.js';

export { ROLE_SCOPES, ROLES, type Role, roleAtLeast, SCOPES, type Scope } from './roles.js';

export type Policy =
  /** Anyone; credentials, when sent, are still checked and tell the route who asks. */
  | { access: 'public' }
  /** Only the bootstrap admin token (HUB_ADMIN_TOKEN). */
  | { access: 'admin' }
  /** The admin token, or HUB_METRICS_TOKEN (which opens nothing else). */
  | { access: 'metrics' }
  /**
   * The admin token, or a key of at least `role` holding `scope`. `project` names where the route's project
   * comes from and `server` the server param: a key of another project gets 404 for either.
   */
  | { access: 'member'; role: Role; scope: Scope; project?: 'param:pid'; server?: 'param:id' };

const pub: Policy = { access: 'public' };
const admin: Policy = { access: 'admin' };
const member = (role: Role, scope: Scope, extra: { project?: 'param:pid'; server?: 'param:id' } = {}): Policy => ({
  access: 'member',
  role,
  scope,
  ...extra,
});
const onServer = { server: 'param:id' } as const;
const inProject = { project: 'param:pid' } as const;

/** `METHOD /route/:pattern` → policy. HEAD routes follow their GET. */
export const ROUTE_POLICIES: Readonly<Record<string, Policy>> = {
  'GET /healthz': pub,
  'GET /readyz': pub,
  'GET /.well-known/mcp-servers': pub,
  // The API's description and its browsable reference (Swagger UI and its assets): routes, never data.
  'GET /openapi.json': pub,
  'GET /docs': pub,
  'GET /docs/': pub,
  'GET /docs/json': pub,
  'GET /docs/yaml': pub,
  'GET /docs/static/index.html': pub,
  'GET /docs/static/swagger-initializer.js': pub,
  'GET /docs/static/*': pub,
  // Prometheus scrapes: the admin token or the metrics-only token.
  'GET /metrics': { access: 'metrics' },
  // CORS preflight: browsers send no credentials on OPTIONS.
  'OPTIONS /mcp': pub,
  'OPTIONS /mcp/*': pub,
  'OPTIONS /sse': pub,
  'OPTIONS /sse/*': pub,
  'OPTIONS /messages': pub,
  'OPTIONS /messages/*': pub,

  'POST /api/projects': admin,
  'GET /api/projects': member('reporter', 'servers:read'),
  'GET /api/projects/:pid/members': member('owner', 'members:manage', inProject),
  'POST /api/projects/:pid/members': member('owner', 'members:manage', inProject),
  'GET /api/projects/:pid/keys': member('owner', 'keys:manage', inProject),
  'POST /api/projects/:pid/keys': member('owner', 'keys:manage', inProject),
  'DELETE /api/projects/:pid/keys/:keyId': member('owner', 'keys:manage', inProject),
  'POST /api/projects/:pid/keys/:keyId/rotate': member('owner', 'keys:manage', inProject),

  // Server groups: a project's curated sets of its servers (reading them is reading servers; writing, writing).
  'GET /api/projects/:pid/groups': member('reporter', 'servers:read', inProject),
  'POST /api/projects/:pid/groups': member('developer', 'servers:write', inProject),
  'GET /api/projects/:pid/groups/:gid': member('reporter', 'servers:read', inProject),
  'PUT /api/projects/:pid/groups/:gid': member('developer', 'servers:write', inProject),
  'DELETE /api/projects/:pid/groups/:gid': member('developer', 'servers:write', inProject),
  'PUT /api/projects/:pid/groups/:gid/servers/:id': member('developer', 'servers:write', { ...inProject, ...onServer }),
  'DELETE /api/projects/:pid/groups/:gid/servers/:id': member('developer', 'servers:write', {
    ...inProject,
    ...onServer,
  }),
  'GET /api/projects/:pid/groups/:gid/tools': member('reporter', 'servers:read', inProject),
  // A dry run: where a call would go and why (nothing is called).
  'POST /api/projects/:pid/groups/:gid/route': member('reporter', 'servers:read', inProject),
  // A call through a group: its rules pick the server (limits and usage count per server, as any call).
  'POST /api/projects/:pid/groups/:gid/tools/:tool': member('reporter', 'tools:call', inProject),
  'GET /api/groups': admin,
  // Connection endpoints: URLs with an unguessable token, for the keys bound to them (checked in the routes).
  'POST /api/projects/:pid/endpoints': member('developer', 'servers:write', inProject),
  'GET /api/projects/:pid/endpoints': member('reporter', 'servers:read', inProject),
  'GET /api/projects/:pid/endpoints/:eid': member('reporter', 'servers:read', inProject),
  'POST /api/projects/:pid/endpoints/:eid/reissue': member('developer', 'servers:write', inProject),
  'DELETE /api/projects/:pid/endpoints/:eid': member('developer', 'servers:write', inProject),
  'GET /e/:token/tools': member('reporter', 'tools:call'),
  'POST /e/:token/tools/:tool': member('reporter', 'tools:call'),

  'GET /api/servers': member('reporter', 'servers:read'),
  // stdio servers run a command on the host: the route also requires `owner` for those.
  'POST /api/servers': member('developer', 'servers:write'),
  'GET /api/servers/:id': member('reporter', 'servers:read', onServer),
  'PUT /api/servers/:id': member('developer', 'servers:write', onServer),
  'DELETE /api/servers/:id': member('developer', 'servers:write', onServer),
  'GET /api/servers/:id/tools': member('reporter', 'servers:read', onServer),
  'GET /api/servers/:id/failures': member('reporter', 'servers:read', onServer),
  // The live status feed: only the events of servers the caller may see.
  'GET /api/events': member('reporter', 'servers:read'),
  'POST /api/servers/:id/restart': member('developer', 'servers:write', onServer),
  'GET /api/client-config': member('reporter', 'servers:read'),

  // The key's own usage is checked in the route (owner of the key's project, or admin).
  'GET /api/usage/:keyId': member('owner', 'usage:read'),
  'POST /api/usage/:keyId/reset': admin,
  'GET /api/audit': member('owner', 'audit:read'),

  // Alert webhooks reach any URL with the hub's alerts: the admin's to set.
  'POST /api/alerts/webhooks': admin,
  'GET /api/alerts/webhooks': admin,
  'DELETE /api/alerts/webhooks/:webhookId': admin,
  'POST /api/alerts/webhooks/:webhookId/test': admin,

  'POST /mcp/:id/:tool': member('reporter', 'tools:call', onServer),
  'POST /mcp/:id': member('reporter', 'tools:call', onServer),
  'GET /mcp/:id': member('reporter', 'tools:call', onServer),
  'DELETE /mcp/:id': member('reporter', 'tools:call', onServer),
  'GET /sse/:id': member('reporter', 'tools:call', onServer),
  'POST /messages/:id': member('reporter', 'tools:call', onServer),
  'POST /mcp': member('reporter', 'tools:call'),
  'GET /mcp': member('reporter', 'tools:call'),
  'DELETE /mcp': member('reporter', 'tools:call'),
  'GET /sse': member('reporter', 'tools:call'),
  'POST /messages': member('reporter', 'tools:call'),
};

export function policyOf(method: string, url: string | undefined): Policy | undefined {
  if (url === undefined) return undefined;
  return ROUTE_POLICIES[`${method === 'HEAD' ? 'GET' : method} ${url}`];
}

/** The routes each guarded app registered, as `METHOD /url` rows (HEAD included). */
const registered = new WeakMap<FastifyInstance, string[]>();

/**
 * Makes `app` refuse, as it is registered, any route without a row in ROUTE_POLICIES: building the hub fails
 * instead of serving a route nobody decided about (the auth hook's 403 stays as the second line). Call it
 * before the first route.
 */
export function requirePolicyRows(app: FastifyInstance): void {
  const rows: string[] = [];
  registered.set(app, rows);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (policyOf(method, route.url) === undefined) {
        throw new Error(`route ${method} ${route.url} has no row in ROUTE_POLICIES (apps/hub/src/access/policy.ts)`);
      }
      rows.push(`${method} ${route.url}`);
    }
  });
}

/** Every route `app` registered since `requirePolicyRows`, as `METHOD /url`. */
export function registeredRoutes(app: FastifyInstance): readonly string[] {
  return registered.get(app) ?? [];
}
