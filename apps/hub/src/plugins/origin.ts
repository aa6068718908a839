import { AppError } from '@mcp-hub/shared';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const ALLOW_METHODS = 'GET, POST, DELETE, OPTIONS';
const ALLOW_HEADERS = [
  'authorization',
  'x-api-key',
  'content-type',
  'accept',
  'mcp-session-id',
  'mcp-protocol-version',
  'mcp-method',
  'mcp-name',
  'last-event-id',
  'x-request-id',
  'traceparent',
].join(', ');
const EXPOSE_HEADERS = [
  'mcp-session-id',
  'mcp-protocol-version',
  'x-request-id',
  'www-authenticate',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
].join(', ');
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Whether a browser origin may use the MCP endpoints: the hub's own origin, loopback origins (local tools
 * such as the MCP Inspector), and the configured allow-list (`*` allows any). Requests without `Origin`
 * (every non-browser client) are not affected.
 */
export function originAllowed(origin: string, host: string | undefined, allowList: readonly string[]): boolean {
  if (allowList.includes('*') || allowList.includes(origin)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  if (LOOPBACK_HOSTS.has(url.hostname)) return true;
  return host !== undefined && url.host === host;
}

/**
 * Origin validation and CORS for routes marked `config.mcp` (the MCP transports must reject foreign
 * origins against DNS rebinding; browser clients need preflight answers). A bad Origin is a 403.
 */
export function registerOriginCheck(app: FastifyInstance, allowList: readonly string[]): void {
  const check = (req: FastifyRequest, reply: FastifyReply): void => {
    const origin = req.headers.origin;
    if (origin === undefined) return;
    if (!originAllowed(origin, req.headers.host, allowList)) {
      throw new AppError('origin_not_allowed', `origin ${origin} may not use this endpoint`, { origin });
    }
    reply.header('access-control-allow-origin', origin);
    reply.header('vary', 'Origin');
    reply.header('access-control-expose-headers', EXPOSE_HEADERS);
  };

  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.config.mcp === true) check(req, reply);
  });

  // Preflight for every MCP path: answered before any auth, as browsers send no credentials on OPTIONS.
  const preflight = async (req: FastifyRequest, reply: FastifyReply) => {
    check(req, reply);
    reply.header('access-control-allow-methods', ALLOW_METHODS);
    reply.header('access-control-allow-headers', ALLOW_HEADERS);
    reply.header('access-control-max-age', '600');
    return reply.code(204).send();
  };
  const config = { logRequest: false, mcp: false, public: true };
  for (const url of ['/mcp', '/mcp/*', '/sse', '/sse/*', '/messages', '/messages/*']) {
    app.options(url, { config }, preflight);
  }
}
