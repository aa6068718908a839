import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  AppError,
  maskSpecSecrets,
  type PublicRuntime,
  publicRuntime,
  type Registry,
  type RuntimeRecord,
  ServerInputSchema,
  type ServerSpec,
  specBodyFromInput,
} from '@mcp-hub/shared';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { canSee } from '../access/principal.js';
import type { ServerWriteGuard } from '../access/server-writes.js';
import type { AuditTrail } from '../stores/audit-trail.js';
import {
  errorResponses,
  FailureListSchema,
  RestartAcceptedSchema,
  ServerIdParamsSchema,
  ServerListSchema,
  ServerViewSchema,
  ToolListSchema,
} from './schemas.js';

export interface ServerRoutesOptions {
  registry: Registry;
  /** Checks a write (who may register what, where it may point) and prepares the spec to store. */
  writes: ServerWriteGuard;
  audit: AuditTrail;
}

/** Secrets are never shown: `env` and `headers` values read "***" in every answer, the worker's credential not at all. */
function view(spec: ServerSpec, runtime: RuntimeRecord | null): ServerSpec & { runtime?: PublicRuntime } {
  const masked = maskSpecSecrets(spec);
  return runtime ? { ...masked, runtime: publicRuntime(runtime) } : masked;
}

function notFound(id: string): AppError {
  return new AppError('server_not_found', `server "${id}" not found`);
}

/** The admin API over the server registry: `/api/servers…`. */
export const serverRoutes: FastifyPluginAsyncZod<ServerRoutesOptions> = async (app, { registry, writes, audit }) => {
  /** The server of `:id` as the registry holds it, if the caller may see it; else 404 (as if missing). */
  async function visibleServer(req: FastifyRequest): Promise<ServerSpec> {
    const { id } = req.params as { id: string };
    const spec = await registry.requireServer(id);
    if (!canSee(req.principal, spec.project)) throw notFound(id);
    return spec;
  }

  app.post(
    '/api/servers',
    { schema: { body: ServerInputSchema, response: { 201: ServerViewSchema, ...errorResponses } } },
    async (req, reply) => {
      // An id another project holds answers as GET does for it: 404, never a 409 that confirms it exists.
      const hidden = async () => {
        const holder = await registry.getServer(req.body.id);
        if (holder && !canSee(req.principal, holder.project)) throw notFound(req.body.id);
      };
      await hidden();
      const body = await writes.prepare(req.principal, specBodyFromInput(req.body), null);
      const { spec } = await registry.upsertServer(body, 'create', req.body.rev).catch(async (err: unknown) => {
        // Created by someone else since the first look.
        if (err instanceof AppError && err.code === 'server_exists' && err.details === undefined) await hidden();
        throw err;
      });
      await audit.record(req, 'server.create', { type: 'server', id: spec.id }, spec.project, null, spec);
      return reply.status(201).header('location', `/api/servers/${spec.id}`).send(view(spec, null));
    },
  );

  // The id comes from the path; a body may leave it out, but must not name another server.
  app.put(
    '/api/servers/:id',
    {
      schema: {
        params: ServerIdParamsSchema,
        body: ServerInputSchema,
        response: { 200: ServerViewSchema, 201: ServerViewSchema, ...errorResponses },
      },
      preValidation: async (req) => {
        const body = req.body as Record<string, unknown> | null;
        const { id } = req.params as { id: string };
        if (body === null || typeof body !== 'object' || Array.isArray(body)) return;
        if (body.id === undefined) body.id = id;
        else if (body.id !== id) {
          throw new AppError(
            'invalid_request',
            `invalid body: id: "${String(body.id)}" does not match the path id "${id}"`,
            [{ path: 'id', message: 'does not match the path' }],
          );
        }
      },
    },
    async (req, reply) => {
      const before = await registry.getServer(req.params.id);
      // The auth hook judged ownership from the hub's cache; the registry read is the one that counts.
      if (before && !canSee(req.principal, before.project)) throw notFound(req.params.id);
      const body = await writes.prepare(req.principal, specBodyFromInput(req.body), before);
      const { spec, created } = await registry.upsertServer(body, 'replace', req.body.rev);
      const runtime = created ? null : await registry.getRuntime(spec.id);
      if (created || spec.rev !== before?.rev) {
        await audit.record(
          req,
          created ? 'server.create' : 'server.update',
          { type: 'server', id: spec.id },
          spec.project,
          before,
          spec,
        );
      }
      return reply.status(created ? 201 : 200).send(view(spec, runtime));
    },
  );

  app.get('/api/servers', { schema: { response: { 200: ServerListSchema, ...errorResponses } } }, async (req) => {
    const specs = (await registry.listServers()).filter((spec) => canSee(req.principal, spec.project));
    const runtimes = await Promise.all(specs.map((spec) => registry.getRuntime(spec.id)));
    return { servers: specs.map((spec, i) => view(spec, runtimes[i] ?? null)) };
  });

  app.get(
    '/api/servers/:id',
    { schema: { params: ServerIdParamsSchema, response: { 200: ServerViewSchema, ...errorResponses } } },
    async (req) => {
      const [spec, runtime, failures] = await Promise.all([
        visibleServer(req),
        registry.getRuntime(req.params.id),
        registry.listFailures(req.params.id),
      ]);
      return { ...view(spec, runtime), failures };
    },
  );

  app.get(
    '/api/servers/:id/failures',
    { schema: { params: ServerIdParamsSchema, response: { 200: FailureListSchema, ...errorResponses } } },
    async (req) => {
      await visibleServer(req);
      return { failures: await registry.listFailures(req.params.id) };
    },
  );

  app.delete(
    '/api/servers/:id',
    { schema: { params: ServerIdParamsSchema, response: { 204: z.undefined(), ...errorResponses } } },
    async (req, reply) => {
      const before = await visibleServer(req);
      await registry.deleteServer(req.params.id);
      await audit.record(req, 'server.delete', { type: 'server', id: before.id }, before.project, before, null);
      return reply.status(204).send();
    },
  );

  app.get(
    '/api/servers/:id/tools',
    { schema: { params: ServerIdParamsSchema, response: { 200: ToolListSchema, ...errorResponses } } },
    async (req) => {
      await visibleServer(req);
      return { tools: await registry.listTools(req.params.id) };
    },
  );

  app.post(
    '/api/servers/:id/restart',
    {
      // No body: a browser's cross-site POST is stopped by the Origin check instead.
      config: { bodyless: true },
      schema: { params: ServerIdParamsSchema, response: { 202: RestartAcceptedSchema, ...errorResponses } },
    },
    async (req, reply) => {
      const spec = await visibleServer(req);
      const result = await registry.requestRestart(req.params.id);
      await audit.record(req, 'server.restart', { type: 'server', id: req.params.id }, spec?.project, null, null);
      return reply.status(202).send({ id: req.params.id, ...result });
    },
  );
};
