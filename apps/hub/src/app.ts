import { setTimeout as delay } from 'node:timers/promises';
import { serializerCompiler } from '@fastify/type-provider-zod';
import {
  AppError,
  closeRedis,
  createKeys,
  createRedis,
  type HubConfig,
  type HubEvent,
  type Logger,
  loggedPath,
  parseEvent,
  Registry,
  registerErrorHandling,
  requestIdFrom,
  SecretBox,
  startTracing,
} from '@mcp-hub/shared';
import { createMcpFront } from '@mcp-hub/shared/mcp-front';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Redis } from 'ioredis';
import { Agent } from 'undici';
import { CallGuard } from './access/call-guard.js';
import { KeyCache } from './access/key-cache.js';
import { requirePolicyRows } from './access/policy.js';
import { canSee, type Principal, principalProject } from './access/principal.js';
import { ServerWriteGuard } from './access/server-writes.js';
import { SessionReaper } from './access/session-reaper.js';
import { guardedConnector } from './access/url-guard.js';
import { Aggregator } from './aggregate/aggregator.js';
import { Alerter } from './alerts/alerter.js';
import { alertTriggers } from './alerts/triggers.js';
import { AlertWebhookStore } from './alerts/webhook-store.js';
import { EventFeed } from './events/event-feed.js';
import { registerAuth } from './http/auth.js';
import { registerHostCheck } from './http/host.js';
import { registerJsonBodyRule } from './http/json-body.js';
import { registerOpenApi } from './http/openapi.js';
import { registerOriginCheck } from './http/origin.js';
import { RequestDrain } from './http/request-drain.js';
import { registerZodValidation } from './http/zod-validation.js';
import { RateLimiter } from './limits/rate-limiter.js';
import { HubMetrics } from './metrics/hub-metrics.js';
import { supervisorCounters } from './metrics/supervisor-counters.js';
import { RedisReachability } from './redis-reachability.js';
import { RegistryCache } from './registry-cache.js';
import { alertRoutes } from './routes/alerts.js';
import { discoveryRoutes } from './routes/discovery.js';
import { endpointRoutes } from './routes/endpoints.js';
import { eventRoutes } from './routes/events.js';
import { groupRoutes } from './routes/groups.js';
import { healthRoutes } from './routes/health.js';
import { mcpAggregateRoutes } from './routes/mcp-aggregate.js';
import { callerId, mcpProxyRoutes } from './routes/mcp-proxy.js';
import { metricsRoutes } from './routes/metrics.js';
import { projectRoutes } from './routes/projects.js';
import { serverRoutes } from './routes/servers.js';
import { toolCallRoutes } from './routes/tool-calls.js';
import { EndpointAccess } from './routing/endpoint-access.js';
import { cachedMembers, type GroupForRouting, GroupRouter } from './routing/router.js';
import { AuditStream } from './stores/audit-stream.js';
import { AuditTrail } from './stores/audit-trail.js';
import { EndpointStore } from './stores/endpoint-store.js';
import { GroupStore } from './stores/group-store.js';
import { ProjectStore } from './stores/project-store.js';
import { UsageRecorder } from './stores/usage.js';
import { ToolValidatorFactory } from './validation/tool-validator.js';
import { WorkerClient } from './workers/worker-client.js';
import { WorkerLocator } from './workers/worker-locator.js';
import { closeWorkerSessions } from './workers/worker-sessions.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: the route logs its own lines, so the generic `api.request` line is skipped. */
    logRequest?: boolean;
  }
}

/** The version the OpenAPI document states (the hub's package version). */
const API_VERSION = '0.1.0';
export interface HubDeps {
  config: Readonly<HubConfig>;
  log: Logger;
  /** A request-role Redis client; when left out the hub opens (and closes) its own. */
  redis?: Redis;
  /**
   * The clock API keys are created, rotated and expire by, and rate-limit windows are counted in (epoch ms;
   * default Date.now); tests move it.
   */
  clock?: () => number;
  /**
   * How often the keys of open MCP sessions are checked, in milliseconds (default
   * SESSION_KEY_CHECK_INTERVAL_MS); tests shorten it to see a rotation grace end.
   */
  sessionKeyCheckIntervalMs?: number;
  /**
   * How long a closing hub waits for the calls in flight before it cuts them, in milliseconds (default
   * SHUTDOWN_DRAIN_MS); streams that last until someone ends them are ended at once.
   */
  shutdownDrainMs?: number;
}

