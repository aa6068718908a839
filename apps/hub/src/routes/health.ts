import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { AppError } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { errorResponses } from './schemas.js';

const READY_TIMEOUT_MS = 1_000;

export interface HealthRoutesOptions {
  redis: Redis;
}

/** `/healthz`: the process answers. `/readyz`: it can reach Redis, so it can serve. */
export const healthRoutes: FastifyPluginAsyncZod<HealthRoutesOptions> = async (app, { redis }) => {
  app.get('/healthz', { schema: { response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/readyz',
    { schema: { response: { 200: z.object({ status: z.literal('ready') }), ...errorResponses } } },
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
        throw new AppError('redis_unavailable', 'Redis is unreachable', undefined, { cause: error });
      } finally {
        clearTimeout(timer);
      }
      return { status: 'ready' as const };
    },
  );
};
