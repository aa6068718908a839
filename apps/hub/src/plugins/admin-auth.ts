import { createHash, timingSafeEqual } from 'node:crypto';
import { AppError } from '@mcp-hub/shared';
import type { FastifyInstance, FastifyRequest } from 'fastify';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Until API keys exist, `/api/*` needs `Authorization: Bearer <HUB_ADMIN_TOKEN>` when the token is set.
 * Digests are compared so that the comparison takes the same time whatever the length of the guess.
 */
export function registerAdminAuth(app: FastifyInstance, adminToken: string | undefined): void {
  if (adminToken === undefined) return;
  const expected = digest(adminToken);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    // The matched route, not the raw URL: the router decodes escapes, so /%61pi/… is an /api route too.
    const route = req.routeOptions.url;
    if (route === undefined || !(route === '/api' || route.startsWith('/api/'))) return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
    if (!match?.[1]) throw new AppError('unauthorized', 'missing bearer token: send Authorization: Bearer <token>');
    if (!timingSafeEqual(digest(match[1]), expected)) throw new AppError('unauthorized', 'invalid bearer token');
  });
}
