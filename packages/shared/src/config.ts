import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, normalize, resolve } from 'node:path';
import { z } from 'zod';
import { type CommandAllowList, CommandAllowListError, compileCommandAllowList } from './command-allow-list.js';
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
/**
 * Compiled tool argument validators a hub keeps (least recently used dropped first). The worst validator within
 * the compile budget is about 0.1 MB of generated code, so this bounds them to about 100 MB.
 */
export const DEFAULT_TOOL_VALIDATORS_MAX = 1_000;
/** The whole request, headers and body, must arrive within this (Node's `requestTimeout`). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** The request's headers must arrive within this (Node's `headersTimeout`). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/** Where the hub keeps the admin token it generates, relative to the working directory (beside `pnpm start`'s Redis data). */
export const DEFAULT_ADMIN_TOKEN_FILE = '.data/admin-token';
export const HUB_AUTH_MODES = ['token', 'none'] as const;
export type HubAuthMode = (typeof HUB_AUTH_MODES)[number];
export const DEFAULT_TOOL_SEPARATOR = '__';
export const DEFAULT_ROTATION_GRACE_MS = 3_600_000;
export const DEFAULT_AUDIT_MAX_LENGTH = 100_000;
export const DEFAULT_WORKER_BASE_PORT = 41_000;
export const DEFAULT_WORKER_PORT_RANGE = 1_000;
export const DEFAULT_WORKER_MAX = 100;
/** Open MCP sessions (2025 era) a hub holds at once, per project, and per API key (or the admin). */
export const DEFAULT_MCP_SESSIONS_MAX = 1_000;
export const DEFAULT_MCP_SESSIONS_PER_PROJECT = 200;
export const DEFAULT_MCP_SESSIONS_PER_KEY = 100;
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
export const DEFAULT_BACKOFF_BASE_MS = 500;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
export const DEFAULT_START_TIMEOUT_MS = 30_000;
export const DEFAULT_STABLE_AFTER_MS = 10_000;
/** Largest message a worker takes from its upstream: the MCP SDK's own limit for stdio (10 MiB). */
export const DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
/** Where a sandboxed stdio server gets its writable directory (`<dir>/<server id>`), from the worker's working directory. */
export const DEFAULT_STDIO_SANDBOX_DIR = '.data/stdio-sandbox';
export const STDIO_SANDBOXES = ['none', 'bwrap'] as const;
export type StdioSandbox = (typeof STDIO_SANDBOXES)[number];
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

/** An absolute, normalised path (no `..`, no `//`, no trailing `/`). */
const absolutePath = z
  .string()
  .refine(
    (value) => isAbsolute(value) && normalize(value) === value && (value === '/' || !value.endsWith('/')),
    'must be an absolute, normalised path (no "..")',
  );
const absolutePathList = list.pipe(z.array(absolutePath));

/** MCP_STDIO_ALLOWED_COMMANDS: whole command lines with argument patterns, compiled once. */
const commandAllowList = list.transform((entries, ctx): CommandAllowList => {
  try {
    return compileCommandAllowList(entries);
  } catch (error) {
    if (!(error instanceof CommandAllowListError)) throw error;
    for (const problem of error.problems)
      ctx.addIssue({ code: 'custom', message: `entry ${problem.index + 1}: ${problem.message}` });
    return z.NEVER;
  }
});

/** Environment variable names, or prefixes ending in `*`. */
const envNameList = list.pipe(
  z.array(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, 'must be variable names (A-Z, 0-9, _), or prefixes ending in *'),
  ),
);

/**
 * The stdio policy: read by the hub (checked on every write) and by every worker (checked again before it
 * spawns), which inherits these variables from its supervisor (WORKER_INHERITED_ENV_PREFIXES).
 */
const stdioPolicyEnv = {
  MCP_STDIO_ALLOWED_COMMANDS: commandAllowList.optional(),
  MCP_STDIO_ALLOWED_ENV: envNameList.default([]),
  MCP_STDIO_CWD_ROOTS: absolutePathList.optional(),
};

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

/** A `Host` entry: a hostname or IP address, optionally with `:port` (IPv6 in brackets). */
const HOST_ENTRY_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const hostList = list.refine(
  (items) => items.every((item) => HOST_ENTRY_RE.test(item)),
  'must be comma-separated hostnames, optionally with :port (hub.example.com, 10.0.0.5:8080)',
);

