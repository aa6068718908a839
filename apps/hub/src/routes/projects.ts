import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { AppError } from '@mcp-hub/shared';
import { z } from 'zod';
import { checkKeyCreation, checkKeyRotation } from '../access/delegation.js';
import type { KeyCache } from '../access/key-cache.js';
import { canSee } from '../access/principal.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import { AuditRecordSchema, type AuditStream } from '../stores/audit-stream.js';
import type { AuditTrail } from '../stores/audit-trail.js';
import {
  AddMemberBodySchema,
  ApiKeyRecordSchema,
  CreateKeyBodySchema,
  CreateProjectBodySchema,
  KeyLimitsSchema,
  MemberSchema,
  ProjectSchema,
  RotateKeyBodySchema,
} from '../stores/project-schemas.js';
import type { ProjectStore } from '../stores/project-store.js';
import type { UsageRecorder } from '../stores/usage.js';
import { errorResponses } from './schemas.js';

export interface ProjectRoutesOptions {
  store: ProjectStore;
  keyCache: KeyCache;
  audit: AuditTrail;
  auditStream: AuditStream;
  usage: UsageRecorder;
  limiter: RateLimiter;
  rotationGraceMs: number;
  /**
   * Called after a key of `project` was revoked or rotated: ends the MCP sessions it held if it no longer
   * works, and watches them until it stops (the end of a rotation grace). Never throws for a worker.
   */
  keyChanged(keyId: string, project: string): Promise<unknown>;
}

const Pid = z.strictObject({ pid: z.string().min(1).max(128) });
const PidKey = z.strictObject({ pid: z.string().min(1).max(128), keyId: z.string().min(1).max(128) });
const KeyIdParams = z.strictObject({ keyId: z.string().min(1).max(128) });

// What the routes answer. Serialising through these also drops anything else a record holds (a key's hash).
const KeyViewSchema = ApiKeyRecordSchema.omit({ hash: true });
const CreatedKeySchema = KeyViewSchema.extend({ key: z.string() });
const RotatedKeySchema = CreatedKeySchema.extend({ previous: KeyViewSchema });
const UsageCountsSchema = z.object({
  calls: z.number(),
  errors: z.number(),
  latencyMsSum: z.number(),
  servers: z.record(z.string(), z.number()),
  tools: z.record(z.string(), z.number()),
});
const UsageViewSchema = z.object({
  keyId: z.string(),
  project: z.string(),
  limits: KeyLimitsSchema.nullable(),
  total: UsageCountsSchema,
  days: z.array(UsageCountsSchema.extend({ day: z.string() })),
  lastRequestAt: z.string().nullable(),
});
const AuditEntrySchema = AuditRecordSchema.extend({ id: z.string(), ts: z.string() });

/**
 * Projects, members and API keys (`/api/projects…`), usage (`/api/usage/:keyId`) and the audit log
 * (`/api/audit`). Who may call each is in ROUTE_POLICIES; the routes only narrow what a key sees.
 */
