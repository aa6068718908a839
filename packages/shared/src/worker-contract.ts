import { z } from 'zod';
import { CONFIG_EXIT_CODE } from './config.js';

/**
 * What the supervisor, the hub and a worker agree on (docs/adr/0001-supervisor-worker-contract.md), as code:
 * the exit codes of a worker process, the body of its `GET /healthz`, the headers the hub sends it and the
 * route that ends a caller's MCP sessions.
 */
export const WORKER_EXIT_CODES = Object.freeze({
  /** Stopped on request (SIGTERM / SIGINT). */
  ok: 0,
  /** The upstream failed (a stdio server exited or could not start); `last_error` says why. */
  upstreamFailed: 1,
  /** The worker's environment is invalid. */
  badConfig: CONFIG_EXIT_CODE,
  /** The server's spec is missing or disabled: restarting will not help. */
  specUnavailable: 3,
});
export type WorkerExitCode = (typeof WORKER_EXIT_CODES)[keyof typeof WORKER_EXIT_CODES];

/**
 * The header that carries a worker's credential on every request to it (hub calls, the supervisor's health
 * checks). Workers listen on sequential local ports: without it any local process, or a REST server of one
 * project pointed at another's worker, could call that worker's tools. A header of its own rather than
 * `authorization`, so it can never be confused with (or forwarded as) a client's credential.
 */
export const WORKER_TOKEN_HEADER = 'x-mcp-worker-token';

/** Random bytes in a worker's credential (generated per worker run by the supervisor). */
export const WORKER_TOKEN_BYTES = 32;

export const UPSTREAM_STATUSES = ['connecting', 'connected', 'down'] as const;
export type UpstreamStatus = (typeof UPSTREAM_STATUSES)[number];

/** The body of a worker's `GET /healthz` (200 when `upstream` is `connected`, else 503). */
export const WorkerHealthSchema = z.object({
  serverId: z.string(),
  instance: z.string(),
  pid: z.number().int(),
  specRev: z.number().int().nonnegative(),
  upstream: z.enum(UPSTREAM_STATUSES),
  /** How many tools the worker serves. */
  tools: z.number().int().nonnegative(),
  /** Calls in flight. */
  activeCalls: z.number().int().nonnegative(),
  /** Milliseconds since the last call ended, or since start when there was none. */
  idleMs: z.number().int().nonnegative(),
});
export type WorkerHealth = z.output<typeof WorkerHealthSchema>;

/**
 * The header in which the hub names who calls an MCP endpoint of a worker; the worker binds each MCP session
 * to it, so one caller cannot use another's session id.
 */
export const WORKER_CALLER_HEADER = 'x-mcp-hub-caller';

/** A caller as the hub names it: an API key (`key:<id>`) or `admin`. */
export const WORKER_CALLER_RE = /^(?:admin|key:[a-z0-9]{1,64})$/;

/** The caller name of an API key. */
export function keyCaller(keyId: string): string {
  return `key:${keyId}`;
}

/**
 * `POST` on a worker: ends at once every MCP session (2025 Streamable HTTP and legacy SSE) of one caller. The
 * hub calls it for keys that no longer authenticate, so that their sessions give back their slots and streams
 * instead of holding them until they idle out.
 */
export const WORKER_SESSIONS_CLOSE_PATH = '/sessions/close';

export const WorkerSessionsCloseBodySchema = z.strictObject({ caller: z.string().regex(WORKER_CALLER_RE) });
export type WorkerSessionsCloseBody = z.output<typeof WorkerSessionsCloseBodySchema>;

/** The answer of `POST /sessions/close`: how many sessions ended. */
export const WorkerSessionsClosedSchema = z.object({ closed: z.number().int().nonnegative() });
