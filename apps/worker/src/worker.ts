import type { AddressInfo } from 'node:net';
import {
  AppError,
  closeRedis,
  createKeys,
  createRedis,
  type Logger,
  Registry,
  type ServerSpec,
  type SessionMode,
  SSE_KEEP_ALIVE_INTERVAL_MS,
  startTracing,
  type UpstreamStatus,
  WORKER_EXIT_CODES,
  type WorkerConfig,
  type WorkerHealth,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { CallRunner } from './call-runner.js';
import type { HttpServerDeps, WorkerGate } from './http-server.js';
import { LazyFront } from './lazy-front.js';

import { ToolSync } from './tool-sync.js';
import { loadUpstreamFactory } from './upstream/create-upstream.js';
import { createBwrapLauncher, type StdioLauncher, UNCONFINED } from './upstream/stdio-sandbox.js';
import { markLost } from './upstream/upstream.js';
import { loadServerSpec, recordLastError, WorkerExitError } from './worker-spec.js';

export interface WorkerOptions {
  /** How long a stdio or remote upstream may take to answer `initialize`, per attempt, in milliseconds. */
  connectTimeoutMs: number;
  /** How often a remote session is pinged to notice a silent drop, in milliseconds. */
  pingIntervalMs: number;
  /** First and largest delay between reconnection attempts of a remote upstream, in milliseconds. */
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
  /** Interval of SSE keep-alive comments while a call runs, in milliseconds. */
  keepAliveIntervalMs: number;
  /** Drops a 2025-era MCP session (Streamable HTTP) idle this long, in milliseconds; 0 never. */
  mcpSessionIdleTtlMs: number;
  /** `per-client` servers: most upstream sessions (stdio: child processes) for clients at once. */
  perClientMaxSessions: number;
  /** `per-client` servers: a client's upstream session unused this long is closed, in milliseconds. */
  perClientIdleMs: number;
}

export const DEFAULT_WORKER_OPTIONS: Readonly<WorkerOptions> = Object.freeze({
  connectTimeoutMs: 30_000,
  pingIntervalMs: 5_000,
  reconnectBaseDelayMs: 500,
  reconnectMaxDelayMs: 10_000,
  keepAliveIntervalMs: SSE_KEEP_ALIVE_INTERVAL_MS,
  mcpSessionIdleTtlMs: 30 * 60_000,
  perClientMaxSessions: 16,
  perClientIdleMs: 5 * 60_000,
});

/** The worker's HTTP server, its code loaded when asked for (see `startWorker`). */
async function buildWorkerHttp(deps: HttpServerDeps) {
  const { buildHttpServer } = await import('./http-server.js');
  return buildHttpServer(deps);
}

/** The worker process's resident memory and CPU seconds (user + system) since it started, for /healthz. */
function processFigures(): { rssBytes: number; cpuSeconds: number } {
  const cpu = process.cpuUsage();
  return { rssBytes: process.memoryUsage.rss(), cpuSeconds: Math.round((cpu.user + cpu.system) / 1_000) / 1_000 };
}

/** How the server's MCP upstream is shared among clients (a REST API has no session to share). */
function upstreamSessionMode(spec: ServerSpec): SessionMode {
  return spec.transport === 'rest' ? 'shared' : (spec.config.sessionMode ?? 'shared');
}

const WORKER_VERSION = '0.1.0';

export interface WorkerDeps {
  config: Readonly<WorkerConfig>;
  log: Logger;
  /** A loop-role Redis client, left open on close; when left out the worker opens (and closes) its own. */
  redis?: Redis;
  /**
   * Called once when the worker cannot go on (its stdio upstream exited or could not start), after
   * `last_error` was written. The process should close the worker and exit with `error.exitCode`.
   */
  onFatal?: (error: WorkerExitError) => void;
  options?: Partial<WorkerOptions>;
}

export interface Worker {
  /** The port the worker listens on. */
  readonly port: number;
  readonly spec: ServerSpec;
  /** Resolves when the upstream is connected and its tools are in the registry; rejects with the fatal error. */
  readonly ready: Promise<void>;
  /** The stdio server's pid while it runs. */
  readonly upstreamPid: number | undefined;
  health(): WorkerHealth;
  /**
   * Stops calls (open streams get `worker_unavailable`), closes the upstream, HTTP and owned Redis. Memoized.
   * With `drain`, first lets the calls in flight end (and runs the ones still coming) until none has run for
   * `drain.quietMs` or the server's `timeoutMs` passed (WORKER_DRAIN_SIGNAL).
   */
  close(options?: { drain?: { quietMs: number } }): Promise<void>;
}

/**
 * Starts a worker: reads the server's spec, listens at once (`/healthz` answers 503 `connecting`), then
 * connects the upstream and writes its tools to the registry. Throws WorkerExitError(3) when the spec is
 * missing or disabled, or breaks the stdio policy (then with `last_error` written); never exits the process
 * itself.
 */
export async function startWorker(deps: WorkerDeps): Promise<Worker> {
  const { config, log } = deps;
  const options: Readonly<WorkerOptions> = Object.freeze({ ...DEFAULT_WORKER_OPTIONS, ...deps.options });
  const serverId = config.serverId;
  const ownsRedis = deps.redis === undefined;
  const redis = deps.redis ?? createRedis(config.redisUrl, 'loop', log.child({ component: 'redis' }));
  const keys = createKeys(config.keyPrefix);
  const registry = new Registry(redis, keys, (key, field, err) =>
    log.warn({ event: 'registry.invalid_record', key, field, err }, 'a stored record does not parse'),
  );

  // Off unless an OTLP endpoint is set (OTEL_*, handed on by the supervisor); loaded while the spec is read.
  const tracing = startTracing({
    service: 'mcp-hub-worker',
    env: config.otel,
    log,
    resource: { 'service.instance.id': config.instance, 'mcp_hub.server.id': serverId },
  }).catch((error: unknown) => {
    log.warn({ event: 'tracing.start_failed', err: error }, 'tracing could not start; running without it');
    return undefined;
  });
  let serverSpec: ServerSpec;
  try {
    serverSpec = await loadServerSpec({ config, registry, redis, keys, log });
  } catch (error) {
    if (ownsRedis) await closeRedis(redis);
    await (await tracing)?.shutdown();
    throw error;
  }
  const tracer = await tracing;

  const launcher: StdioLauncher =
    config.stdioSandbox === 'bwrap'
      ? createBwrapLauncher({
          serverId,
          sandboxDir: config.stdioSandboxDir,
          readOnlyPaths: config.stdioSandboxReadOnlyPaths,
        })
      : UNCONFINED;
  const createUpstream = await loadUpstreamFactory(serverSpec.transport);
  const upstream = createUpstream(
    serverSpec,
    log.child({ component: 'upstream' }),
    { ...options, maxMessageBytes: config.upstreamMaxMessageBytes },
    launcher,
  );
  const runner = new CallRunner({ upstream, log, timeoutMs: serverSpec.timeoutMs });

  let stopping = false;
  let fatalReported = false;

  let resolveReady: () => void = () => {};
  let rejectReady: (error: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  // Awaiting `ready` is optional (main does not); a fatal error must not become an unhandled rejection.
  ready.catch(() => {});

  function upstreamStatus(): UpstreamStatus {
    if (stopping) return 'down';
    const state = upstream.state;
    if (state === 'connected') return sync.synced ? 'connected' : 'connecting';
    return state === 'connecting' ? 'connecting' : 'down';
  }

  function health(): WorkerHealth {
    return {
      serverId,
      instance: config.instance,
      pid: process.pid,
      specRev: serverSpec.rev,
      upstream: upstreamStatus(),
      tools: sync.tools.length,
      activeCalls: runner.activeCalls,
      idleMs: runner.idleMs(),
      ...processFigures(),
      mcpSessions: front.sessionCount(),
    };
  }

  const gate: WorkerGate = {
    health() {
      const body = health();
      return { ok: body.upstream === 'connected', body };
    },
    tools: () => sync.tools,
    admit(tool) {
      if (stopping) throw new AppError('worker_unavailable', 'the worker is shutting down; retry');
      if (!sync.has(tool)) {
        if (!sync.synced) throw new AppError('worker_unavailable', 'the worker is still connecting; retry shortly');
        throw new AppError('tool_not_found', `server "${serverId}" has no tool "${tool}"`);
      }
      if (upstream.state !== 'connected') {
        throw new AppError('worker_unavailable', `the upstream of "${serverId}" is ${upstream.state}; retry shortly`);
      }
    },
  };

  const front = new LazyFront(
    async () => {
      const { createWorkerFront } = await import('./worker-front.js');
      return createWorkerFront({
        config,
        spec: serverSpec,
        version: WORKER_VERSION,
        log,
        runner,
        gate,
        upstream,
        mode: upstreamSessionMode(serverSpec),
        createUpstream: (owner) =>
          createUpstream(
            serverSpec,
            log.child({ component: 'upstream', client: owner }),
            { ...options, maxMessageBytes: config.upstreamMaxMessageBytes },
            launcher,
          ),
        connectTimeoutMs: options.connectTimeoutMs,
        keepAliveMs: options.keepAliveIntervalMs,
        sessionIdleTtlMs: options.mcpSessionIdleTtlMs,
        perClientMaxSessions: options.perClientMaxSessions,
        perClientIdleMs: options.perClientIdleMs,
        tracer,
      });
    },
    (error) => log.error({ event: 'mcp.front_failed', err: error }, 'the MCP endpoint could not start'),
  );

  const sync = new ToolSync({
    serverId,
    upstream,
    registry,
    log,
    stopping: () => stopping,
    onToolsChanged: () => front.toolsChanged(),
    onFirstSync: (count) => {
      firstSync = count;
      announceReady();
    },
  });

  // Ready once the tools are synced and the HTTP server listens, whichever comes last (the upstream connects
  // while the HTTP server starts): a log reader who sees `worker.ready` can call the worker.
  let firstSync: number | undefined;
  let listening = false;
  function announceReady(): void {
    if (firstSync === undefined || !listening) return;
    runner.touch();
    log.info({ event: 'worker.ready', tools: firstSync, pid: upstream.pid }, 'worker ready');
    resolveReady();
  }

  async function fatal(cause: Error): Promise<void> {
    if (fatalReported || stopping) return;
    fatalReported = true;
    const error = new WorkerExitError(WORKER_EXIT_CODES.upstreamFailed, cause.message, { cause });
    log.error({ event: 'worker.fatal', reason: error.message, exit_code: error.exitCode }, 'the upstream failed');
    await recordLastError(redis, keys, serverId, error.message, log);
    rejectReady(error);
    deps.onFatal?.(error);
  }

  upstream.onStateChange((state) => {
    if (state === 'connected') sync.request();
  });
  upstream.onToolsChanged(() => sync.request());
  upstream.onListChanged((list) => (list === 'resources' ? front.resourcesChanged() : front.promptsChanged()));
  upstream.onClose((error) => void fatal(error));

  // Connected at once, in the background: a stdio server starts while the HTTP server loads (Fastify is loaded
  // here, not with the worker) and starts listening, and /healthz answers `connecting` until it is ready. Only a
  // stdio upstream rejects here (a remote one retries until closed).
  upstream.connect().catch((error: unknown) => {
    if (!stopping) void fatal(error instanceof Error ? error : new Error(String(error)));
  });
  let app: Awaited<ReturnType<typeof buildWorkerHttp>>;
  try {
    app = await buildWorkerHttp({
      log,
      token: config.token,
      gate,
      runner,
      keepAliveIntervalMs: options.keepAliveIntervalMs,
      front,
      tracer,
    });
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    stopping = true;
    await upstream.close().catch(() => {});
    if (ownsRedis) await closeRedis(redis);
    await tracer?.shutdown();
    throw error;
  }
  const port = (app.server.address() as AddressInfo).port;
  log.info(
    {
      event: 'worker.listening',
      host: config.host,
      port,
      pid: process.pid,
      transport: serverSpec.transport,
      ...(serverSpec.transport === 'stdio' ? { sandbox: launcher.kind } : {}),
    },
    'worker listening',
  );
  listening = true;
  announceReady();

  let closing: Promise<void> | undefined;
  function close(options?: { drain?: { quietMs: number } }): Promise<void> {
    closing ??= (async () => {
      if (options?.drain) {
        const { quietMs } = options.drain;
        log.info({ event: 'worker.draining', active_calls: runner.activeCalls }, 'worker draining its calls');
        const drained = await runner.drain(quietMs, serverSpec.timeoutMs + quietMs);
        log.info({ event: 'worker.drained', drained, active_calls: runner.activeCalls }, 'worker drained');
      }
      stopping = true;
      log.info({ event: 'worker.stopping', active_calls: runner.activeCalls }, 'worker stopping');
      const step = async (name: string, run: () => Promise<unknown>) => {
        try {
          await run();
        } catch (error) {
          log.error({ event: 'worker.stop_step_failed', step: name, err: error }, 'a shutdown step failed');
        }
      };
      sync.stop();
      // A call the upstream had when the worker stops may have run: `lost`, never resent blindly.
      await step('calls', () =>
        runner.abortAll(markLost(new AppError('worker_unavailable', 'the worker is shutting down; retry'))),
      );
      await step('mcp', () => front.close());
      await step('upstream', () => upstream.close());
      await step('http', () => app.close());
      if (ownsRedis) await step('redis', () => closeRedis(redis));
      // The spans of the last calls go out before the process ends (at most 2 s for a collector that is down).
      if (tracer) await step('tracing', () => tracer.shutdown());
      rejectReady(new Error('the worker was closed before it was ready'));
      log.info({ event: 'worker.stopped' }, 'worker stopped');
    })();
    return closing;
  }

  return {
    port,
    spec: serverSpec,
    ready,
    get upstreamPid() {
      return upstream.pid;
    },
    health,
    close,
  };
}
