import { createHash, timingSafeEqual } from 'node:crypto';
import { AppError, type Logger } from '@mcp-hub/shared';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Policy, policyOf, roleAtLeast } from '../access/policy.js';
import type { KeyCheck, Principal } from '../access/principal.js';

export interface AuthOptions {
  /** HUB_AUTH=none: requests without credentials act as admin (credentials, when sent, are still checked). */
  open: boolean;
  /** The admin token; required unless `open`. */
  adminToken: string | undefined;
  /** HUB_METRICS_TOKEN: opens the routes of access `metrics` only. */
  metricsToken?: string;
  /** Verifies an API key. */
  checkKey(raw: string): Promise<KeyCheck>;
  /** The project owning a server: a string, undefined for an unowned server, null when there is no such server. */
  serverProject(id: string): Promise<string | undefined | null>;
  log: Logger;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

const REASONS: Record<Exclude<KeyCheck, { ok: true }>['reason'], string> = {
  malformed: 'the API key is malformed',
  unknown: 'the API key is not valid',
  revoked: 'the API key was revoked',
  expired: 'the API key has expired',
};

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** The credential of a request: `Authorization: Bearer <x>` or `X-API-Key: <x>`. */
export function credentialOf(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match?.[1]) return match[1];
    throw new AppError('unauthorized', 'the Authorization header must be "Bearer <key>"');
  }
  const apiKey = req.headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey.trim() !== '' ? apiKey.trim() : undefined;
}

/**
 * One authorization layer for every route: finds the principal, then applies the route's policy from
 * ROUTE_POLICIES — 401 (with WWW-Authenticate) without valid credentials, 404 for another project's
 * resource (never a hint that it exists), 403 for a valid key without the role or scope.
 */
export function registerAuth(app: FastifyInstance, opts: AuthOptions): void {
  const adminDigest = opts.adminToken === undefined ? undefined : digest(opts.adminToken);
  const metricsDigest = opts.metricsToken === undefined ? undefined : digest(opts.metricsToken);
  const open = opts.open;
  if (!open && adminDigest === undefined) throw new Error('registerAuth: an admin token is required unless open');
  app.decorateRequest('principal', null as never);

  async function identify(req: FastifyRequest): Promise<Principal> {
    const credential = credentialOf(req);
    if (credential === undefined) return open ? { kind: 'admin', via: 'open' } : { kind: 'anonymous' };
    if (adminDigest !== undefined && timingSafeEqual(digest(credential), adminDigest)) {
      return { kind: 'admin', via: 'token' };
    }
    const check = await opts.checkKey(credential);
    if (!check.ok) throw new AppError('unauthorized', REASONS[check.reason]);
    return check.principal;
  }

  async function enforce(req: FastifyRequest, policy: Exclude<Policy, { access: 'public' }>, principal: Principal) {
    if (principal.kind === 'anonymous') {
      throw new AppError('unauthorized', 'this route needs an API key: send Authorization: Bearer <key>');
    }
    if (principal.kind === 'admin') return;
    if (policy.access === 'admin' || policy.access === 'metrics') {
      throw new AppError('forbidden', 'this route needs the admin token');
    }
    const params = req.params as Record<string, string | undefined>;
    if (policy.project === 'param:pid' && params.pid !== principal.project) {
      throw new AppError('project_not_found', `project "${params.pid}" not found`);
    }
    if (policy.server === 'param:id' && params.id !== undefined) {
      const project = await opts.serverProject(params.id);
      // Unknown servers are left to the route (404 as well; PUT may create one).
      if (project !== null && project !== principal.project) {
        throw new AppError('server_not_found', `server "${params.id}" not found`);
      }
    }
    if (!roleAtLeast(principal.role, policy.role)) {
      throw new AppError('forbidden', `this needs the ${policy.role} role; the key has ${principal.role}`);
    }
    if (!principal.scopes.includes(policy.scope)) {
      throw new AppError('forbidden', `this needs the ${policy.scope} scope`);
    }
  }

  app.addHook('onRequest', async (req) => {
    const route = req.routeOptions.url;
    if (route === undefined) return; // no route: the 404 handler answers
    const policy = policyOf(req.method, route);
    if (policy === undefined) {
      opts.log.error({ event: 'auth.no_policy', method: req.method, route }, 'route missing from ROUTE_POLICIES');
      throw new AppError('forbidden', 'this route has no access policy');
    }
    if (policy.access === 'metrics' && metricsDigest !== undefined) {
      const credential = credentialOf(req);
      if (credential !== undefined && timingSafeEqual(digest(credential), metricsDigest)) {
        req.principal = { kind: 'anonymous' };
        return;
      }
    }
    if (policy.access === 'public') {
      // Public routes answer anyone; credentials, if good, only tell them who asks.
      req.principal = await identify(req).catch((): Principal => ({ kind: 'anonymous' }));
      return;
    }
    req.principal = await identify(req);
    await enforce(req, policy, req.principal);
  });
}
