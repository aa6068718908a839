import { resolve } from 'node:path';
import { z } from 'zod';
import type { CommandAllowList } from './command-allow-list.js';
import {
  absolutePathList,
  common,
  commonConfig,
  type Env,
  type LogLevel,
  load,
  port,
  positiveInt,
  secretKey,
  stdioPolicyConfig,
  stdioPolicyEnv,
} from './config.js';
import { otelEnv } from './tracing.js';

/** Largest message a worker takes from its upstream: the MCP SDK's own limit for stdio (10 MiB). */
export const DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
/** Where a sandboxed stdio server gets its writable directory (`<dir>/<server id>`), from the worker's working directory. */
export const DEFAULT_STDIO_SANDBOX_DIR = '.data/stdio-sandbox';
export const STDIO_SANDBOXES = ['none', 'bwrap'] as const;
export type StdioSandbox = (typeof STDIO_SANDBOXES)[number];
/** What an operator sets for workers (through the supervisor's environment). */
export const WorkerOperatorEnvSchema = z.object({
  MCP_STDIO_SANDBOX: z.enum(STDIO_SANDBOXES, { error: `must be one of ${STDIO_SANDBOXES.join(', ')}` }).default('none'),
  MCP_STDIO_SANDBOX_DIR: z.string().min(1).default(DEFAULT_STDIO_SANDBOX_DIR),
  MCP_STDIO_SANDBOX_READ_ONLY_PATHS: absolutePathList.default([]),
  ...stdioPolicyEnv,
});

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
  /** The OTEL_* variables (handed on by the supervisor): tracing is on when they name an OTLP endpoint. */
  otel: Readonly<Record<string, string>>;
}

/** Reads a worker's configuration (set by its supervisor); throws ConfigError naming every bad variable. */
export function loadWorkerConfig(env: Env = process.env): Readonly<WorkerConfig> {
  const e = load(WorkerEnvSchema, env);
  return Object.freeze({
    ...commonConfig(e),
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
    ...stdioPolicyConfig(e),
    otel: otelEnv(env),
  });
}