export const projectRoutes: FastifyPluginAsyncZod<ProjectRoutesOptions> = async (app, opts) => {
  const { store, audit } = opts;

  app.post(
    '/api/projects',
    { schema: { body: CreateProjectBodySchema, response: { 201: ProjectSchema, ...errorResponses } } },
    async (req, reply) => {
      const project = await store.createProject(req.body);
      await audit.record(req, 'project.create', { type: 'project', id: project.id }, project.id, null, project);
      return reply.status(201).header('location', `/api/projects/${project.id}`).send(project);
    },
  );

  app.get(
    '/api/projects',
    { schema: { response: { 200: z.object({ projects: z.array(ProjectSchema) }), ...errorResponses } } },
    async (req) => {
      const projects = (await store.listProjects()).filter((p) => canSee(req.principal, p.id));
      return { projects };
    },
  );

  app.get(
    '/api/projects/:pid/members',
    { schema: { params: Pid, response: { 200: z.object({ members: z.array(MemberSchema) }), ...errorResponses } } },
    async (req) => {
      await store.requireProject(req.params.pid);
      return { members: await store.listMembers(req.params.pid) };
    },
  );

  app.post(
    '/api/projects/:pid/members',
    {
      schema: {
        params: Pid,
        body: AddMemberBodySchema,
        response: { 200: MemberSchema, 201: MemberSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const before = await store.getMember(req.params.pid, req.body.id);
      const member = await store.addMember(req.params.pid, req.body);
      await audit.record(
        req,
        before ? 'member.update' : 'member.add',
        { type: 'member', id: member.id },
        req.params.pid,
        before,
        member,
      );
      return reply.status(before ? 200 : 201).send(member);
    },
  );

  app.get(
    '/api/projects/:pid/keys',
    { schema: { params: Pid, response: { 200: z.object({ keys: z.array(KeyViewSchema) }), ...errorResponses } } },
    async (req) => {
      await store.requireProject(req.params.pid);
      return { keys: await store.apiKeys.listKeys(req.params.pid) };
    },
  );

  app.post(
    '/api/projects/:pid/keys',
    { schema: { params: Pid, body: CreateKeyBodySchema, response: { 201: CreatedKeySchema, ...errorResponses } } },
    async (req, reply) => {
      checkKeyCreation(req.principal, req.body);
      const { record, key } = await store.apiKeys.createKey(req.params.pid, req.body);
      await audit.record(req, 'key.create', { type: 'key', id: record.id }, req.params.pid, null, record);
      // The only time the secret is shown.
      return reply
        .status(201)
        .header('cache-control', 'no-store')
        .send({ ...record, key });
    },
  );

  app.delete(
    '/api/projects/:pid/keys/:keyId',
    { schema: { params: PidKey, response: { 200: KeyViewSchema, ...errorResponses } } },
    async (req) => {
      const before = await store.apiKeys.getKeyRecord(req.params.keyId);
      const record = await store.apiKeys.revokeKey(req.params.pid, req.params.keyId);
      opts.keyCache.forget(record.id);
      await opts.keyChanged(record.id, record.project);
      await audit.record(req, 'key.revoke', { type: 'key', id: record.id }, req.params.pid, before, record);
      return record;
    },
  );

  app.post(
    '/api/projects/:pid/keys/:keyId/rotate',
    {
      schema: {
        params: PidKey,
        body: RotateKeyBodySchema.optional(),
        response: { 201: RotatedKeySchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const target = await store.apiKeys.getKeyRecord(req.params.keyId);
      if (target && target.project === req.params.pid) checkKeyRotation(req.principal, target);
      const grace = req.body?.graceMs ?? opts.rotationGraceMs;
      const { record, key, previous } = await store.apiKeys.rotateKey(req.params.pid, req.params.keyId, grace);
      opts.keyCache.forget(previous.id);
      // With no grace the old key is dead now; with one, the reaper's timer ends its sessions when it expires.
      await opts.keyChanged(previous.id, previous.project);
      await audit.record(req, 'key.rotate', { type: 'key', id: previous.id }, req.params.pid, previous, record);
      return reply
        .status(201)
        .header('cache-control', 'no-store')
        .send({ ...record, key, previous });
    },
  );

  /** The key, if the caller may see it (admin: any; a key: those of its own project); else 404. */
  async function visibleKey(principal: Parameters<typeof canSee>[0], keyId: string) {
    const record = await store.apiKeys.getKeyRecord(keyId);
    if (!record || !canSee(principal, record.project)) throw new AppError('key_not_found', `key "${keyId}" not found`);
    return record;
  }

  app.get(
    '/api/usage/:keyId',
    {
      schema: {
        params: KeyIdParams,
        querystring: z.strictObject({ days: z.coerce.number().int().min(1).max(35).optional() }),
        response: { 200: UsageViewSchema, ...errorResponses },
      },
    },
    async (req) => {
      const record = await visibleKey(req.principal, req.params.keyId);
      const usage = await opts.usage.get(record.id, { days: req.query.days });
      return { ...usage, project: record.project, limits: record.limits ?? null };
    },
  );

  app.post(
    '/api/usage/:keyId/reset',
    {
      // No body: a browser's cross-site POST is stopped by the Origin check instead.
      config: { bodyless: true },
      schema: {
        params: KeyIdParams,
        response: { 200: z.object({ keyId: z.string(), reset: z.literal(true) }), ...errorResponses },
      },
    },
    async (req) => {
      const record = await visibleKey(req.principal, req.params.keyId);
      await opts.limiter.resetKey(record.id);
      await audit.record(req, 'usage.reset', { type: 'key', id: record.id }, record.project, null, null);
      return { keyId: record.id, reset: true as const };
    },
  );

  app.get(
    '/api/audit',
    {
      schema: {
        querystring: z.strictObject({
          project: z.string().min(1).max(128).optional(),
          since: z.string().min(1).max(64).optional(),
          actor: z.string().min(1).max(256).optional(),
          limit: z.coerce.number().int().min(1).max(1000).optional(),
        }),
        response: { 200: z.object({ entries: z.array(AuditEntrySchema) }), ...errorResponses },
      },
    },
    async (req) => {
      const { principal } = req;
      let project = req.query.project;
      if (principal.kind === 'key') {
        // A key reads its own project's log only; naming another project looks like naming none that exists.
        if (project !== undefined && project !== principal.project) {
          throw new AppError('project_not_found', `project "${project}" not found`);
        }
        project = principal.project;
      }
      const since =
        req.query.since !== undefined && /^\d+$/.test(req.query.since) ? Number(req.query.since) : req.query.since;
      return {
        entries: await opts.auditStream.query({ project, since, actor: req.query.actor, limit: req.query.limit }),
      };
    },
  );
};
