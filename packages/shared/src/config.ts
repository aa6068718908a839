import { existsSync } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import { z } from 'zod';
import { type CommandAllowList, CommandAllowListError, compileCommandAllowList } from './command-allow-list.js';
import { DEFAULT_KEY_PREFIX } from './keys.js';
import { describeProblems, zodProblems } from './validation.js';

/**
 * What every process's configuration loader shares: the zod parsers of environment values (durations, booleans,
 * lists, ports, paths, the stdio policy), the variables every process reads, and loading with every problem
 * reported at once. The loaders themselves are hub-config.ts, supervisor-config.ts and worker-config.ts.
 */

export type Env = Record<string, string | undefined>;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export class ConfigError extends Error {
  constructor(readonly problems: { path: string; message: string }[]) {
    super(`invalid configuration: ${describeProblems(problems)}`);
    this.name = 'ConfigError';
  }
}

export const port = z.coerce
  .number({ error: 'must be a port number' })
  .int('must be an integer')
  .min(0, 'must be 0-65535')
  .max(65_535, 'must be 0-65535');
export const positiveInt = z.coerce
  .number({ error: 'must be a number' })
  .int('must be an integer')
  .min(1, 'must be >= 1');

export const bool = z.string().transform((value, ctx) => {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  ctx.addIssue({ code: 'custom', message: 'must be true or false' });
  return z.NEVER;
});

/** A comma-separated list; blanks dropped. */
export const list = z.string().transform((value) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== ''),
);

/** HUB_SECRET_KEY: 32 bytes as 64 hex characters or base64, or a passphrase of 32+ characters. */
export const secretKey = z
  .string()
  .min(32, 'must be 32 bytes as 64 hex characters or base64, or a 32+ character passphrase');

/** An absolute, normalised path (no `..`, no `//`, no trailing `/`). */
export const absolutePath = z
  .string()
  .refine(
    (value) => isAbsolute(value) && normalize(value) === value && (value === '/' || !value.endsWith('/')),
    'must be an absolute, normalised path (no "..")',
  );
export const absolutePathList = list.pipe(z.array(absolutePath));

/** MCP_STDIO_ALLOWED_COMMANDS: whole command lines with argument patterns, compiled once. */
export const commandAllowList = list.transform((entries, ctx): CommandAllowList => {
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
export const envNameList = list.pipe(
  z.array(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, 'must be variable names (A-Z, 0-9, _), or prefixes ending in *'),
  ),
);

/**
 * The stdio policy: read by the hub (checked on every write) and by every worker (checked again before it
 * spawns), which inherits these variables from its supervisor (WORKER_INHERITED_ENV_PREFIXES).
 */
export const stdioPolicyEnv = {
  MCP_STDIO_ALLOWED_COMMANDS: commandAllowList.optional(),
  MCP_STDIO_ALLOWED_ENV: envNameList.default([]),
  MCP_STDIO_CWD_ROOTS: absolutePathList.optional(),
};

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** A duration in milliseconds, written as a number with unit (`250ms`, `30s`, `5m`, `1h`) or bare `defaultUnit`s. */
export const duration = (defaultUnit: keyof typeof UNIT_MS) =>
  z.string().transform((value, ctx) => {
    const match = DURATION_RE.exec(value.trim());
    if (!match) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration such as 30s, 5m or 1h' });
      return z.NEVER;
    }
    const unit = (match[2] ?? defaultUnit) as keyof typeof UNIT_MS;
    return Math.round(Number(match[1]) * UNIT_MS[unit]);
  });

export const redisUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return url.protocol === 'redis:' || url.protocol === 'rediss:' || url.protocol === 'unix:';
  } catch {
    return false;
  }
}, 'must be a redis:// or rediss:// URL');

export const common = {
  REDIS_URL: redisUrl.default(DEFAULT_REDIS_URL),
  KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9:{}_.-]{1,64}$/, 'must be 1-64 characters of A-Z, a-z, 0-9, : { } _ . -')
    .default(DEFAULT_KEY_PREFIX),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  /** Turns tracing on (tracing.ts; the other OTEL_* variables are read there): checked here so a typo stops the start. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
};

/** The fields every process's configuration has, from the `common` variables. */
export function commonConfig(e: { REDIS_URL: string; KEY_PREFIX: string; LOG_LEVEL: LogLevel }) {
  return { redisUrl: e.REDIS_URL, keyPrefix: e.KEY_PREFIX, logLevel: e.LOG_LEVEL };
}

/** The stdio policy as the hub and every worker hold it, from the `stdioPolicyEnv` variables. */
export function stdioPolicyConfig(e: {
  MCP_STDIO_ALLOWED_COMMANDS?: CommandAllowList | undefined;
  MCP_STDIO_ALLOWED_ENV: string[];
  MCP_STDIO_CWD_ROOTS?: string[] | undefined;
}) {
  return {
    stdioAllowedCommands: e.MCP_STDIO_ALLOWED_COMMANDS,
    stdioAllowedEnv: e.MCP_STDIO_ALLOWED_ENV,
    stdioCwdRoots: e.MCP_STDIO_CWD_ROOTS,
  };
}

/** Treats empty strings as unset, as docker-compose and `.env` files write `NAME=` for "no value". */
function clean(env: Env): Env {
  const out: Env = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined && value !== '') out[key] = value;
  return out;
}

export function load<S extends z.ZodType>(schema: S, env: Env): Readonly<z.output<S>> {
  const result = schema.safeParse(clean(env));
  if (!result.success) throw new ConfigError(zodProblems(result.error));
  return Object.freeze(result.data);
}

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
