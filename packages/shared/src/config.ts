import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { DEFAULT_KEY_PREFIX } from './keys.js';
import { describeProblems, zodProblems } from './validation.js';

export type Env = Record<string, string | undefined>;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_HUB_PORT = 8080;
export const DEFAULT_BODY_LIMIT_BYTES = 1_048_576;
export const DEFAULT_WAKE_TIMEOUT_MS = 15_000;
export const DEFAULT_CACHE_MAX_AGE_MS = 30_000;
export const DEFAULT_TOOL_SEPARATOR = '__';
export const DEFAULT_ROTATION_GRACE_MS = 3_600_000;
export const DEFAULT_AUDIT_MAX_LENGTH = 100_000;
export const DEFAULT_WORKER_BASE_PORT = 41_000;
export const DEFAULT_WORKER_PORT_RANGE = 1_000;
export const DEFAULT_WORKER_MAX = 100;
export const DEFAULT_RESYNC_INTERVAL_MS = 5_000;
export const DEFAULT_HEALTH_INTERVAL_MS = 2_000;
export const DEFAULT_HEALTH_FAILURES = 3;
export const DEFAULT_STOP_GRACE_MS = 5_000;
export const DEFAULT_LEASE_TTL_MS = 10_000;
export const DEFAULT_BACKOFF_BASE_MS = 500;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
export const DEFAULT_START_TIMEOUT_MS = 30_000;
export const DEFAULT_STABLE_AFTER_MS = 10_000;
/** Workers started at once: booting Node processes are CPU-bound, and twenty at once on two cores take longer than in turns. */
export const DEFAULT_START_CONCURRENCY = Math.max(2, availableParallelism() * 2);

export class ConfigError extends Error {
  constructor(readonly problems: { path: string; message: string }[]) {
    super(`invalid configuration: ${describeProblems(problems)}`);
    this.name = 'ConfigError';
  }
}

const port = z.coerce
  .number({ error: 'must be a port number' })
  .int('must be an integer')
  .min(0, 'must be 0-65535')
  .max(65_535, 'must be 0-65535');
const positiveInt = z.coerce.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be >= 1');

const bool = z.string().transform((value, ctx) => {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  ctx.addIssue({ code: 'custom', message: 'must be true or false' });
  return z.NEVER;
});

/** A comma-separated list; blanks dropped. */
const list = z.string().transform((value) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== ''),
);

/** HUB_SECRET_KEY: 32 bytes as 64 hex characters or base64, or a passphrase of 32+ characters. */
const secretKey = z.string().min(32, 'must be 32 bytes as 64 hex characters or base64, or a 32+ character passphrase');

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** A duration in milliseconds, written as a number with unit (`250ms`, `30s`, `5m`, `1h`) or bare `defaultUnit`s. */
const duration = (defaultUnit: keyof typeof UNIT_MS) =>
  z.string().transform((value, ctx) => {
    const match = DURATION_RE.exec(value.trim());
    if (!match) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration such as 30s, 5m or 1h' });
      return z.NEVER;
    }
    const unit = (match[2] ?? defaultUnit) as keyof typeof UNIT_MS;
    return Math.round(Number(match[1]) * UNIT_MS[unit]);
  });

const redisUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return url.protocol === 'redis:' || url.protocol === 'rediss:' || url.protocol === 'unix:';
  } catch {
    return false;
  }
}, 'must be a redis:// or rediss:// URL');

const common = {
  REDIS_URL: redisUrl.default(DEFAULT_REDIS_URL),
  KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9:{}_.-]{1,64}$/, 'must be 1-64 characters of A-Z, a-z, 0-9, : { } _ . -')
    .default(DEFAULT_KEY_PREFIX),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
};

/** Treats empty strings as unset, as docker-compose and `.env` files write `NAME=` for "no value". */
function clean(env: Env): Env {
  const out: Env = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined && value !== '') out[key] = value;
  return out;
}

function load<S extends z.ZodType>(schema: S, env: Env): Readonly<z.output<S>> {
  const result = schema.safeParse(clean(env));
  if (!result.success) throw new ConfigError(zodProblems(result.error));
  return Object.freeze(result.data);
}

