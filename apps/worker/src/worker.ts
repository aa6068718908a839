import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import {
  AppError,
  backoffMs,
  boundToolList,
  checkStdioLaunch,
  closeRedis,
  createKeys,
  createRedis,
  type Logger,
  openSpecSecrets,
  type RedisKeys,
  Registry,
  runtimeToHash,
  SEALED_PREFIX,
  SecretBox,
  type ServerSpec,
  type ToolInput,
  type UpstreamStatus,
  WORKER_EXIT_CODES,
  type WorkerConfig,
  type WorkerExitCode,
  type WorkerHealth,
} from '@mcp-hub/shared';
import { createMcpFront } from '@mcp-hub/shared/mcp-front';
import type { Redis } from 'ioredis';
import { CallRunner } from './call-runner.js';
import { buildHttpServer, type WorkerGate } from './http-server.js';
import { createBridgeServerFactory } from './mcp-bridge.js';
import { SSE_KEEP_ALIVE_INTERVAL_MS } from './sse.js';
import { createUpstream } from './upstream/create-upstream.js';
import { createBwrapLauncher, type StdioLauncher, UNCONFINED } from './upstream/stdio-sandbox.js';

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
}

export const DEFAULT_WORKER_OPTIONS: Readonly<WorkerOptions> = Object.freeze({
  connectTimeoutMs: 30_000,
  pingIntervalMs: 5_000,
  reconnectBaseDelayMs: 500,
  reconnectMaxDelayMs: 10_000,
  keepAliveIntervalMs: SSE_KEEP_ALIVE_INTERVAL_MS,
  mcpSessionIdleTtlMs: 30 * 60_000,
});

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

/** Why a worker stops for good, with the exit code of the ADR (1: upstream failed, 3: spec missing or disabled). */
export class WorkerExitError extends Error {
  constructor(
    readonly exitCode: WorkerExitCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'WorkerExitError';
  }
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
  /** Stops calls (open streams get `worker_unavailable`), closes the upstream, HTTP and owned Redis. Memoized. */
  close(): Promise<void>;
}

/** How long writing `last_error` may hold up a failing worker's exit, in milliseconds. */
const LAST_ERROR_WRITE_TIMEOUT_MS = 2_000;
const SYNC_RETRY_BASE_MS = 500;
const SYNC_RETRY_MAX_MS = 10_000;

/**
 * KEYS[1] the server's runtime hash; ARGV[1] field, ARGV[2] value.
 * Writes the one field only when the record exists: the supervisor owns the record, and a hash holding
 * nothing but `last_error` would not parse as a runtime record.
 */
const SET_IF_RECORD_EXISTS = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

/** Writes the worker's note of why it stops (`last_error`) for its supervisor; a Redis failure is only logged. */
async function recordLastError(
  redis: Redis,
  keys: RedisKeys,
  serverId: string,
  reason: string,
  log: Logger,
): Promise<void> {
  const [[field, value]] = Object.entries(runtimeToHash({ lastError: reason })) as [[string, string]];
  try {
    await Promise.race([
      redis.eval(SET_IF_RECORD_EXISTS, 1, keys.runtime(serverId), field, value),
      delay(LAST_ERROR_WRITE_TIMEOUT_MS).then(() => {
        throw new Error(`Redis did not answer within ${LAST_ERROR_WRITE_TIMEOUT_MS} ms`);
      }),
    ]);
  } catch (error) {
    log.error({ event: 'worker.last_error_failed', err: error }, 'could not record last_error');
  }
}

/**
 * The operator's stdio policy, checked again on the spec as read from Redis: the hub checks every write, but
 * whoever can write to Redis directly (a local user of an open Redis, an older hub) bypasses the hub. Throws
 * WorkerExitError(3): the spec itself is refused, so restarting will not help until it changes.
 */
