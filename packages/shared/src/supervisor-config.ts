import { availableParallelism } from 'node:os';
import { z } from 'zod';
import {
  bool,
  common,
  commonConfig,
  duration,
  type Env,
  type LogLevel,
  load,
  port,
  positiveInt,
  secretKey,
} from './config.js';
import { DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES, WorkerOperatorEnvSchema } from './worker-config.js';

export const DEFAULT_WORKER_BASE_PORT = 41_000;
export const DEFAULT_WORKER_PORT_RANGE = 1_000;
export const DEFAULT_WORKER_MAX = 100;
/**
 * Default share of MCP_WORKER_MAX one project may run: a quarter, so that one project's servers always leave
 * three quarters of the slots to the others.
 */
export const DEFAULT_WORKER_PROJECT_SHARE = 4;
export const DEFAULT_RESYNC_INTERVAL_MS = 5_000;
export const DEFAULT_HEALTH_INTERVAL_MS = 2_000;
export const DEFAULT_HEALTH_FAILURES = 3;
export const DEFAULT_STOP_GRACE_MS = 5_000;
export const DEFAULT_LEASE_TTL_MS = 10_000;
/**
 * How often a supervisor says it is alive (`mcp:supervisors`); one missing for SUPERVISOR_HEARTBEATS_MISSED
 * beats counts as gone and its servers are taken over at once, without waiting for its leases to expire.
 */
export const DEFAULT_SUPERVISOR_HEARTBEAT_MS = 500;
export const SUPERVISOR_HEARTBEATS_MISSED = 3;
export const DEFAULT_BACKOFF_BASE_MS = 500;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
export const DEFAULT_START_TIMEOUT_MS = 30_000;
export const DEFAULT_STABLE_AFTER_MS = 10_000;
/** Workers started at once: booting Node processes are CPU-bound, and twenty at once on two cores take longer than in turns. */
export const DEFAULT_START_CONCURRENCY = Math.max(2, availableParallelism() * 2);

export const SupervisorEnvSchema = z.object({
  ...common,
  // Not used by the supervisor itself: validated here so that a value every worker would refuse stops the
  // supervisor at start, rather than each worker (exit 2) in a loop.
  ...WorkerOperatorEnvSchema.shape,
  MCP_SUPERVISOR_ENABLED: bool.default(true),
  MCP_SUPERVISOR_ID: z.string().min(1).optional(),
  MCP_WORKER_HOST: z.string().min(1).default('127.0.0.1'),
  MCP_WORKER_ADVERTISE_HOST: z.string().min(1).optional(),
  MCP_WORKER_BASE_PORT: port.default(DEFAULT_WORKER_BASE_PORT),
  MCP_WORKER_PORT_RANGE: positiveInt.default(DEFAULT_WORKER_PORT_RANGE),
  MCP_WORKER_MAX: positiveInt.default(DEFAULT_WORKER_MAX),
  MCP_WORKER_MAX_PER_PROJECT: positiveInt.optional(),
  MCP_WORKER_IDLE_TTL: duration('s').default(0),
  MCP_WORKER_STOP_GRACE: duration('ms').default(DEFAULT_STOP_GRACE_MS),
  MCP_WORKER_START_TIMEOUT: duration('ms').default(DEFAULT_START_TIMEOUT_MS),
  MCP_RESYNC_INTERVAL: duration('ms').default(DEFAULT_RESYNC_INTERVAL_MS),
  MCP_HEALTH_INTERVAL: duration('ms').default(DEFAULT_HEALTH_INTERVAL_MS),
  MCP_HEALTH_FAILURES: positiveInt.default(DEFAULT_HEALTH_FAILURES),
  MCP_LEASE_TTL: duration('ms').default(DEFAULT_LEASE_TTL_MS),
  MCP_SUPERVISOR_HEARTBEAT: duration('ms').default(DEFAULT_SUPERVISOR_HEARTBEAT_MS),
  MCP_BACKOFF_BASE: duration('ms').default(DEFAULT_BACKOFF_BASE_MS),
  MCP_BACKOFF_MAX: duration('ms').default(DEFAULT_BACKOFF_MAX_MS),
  MCP_WORKER_STABLE_AFTER: duration('ms').default(DEFAULT_STABLE_AFTER_MS),
  MCP_WORKER_START_CONCURRENCY: positiveInt.default(DEFAULT_START_CONCURRENCY),
  MCP_SUPERVISOR_KEEP_WORKERS: bool.default(false),
  MCP_WORKER_ENTRY: z.string().min(1).optional(),
  MCP_UPSTREAM_MAX_MESSAGE_BYTES: positiveInt.default(DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES),
  HUB_SECRET_KEY: secretKey.optional(),
});

/**
 * What a worker inherits from its supervisor's environment, by name: what a process needs to run (the
 * SDK's own list for stdio servers, locale, temp dir, CA and proxy settings for remote upstreams). The rest
 * (HUB_ADMIN_TOKEN, cloud credentials, whatever the operator's shell holds) stays behind: a worker runs
 * third-party code, and a stdio server can read its worker's environment through /proc.
 */
