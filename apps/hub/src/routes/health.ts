import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { AppError } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { RedisReachability } from '../redis-reachability.js';
import { errorResponses } from './schemas.js';

const READY_TIMEOUT_MS = 1_000;

export interface HealthRoutesOptions {
  redis: Redis;
  limiter: RateLimiter;
  reach: RedisReachability;
}

/**
 * `/healthz`: the process answers. `/readyz`: it can serve — 200 `ready` when it reaches Redis; 200 `stale`
 * while Redis is unreachable but this hub has read it before (calls are served from its caches, see
 * `details.registry`); 503 `redis_unavailable` when it never reached Redis (it has nothing to serve from).
 */
export const healthRoutes: FastifyPluginAsyncZod<HealthRoutesOptions> = async (app, { redis, limiter, reach }) => {
  app.get('/healthz', { schema: { response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/readyz',
    {
      schema: {
        response: {
          200: z.object({
            status: z.enum(['ready', 'stale']),
            details: z.object({ rateLimiter: z.unknown(), registry: z.unknown() }),
          }),
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
        reach.readOk();
      } catch (error) {
        reach.readFailed(error);
        if (reach.hasReachedRedis) {
          // Serving from the caches is serving: a load balancer must not take every hub out during an outage.
          return {
            status: 'stale' as const,
            details: { rateLimiter: limiter.status(), registry: reach.status() },
          };
        }
        throw new AppError(
          'redis_unavailable',
          'Redis is unreachable',
          { rateLimiter: limiter.status(), registry: reach.status() },
          { cause: error },
        );
      } finally {
        clearTimeout(timer);
      }
      // The limiter falls back to in-memory counters while its Redis calls fail; say so.
      return { status: 'ready' as const, details: { rateLimiter: limiter.status(), registry: reach.status() } };
    },
  );
};
