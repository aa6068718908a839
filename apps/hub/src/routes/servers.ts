import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  AppError,
  type Registry,
  type RuntimeRecord,
  ServerInputSchema,
  type ServerSpec,
  specBodyFromInput,
} from '@mcp-hub/shared';
import { z } from 'zod';
import {
  errorResponses,
  RestartAcceptedSchema,
  ServerIdParamsSchema,
  ServerListSchema,
  ServerViewSchema,
  ToolListSchema,
} from './schemas.js';

export interface ServerRoutesOptions {
  registry: Registry;
}

function view(spec: ServerSpec, runtime: RuntimeRecord | null): ServerSpec & { runtime?: RuntimeRecord } {
  return runtime ? { ...spec, runtime } : spec;
}

/** The admin API over the server registry: `/api/servers…`. */
export const serverRoutes: FastifyPluginAsyncZod<ServerRoutesOptions> = async (app, { registry }) => {
  app.post(
    '/api/servers',
    { schema: { body: ServerInputSchema, response: { 201: ServerViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const { spec } = await registry.upsertServer(specBodyFromInput(req.body), 'create', req.body.rev);
      return reply.status(201).header('location', `/api/servers/${spec.id}`).send(spec);
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
      const { spec, created } = await registry.upsertServer(specBodyFromInput(req.body), 'replace', req.body.rev);
      const runtime = created ? null : await registry.getRuntime(spec.id);
      return reply.status(created ? 201 : 200).send(view(spec, runtime));
    },
  );

  app.get('/api/servers', { schema: { response: { 200: ServerListSchema, ...errorResponses } } }, async () => {
    const specs = await registry.listServers();
    const runtimes = await Promise.all(specs.map((spec) => registry.getRuntime(spec.id)));
    return { servers: specs.map((spec, i) => view(spec, runtimes[i] ?? null)) };
  });

  app.get(
    '/api/servers/:id',
    { schema: { params: ServerIdParamsSchema, response: { 200: ServerViewSchema, ...errorResponses } } },
    async (req) => {
      const [spec, runtime] = await Promise.all([
        registry.requireServer(req.params.id),
        registry.getRuntime(req.params.id),
      ]);
      return view(spec, runtime);
    },
  );

  app.delete(
    '/api/servers/:id',
    { schema: { params: ServerIdParamsSchema, response: { 204: z.undefined(), ...errorResponses } } },
    async (req, reply) => {
      await registry.deleteServer(req.params.id);
      return reply.status(204).send();
    },
  );

  app.get(
    '/api/servers/:id/tools',
    { schema: { params: ServerIdParamsSchema, response: { 200: ToolListSchema, ...errorResponses } } },
    async (req) => {
      await registry.requireServer(req.params.id);
      return { tools: await registry.listTools(req.params.id) };
    },
  );

  app.post(
    '/api/servers/:id/restart',
    { schema: { params: ServerIdParamsSchema, response: { 202: RestartAcceptedSchema, ...errorResponses } } },
    async (req, reply) => {
      const result = await registry.requestRestart(req.params.id);
      return reply.status(202).send({ id: req.params.id, ...result });
    },
  );
};