const HubEnvSchema = z.object({
  ...common,
  HUB_HOST: z.string().min(1).default('127.0.0.1'),
  HUB_PORT: port.default(DEFAULT_HUB_PORT),
  HUB_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  HUB_BODY_LIMIT_BYTES: positiveInt.default(DEFAULT_BODY_LIMIT_BYTES),
  HUB_WAKE_TIMEOUT: duration('ms').default(DEFAULT_WAKE_TIMEOUT_MS),
  HUB_CACHE_MAX_AGE: duration('ms').default(DEFAULT_CACHE_MAX_AGE_MS),
  HUB_PUBLIC_URL: z.url({ error: 'must be an http(s) URL' }).optional(),
  HUB_ALLOWED_ORIGINS: list.default([]),
  MCP_TOOL_SEPARATOR: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,4}$/, 'must be 1-4 characters of A-Z, a-z, 0-9, _ . -')
    .default(DEFAULT_TOOL_SEPARATOR),
  HUB_SECRET_KEY: secretKey.optional(),
  MCP_STDIO_ALLOWED_COMMANDS: list.optional(),
  HUB_DENY_PRIVATE_URLS: bool.default(false),
  HUB_KEY_ROTATION_GRACE: duration('s').default(DEFAULT_ROTATION_GRACE_MS),
  HUB_AUDIT_MAX_LENGTH: positiveInt.default(DEFAULT_AUDIT_MAX_LENGTH),
  // Shared with the supervisor: the hub refuses upstream URLs aimed at these local ports.
  MCP_WORKER_BASE_PORT: port.default(DEFAULT_WORKER_BASE_PORT),
  MCP_WORKER_PORT_RANGE: positiveInt.default(DEFAULT_WORKER_PORT_RANGE),
});

export interface HubConfig {
  redisUrl: string;
  keyPrefix: string;
  logLevel: LogLevel;
  host: string;
  port: number;
  adminToken: string | undefined;
  bodyLimitBytes: number;
  /** How long a call waits for a worker stopped for idleness to start again. */
  wakeTimeoutMs: number;
  /** Registry data cached in the hub is re-read at least this often, even if an event was missed. */
  cacheMaxAgeMs: number;
  /** The hub's address as clients see it (client configuration, discovery); default: from the request's Host. */
  publicUrl: string | undefined;
  /** Browser origins allowed on the MCP endpoints besides the hub's own and localhost; `*` allows any. */
  allowedOrigins: readonly string[];
  /** Between namespace and tool name on the aggregated endpoint (`everything__echo`). */
  toolSeparator: string;
  /** Encrypts `env` and `headers` values of server specs at rest (AES-256-GCM); unset: stored as given. */
  secretKey: string | undefined;
  /** When set, the only commands a `stdio` server may run. */
  stdioAllowedCommands: readonly string[] | undefined;
  /** Refuse remote server URLs in private, loopback and link-local ranges. */
  denyPrivateUrls: boolean;
  /** How long a rotated API key keeps working. */
  keyRotationGraceMs: number;
  /** Entries the audit stream keeps (older ones are trimmed). */
  auditMaxLength: number;
  /** The local ports workers listen on (MCP_WORKER_BASE_PORT, MCP_WORKER_PORT_RANGE ports from there). */
  workerBasePort: number;
  workerPortRange: number;
}

/** Reads the hub's configuration; throws ConfigError naming every bad variable. */
export function loadHubConfig(env: Env = process.env): Readonly<HubConfig> {
  const e = load(HubEnvSchema, env);
  return Object.freeze({
    redisUrl: e.REDIS_URL,
    keyPrefix: e.KEY_PREFIX,
    logLevel: e.LOG_LEVEL,
    host: e.HUB_HOST,
    port: e.HUB_PORT,
    adminToken: e.HUB_ADMIN_TOKEN,
    bodyLimitBytes: e.HUB_BODY_LIMIT_BYTES,
    wakeTimeoutMs: e.HUB_WAKE_TIMEOUT,
    cacheMaxAgeMs: e.HUB_CACHE_MAX_AGE,
    publicUrl: e.HUB_PUBLIC_URL?.replace(/\/+$/, ''),
    allowedOrigins: e.HUB_ALLOWED_ORIGINS,
    toolSeparator: e.MCP_TOOL_SEPARATOR,
    secretKey: e.HUB_SECRET_KEY,
    stdioAllowedCommands: e.MCP_STDIO_ALLOWED_COMMANDS,
    denyPrivateUrls: e.HUB_DENY_PRIVATE_URLS,
    keyRotationGraceMs: e.HUB_KEY_ROTATION_GRACE,
    auditMaxLength: e.HUB_AUDIT_MAX_LENGTH,
    workerBasePort: e.MCP_WORKER_BASE_PORT,
    workerPortRange: e.MCP_WORKER_PORT_RANGE,
  });
}

