import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform } from '@fastify/type-provider-zod';
import type { FastifyInstance } from 'fastify';

/** Where the browsable reference lives (Swagger UI, its assets under it). */
export const DOCS_PREFIX = '/docs';

/**
 * The OpenAPI 3.1 document of the hub's HTTP API, generated from the routes' zod schemas as they are registered
 * (@fastify/swagger with the zod type provider's transform), served at `GET /openapi.json`, with Swagger UI at
 * `/docs`. Both are public: they describe routes, never data; every route still asks for its credential.
 * Register before the routes (the document is built from the routes registered after it).
 */
export async function registerOpenApi(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'MCP Hub API',
        version,
        description:
          'One front door for many MCP servers: the registry, projects and keys, tool calls (POST /mcp/{id}/{tool}, ' +
          'answered as JSON or Server-Sent Events), the MCP endpoints of both protocol eras, and operations.',
      },
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'The admin token, an API key (mcp_…), or for /metrics the metrics token',
          },
        },
      },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    uiConfig: { deepLinking: true, docExpansion: 'list' },
    // The document the UI shows is the hub's own, from the same origin.
    transformSpecification: (spec) => spec,
  });
}
