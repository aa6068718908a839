import { REQUEST_ID_HEADER } from '@mcp-hub/shared';
import type { McpFront } from '@mcp-hub/shared/mcp-front';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HubMetrics } from '../metrics/hub-metrics.js';
import { observeMcp, useMcpBodyParser } from './mcp-proxy.js';

export interface McpAggregateRoutesOptions {
  /** The hub's own MCP server over every server the caller may see (`/mcp`, `/sse`, `/messages`). */
  aggregate: McpFront;
  /** Counts each request (HUB_METRICS); unset: not counted. */
  metrics?: HubMetrics;
}

/**
 * The aggregated MCP endpoints, served by the hub itself (its tool calls reach the workers by the call path):
 * `POST|GET|DELETE /mcp`, and `GET /sse` with `POST /messages?sessionId=…` for the legacy transport.
 */
export async function mcpAggregateRoutes(app: FastifyInstance, opts: McpAggregateRoutesOptions): Promise<void> {
  const { aggregate, metrics } = opts;
  /** The aggregated endpoint's operations are counted under the server label `(aggregate)`. */
  const observe = (req: FastifyRequest, reply: FastifyReply, legacy: boolean) => {
    if (metrics) observeMcp(metrics, req, reply, legacy).server = '(aggregate)';
  };
  useMcpBodyParser(app);
  const config = { logRequest: false, mcp: true };
  function own(req: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    // The front reads the request id from the header; the hub's own id (given or made) is the one to follow.
    req.raw.headers[REQUEST_ID_HEADER] = req.id;
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) reply.raw.setHeader(name, value as string);
    }
  }
  // HEAD of a stream: the GET's status and type without opening a session (the front would open one and never end).
  const headOfStream = (req: FastifyRequest, reply: FastifyReply): boolean => {
    if (req.method !== 'HEAD') return false;
    void reply.code(200).type('text/event-stream').send();
    return true;
  };
  for (const method of ['POST', 'GET', 'DELETE'] as const) {
    app.route({
      method,
      url: '/mcp',
      config,
      handler: async (req, reply) => {
        if (headOfStream(req, reply)) return reply;
        observe(req, reply, false);
        own(req, reply);
        await aggregate.handleMcp(req.raw, reply.raw, req.method === 'POST' ? req.body : undefined, req.principal);
      },
    });
  }
  app.get('/sse', { config }, async (req, reply) => {
    if (headOfStream(req, reply)) return reply;
    observe(req, reply, true);
    own(req, reply);
    await aggregate.handleSse(req.raw, reply.raw, '/messages', req.principal);
  });
  app.post('/messages', { config }, async (req, reply) => {
    observe(req, reply, true);
    own(req, reply);
    await aggregate.handleMessages(req.raw, reply.raw, req.body, req.principal);
  });
}
