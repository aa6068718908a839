import { z } from 'zod';
import type { CommandAllowList } from './command-allow-list.js';
import {
  bool,
  common,
  commonConfig,
  duration,
  type Env,
  type LogLevel,
  list,
  load,
  port,
  positiveInt,
  secretKey,
  stdioPolicyConfig,
  stdioPolicyEnv,
} from './config.js';
import { DEFAULT_WORKER_BASE_PORT, DEFAULT_WORKER_PORT_RANGE } from './supervisor-config.js';
import { otelEnv } from './tracing.js';

export const DEFAULT_HUB_PORT = 8080;
export const DEFAULT_BODY_LIMIT_BYTES = 1_048_576;
export const DEFAULT_WAKE_TIMEOUT_MS = 15_000;
/** How long a call waits for a worker that is starting, restarting or replaced before it gets 503. */
export const DEFAULT_WORKER_WAIT_MS = 5_000;
export const DEFAULT_AGGREGATE_LIST_TIMEOUT_MS = 5_000;
/** Calls that wait for one server's worker at once; more get 503 at once. */
export const DEFAULT_WORKER_WAITERS_MAX = 1_000;
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
/** Open MCP sessions (2025 era) a hub holds at once, per project, and per API key (or the admin). */
export const DEFAULT_MCP_SESSIONS_MAX = 1_000;
export const DEFAULT_MCP_SESSIONS_PER_PROJECT = 200;
export const DEFAULT_MCP_SESSIONS_PER_KEY = 100;
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

export const DEFAULT_ALERT_DEDUPE_MS = 10 * 60_000;
export const DEFAULT_ALERT_RETRY_BASE_MS = 1_000;

export const HubEnvSchema = z
  .object({
    ...common,
    HUB_HOST: z.string().min(1).default('127.0.0.1'),
    HUB_PORT: port.default(DEFAULT_HUB_PORT),
    HUB_AUTH: z.enum(HUB_AUTH_MODES, { error: `must be one of ${HUB_AUTH_MODES.join(', ')}` }).default('token'),
    HUB_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
    HUB_ADMIN_TOKEN_FILE: z.string().min(1).default(DEFAULT_ADMIN_TOKEN_FILE),
    HUB_METRICS: bool.default(true),
    HUB_ALERT_DEDUPE: duration('ms').default(DEFAULT_ALERT_DEDUPE_MS),
    HUB_ALERT_RETRY_BASE: duration('ms').default(DEFAULT_ALERT_RETRY_BASE_MS),
    HUB_METRICS_TOKEN: z
      .string()
      .min(16, 'must be at least 16 characters')
      .regex(/^\S+$/, 'must not contain spaces')
      .optional(),
    HUB_ALLOWED_HOSTS: hostList.default([]),
    HUB_REQUEST_TIMEOUT: duration('ms').default(DEFAULT_REQUEST_TIMEOUT_MS),
    HUB_HEADERS_TIMEOUT: duration('ms').default(DEFAULT_HEADERS_TIMEOUT_MS),
    HUB_BODY_LIMIT_BYTES: positiveInt.default(DEFAULT_BODY_LIMIT_BYTES),
    HUB_WAKE_TIMEOUT: duration('ms').default(DEFAULT_WAKE_TIMEOUT_MS),
    HUB_WORKER_WAIT: duration('ms').default(DEFAULT_WORKER_WAIT_MS),
    HUB_WORKER_WAITERS_MAX: positiveInt.default(DEFAULT_WORKER_WAITERS_MAX),
    HUB_AGGREGATE_LIST_TIMEOUT: duration('ms').default(DEFAULT_AGGREGATE_LIST_TIMEOUT_MS),
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
  /** HUB_ALERT_DEDUPE: one alert of a type and server per this window, across replicas. */
  alertDedupeMs: number;
  /** HUB_ALERT_RETRY_BASE: the first retry of a failed webhook delivery waits this long, each next twice as long. */
  alertRetryBaseMs: number;
  /** HUB_METRICS: whether the hub counts and serves Prometheus metrics at `GET /metrics`. */
  metrics: boolean;
  /** HUB_METRICS_TOKEN: a bearer token that may read `/metrics` only (the admin token may too). */
  metricsToken: string | undefined;
  /** The OTEL_* variables: tracing is on when they name an OTLP endpoint (tracing.ts). */
  otel: Readonly<Record<string, string>>;
  /** `Host` values accepted besides loopback names, the bound address and the HUB_PUBLIC_URL host (`name` or `name:port`). */
  allowedHosts: readonly string[];
  /** The whole request (headers and body) must arrive within this; SSE answers are not affected. */
  requestTimeoutMs: number;
  /** The request's headers must arrive within this. */
  headersTimeoutMs: number;
  bodyLimitBytes: number;
  /** How long a call waits for a worker stopped for idleness to start again. */
  wakeTimeoutMs: number;
  /** How long a call waits for a worker that is starting, restarting or replaced (bounded by the call's timeout too). */
  workerWaitMs: number;
  /** Calls that wait for one server's worker at once; more get 503 `worker_unavailable` at once. */
  workerWaitersMax: number;
  /** How long one worker may take to answer its part of an aggregated list (resources, prompts) before it is left out. */
  aggregateListTimeoutMs: number;
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
    ...commonConfig(e),
    host: e.HUB_HOST,
    port: e.HUB_PORT,
    auth: e.HUB_AUTH,
    adminToken: e.HUB_ADMIN_TOKEN,
    adminTokenFile: e.HUB_ADMIN_TOKEN_FILE,
    metrics: e.HUB_METRICS,
    alertDedupeMs: e.HUB_ALERT_DEDUPE,
    alertRetryBaseMs: e.HUB_ALERT_RETRY_BASE,
    metricsToken: e.HUB_METRICS_TOKEN,
    otel: otelEnv(env),
    allowedHosts: e.HUB_ALLOWED_HOSTS.map((h) => h.toLowerCase()),
    requestTimeoutMs: e.HUB_REQUEST_TIMEOUT,
    headersTimeoutMs: e.HUB_HEADERS_TIMEOUT,
    bodyLimitBytes: e.HUB_BODY_LIMIT_BYTES,
    wakeTimeoutMs: e.HUB_WAKE_TIMEOUT,
    workerWaitMs: e.HUB_WORKER_WAIT,
    workerWaitersMax: e.HUB_WORKER_WAITERS_MAX,
    aggregateListTimeoutMs: e.HUB_AGGREGATE_LIST_TIMEOUT,
    cacheMaxAgeMs: e.HUB_CACHE_MAX_AGE,
    toolValidatorsMax: e.HUB_TOOL_VALIDATORS_MAX,
    publicUrl: e.HUB_PUBLIC_URL?.replace(/\/+$/, ''),
    allowedOrigins: e.HUB_ALLOWED_ORIGINS,
    toolSeparator: e.MCP_TOOL_SEPARATOR,
    secretKey: e.HUB_SECRET_KEY,
    ...stdioPolicyConfig(e),
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
