import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { SLUG_RE } from '@mcp-hub/shared';
import { z } from 'zod';
import type { GroupRouter, MemberView } from '../routing/router.js';
import type { AuditTrail } from '../stores/audit-trail.js';
import {
  CreateGroupBodySchema,
  type Group,
  GroupBodySchema,
  GroupHealthSchema,
  GroupSchema,
  type GroupStore,
  GroupToolSchema,
} from '../stores/group-store.js';
import type { ProjectStore } from '../stores/project-store.js';
import { errorResponses } from './schemas.js';

export interface GroupRoutesOptions {
  groups: GroupStore;
  projects: ProjectStore;
  audit: AuditTrail;
  router: GroupRouter;
  /** What the router needs of a group's members for a call of `tool`: the same as the call path's. */
  members(group: Group, tool: string): Promise<Map<string, MemberView>>;
}

const Pid = z.strictObject({ pid: z.string().min(1).max(128) });
// A group id is a slug (PUT creates one from the path).
const PidGid = z.strictObject({
  pid: z.string().min(1).max(128),
  gid: z.string().regex(SLUG_RE, 'a group id is 1-63 characters of a-z, 0-9, _ and -'),
});
const PidGidServer = PidGid.extend({ id: z.string().min(1).max(128) });
/** A group as the routes answer it: with the health of its members, read when asked. */
const GroupViewSchema = GroupSchema.extend({ health: GroupHealthSchema });
const GroupListSchema = z.object({ groups: z.array(GroupViewSchema) });
const RouteQuerySchema = z.strictObject({
  tool: z.string().min(1).max(256),
  arguments: z.record(z.string(), z.unknown()).default({}),
});
const RouteDecisionSchema = z.object({
  server: z.string().optional(),
  tool: z.string().optional(),
  by: z.enum(['rule', 'namespace', 'tool', 'none']),
  rule: z.string().optional(),
  candidates: z.array(
    z.object({ id: z.string(), status: z.string(), weight: z.number(), tool: z.string(), hasTool: z.boolean() }),
  ),
  steps: z.array(z.string()),
});

/**
 * Server groups (issue 16, item 1): `/api/projects/:pid/groups…` for a project's members (who may call each is in
 * ROUTE_POLICIES), `/api/groups` for the admin. Every answer carries the group's health roll-up: its members by
 * runtime status. Writes are audited.
 */
export const groupRoutes: FastifyPluginAsyncZod<GroupRoutesOptions> = async (app, opts) => {
  const { groups, audit } = opts;
  const view = async (group: Group) => ({ ...group, health: await groups.health(group) });
  const target = (group: Group) => ({ type: 'group', id: `${group.project}/${group.id}` });

  app.get(
    '/api/projects/:pid/groups',
    { schema: { params: Pid, response: { 200: GroupListSchema, ...errorResponses } } },
    async (req) => ({ groups: await Promise.all((await groups.list(req.params.pid)).map(view)) }),
  );

  app.post(
    '/api/projects/:pid/groups',
    { schema: { params: Pid, body: CreateGroupBodySchema, response: { 201: GroupViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const group = await groups.create(req.params.pid, req.body);
      await audit.record(req, 'group.create', target(group), group.project, null, group);
      return reply
        .status(201)
        .header('location', `/api/projects/${group.project}/groups/${group.id}`)
        .send(await view(group));
    },
  );

  app.get(
    '/api/projects/:pid/groups/:gid',
    { schema: { params: PidGid, response: { 200: GroupViewSchema, ...errorResponses } } },
    async (req) => view(await groups.get(req.params.pid, req.params.gid)),
  );

  app.put(
    '/api/projects/:pid/groups/:gid',
    {
      schema: {
        params: PidGid,
        body: GroupBodySchema,
        response: { 200: GroupViewSchema, 201: GroupViewSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { before, group } = await groups.put(req.params.pid, req.params.gid, req.body);
      opts.router.forget(group.project, group.id);
      await audit.record(req, before ? 'group.update' : 'group.create', target(group), group.project, before, group);
      return reply.status(before ? 200 : 201).send(await view(group));
    },
  );

  app.delete(
    '/api/projects/:pid/groups/:gid',
    { schema: { params: PidGid, response: { 204: z.null(), ...errorResponses } } },
    async (req, reply) => {
      const before = await groups.remove(req.params.pid, req.params.gid);
      opts.router.forget(before.project, before.id);
      await audit.record(req, 'group.delete', target(before), before.project, before, null);
      return reply.status(204).send(null);
    },
  );

  // Membership, one server at a time (both idempotent): the server must be one of the project's.
  for (const member of [true, false]) {
    app.route({
      method: member ? 'PUT' : 'DELETE',
      url: '/api/projects/:pid/groups/:gid/servers/:id',
      // The path says it all (PUT is never a simple cross-site request: browsers preflight it, and the Origin
      // check refuses other sites).
      config: { bodyless: true },
      schema: { params: PidGidServer, response: { 200: GroupViewSchema, ...errorResponses } },
      handler: async (req) => {
        const { pid, gid, id } = req.params as z.output<typeof PidGidServer>;
        const { before, group } = await groups.setMember(pid, gid, id, member);
        if (before !== group) {
          await audit.record(
            req,
            member ? 'group.member.add' : 'group.member.remove',
            target(group),
            pid,
            before,
            group,
          );
        }
        return view(group);
      },
    });
  }

  app.get(
    '/api/projects/:pid/groups/:gid/tools',
    {
      schema: {
        params: PidGid,
        response: { 200: z.object({ tools: z.array(GroupToolSchema) }), ...errorResponses },
      },
    },
    async (req) => ({ tools: await groups.tools(await groups.get(req.params.pid, req.params.gid)) }),
  );

  // Where a call would go, and why (nothing is called, and the round robin does not move).
  app.post(
    '/api/projects/:pid/groups/:gid/route',
    { schema: { params: PidGid, body: RouteQuerySchema, response: { 200: RouteDecisionSchema, ...errorResponses } } },
    async (req) => {
      const group = await groups.get(req.params.pid, req.params.gid);
      const call = { tool: req.body.tool, args: req.body.arguments };
      return opts.router.decide(group, call, await opts.members(group, call.tool), true);
    },
  );

  app.get('/api/groups', { schema: { response: { 200: GroupListSchema, ...errorResponses } } }, async () => {
    const projects = await opts.projects.listProjects();
    const all = await Promise.all(projects.map((p) => groups.list(p.id).catch(() => [])));
    return { groups: await Promise.all(all.flat().map(view)) };
  });
};