/** Whether `host` (HUB_HOST) only listens on this machine: `localhost`, 127.0.0.0/8 or ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1') return true;
  const octets = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return octets?.slice(1).every((o) => Number(o) <= 255) === true;
}

const HubEnvSchema = z
  .object({
    ...common,
    HUB_HOST: z.string().min(1).default('127.0.0.1'),
    HUB_PORT: port.default(DEFAULT_HUB_PORT),
    HUB_AUTH: z.enum(HUB_AUTH_MODES, { error: `must be one of ${HUB_AUTH_MODES.join(', ')}` }).default('token'),
    HUB_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
    HUB_ADMIN_TOKEN_FILE: z.string().min(1).default(DEFAULT_ADMIN_TOKEN_FILE),
    HUB_ALLOWED_HOSTS: hostList.default([]),
    HUB_REQUEST_TIMEOUT: duration('ms').default(DEFAULT_REQUEST_TIMEOUT_MS),
    HUB_HEADERS_TIMEOUT: duration('ms').default(DEFAULT_HEADERS_TIMEOUT_MS),
    HUB_BODY_LIMIT_BYTES: positiveInt.default(DEFAULT_BODY_LIMIT_BYTES),
    HUB_WAKE_TIMEOUT: duration('ms').default(DEFAULT_WAKE_TIMEOUT_MS),
    HUB_CACHE_MAX_AGE: duration('ms').default(DEFAULT_CACHE_MAX_AGE_MS),
    HUB_TOOL_VALIDATORS_MAX: positiveInt.default(DEFAULT_TOOL_VALIDATORS_MAX),
    HUB_PUBLIC_URL: z.url({ error: 'must be an http(s) URL' }).optional(),
    HUB_ALLOWED_ORIGINS: list.default([]),
    MCP_TOOL_SEPARATOR: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,4}$/, 'must be 1-4 characters of A-Z, a-z, 0-9, _ . -')
      .default(DEFAULT_TOOL_SEPARATOR),
    HUB_SECRET_KEY: secretKey.optional(),
    ...stdioPolicyEnv,
    HUB_DENY_PRIVATE_URLS: bool.default(false),
    HUB_KEY_ROTATION_GRACE: duration('s').default(DEFAULT_ROTATION_GRACE_MS),
    HUB_AUDIT_MAX_LENGTH: positiveInt.default(DEFAULT_AUDIT_MAX_LENGTH),
    HUB_MCP_SESSIONS_MAX: positiveInt.default(DEFAULT_MCP_SESSIONS_MAX),
    HUB_MCP_SESSIONS_PER_PROJECT: positiveInt.default(DEFAULT_MCP_SESSIONS_PER_PROJECT),
    HUB_MCP_SESSIONS_PER_KEY: positiveInt.default(DEFAULT_MCP_SESSIONS_PER_KEY),
    // Shared with the supervisor: the hub refuses upstream URLs aimed at these local ports.
    MCP_WORKER_BASE_PORT: port.default(DEFAULT_WORKER_BASE_PORT),
    MCP_WORKER_PORT_RANGE: positiveInt.default(DEFAULT_WORKER_PORT_RANGE),
  })
  .superRefine((e, ctx) => {
    // Open mode answers anyone without credentials as admin: only on this machine's loopback interface.
    if (e.HUB_AUTH === 'none' && !isLoopbackHost(e.HUB_HOST)) {
      ctx.addIssue({
        code: 'custom',
        path: ['HUB_AUTH'],
        message: `"none" (no authentication) is refused when HUB_HOST (${e.HUB_HOST}) is not a loopback address; set HUB_ADMIN_TOKEN or leave HUB_AUTH=token`,
      });
    }
    if (e.HUB_REQUEST_TIMEOUT < 1) {
      ctx.addIssue({ code: 'custom', path: ['HUB_REQUEST_TIMEOUT'], message: 'must be more than 0' });
    }
    if (e.HUB_HEADERS_TIMEOUT < 1 || e.HUB_HEADERS_TIMEOUT > e.HUB_REQUEST_TIMEOUT) {
      ctx.addIssue({
        code: 'custom',
        path: ['HUB_HEADERS_TIMEOUT'],
        message: 'must be more than 0 and no longer than HUB_REQUEST_TIMEOUT',
      });
    }
  });

export interface HubConfig {
  redisUrl: string;
  keyPrefix: string;
  logLevel: LogLevel;
  host: string;
  port: number;
  /** `token` (default): every route but the public ones needs the admin token or an API key; `none`: open (loopback only). */
  auth: HubAuthMode;
  /** HUB_ADMIN_TOKEN. With auth `token` and none set, the hub's main reads or generates `adminTokenFile`. */
  adminToken: string | undefined;
  /** Where the generated admin token is kept (relative to the working directory). */
  adminTokenFile: string;
  /** `Host` values accepted besides loopback names, the bound address and the HUB_PUBLIC_URL host (`name` or `name:port`). */
  allowedHosts: readonly string[];
  /** The whole request (headers and body) must arrive within this; SSE answers are not affected. */
  requestTimeoutMs: number;
  /** The request's headers must arrive within this. */
  headersTimeoutMs: number;
  bodyLimitBytes: number;
  /** How long a call waits for a worker stopped for idleness to start again. */
  wakeTimeoutMs: number;
  /** Registry data cached in the hub is re-read at least this often, even if an event was missed. */
  cacheMaxAgeMs: number;
  /** Compiled tool argument validators kept (one per tool at most, least recently used dropped first). */
  toolValidatorsMax: number;
  /** The hub's address as clients see it (client configuration, discovery); default: from the request's Host. */
  publicUrl: string | undefined;
  /** Browser origins allowed besides the hub's own; `*` allows any (dangerous). */
  allowedOrigins: readonly string[];
  /** Between namespace and tool name on the aggregated endpoint (`everything__echo`). */
  toolSeparator: string;
  /** Encrypts `env` and `headers` values of server specs at rest (AES-256-GCM); unset: stored as given. */
  secretKey: string | undefined;
  /** When set, the only command lines a `stdio` server may run (command and argument patterns). */
  stdioAllowedCommands: CommandAllowList | undefined;
  /** Loader and interpreter hook variables (`NODE_OPTIONS`, `LD_*` …) a stdio spec's `env` may set anyway. */
  stdioAllowedEnv: readonly string[];
  /** When set, a stdio `cwd` must lie inside one of these directories; unset with an allow-list: no `cwd`. */
  stdioCwdRoots: readonly string[] | undefined;
  /** Refuse remote server URLs in private, loopback and link-local ranges. */
  denyPrivateUrls: boolean;
  /** How long a rotated API key keeps working. */
  keyRotationGraceMs: number;
  /** Entries the audit stream keeps (older ones are trimmed). */
  auditMaxLength: number;
  /** Open aggregated MCP sessions (`/mcp`, `/sse`) the hub holds at once; more get 503. */
  mcpSessionsMax: number;
  /** Open aggregated MCP sessions of one project's keys together; more get 429. */
  mcpSessionsPerProject: number;
  /** Open aggregated MCP sessions of one API key (or of the admin); more get 429. */
  mcpSessionsPerKey: number;
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
    auth: e.HUB_AUTH,
    adminToken: e.HUB_ADMIN_TOKEN,
    adminTokenFile: e.HUB_ADMIN_TOKEN_FILE,
    allowedHosts: e.HUB_ALLOWED_HOSTS.map((h) => h.toLowerCase()),
    requestTimeoutMs: e.HUB_REQUEST_TIMEOUT,
    headersTimeoutMs: e.HUB_HEADERS_TIMEOUT,
    bodyLimitBytes: e.HUB_BODY_LIMIT_BYTES,
    wakeTimeoutMs: e.HUB_WAKE_TIMEOUT,
    cacheMaxAgeMs: e.HUB_CACHE_MAX_AGE,
    toolValidatorsMax: e.HUB_TOOL_VALIDATORS_MAX,
    publicUrl: e.HUB_PUBLIC_URL?.replace(/\/+$/, ''),
    allowedOrigins: e.HUB_ALLOWED_ORIGINS,
    toolSeparator: e.MCP_TOOL_SEPARATOR,
    secretKey: e.HUB_SECRET_KEY,
    stdioAllowedCommands: e.MCP_STDIO_ALLOWED_COMMANDS,
    stdioAllowedEnv: e.MCP_STDIO_ALLOWED_ENV,
    stdioCwdRoots: e.MCP_STDIO_CWD_ROOTS,
    denyPrivateUrls: e.HUB_DENY_PRIVATE_URLS,
    keyRotationGraceMs: e.HUB_KEY_ROTATION_GRACE,
    auditMaxLength: e.HUB_AUDIT_MAX_LENGTH,
    mcpSessionsMax: e.HUB_MCP_SESSIONS_MAX,
    mcpSessionsPerProject: e.HUB_MCP_SESSIONS_PER_PROJECT,
    mcpSessionsPerKey: e.HUB_MCP_SESSIONS_PER_KEY,
    workerBasePort: e.MCP_WORKER_BASE_PORT,
    workerPortRange: e.MCP_WORKER_PORT_RANGE,
  });
}

