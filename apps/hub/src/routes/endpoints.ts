import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { z } from 'zod';
import type { EndpointAccess } from '../routing/endpoint-access.js';
import { toolAllowed } from '../routing/tool-filter.js';
import type { AuditTrail } from '../stores/audit-trail.js';
import {
  CreateEndpointBodySchema,
  type Endpoint,
  EndpointSchema,
  type EndpointStore,
} from '../stores/endpoint-store.js';
import { type GroupStore, GroupToolSchema } from '../stores/group-store.js';
import { errorResponses } from './schemas.js';

export interface EndpointRoutesOptions {
  endpoints: EndpointStore;
  access: EndpointAccess;
  groups: GroupStore;
  audit: AuditTrail;
}

const Pid = z.strictObject({ pid: z.string().min(1).max(128) });
const PidEid = z.strictObject({ pid: z.string().min(1).max(128), eid: z.string().min(1).max(64) });
const Token = z.strictObject({ token: z.string().min(1).max(128) });
/** The URLs of an endpoint, relative to the hub (the token is in them: shown when issued only). */
const UrlsSchema = z.object({ tools: z.string(), call: z.string() });
const IssuedSchema = EndpointSchema.extend({ token: z.string(), urls: UrlsSchema });

const urls = (token: string) => ({ tools: `/e/${token}/tools`, call: `/e/${token}/tools/{tool}` });

/**
 * Connection endpoints (issue 16, item 3, REST part): `/api/projects/:pid/endpoints…` to create, list, re-issue and
 * delete them (the token, and so the URLs, shown only when issued), and `GET /e/:token/tools`, the tools a bound key
 * can call there (`POST /e/:token/tools/:tool` is in tool-calls.ts). Writes are audited.
 */
export const endpointRoutes: FastifyPluginAsyncZod<EndpointRoutesOptions> = async (app, opts) => {
  const { endpoints, audit } = opts;
  const target = (e: Endpoint) => ({ type: 'endpoint', id: `${e.project}/${e.id}` });

  app.post(
    '/api/projects/:pid/endpoints',
    { schema: { params: Pid, body: CreateEndpointBodySchema, response: { 201: IssuedSchema, ...errorResponses } } },
    async (req, reply) => {
      const { endpoint, token } = await endpoints.create(req.params.pid, req.body);
      await audit.record(req, 'endpoint.create', target(endpoint), endpoint.project, null, endpoint);
      // The token is in the answer: nobody keeps a copy (as for a new API key).
      return reply
        .status(201)
        .header('cache-control', 'no-store')
        .send({ ...endpoint, token, urls: urls(token) });
    },
  );

  app.get(
    '/api/projects/:pid/endpoints',
    { schema: { params: Pid, response: { 200: z.object({ endpoints: z.array(EndpointSchema) }), ...errorResponses } } },
    async (req) => ({ endpoints: await endpoints.list(req.params.pid) }),
  );

  app.get(
    '/api/projects/:pid/endpoints/:eid',
    { schema: { params: PidEid, response: { 200: EndpointSchema, ...errorResponses } } },
    async (req) => endpoints.get(req.params.pid, req.params.eid),
  );

  app.post(
    '/api/projects/:pid/endpoints/:eid/reissue',
    { config: { bodyless: true }, schema: { params: PidEid, response: { 200: IssuedSchema, ...errorResponses } } },
    async (req, reply) => {
      const before = await endpoints.get(req.params.pid, req.params.eid);
      const { endpoint, token } = await endpoints.reissue(req.params.pid, req.params.eid);
      await audit.record(req, 'endpoint.reissue', target(endpoint), endpoint.project, before, endpoint);
      return reply.header('cache-control', 'no-store').send({ ...endpoint, token, urls: urls(token) });
    },
  );

  app.delete(
    '/api/projects/:pid/endpoints/:eid',
    { schema: { params: PidEid, response: { 204: z.null(), ...errorResponses } } },
    async (req, reply) => {
      const before = await endpoints.remove(req.params.pid, req.params.eid);
      await audit.record(req, 'endpoint.delete', target(before), before.project, before, null);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/e/:token/tools',
    { schema: { params: Token, response: { 200: z.object({ tools: z.array(GroupToolSchema) }), ...errorResponses } } },
    async (req) => {
      const endpoint = await opts.access.authorize(req.params.token, req.principal);
      const all = await opts.groups.tools(await opts.access.routing(endpoint));
      // The same decision as a call's: a denied tool is not listed (routing/tool-filter.ts).
      const tools = all
        .map((t) => ({ ...t, servers: t.servers.filter((s) => toolAllowed(endpoint.tools, s.id, t.name)) }))
        .filter((t) => t.servers.length > 0);
      return { tools };
    },
  );
};
