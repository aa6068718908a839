import { serializerCompiler } from '@fastify/type-provider-zod';
import {
  closeRedis,
  createKeys,
  createRedis,
  type HubConfig,
  type Logger,
  parseEvent,
  Registry,
} from '@mcp-hub/shared';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Redis } from 'ioredis';
import { registerAdminAuth } from './plugins/admin-auth.js';
import { registerErrorHandling } from './plugins/errors.js';
import { requestIdFrom } from './plugins/request-id.js';
import { registerZodValidation } from './plugins/zod-validation.js';
import { RegistryCache } from './registry-cache.js';
import { healthRoutes } from './routes/health.js';
import { serverRoutes } from './routes/servers.js';
import { toolCallRoutes } from './routes/tool-calls.js';
import { ToolValidatorFactory } from './tool-validator.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: the route logs its own lines, so the generic `api.request` line is skipped. */
    logRequest?: boolean;
  }
}

export interface HubDeps {
  config: Readonly<HubConfig>;
  log: Logger;
  /** A request-role Redis client; when left out the hub opens (and closes) its own. */
  redis?: Redis;
}

/** Builds the hub's Fastify app without listening; `app.close()` releases everything it opened. */
export async function buildHub(deps: HubDeps): Promise<FastifyInstance> {
  const { config, log } = deps;
  const ownsRedis = deps.redis === undefined;
  const redis = deps.redis ?? createRedis(config.redisUrl, 'request', log.child({ component: 'redis' }));
  const keys = createKeys(config.keyPrefix);
  const registry = new Registry(redis, keys, (key, field, err) =>
    log.warn({ event: 'registry.invalid_record', key, field, err }, 'skipped a stored record that does not parse'),
  );

  const cache = new RegistryCache(registry, new ToolValidatorFactory(log), config.cacheMaxAgeMs);
  const subscriber = createRedis(config.redisUrl, 'subscriber', log.child({ component: 'redis-subscriber' }));
  subscriber.on('message', (_channel: string, message: string) => {
    const event = parseEvent(message);
    if (event) cache.onEvent(event);
  });
  // Events missed while disconnected are unknowable: start from a clean cache after every (re)connect.
  subscriber.on('ready', () => cache.clear());
  subscriber
    .subscribe(keys.events)
    .catch((err: unknown) =>
      log.warn(
        { event: 'redis.subscribe_failed', err },
        'could not subscribe to registry events; caches expire by age',
      ),
    );

  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // One `api.request` line per request (below) instead of Fastify's pair of lines.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestIdFrom,
    bodyLimit: config.bodyLimitBytes,
    return503OnClosing: true,
  });

  // Only JSON bodies: text/plain would otherwise reach handlers as a string.
  app.removeContentTypeParser('text/plain');
  registerZodValidation(app);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app, log);

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    // Routes that log their own lines (the tool-call path) opt out of this one.
    if (req.routeOptions.config.logRequest === false) return;
    log.info(
      {
        event: 'api.request',
        request_id: req.id,
        method: req.method,
        url: req.routeOptions.url ?? req.url.split('?')[0],
        status: reply.statusCode,
        latency: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request done',
    );
  });
  registerAdminAuth(app, config.adminToken);

  await app.register(healthRoutes, { redis });
  await app.register(serverRoutes, { registry });
  await app.register(toolCallRoutes, { cache, registry, log, wakeTimeoutMs: config.wakeTimeoutMs });

  app.addHook('onClose', async () => {
    await closeRedis(subscriber);
    if (ownsRedis) redis.disconnect();
  });
  return app;
}
