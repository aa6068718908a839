import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { AppError } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { RateLimiter } from '../limits/rate-limiter.js';
import { errorResponses } from './schemas.js';

const READY_TIMEOUT_MS = 1_000;

export interface HealthRoutesOptions {
  redis: Redis;
  limiter: RateLimiter;
}

/** `/healthz`: the process answers. `/readyz`: it can reach Redis, so it can serve. */
export const healthRoutes: FastifyPluginAsyncZod<HealthRoutesOptions> = async (app, { redis, limiter }) => {
  app.get('/healthz', { schema: { response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/readyz',
    {
      schema: {
        response: {
          200: z.object({ status: z.literal('ready'), details: z.object({ rateLimiter: z.unknown() }) }),
          ...errorResponses,
        },
      },
    },
    async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          redis.ping(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('ping timed out')), READY_TIMEOUT_MS);
          }),
        ]);
      } catch (error) {
        throw new AppError(
          'redis_unavailable',
          'Redis is unreachable',
          { rateLimiter: limiter.status() },
          { cause: error },
        );
      } finally {
        clearTimeout(timer);
      }
      // The limiter falls back to in-memory counters while its Redis calls fail; say so.
      return { status: 'ready' as const, details: { rateLimiter: limiter.status() } };
    },
  );
};