/** The default drain deadline: below the main process's own deadline, so a drained hub exits 0. */
export const SHUTDOWN_DRAIN_MS = 5_000;

const LIMITER_CONNECT_WAIT_MS = 2_000;
const SSE_KEEP_ALIVE_MS = 15_000;
const MCP_SESSION_IDLE_TTL_MS = 30 * 60_000;
const LIST_CHANGED_DEBOUNCE_MS = 200;
/** Node checks request and header deadlines on a timer (30 s by default): often enough to keep them near their value. */
const TIMEOUT_CHECKS_PER_HEADERS_TIMEOUT = 4;
const MAX_TIMEOUT_CHECK_INTERVAL_MS = 30_000;
/** How often the keys of open MCP sessions are checked (rotation graces end, other replicas revoke). */
const SESSION_KEY_CHECK_INTERVAL_MS = 5_000;

/** One PING's round trip in seconds, for /metrics; undefined when it fails or takes over a second. */
async function pingSeconds(client: Redis): Promise<number | undefined> {
  if (client.status !== 'ready') return undefined;
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), 1_000);
  });
  try {
    const answered = await Promise.race([client.ping().then(() => true), late]);
    return answered ? (performance.now() - started) / 1000 : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when the client is ready, or after `ms` (a Redis that is down is the limiter's fallback case). */
function connected(client: Redis, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once('ready', done);
  });
}

/**
 * Builds the hub's Fastify app without listening; `app.close()` releases everything it opened. Throws when
 * `config.auth` is `token` and no admin token is given (the hub's main reads or generates one first).
 */
