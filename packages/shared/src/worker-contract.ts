import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from './canonical-json.js';
import { CONFIG_EXIT_CODE } from './config.js';
import { REQUEST_ID_RE } from './ids.js';
import type { ServerSpec } from './schemas.js';

/**
 * What the supervisor, the hub and a worker agree on (docs/adr/0001-supervisor-worker-contract.md), as code:
 * the exit codes of a worker process, its routes, the headers the hub sends it, the body of its
 * `GET /healthz` and the events of its tool-call stream. Both sides import these; neither spells a route or
 * a header name of its own. The request id's header and pattern are in ids.ts (clients send it too).
 */

/** The routes of a worker's HTTP server (Fastify route syntax). */
export const WORKER_ROUTES = Object.freeze({
  /** `GET`: WorkerHealthSchema; 200 when the upstream is connected, else 503. */
  health: '/healthz',
  /** `GET`: `{ tools: ToolInput[] }`. */
  tools: '/tools',
  /** `POST`: one tool call; an SSE stream of ToolCallEvents, or (Accept: application/json) the result body. */
  toolCall: '/tools/:tool',
  /** `POST|GET|DELETE`: the server's Streamable HTTP MCP endpoint. */
  mcp: '/mcp',
  /** `GET`: the legacy HTTP+SSE MCP stream; its messages go to MESSAGES_PATH_HEADER's path. */
  sse: '/sse',
  /** `POST`: the legacy HTTP+SSE messages. */
  messages: '/messages',
  /**
   * `POST` WorkerSessionsCloseBodySchema → WorkerSessionsClosedSchema: ends at once every MCP session (2025
   * Streamable HTTP and legacy SSE) of one caller. The hub calls it for keys that no longer authenticate, so
   * that their sessions give back their slots and streams instead of holding them until they idle out.
   */
  sessionsClose: '/sessions/close',
});

/** The path of one tool's call route on a worker (the tool name escaped). */
export function workerToolPath(tool: string): string {
  return `/tools/${encodeURIComponent(tool)}`;
}

/**
 * On the hub's `GET /sse/<id>`: the path the worker's `endpoint` event names for the client's messages (the
 * hub's `/messages/<id>`, not the worker's own `/messages`).
 */
export const MESSAGES_PATH_HEADER = 'x-mcp-messages-path';

/** What a MESSAGES_PATH_HEADER may hold: a plain absolute path (it is written into an event). */
export const MESSAGES_PATH_RE = /^\/[A-Za-z0-9._~/-]{0,512}$/;

/** The request headers of an MCP client that the worker's MCP endpoints read (the hub passes these on). */
export const MCP_REQUEST_HEADERS = Object.freeze([
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'mcp-method',
  'mcp-name',
  'last-event-id',
  'traceparent',
  'tracestate',
] as const);

export const WORKER_EXIT_CODES = Object.freeze({
  /** Stopped on request (SIGTERM / SIGINT). */
  ok: 0,
  /** The upstream failed (a stdio server exited or could not start); `last_error` says why. */
  upstreamFailed: 1,
  /** The worker's environment is invalid. */
  badConfig: CONFIG_EXIT_CODE,
  /** The server's spec is missing or disabled: restarting will not help. */
  specUnavailable: 3,
  /**
   * Its port was taken between the supervisor's claim and the worker's listen (another process bound it):
   * nothing is wrong with the server, so it is started again at once on another port, not counted as a crash.
   */
  portTaken: 4,
});

/** Starts in a row that may end in `portTaken` and be retried at once; past this they count as crashes. */
export const PORT_TAKEN_RETRIES = 3;
export type WorkerExitCode = (typeof WORKER_EXIT_CODES)[keyof typeof WORKER_EXIT_CODES];

/**
 * The header that carries a worker's credential on every request to it (hub calls, the supervisor's health
 * checks). Workers listen on sequential local ports: without it any local process, or a REST server of one
 * project pointed at another's worker, could call that worker's tools. A header of its own rather than
 * `authorization`, so it can never be confused with (or forwarded as) a client's credential.
 */
export const WORKER_TOKEN_HEADER = 'x-mcp-worker-token';

/**
 * The signal that asks a worker to stop after its calls in flight: it keeps answering (calls sent to its
 * address just before the supervisor switched to its successor still run), and once no call has run for a
 * short while, or the server's `timeoutMs` has passed, it stops as on SIGTERM. SIGTERM stops at once, ending
 * calls in flight with `worker_unavailable`. (SIGUSR1 would start Node's inspector.)
 */
export const WORKER_DRAIN_SIGNAL = 'SIGUSR2';

/**
 * How long a draining worker waits with no call in flight before it stops, in milliseconds: it covers calls a
 * hub sent to the old address just before it heard of the switch (one Redis event away). A drain lasts at
 * most this plus the server's `timeoutMs`.
 */
export const WORKER_DRAIN_QUIET_MS = 1_000;

/**
 * A digest of the fields of a spec that a worker runs with (`apps/worker` reads `id`, `transport`, `config`,
 * `enabled` and `timeoutMs`, and reports `rev` in /healthz): equal digests mean a running worker serves the
 * spec as it is, so the supervisor keeps its process. Any other field (name, description, tags, project,
 * namespace, prefixMode) is the hub's metadata. `rev` is left out (a metadata change bumps it too); the
 * config is compared as stored, secrets sealed (a write that keeps a secret keeps its sealed value). A worker
 * that starts reading another field must add it here.
 */