/** What an operator sets for workers (through the supervisor's environment). */
const WorkerOperatorEnvSchema = z.object({
  MCP_STDIO_SANDBOX: z.enum(STDIO_SANDBOXES, { error: `must be one of ${STDIO_SANDBOXES.join(', ')}` }).default('none'),
  MCP_STDIO_SANDBOX_DIR: z.string().min(1).default(DEFAULT_STDIO_SANDBOX_DIR),
  MCP_STDIO_SANDBOX_READ_ONLY_PATHS: absolutePathList.default([]),
  ...stdioPolicyEnv,
});

const SupervisorEnvSchema = z.object({
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

const WorkerEnvSchema = z.object({
  ...common,
  ...WorkerOperatorEnvSchema.shape,
  MCP_SERVER_ID: z.string().min(1, 'must name the server'),
  MCP_WORKER_HOST: z.string().min(1).default('127.0.0.1'),
  MCP_WORKER_PORT: port,
  MCP_WORKER_INSTANCE: z.string().min(1),
  MCP_WORKER_TOKEN: z.string().min(32, 'must be at least 32 characters'),
  HUB_SECRET_KEY: secretKey.optional(),
  MCP_UPSTREAM_MAX_MESSAGE_BYTES: positiveInt.default(DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES),
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
  /** Largest upstream message (stdio line, JSON body or SSE event, after decompression); larger ones fail their call. */
  upstreamMaxMessageBytes: number;
  /** `bwrap`: stdio servers run inside bubblewrap; `none`: as the worker's user, unconfined. */
  stdioSandbox: StdioSandbox;
  /** Absolute; each sandboxed stdio server gets `<dir>/<server id>` as its one writable directory. */
  stdioSandboxDir: string;
  /** Extra directories (or files) bound read-only into the sandbox: where the operator's MCP servers live. */
  stdioSandboxReadOnlyPaths: readonly string[];
  /** As the hub's: checked again before a stdio server is spawned (MCP_STDIO_ALLOWED_COMMANDS). */
  stdioAllowedCommands: CommandAllowList | undefined;
  /** As the hub's (MCP_STDIO_ALLOWED_ENV). */
  stdioAllowedEnv: readonly string[];
  /** As the hub's (MCP_STDIO_CWD_ROOTS). */
  stdioCwdRoots: readonly string[] | undefined;
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
    upstreamMaxMessageBytes: e.MCP_UPSTREAM_MAX_MESSAGE_BYTES,
    stdioSandbox: e.MCP_STDIO_SANDBOX,
    stdioSandboxDir: resolve(e.MCP_STDIO_SANDBOX_DIR),
    stdioSandboxReadOnlyPaths: e.MCP_STDIO_SANDBOX_READ_ONLY_PATHS,
    stdioAllowedCommands: e.MCP_STDIO_ALLOWED_COMMANDS,
    stdioAllowedEnv: e.MCP_STDIO_ALLOWED_ENV,
    stdioCwdRoots: e.MCP_STDIO_CWD_ROOTS,
  });
}

/** Every variable an operator may set (the worker's own are set by its supervisor); `.env.example` lists them all. */
export const OPERATOR_ENV_VARS: readonly string[] = Object.freeze([
  ...new Set([
    ...Object.keys(HubEnvSchema.shape),
    ...Object.keys(SupervisorEnvSchema.shape),
    ...Object.keys(WorkerOperatorEnvSchema.shape),
  ]),
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