async function checkStdioPolicy(config: Readonly<WorkerConfig>, spec: ServerSpec): Promise<void> {
  if (spec.transport !== 'stdio') return;
  const policy = {
    allowedCommands: config.stdioAllowedCommands,
    allowedEnv: config.stdioAllowedEnv,
    cwdRoots: config.stdioCwdRoots,
  };
  try {
    await checkStdioLaunch(policy, spec.config);
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    throw new WorkerExitError(
      WORKER_EXIT_CODES.specUnavailable,
      `the stdio policy of this worker refuses server "${spec.id}": ${error.message}`,
      { cause: error },
    );
  }
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

  let spec: ServerSpec | null;
  try {
    spec = await registry.getServer(serverId);
    if (!spec) throw new WorkerExitError(WORKER_EXIT_CODES.specUnavailable, `server "${serverId}" is not registered`);
    if (!spec.enabled) throw new WorkerExitError(WORKER_EXIT_CODES.specUnavailable, `server "${serverId}" is disabled`);
  } catch (error) {
    if (ownsRedis) await closeRedis(redis);
    throw error;
  }
  // The hub stores `env` and `headers` values sealed when HUB_SECRET_KEY is set; the upstream needs them open.
  let serverSpec: ServerSpec;
  try {
    serverSpec = config.secretKey ? openSpecSecrets(spec, new SecretBox(config.secretKey)) : spec;
    if (!config.secretKey && JSON.stringify(spec.config).includes(SEALED_PREFIX)) {
      throw new WorkerExitError(
        WORKER_EXIT_CODES.specUnavailable,
        `server "${serverId}" has encrypted secrets but HUB_SECRET_KEY is not set for its worker`,
      );
    }
  } catch (error) {
    if (ownsRedis) await closeRedis(redis);
    if (error instanceof WorkerExitError) throw error;
    throw new WorkerExitError(WORKER_EXIT_CODES.specUnavailable, (error as Error).message);
  }
  try {
    await checkStdioPolicy(config, serverSpec);
  } catch (error) {
    if (error instanceof WorkerExitError) {
      log.error(
        { event: 'worker.stdio_refused', reason: error.message, exit_code: error.exitCode },
        'the stdio policy refuses this server',
      );
      await recordLastError(redis, keys, serverId, error.message, log);
    }
    if (ownsRedis) await closeRedis(redis);
    throw error;
  }

  const launcher: StdioLauncher =
    config.stdioSandbox === 'bwrap'
      ? createBwrapLauncher({
          serverId,
          sandboxDir: config.stdioSandboxDir,
          readOnlyPaths: config.stdioSandboxReadOnlyPaths,
        })
      : UNCONFINED;
  const upstream = createUpstream(
    serverSpec,
    log.child({ component: 'upstream' }),
    { ...options, maxMessageBytes: config.upstreamMaxMessageBytes },
    launcher,
  );
  const runner = new CallRunner({ upstream, log, timeoutMs: serverSpec.timeoutMs });

  let tools: readonly ToolInput[] = [];
  let toolNames = new Set<string>();
  let synced = false;
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
    if (state === 'connected') return synced ? 'connected' : 'connecting';
    return state === 'connecting' ? 'connecting' : 'down';
  }

  function health(): WorkerHealth {
    return {
      serverId,
      instance: config.instance,
      pid: process.pid,
      specRev: serverSpec.rev,
      upstream: upstreamStatus(),
      tools: tools.length,
      activeCalls: runner.activeCalls,
      idleMs: runner.idleMs(),
    };
  }

  const gate: WorkerGate = {
    health() {
      const body = health();
      return { ok: body.upstream === 'connected', body };
    },
    tools: () => tools,
    admit(tool) {
      if (stopping) throw new AppError('worker_unavailable', 'the worker is shutting down; retry');
      if (!toolNames.has(tool)) {
        if (!synced) throw new AppError('worker_unavailable', 'the worker is still connecting; retry shortly');
        throw new AppError('tool_not_found', `server "${serverId}" has no tool "${tool}"`);
      }
      if (upstream.state !== 'connected') {
        throw new AppError('worker_unavailable', `the upstream of "${serverId}" is ${upstream.state}; retry shortly`);
      }
    },
  };

  const front = createMcpFront({
    serverFactory: createBridgeServerFactory({
      serverInfo: { name: serverId, version: WORKER_VERSION },
      upstream,
      runner,
      gate,
      log,
      requestTimeoutMs: serverSpec.timeoutMs,
    }),
    log: log.child({ component: 'mcp' }),
    keepAliveMs: options.keepAliveIntervalMs,
    sessionIdleTtlMs: options.mcpSessionIdleTtlMs,
  });

  // Tool discovery: one sync at a time; a change announced during a sync runs one more.
  let syncing: Promise<void> | undefined;
  let syncAgain = false;
  let syncFailures = 0;
  let syncRetryTimer: NodeJS.Timeout | undefined;

  function requestSync(): void {
    if (stopping) return;
    if (syncing) {
      syncAgain = true;
      return;
    }
    clearTimeout(syncRetryTimer);
    syncing = (async () => {
      do {
        syncAgain = false;
        await syncOnce();
      } while (syncAgain && !stopping);
    })().finally(() => {
      syncing = undefined;
    });
  }

  async function syncOnce(): Promise<void> {
    if (upstream.state !== 'connected') return;
    try {
      const { kept: listed, refused } = boundToolList(await upstream.listTools());
      if (refused.length > 0) {
        // Logged at each sync that still sees them: a list that changes on every sync is the upstream's doing.
        log.warn(
          { event: 'tools.refused', count: refused.length, kept: listed.length, tools: refused.slice(0, 20) },
          'tools past the registry limits are left out (not stored, not callable through the hub)',
        );
      }
      const toolsChanged = synced && JSON.stringify(listed) !== JSON.stringify(tools);
      tools = listed;
      toolNames = new Set(listed.map((tool) => tool.name));
      const changed = await registry.replaceTools(serverId, listed);
      syncFailures = 0;
      if (changed < 0) {
        log.warn({ event: 'tools.sync_skipped', count: listed.length }, 'the server is no longer registered');
      } else {
        log.info({ event: 'tools.synced', count: listed.length, changed }, 'tools synced');
      }
      if (toolsChanged) front.toolsChanged();
      if (!synced) {
        synced = true;
        log.info({ event: 'worker.ready', tools: listed.length, pid: upstream.pid }, 'worker ready');
        resolveReady();
      }
    } catch (error) {
      if (stopping) return;
      const retryMs = backoffMs(syncFailures++, SYNC_RETRY_BASE_MS, SYNC_RETRY_MAX_MS);
      log.error({ event: 'tools.sync_failed', err: error, retryMs }, 'tool discovery failed');
      syncRetryTimer = setTimeout(requestSync, retryMs);
      syncRetryTimer.unref();
    }
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
    if (state === 'connected') requestSync();
  });
  upstream.onToolsChanged(requestSync);
  upstream.onListChanged((list) => (list === 'resources' ? front.resourcesChanged() : front.promptsChanged()));
  upstream.onClose((error) => void fatal(error));

  const app = buildHttpServer({
    log,
    token: config.token,
    gate,
    runner,
    keepAliveIntervalMs: options.keepAliveIntervalMs,
    front,
  });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await upstream.close().catch(() => {});
    if (ownsRedis) await closeRedis(redis);
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

  // Connected in the background so that /healthz answers `connecting` meanwhile. Only a stdio upstream
  // rejects here (a remote one retries until closed).
  upstream.connect().catch((error: unknown) => {
    if (!stopping) void fatal(error instanceof Error ? error : new Error(String(error)));
  });

  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= (async () => {
      stopping = true;
      log.info({ event: 'worker.stopping', active_calls: runner.activeCalls }, 'worker stopping');
      const step = async (name: string, run: () => Promise<unknown>) => {
        try {
          await run();
        } catch (error) {
          log.error({ event: 'worker.stop_step_failed', step: name, err: error }, 'a shutdown step failed');
        }
      };
      clearTimeout(syncRetryTimer);
      await step('calls', () =>
        runner.abortAll(new AppError('worker_unavailable', 'the worker is shutting down; retry')),
      );
      await step('mcp', () => front.close());
      await step('upstream', () => upstream.close());
      await step('http', () => app.close());
      if (ownsRedis) await step('redis', () => closeRedis(redis));
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