export const WORKER_INHERITED_ENV_VARS: readonly string[] = Object.freeze([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'TERM',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'NODE_ENV',
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  // Windows essentials (the SDK's stdio list), so that a worker can start a child there at all.
  'SYSTEMROOT',
  'SystemRoot',
  'SYSTEMDRIVE',
  'WINDIR',
  'COMSPEC',
  'PATHEXT',
  'TEMP',
  'TMP',
  'USERNAME',
  'USERPROFILE',
  'APPDATA',
  'LOCALAPPDATA',
  'HOMEDRIVE',
  'HOMEPATH',
  'PROGRAMFILES',
  'PROCESSOR_ARCHITECTURE',
]);
/** Prefixes of inherited variables: locale categories, and the stdio and tracing (OpenTelemetry) settings the worker reads itself. */
export const WORKER_INHERITED_ENV_PREFIXES: readonly string[] = Object.freeze(['LC_', 'MCP_STDIO_', 'OTEL_']);

/** The allow-listed part of `env` (WORKER_INHERITED_ENV_VARS and _PREFIXES); empty values dropped. */
export function workerInheritedEnv(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === '') continue;
    if (WORKER_INHERITED_ENV_VARS.includes(name) || WORKER_INHERITED_ENV_PREFIXES.some((p) => name.startsWith(p))) {
      out[name] = value;
    }
  }
  return out;
}

export interface SupervisorConfig {
  redisUrl: string;
  keyPrefix: string;
  logLevel: LogLevel;
  enabled: boolean;
  supervisorId: string | undefined;
  workerHost: string;
  /** The host written to runtime records, where the hub reaches workers (default: workerHost, or 127.0.0.1 for a wildcard). */
  workerAdvertiseHost: string;
  workerBasePort: number;
  workerPortRange: number;
  workerMax: number;
  /**
   * Most workers of one project this supervisor runs; past it the project's servers wait `pending` (default:
   * MCP_WORKER_MAX / 4, rounded up).
   */
  workerMaxPerProject: number;
  /** 0 = workers are never stopped for idleness. */
  workerIdleTtlMs: number;
  stopGraceMs: number;
  startTimeoutMs: number;
  resyncIntervalMs: number;
  healthIntervalMs: number;
  healthFailures: number;
  leaseTtlMs: number;
  /** How often this supervisor writes its heartbeat; it counts as gone after SUPERVISOR_HEARTBEATS_MISSED of them. */
  heartbeatMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** A worker that ran this long before exiting was stable: it restarts at once instead of backing off. */
  stableAfterMs: number;
  /** How many workers may be starting at the same time. */
  startConcurrency: number;
  /** Leave workers running on shutdown, for adoption by the next supervisor. */
  keepWorkersOnExit: boolean;
  /** Path of the worker's entry script; default: the built worker app. */
  workerEntry: string | undefined;
  /** Largest upstream message (stdio line, JSON body or SSE event, decompressed) a worker accepts; passed to workers. */
  upstreamMaxMessageBytes: number;
  /** Handed to workers, which open the sealed `env` and `headers` of specs with it. */
  secretKey: string | undefined;
  /** The part of the supervisor's environment a worker inherits (workerInheritedEnv); nothing else is passed. */
  workerInheritedEnv: Readonly<Record<string, string>>;
}

/** Reads the supervisor's configuration; throws ConfigError naming every bad variable. */
export function loadSupervisorConfig(env: Env = process.env): Readonly<SupervisorConfig> {
  const e = load(SupervisorEnvSchema, env);
  return Object.freeze({
    ...commonConfig(e),
    enabled: e.MCP_SUPERVISOR_ENABLED,
    supervisorId: e.MCP_SUPERVISOR_ID,
    workerHost: e.MCP_WORKER_HOST,
    workerAdvertiseHost:
      e.MCP_WORKER_ADVERTISE_HOST ?? (['0.0.0.0', '::'].includes(e.MCP_WORKER_HOST) ? '127.0.0.1' : e.MCP_WORKER_HOST),
    workerBasePort: e.MCP_WORKER_BASE_PORT,
    workerPortRange: e.MCP_WORKER_PORT_RANGE,
    workerMax: e.MCP_WORKER_MAX,
    workerMaxPerProject: Math.min(
      e.MCP_WORKER_MAX,
      e.MCP_WORKER_MAX_PER_PROJECT ?? Math.ceil(e.MCP_WORKER_MAX / DEFAULT_WORKER_PROJECT_SHARE),
    ),
    workerIdleTtlMs: e.MCP_WORKER_IDLE_TTL,
    stopGraceMs: e.MCP_WORKER_STOP_GRACE,
    startTimeoutMs: e.MCP_WORKER_START_TIMEOUT,
    resyncIntervalMs: e.MCP_RESYNC_INTERVAL,
    healthIntervalMs: e.MCP_HEALTH_INTERVAL,
    healthFailures: e.MCP_HEALTH_FAILURES,
    leaseTtlMs: e.MCP_LEASE_TTL,
    heartbeatMs: e.MCP_SUPERVISOR_HEARTBEAT,
    backoffBaseMs: e.MCP_BACKOFF_BASE,
    backoffMaxMs: e.MCP_BACKOFF_MAX,
    stableAfterMs: e.MCP_WORKER_STABLE_AFTER,
    startConcurrency: e.MCP_WORKER_START_CONCURRENCY,
    keepWorkersOnExit: e.MCP_SUPERVISOR_KEEP_WORKERS,
    workerEntry: e.MCP_WORKER_ENTRY,
    upstreamMaxMessageBytes: e.MCP_UPSTREAM_MAX_MESSAGE_BYTES,
    secretKey: e.HUB_SECRET_KEY,
    workerInheritedEnv: Object.freeze(workerInheritedEnv(env)),
  });
}