export function workerSpecDigest(spec: ServerSpec): string {
  const { id, transport, config, enabled, timeoutMs } = spec;
  return createHash('sha256').update(canonicalJson({ id, transport, config, enabled, timeoutMs })).digest('base64url');
}

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
  /**
   * The worker process's own resident memory and CPU time (user + system) since it started, and its open 2025-era
   * MCP sessions: the supervisor hands them to the hub's /metrics. Optional: a worker of an older build omits them.
   */
  rssBytes: z.number().int().nonnegative().optional(),
  cpuSeconds: z.number().nonnegative().optional(),
  mcpSessions: z.number().int().nonnegative().optional(),
});
export type WorkerHealth = z.output<typeof WorkerHealthSchema>;

/**
 * The header in which the hub names who calls an MCP endpoint of a worker; the worker binds each MCP session
 * to it, so one caller cannot use another's session id.
 */
export const WORKER_CALLER_HEADER = 'x-mcp-hub-caller';

/**
 * Set by the hub on `POST /tools/:tool` (SSE) to ask for a `dispatched` event the moment the call is handed to
 * the upstream: a stream lost before it carried a call the upstream never saw, which may be sent again.
 */
export const WORKER_DISPATCH_HEADER = 'x-mcp-hub-dispatch-events';

/** A caller as the hub names it: an API key (`key:<id>`) or `admin`. */
export const WORKER_CALLER_RE = /^(?:admin|key:[a-z0-9]{1,64})$/;

/** The caller name of an API key. */
export function keyCaller(keyId: string): string {
  return `key:${keyId}`;
}

/** The body of `POST /sessions/close` (WORKER_ROUTES.sessionsClose). */
export const WorkerSessionsCloseBodySchema = z.strictObject({ caller: z.string().regex(WORKER_CALLER_RE) });
export type WorkerSessionsCloseBody = z.output<typeof WorkerSessionsCloseBodySchema>;

/** The answer of `POST /sessions/close`: how many sessions ended. */
export const WorkerSessionsClosedSchema = z.object({ closed: z.number().int().nonnegative() });

/** A progress event of a tool call (the upstream's progress notification). */
export const ToolProgressEventSchema = z.object({
  request_id: z.string().regex(REQUEST_ID_RE),
  progress: z.number(),
  total: z.number().optional(),
  message: z.string().optional(),
});

/** The result of a tool call: the last event of its stream, and the body of a JSON-mode answer. */
export const ToolResultEventSchema = z.object({
  request_id: z.string().regex(REQUEST_ID_RE),
  content: z.array(z.unknown()),
  structuredContent: z.unknown().optional(),
  isError: z.boolean(),
});

/**
 * A tool call that failed once its stream had started: the last event of its stream. `code` is an error code
 * (docs/errors.md), kept a plain string on the wire so a newer worker's code does not break an older hub.
 */
export const ToolErrorEventSchema = z.object({
  request_id: z.string().regex(REQUEST_ID_RE),
  code: z.string(),
  message: z.string(),
  /** The error's details (an upstream's JSON-RPC `rpcCode`, `rpcData`), as a JSON-mode answer carries them. */
  details: z.unknown().optional(),
  /**
   * The call had been handed to the upstream when the upstream (or the worker) went away: whether it ran is
   * unknown. A hub may run it again only for a tool that says it is safe (idempotent or read-only). An error
   * `worker_unavailable` without it says the upstream never had the call: a hub may send it to another worker.
   */
  lost: z.boolean().optional(),
});

/**
 * The call was handed to the upstream (sent only when the hub asked, WORKER_DISPATCH_HEADER): before it, a
 * lost stream or a `worker_unavailable` error means the upstream never saw the call.
 */
export const ToolDispatchedEventSchema = z.object({ request_id: z.string().regex(REQUEST_ID_RE) });

/**
 * The events of a worker's tool-call stream (`POST /tools/:tool`, SSE), by name; the hub relays them as is
 * (`dispatched` only comes when the hub asked for it, and the hub keeps it to itself).
 */
export const TOOL_CALL_EVENTS = Object.freeze({
  dispatched: ToolDispatchedEventSchema,
  progress: ToolProgressEventSchema,
  result: ToolResultEventSchema,
  error: ToolErrorEventSchema,
});
export type ToolCallEventName = keyof typeof TOOL_CALL_EVENTS;
export type ToolCallEvents = { [E in ToolCallEventName]: z.output<(typeof TOOL_CALL_EVENTS)[E]> };
export type ToolProgressEvent = ToolCallEvents['progress'];
export type ToolResultEvent = ToolCallEvents['result'];
export type ToolErrorEvent = ToolCallEvents['error'];

/** One tool-call event as an SSE frame: its name and one JSON `data:` line. */
export function toolCallFrame<E extends ToolCallEventName>(event: E, data: ToolCallEvents[E]): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** A parsed tool-call event; `undefined` for a frame without data (a keep-alive comment) or of another name. */
export type ParsedToolCallEvent = {
  [E in ToolCallEventName]: { event: E; data: ToolCallEvents[E] };
}[ToolCallEventName];

/**
 * Parses one SSE frame (without its blank line) of a tool-call stream. Throws when the data of a known event
 * does not match its schema (a ZodError) or is not JSON (a SyntaxError).
 */
export function parseToolCallFrame(frame: string): ParsedToolCallEvent | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  if (data.length === 0 || !Object.hasOwn(TOOL_CALL_EVENTS, event)) return undefined;
  const name = event as ToolCallEventName;
  return { event: name, data: TOOL_CALL_EVENTS[name].parse(JSON.parse(data.join('\n'))) } as ParsedToolCallEvent;
}
