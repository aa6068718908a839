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

export interface OriginRulesOptions {
  /** HUB_ALLOWED_ORIGINS; `*` allows any origin (dangerous: any web page may then drive the hub). */
  allowedOrigins: readonly string[];
  /** HUB_PUBLIC_URL: its origin is the hub's own. */
  publicUrl: string | undefined;
}

/** `scheme://host[:port]` as browsers serialise it, or undefined for anything else (`null`, paths, other schemes). */
function serialisedOrigin(value: string): string | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

/**
 * Whether a browser origin may use the hub: the hub's own origin (HUB_PUBLIC_URL's, or the validated `Host`
 * over http or https) or one of HUB_ALLOWED_ORIGINS (`*`: any). Another port on localhost is another origin,
 * and is refused like any other site.
 */
export function originAllowedBy(opts: OriginRulesOptions): (origin: string, host: string | undefined) => boolean {
  const any = opts.allowedOrigins.includes('*');
  const listed = new Set<string>();
  for (const entry of opts.allowedOrigins) listed.add(serialisedOrigin(entry) ?? entry);
  if (opts.publicUrl !== undefined) listed.add(new URL(opts.publicUrl).origin);
  return (origin, host) => {
    if (any) return true;
    const normal = serialisedOrigin(origin);
    if (normal === undefined || normal !== origin.replace(/\/$/, '')) return false;
    if (listed.has(normal)) return true;
    if (host === undefined) return false;
    return normal === serialisedOrigin(`http://${host}`) || normal === serialisedOrigin(`https://${host}`);
  };
}

/** Routes a browser may reach from anywhere: load balancers and uptime pages probe them. */
const ANY_ORIGIN_ROUTES = new Set(['/healthz']);

/**
 * Origin validation on every route but `/healthz` (it runs after the Host check, so the hub's own origin is
 * derived from a validated Host), CORS answers for the MCP endpoints, and their preflight. A request with a
 * foreign `Origin`, or a browser's cross-site request without one (`Sec-Fetch-Site: cross-site`), is a 403
 * before authentication: a page cannot make the hub run anything, whatever credentials it has.
 */
export function registerOriginCheck(app: FastifyInstance, opts: OriginRulesOptions): void {
  const allowed = originAllowedBy(opts);
  const any = opts.allowedOrigins.includes('*');
  const check = (req: FastifyRequest, reply: FastifyReply, cors: boolean): void => {
    const origin = req.headers.origin;
    if (origin === undefined) {
      if (req.headers['sec-fetch-site'] === 'cross-site' && !any) {
        throw new AppError('origin_not_allowed', 'a cross-site browser request may not use this hub', {
          origin: null,
        });
      }
      return;
    }
    if (!allowed(origin, req.headers.host)) {
      throw new AppError('origin_not_allowed', `origin ${origin} may not use this hub`, { origin });
    }
    if (!cors) return;
    reply.header('access-control-allow-origin', origin);
    reply.header('vary', 'Origin');
    reply.header('access-control-expose-headers', EXPOSE_HEADERS);
  };

  app.addHook('onRequest', async (req, reply) => {
    if (ANY_ORIGIN_ROUTES.has(req.routeOptions.url ?? '')) return;
    // CORS headers only where browser clients are expected (the MCP transports); elsewhere an allowed origin
    // is let through but its scripts cannot read the answer.
    check(req, reply, req.routeOptions.config.mcp === true);
  });

  // Preflight for every MCP path: answered before any auth, as browsers send no credentials on OPTIONS.
  const preflight = async (req: FastifyRequest, reply: FastifyReply) => {
    check(req, reply, true);
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
