import { AppError } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** true: a POST/PUT that takes no body (restart, reset), exempt from the JSON content-type rule. */
    bodyless?: boolean;
  }
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** Whether a Content-Type header is `application/json` (parameters such as `charset` allowed). */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  return value.split(';', 1)[0]?.trim().toLowerCase() === 'application/json';
}

/**
 * Every POST/PUT that takes a body must say `Content-Type: application/json`, even when the body is empty:
 * a browser can send text/plain, form types or no body at all cross-site without a preflight, never JSON.
 * Runs before the body is read, so a refused request costs nothing.
 */
export function registerJsonBodyRule(app: FastifyInstance): void {
  app.addHook('onRequest', async (req) => {
    if (!BODY_METHODS.has(req.method) || req.routeOptions.url === undefined) return;
    if (req.routeOptions.config.bodyless === true) return;
    if (!isJsonContentType(req.headers['content-type'])) {
      throw new AppError(
        'unsupported_media_type',
        'this route takes a JSON body: send Content-Type: application/json (and {} when there is nothing to say)',
      );
    }
  });
}
