import { type DestinationStream, type Logger, pino } from 'pino';
import type { LogLevel } from './config.js';
import { TurnBatchedDestination } from './log-destination.js';
import { WORKER_TOKEN_HEADER } from './worker-contract.js';

export type { Logger } from 'pino';
export type ServiceName = 'hub' | 'supervisor' | 'worker';

/**
 * Paths whose values never reach a log line: credentials in requests, and the `env` and `headers` of
 * server specs, wherever a spec or its config is logged.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  `req.headers["${WORKER_TOKEN_HEADER}"]`,
  `headers["${WORKER_TOKEN_HEADER}"]`,
  'workerToken',
  'runtime.workerToken',
  '*.workerToken',
  'headers.authorization',
  'headers["x-api-key"]',
  'authorization',
  'env',
  'headers',
  'config.env',
  'config.headers',
  'spec.config.env',
  'spec.config.headers',
  'body.config.env',
  'body.config.headers',
  '*.config.env',
  '*.config.headers',
];

export interface LoggerOptions {
  service: ServiceName;
  level?: LogLevel;
  /** Extra base fields (e.g. `server` for a worker). */
  base?: Record<string, unknown>;
  /** Where lines go; default stdout. Tests pass a stream to read the lines back. */
  destination?: DestinationStream;
}

/**
 * The root logger of a process: one JSON object per line with ISO `time`, `level` as a word, `service`,
 * and `event` on every line that marks something (`log.info({ event: 'worker.spawned', pid }, '…')`).
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service, ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'msg',
      formatters: { level: (label) => ({ level: label }) },
      // Lines from libraries (Fastify's own messages) get a generic event so every line has one.
      mixin: () => ({ event: 'log' }),
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    options.destination ?? new TurnBatchedDestination(1),
  );
}

/** How long an exiting process waits for its last log lines to be written at most. */
export const EXIT_FLUSH_TIMEOUT_MS = 2_000;

/**
 * Exits with `code` once the logger's queued lines are written (the destination writes a turn's lines after the
 * turn, and waits for a slow reader of stdout: a full pipe). Exits anyway after `timeoutMs`.
 */
export function exitAfterFlush(log: Logger, code: number, timeoutMs = EXIT_FLUSH_TIMEOUT_MS): void {
  const timer = setTimeout(() => process.exit(code), timeoutMs);
  timer.unref();
  log.flush(() => process.exit(code));
}