const SupervisorEnvSchema = z.object({
  ...common,
  MCP_SUPERVISOR_ENABLED: bool.default(true),
  MCP_SUPERVISOR_ID: z.string().min(1).optional(),
  MCP_WORKER_HOST: z.string().min(1).default('127.0.0.1'),
  MCP_WORKER_ADVERTISE_HOST: z.string().min(1).optional(),
  MCP_WORKER_BASE_PORT: port.default(DEFAULT_WORKER_BASE_PORT),
  MCP_WORKER_PORT_RANGE: positiveInt.default(DEFAULT_WORKER_PORT_RANGE),
  MCP_WORKER_MAX: positiveInt.default(DEFAULT_WORKER_MAX),
  MCP_WORKER_IDLE_TTL: duration('s').default(0),
  MCP_WORKER_STOP_GRACE: duration('ms').default(DEFAULT_STOP_GRACE_MS),
  MCP_WORKER_START_TIMEOUT: duration('ms').default(DEFAULT_START_TIMEOUT_MS),
  MCP_RESYNC_INTERVAL: duration('ms').default(DEFAULT_RESYNC_INTERVAL_MS),
  MCP_HEALTH_INTERVAL: duration('ms').default(DEFAULT_HEALTH_INTERVAL_MS),
  MCP_HEALTH_FAILURES: positiveInt.default(DEFAULT_HEALTH_FAILURES),
  MCP_LEASE_TTL: duration('ms').default(DEFAULT_LEASE_TTL_MS),
  MCP_BACKOFF_BASE: duration('ms').default(DEFAULT_BACKOFF_BASE_MS),
  MCP_BACKOFF_MAX: duration('ms').default(DEFAULT_BACKOFF_MAX_MS),
  MCP_WORKER_STABLE_AFTER: duration('ms').default(DEFAULT_STABLE_AFTER_MS),
  MCP_WORKER_START_CONCURRENCY: positiveInt.default(DEFAULT_START_CONCURRENCY),
  MCP_SUPERVISOR_KEEP_WORKERS: bool.default(false),
  MCP_WORKER_ENTRY: z.string().min(1).optional(),
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
/** Prefixes of inherited variables: locale categories, and the stdio settings the worker reads itself. */
export const WORKER_INHERITED_ENV_PREFIXES: readonly string[] = Object.freeze(['LC_', 'MCP_STDIO_']);

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
  /** 0 = workers are never stopped for idleness. */
  workerIdleTtlMs: number;
  stopGraceMs: number;
  startTimeoutMs: number;
  resyncIntervalMs: number;
  healthIntervalMs: number;
  healthFailures: number;
  leaseTtlMs: number;
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
  /** Handed to workers, which open the sealed `env` and `headers` of specs with it. */
  secretKey: string | undefined;
  /** The part of the supervisor's environment a worker inherits (workerInheritedEnv); nothing else is passed. */
  workerInheritedEnv: Readonly<Record<string, string>>;
}

/** Reads the supervisor's configuration; throws ConfigError naming every bad variable. */
export function loadSupervisorConfig(env: Env = process.env): Readonly<SupervisorConfig> {
  const e = load(SupervisorEnvSchema, env);
  return Object.freeze({
    redisUrl: e.REDIS_URL,
    keyPrefix: e.KEY_PREFIX,
    logLevel: e.LOG_LEVEL,
    enabled: e.MCP_SUPERVISOR_ENABLED,
    supervisorId: e.MCP_SUPERVISOR_ID,
    workerHost: e.MCP_WORKER_HOST,
    workerAdvertiseHost:
      e.MCP_WORKER_ADVERTISE_HOST ?? (['0.0.0.0', '::'].includes(e.MCP_WORKER_HOST) ? '127.0.0.1' : e.MCP_WORKER_HOST),
    workerBasePort: e.MCP_WORKER_BASE_PORT,
    workerPortRange: e.MCP_WORKER_PORT_RANGE,
    workerMax: e.MCP_WORKER_MAX,
    workerIdleTtlMs: e.MCP_WORKER_IDLE_TTL,
    stopGraceMs: e.MCP_WORKER_STOP_GRACE,
    startTimeoutMs: e.MCP_WORKER_START_TIMEOUT,
    resyncIntervalMs: e.MCP_RESYNC_INTERVAL,
    healthIntervalMs: e.MCP_HEALTH_INTERVAL,
    healthFailures: e.MCP_HEALTH_FAILURES,
    leaseTtlMs: e.MCP_LEASE_TTL,
    backoffBaseMs: e.MCP_BACKOFF_BASE,
    backoffMaxMs: e.MCP_BACKOFF_MAX,
    stableAfterMs: e.MCP_WORKER_STABLE_AFTER,
    startConcurrency: e.MCP_WORKER_START_CONCURRENCY,
    keepWorkersOnExit: e.MCP_SUPERVISOR_KEEP_WORKERS,
    workerEntry: e.MCP_WORKER_ENTRY,
    secretKey: e.HUB_SECRET_KEY,
    workerInheritedEnv: Object.freeze(workerInheritedEnv(env)),
  });
}

const WorkerEnvSchema = z.object({
  ...common,
  MCP_SERVER_ID: z.string().min(1, 'must name the server'),
  MCP_WORKER_HOST: z.string().min(1).default('127.0.0.1'),
  MCP_WORKER_PORT: port,
  MCP_WORKER_INSTANCE: z.string().min(1),
  MCP_WORKER_TOKEN: z.string().min(32, 'must be at least 32 characters'),
  HUB_SECRET_KEY: secretKey.optional(),
});

export interface WorkerConfig {
  redisUrl: string;
  keyPrefix: string;
  logLevel: LogLevel;
  serverId: string;
  host: string;
  port: number;
  instance: string;
  /** The credential every request must carry (WORKER_TOKEN_HEADER), made by the supervisor for this run. */
  token: string;
  /** Opens the `env` and `headers` values the hub sealed (HUB_SECRET_KEY, handed on by the supervisor). */
  secretKey: string | undefined;
}

/** Reads a worker's configuration (set by its supervisor); throws ConfigError naming every bad variable. */
export function loadWorkerConfig(env: Env = process.env): Readonly<WorkerConfig> {
  const e = load(WorkerEnvSchema, env);
  return Object.freeze({
    redisUrl: e.REDIS_URL,
    keyPrefix: e.KEY_PREFIX,
    logLevel: e.LOG_LEVEL,
    serverId: e.MCP_SERVER_ID,
    host: e.MCP_WORKER_HOST,
    port: e.MCP_WORKER_PORT,
    instance: e.MCP_WORKER_INSTANCE,
    token: e.MCP_WORKER_TOKEN,
    secretKey: e.HUB_SECRET_KEY,
  });
}

/** Every variable an operator may set (the worker's own are set by its supervisor); `.env.example` lists them all. */
export const OPERATOR_ENV_VARS: readonly string[] = Object.freeze([
  ...new Set([...Object.keys(HubEnvSchema.shape), ...Object.keys(SupervisorEnvSchema.shape)]),
]);

/** Exit code of a process whose configuration is invalid. */
export const CONFIG_EXIT_CODE = 2;

/**
 * For a process's main only: reads `.env` from the working directory when `readDotEnv` and the file exists,
 * then runs the loader; on a ConfigError prints it (naming every bad variable) and exits with code 2.
 */
export function loadConfigOrExit<T>(service: string, load: () => T, readDotEnv = true): T {
  if (readDotEnv && existsSync('.env')) process.loadEnvFile('.env');
  try {
    return load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${service}: ${error.message}`);
    process.exit(CONFIG_EXIT_CODE);
  }
}