export async function buildHub(deps: HubDeps): Promise<FastifyInstance> {
  const { config, log } = deps;
  if (config.auth === 'token' && config.adminToken === undefined) {
    // Never fall back to open: an embedding that forgot the token must not serve everyone as admin.
    throw new Error('buildHub: auth is "token" but no admin token was given (set HUB_ADMIN_TOKEN, or HUB_AUTH=none)');
  }
  // Off (undefined) unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then the SDK is loaded and spans are exported.
  const tracer = await startTracing({ service: 'mcp-hub', env: config.otel, log }).catch((err: unknown) => {
    log.warn({ event: 'tracing.start_failed', err }, 'tracing could not start; running without it');
    return undefined;
  });
  const ownsRedis = deps.redis === undefined;
  const redis = deps.redis ?? createRedis(config.redisUrl, 'request', log.child({ component: 'redis' }));
  const keys = createKeys(config.keyPrefix);
  const registry = new Registry(redis, keys, (key, field, err) =>
    log.warn({ event: 'registry.invalid_record', key, field, err }, 'skipped a stored record that does not parse'),
  );

  // Stale-if-error: while Redis cannot be read, the caches answer from what they hold (one log line each way).
  const reach = new RedisReachability(redis, log);
  const cache = new RegistryCache(
    registry,
    new ToolValidatorFactory(log, config.toolValidatorsMax),
    config.cacheMaxAgeMs,
    reach,
  );
  reach.onRecovered(() => cache.clear());
  let triggers: ReturnType<typeof alertTriggers> | undefined;
  const feed = new EventFeed(async (id) => {
    const spec = await cache.server(id);
    return spec === null ? null : spec.project;
  }, log);
  const subscriber = createRedis(config.redisUrl, 'subscriber', log.child({ component: 'redis-subscriber' }));
  let onRegistryEvent: (event: HubEvent) => void = () => {};
  subscriber.on('message', (_channel: string, message: string) => {
    const event = parseEvent(message);
    if (!event) return;
    cache.onEvent(event);
    feed.push(event);
    triggers?.onEvent(event);
    onRegistryEvent(event);
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
    return503OnClosing: false,
    // The whole request must arrive in time (a trickled body holds a socket otherwise); responses, SSE
    // streams included, are not limited by these.
    requestTimeout: config.requestTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(
        MAX_TIMEOUT_CHECK_INTERVAL_MS,
        Math.max(1, Math.floor(config.headersTimeoutMs / TIMEOUT_CHECKS_PER_HEADERS_TIMEOUT)),
      ),
    },
  });

  requirePolicyRows(app);
  // Only JSON bodies: text/plain would otherwise reach handlers as a string.
  app.removeContentTypeParser('text/plain');
  registerZodValidation(app);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app, log);

  // Set when closing starts (preClose, below): a request that comes meanwhile on a kept-alive connection gets
  // the one error shape (Fastify's return503OnClosing answers a bare body of its own), and its connection ends.
  let closing = false;
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    if (metrics) reply.raw.once('close', metrics.requestStarted());
    if (closing) throw new AppError('hub_closing', 'the hub is shutting down; retry');
  });
  app.addHook('onResponse', async (req, reply) => {
    // Routes that log their own lines (the tool-call path) opt out of this one.
    if (req.routeOptions.config.logRequest === false) return;
    log.info(
      {
        event: 'api.request',
        request_id: req.id,
        method: req.method,
        url: req.routeOptions.url ?? loggedPath(req.url),
        status: reply.statusCode,
        latency: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request done',
    );
  });
  const clock = deps.clock ?? Date.now;
  const store = new ProjectStore(redis, keys, clock, (key, field, err) =>
    log.warn({ event: 'registry.invalid_record', key, field, err }, 'skipped a stored record that does not parse'),
  );
  const metrics = config.metrics
    ? new HubMetrics({
        runtimes: async () => {
          const servers = await registry.listServers();
          const records = await Promise.all(servers.map((spec) => registry.getRuntime(spec.id)));
          return records.flatMap((r, i) =>
            r ? [{ server: servers[i]?.id ?? '', status: r.status, restarts: r.restarts ?? 0 }] : [],
          );
        },
        limiterMode: () => limiter.mode(),
        redisUp: () => !reach.down,
        supervisors: () => supervisorCounters(redis, keys),
        aggregateSessions: () => aggregate.sessionCount(),
        redisPing: () => pingSeconds(redis),
      })
    : undefined;
  const keyCache = new KeyCache(store.apiKeys, clock, reach, metrics && ((hit) => metrics.keyLookup(hit)));
  const limiterRedis = createRedis(config.redisUrl, 'limiter', log.child({ component: 'redis-limiter' }));
  if (metrics) {
    redis.on('error', () => metrics.redisError('request'));
    subscriber.on('error', () => metrics.redisError('subscriber'));
    limiterRedis.on('error', () => metrics.redisError('limiter'));
  }
  const limiter = new RateLimiter(limiterRedis, keys, log, clock);
  // The limiter's client has no offline queue: until it is connected every check would fall back to memory.
  await connected(limiterRedis, LIMITER_CONNECT_WAIT_MS);
  const usage = new UsageRecorder(redis, keys, log);
  const auditStream = new AuditStream(redis, keys, { maxLength: config.auditMaxLength });
  const audit = new AuditTrail(auditStream);
  const guard = new CallGuard(limiter, usage, metrics);
  const secrets = config.secretKey === undefined ? undefined : new SecretBox(config.secretKey);
  if (config.auth === 'none') {
    log.warn(
      { event: 'auth.open', host: config.host },
      'HUB_AUTH=none: requests without credentials act as admin (loopback only; never expose this hub)',
    );
  }
  if (secrets === undefined) {
    log.warn(
      { event: 'secrets.plaintext' },
      'HUB_SECRET_KEY is not set: server env and headers are stored unencrypted',
    );
  }

  // Order matters: Host first (the hub's own origin is derived from it), then Origin, then credentials,
  // then the body type; all run before the body is read.
  registerHostCheck(app, {
    boundHost: config.host,
    publicUrl: config.publicUrl,
    allowedHosts: config.allowedHosts,
  });
  registerOriginCheck(app, { allowedOrigins: config.allowedOrigins, publicUrl: config.publicUrl });
  registerAuth(app, {
    open: config.auth === 'none',
    adminToken: config.adminToken,
    metricsToken: config.metricsToken,
    checkKey: (raw) => keyCache.check(raw),
    serverProject: async (id) => {
      const spec = await cache.server(id);
      return spec === null ? null : spec.project;
    },
    log,
  });
  registerJsonBodyRule(app);
  // Before the routes: the OpenAPI document is built from the routes registered after it.
  await registerOpenApi(app, API_VERSION);

  await app.register(healthRoutes, { redis, limiter, reach });
  /** The doors of this host only the hub may use: no upstream or webhook URL may aim at them. */
  const localDoors = () => {
    // The bound port too: a hub started on port 0 (tests) knows its port only once listening.
    const bound = app.server.address();
    return {
      hubPorts: typeof bound === 'object' && bound !== null ? [config.port, bound.port] : [config.port],
      workerBasePort: config.workerBasePort,
      workerPortRange: config.workerPortRange,
      hubHost: config.host,
    };
  };
  const webhooks = new AlertWebhookStore(redis, keys, secrets);
  // Deliveries check each address they connect to (a webhook's name may resolve elsewhere than when it was added).
  const alertAgent = new Agent({
    connect: guardedConnector({ denyPrivate: config.denyPrivateUrls, doors: localDoors, timeoutMs: 5_000 }),
  });
  const alerter = new Alerter(redis, keys, webhooks, log, {
    dedupeMs: config.alertDedupeMs,
    retryBaseMs: config.alertRetryBaseMs,
    dispatcher: alertAgent,
  });
  triggers = alertTriggers(alerter, {
    toolCount: (id) => cache.toolCount(id),
    status: async (id) => (await cache.runtime(id))?.status,
  });
  limiter.onFallback(() =>
    alerter.fire({ type: 'limiter.memory', message: 'Redis is unreachable: rate limits are counted in memory' }),
  );
  reach.onDown(() =>
    alerter.fire({ type: 'redis.down', message: 'Redis is unreachable: calls are served from cached registry data' }),
  );
  await app.register(alertRoutes, { webhooks, alerter, audit, localDoors, denyPrivateUrls: config.denyPrivateUrls });
  const writes = new ServerWriteGuard({
    registry,
    projectExists: async (id) => (await store.getProject(id)) !== null,
    secrets,
    stdio: {
      allowedCommands: config.stdioAllowedCommands,
      allowedEnv: config.stdioAllowedEnv,
      cwdRoots: config.stdioCwdRoots,
    },
    denyPrivateUrls: config.denyPrivateUrls,
    toolSeparator: config.toolSeparator,
    localDoors,
  });
  await app.register(serverRoutes, { registry, writes, audit });
  await app.register(projectRoutes, {
    store,
    keyCache,
    audit,
    auditStream,
    usage,
    limiter,
    rotationGraceMs: config.keyRotationGraceMs,
    keyChanged: (keyId, project) => reaper.keyChanged(keyId, project),
  });
  const groups = new GroupStore(
    redis,
    keys,
    registry,
    async (project) => (await store.getProject(project)) !== null,
    clock,
    (key, field, err) =>
      log.warn({ event: 'registry.invalid_record', key, field, err }, 'skipped a stored record that does not parse'),
  );
  const groupRouter = new GroupRouter(config.toolSeparator);
  const groupMembers = (group: GroupForRouting, tool: string) =>
    cachedMembers(cache, config.toolSeparator, group, tool);
  await app.register(groupRoutes, { groups, projects: store, audit, router: groupRouter, members: groupMembers });
  const endpoints = new EndpointStore(redis, keys, {
    projectExists: async (project) => (await store.getProject(project)) !== null,
    requireGroup: (project, id) => groups.get(project, id),
    keyOf: async (project, keyId) => (await store.apiKeys.getKeyRecord(keyId))?.project === project,
  });
  const endpointAccess = new EndpointAccess(endpoints, groups, registry);
  await app.register(endpointRoutes, { endpoints, access: endpointAccess, groups, audit });
  const workers = new WorkerLocator(cache, registry, log, {
    wakeTimeoutMs: config.wakeTimeoutMs,
    workerWaitMs: config.workerWaitMs,
    maxWaitersPerServer: config.workerWaitersMax,
  });
  // The one client for every path that talks to a worker; it tracks what is open so closing can end it.
  const client = new WorkerClient();
  const drain = new RequestDrain(app.server);
  // What every route that calls a worker shares.
  const callPath = { cache, workers, client, guard, log, metrics, tracer };
  await app.register(toolCallRoutes, {
    ...callPath,
    groups: {
      store: groups,
      router: groupRouter,
      members: groupMembers,
      endpoints: endpointAccess,
    },
  });
  if (metrics) await app.register(metricsRoutes, { metrics });
  await app.register(eventRoutes, { feed });
  const aggregator = new Aggregator({
    registry,
    cache,
    workers,
    guard,
    client,
    log,
    separator: config.toolSeparator,
    tracer,
    maxAgeMs: config.cacheMaxAgeMs,
    listTimeoutMs: config.aggregateListTimeoutMs,
  });
  const aggregate = createMcpFront({
    serverFactory: aggregator.serverFactory,
    log: log.child({ component: 'mcp-aggregate' }),
    keepAliveMs: SSE_KEEP_ALIVE_MS,
    sessionIdleTtlMs: MCP_SESSION_IDLE_TTL_MS,
    sameCaller: (opened, presented) => callerId(opened as Principal) === callerId(presented as Principal),
    callerKey: (auth) => callerId(auth as Principal),
    // The admin is no project: its sessions count against the hub's cap and its own per-caller cap only.
    projectKey: (auth) => principalProject(auth as Principal),
    maxSessions: config.mcpSessionsMax,
    maxSessionsPerProject: config.mcpSessionsPerProject,
    maxSessionsPerCaller: config.mcpSessionsPerKey,
    ...(metrics ? { onSessionClosed: (seconds, transport) => metrics.sessionClosed(seconds, transport) } : {}),
  });
  const reaper = new SessionReaper({
    front: aggregate,
    keyActive: (keyId) => store.apiKeys.keyActive(keyId),
    closeWorkerSessions: (serverId, caller) => closeWorkerSessions(registry, client, serverId, caller),
    projectServers: async (project) =>
      (await registry.listServers()).filter((s) => s.project === project).map((s) => s.id),
    log: log.child({ component: 'mcp-sessions' }),
    intervalMs: deps.sessionKeyCheckIntervalMs ?? SESSION_KEY_CHECK_INTERVAL_MS,
  });
  // Servers and tools coming and going change the aggregated list: tell connected clients (once per burst).
  let listChanged: NodeJS.Timeout | undefined;
  onRegistryEvent = (event) => {
    if (event.type === 'runtime.update' || event.type === 'server.restart') return;
    aggregator.invalidate();
    listChanged ??= setTimeout(() => {
      listChanged = undefined;
      aggregate.toolsChanged();
    }, LIST_CHANGED_DEBOUNCE_MS);
  };
  await app.register(mcpProxyRoutes, {
    ...callPath,
    sessionUsed: (keyId, serverId) => reaper.remember(keyId, serverId),
  });
  await app.register(mcpAggregateRoutes, { aggregate, metrics });
  await app.register(discoveryRoutes, {
    publicUrl: config.publicUrl,
    visibleServers: async (req) =>
      (await registry.listServers()).filter((s) => s.enabled && canSee(req.principal, s.project)),
  });

  // Shutdown, in order (new requests get 503 `hub_closing` from here on): streams that last until someone ends them are
  // ended (the aggregated sessions, the relayed worker streams); the calls in flight may finish, up to the
  // drain deadline, and are cut after it; then Fastify closes the server, which ends the connections now
  // idle (keep-alive ones included), and the onClose hooks release the rest.
  app.addHook('preClose', async () => {
    closing = true;
    feed.close();
    triggers?.close();
    alerter.close();
    clearTimeout(listChanged);
    reaper.close();
    client.endStreams();
    await aggregate.close();
    await aggregator.close();
    const drainMs = deps.shutdownDrainMs ?? SHUTDOWN_DRAIN_MS;
    if (!(await drain.idle(drainMs))) {
      log.warn({ event: 'hub.drain_timeout', in_flight: drain.inFlight, drain_ms: drainMs }, 'cutting calls in flight');
      client.endAll();
    }
    // Nothing is being answered now, so every connection left is idle, even one Node still counts as busy (seen
    // after a 2025 client's relayed GET stream ended: its socket held server.close() open for good).
    app.server.closeAllConnections();
  });
  app.addHook('onClose', async () => {
    // Alert deliveries in flight first, while Redis is there to queue their retries: a second's grace, then cut
    // (a cut attempt is queued as failed, for another hub or the next start).
    await Promise.race([alertAgent.close(), delay(1_000)]);
    await alertAgent.destroy().catch(() => {});
    await client.close();
    limiter.close();
    await usage.close();
    limiterRedis.disconnect();
    await closeRedis(subscriber);
    if (ownsRedis) redis.disconnect();
  });
  // Its own hook, so that a failed step above does not keep the last spans in: they go out before the process
  // ends (bounded: a collector that is down costs 2 s).
  app.addHook('onClose', async () => {
    await tracer?.shutdown();
  });
  return app;
}
