import type { IncomingHttpHeaders } from 'node:http';
import {
  AppError,
  REQUEST_ID_HEADER,
  type RuntimeRecord,
  type ToolProgressEvent,
  WORKER_CALLER_HEADER,
  WORKER_DISPATCH_HEADER,
  WORKER_ROUTES,
  WORKER_TOKEN_HEADER,
  type WorkerSessionsCloseBody,
  WorkerSessionsClosedSchema,
  workerToolPath,
} from '@mcp-hub/shared';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Agent, fetch as undiciFetch } from 'undici';
import { readToolStream, type ToolCallResult } from './tool-stream.js';
import {
  answerError,
  forwarded,
  REQUEST_ID_META,
  refusedUnserved,
  relayBody,
  requestFailed,
  requestIdOfMessage,
  staleAddress,
  wasLostInFlight,
  wasNeverDelivered,
  workerOrigin,
} from './worker-http.js';

export { REQUEST_ID_META, type ToolCallResult, wasLostInFlight, wasNeverDelivered, workerOrigin };

/** A server's running worker, as the hub reaches it. */
export interface WorkerTarget {
  serverId: string;
  /** Its runtime record: where it listens and the credential of this run. */
  runtime: RuntimeRecord;
}

/** Extra time for a worker's headers beyond the tool's own timeout (the worker enforces that one). */
export const TOOL_HEADERS_GRACE_MS = 5_000;
/** Time a worker has to end a caller's sessions and answer; past it the reaper tries again at its next sweep. */
export const SESSIONS_CLOSE_TIMEOUT_MS = 2_000;

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the hub sets itself are not copied into an answer. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'date',
  REQUEST_ID_HEADER,
]);

export interface RelayOptions {
  target: WorkerTarget;
  /** Path and query on the worker. */
  path: string;
  /** The raw body to send on (POST), as the client sent it. */
  body?: Buffer | string;
  /** Request headers for the worker besides the credential, the request id and the caller. */
  headers?: Record<string, string>;
  /** Headers of the client's request passed on as they are (when present). */
  forwardHeaders?: readonly string[];
  /** Who calls, for the worker's MCP sessions (WORKER_CALLER_HEADER). */
  caller?: string;
  /** Time allowed for the worker's response headers. */
  headersTimeoutMs: number;
  /** The error when those headers do not come in time; default `worker_unavailable`. */
  timeoutError?: () => AppError;
  /**
   * A long-lived event stream (a GET stream of the MCP endpoints): ended when the hub closes. Anything else is a
   * call in flight, which the hub waits for (up to its drain deadline).
   */
  stream?: boolean;
}

export interface RelayOutcome {
  /** The worker's status; 0 when there was no answer. */
  status: number;
  /** true when the client went away (or the hub ended the stream) before the answer ended. */
  cancelled: boolean;
  /** Set when the worker failed after its answer had started. */
  error?: Error;
}

export interface ToolCall {
  target: WorkerTarget;
  tool: string;
  args: unknown;
  requestId: string;
  /** Aborting ends the request, which the worker takes as a disconnect and cancels upstream. */
  signal: AbortSignal;
  /** The tool's timeout (the worker enforces it; the hub waits this plus TOOL_HEADERS_GRACE_MS for headers). */
  timeoutMs: number;
  onProgress?: (progress: Omit<ToolProgressEvent, 'request_id'>) => void;
  /** Called when the worker's event stream starts (it took the call; its events follow). */
  onStream?: () => void;
  /** The arguments as the client sent them (sent on untouched); `args` serialized when left out. */
  body?: string;
  /** The client's request headers, of which `forwardHeaders` are passed on as they are. */
  headers?: IncomingHttpHeaders;
  forwardHeaders?: readonly string[];
  /** The hub's span of this hop (tracing on): sent as `traceparent` instead of the client's. */
  traceparent?: string;
}

/** An answer being relayed or a call being made, so that close() can end it. */
interface OpenExchange {
  abort: AbortController;
  stream: boolean;
}

/**
 * The hub's one client for its workers (docs/adr/0002-hub-to-worker-hop.md): one keep-alive undici pool for
 * every path that talks to a worker (the REST call route, the per-server MCP passthrough, the aggregated
 * endpoint's calls, session close), the credential, request id and caller headers added here only, one
 * mapping of transport failures to error codes, and every open exchange tracked so the hub can end streams
 * when it closes and cut what is left at its drain deadline.
 */
export class WorkerClient {
  private readonly agent = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: 256,
    pipelining: 1,
  });
  private readonly open = new Set<OpenExchange>();

  /** How many relays and calls are in flight (streams included). */
  get inFlight(): number {
    return this.open.size;
  }

  /**
   * Passes one request through to a worker and its answer back unbuffered (SSE chunk by chunk, long-lived GET
   * streams included). A client that goes away aborts the hop, which the worker sees as a disconnect. Throws
   * AppError `worker_unavailable` (or `timeoutError`) before the answer started; after that, failures end the
   * answer as `onBrokenAnswer` says and are returned in the outcome.
   */
  async relay(req: FastifyRequest, reply: FastifyReply, opts: RelayOptions): Promise<RelayOutcome> {
    const exchange: OpenExchange = { abort: new AbortController(), stream: opts.stream === true };
    const { signal } = exchange.abort;
    const res = reply.raw;
    const onClientGone = () => {
      if (!res.writableEnded) exchange.abort.abort();
    };
    res.once('close', onClientGone);
    // A client that left during validation or a wake already fired 'close': do not run it for nobody.
    if (res.destroyed || req.raw.socket.destroyed) exchange.abort.abort();
    this.open.add(exchange);
    try {
      let upstream: Awaited<ReturnType<Agent['request']>>;
      try {
        upstream = await this.agent.request({
          origin: workerOrigin(opts.target.runtime),
          path: opts.path,
          method: req.method as 'GET' | 'POST' | 'DELETE',
          headers: {
            ...forwarded(req.headers, opts.forwardHeaders),
            ...opts.headers,
            ...this.hopHeaders(opts.target, req.id, opts.caller),
          },
          body: opts.body,
          signal,
          headersTimeout: opts.headersTimeoutMs,
          bodyTimeout: 0, // streams and long calls stay quiet for minutes between keep-alive comments
        });
      } catch (err) {
        if (signal.aborted) {
          reply.hijack();
          if (!res.writableEnded) res.end();
          return { status: 0, cancelled: true };
        }
        throw requestFailed(err, opts.target, opts.timeoutError);
      }
      // A 503 on the MCP passthrough may be the worker's own answer to an MCP client (a session cap): relayed.
      if (await refusedUnserved(upstream, false)) throw staleAddress(opts.target);

      reply.hijack();
      const headers: Record<string, string | string[]> = {
        ...(reply.getHeaders() as Record<string, string | string[]>),
        [REQUEST_ID_HEADER]: req.id,
      };
      for (const [name, value] of Object.entries(upstream.headers)) {
        if (value !== undefined && !DROPPED_RESPONSE_HEADERS.has(name)) headers[name] = value;
      }
      const streaming =
        exchange.stream || String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream');
      if (streaming) {
        headers['cache-control'] = 'no-cache';
        headers['x-accel-buffering'] = 'no';
      }
      try {
        await relayBody(res, upstream.statusCode, headers, upstream.body, streaming);
        return { status: upstream.statusCode, cancelled: signal.aborted };
      } catch (err) {
        if (signal.aborted) return { status: upstream.statusCode, cancelled: true };
        // A JSON-RPC client of the passthrough hears only the end of the answer.
        return { status: upstream.statusCode, cancelled: false, error: err as Error };
      }
    } finally {
      this.open.delete(exchange);
      res.off('close', onClientGone);
      // Failures before the answer started are answered by the error handler (or retried elsewhere).
      if (reply.sent && !res.writableEnded) res.end();
    }
  }

  /**
   * Calls one tool on a worker (`POST /tools/:tool`, SSE with `dispatched` events) and reads its events
   * (`readToolStream`): progress goes to `onProgress`, the result is returned, an error event is thrown as
   * AppError of its code. Throws `worker_unavailable` when the worker cannot be reached or leaves (marked
   * never delivered or lost in flight, by where the call was), `tool_timeout` when its headers do not come in
   * time, `invalid_request` when `signal` aborted the call.
   */
  async callTool(call: ToolCall): Promise<ToolCallResult> {
    const exchange: OpenExchange = { abort: new AbortController(), stream: false };
    const { signal } = exchange.abort;
    // The caller's abort is forwarded to the exchange's own (cheaper per call than AbortSignal.any).
    const forward = () => exchange.abort.abort();
    if (call.signal.aborted) forward();
    else call.signal.addEventListener('abort', forward, { once: true });
    // Aborted by the caller (its client left), or by the hub closing at its drain deadline (endAll).
    const cancelled = () =>
      call.signal.aborted
        ? new AppError('invalid_request', 'the call was cancelled')
        : new AppError('hub_closing', 'the hub shut down during the call; retry');
    this.open.add(exchange);
    try {
      let response: Awaited<ReturnType<Agent['request']>>;
      try {
        response = await this.agent.request({
          origin: workerOrigin(call.target.runtime),
          path: workerToolPath(call.tool),
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'text/event-stream',
            [WORKER_DISPATCH_HEADER]: '1',
            ...forwarded(call.headers ?? {}, call.forwardHeaders),
            ...(call.traceparent === undefined ? {} : { traceparent: call.traceparent }),
            ...this.hopHeaders(call.target, call.requestId),
          },
          body: call.body ?? JSON.stringify(call.args ?? {}),
          signal,
          headersTimeout: call.timeoutMs + TOOL_HEADERS_GRACE_MS,
          bodyTimeout: 0,
        });
      } catch (err) {
        if (signal.aborted) throw cancelled();
        throw requestFailed(
          err,
          call.target,
          () => new AppError('tool_timeout', `${call.tool} did not answer in time`, undefined, { cause: err }),
          true,
        );
      }
      if (await refusedUnserved(response, true)) throw staleAddress(call.target);
      if (!String(response.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        throw await answerError(response.statusCode, response.body);
      }
      call.onStream?.();
      try {
        return await readToolStream(response.body, call.target, call.onProgress, () => signal.aborted);
      } catch (err) {
        if (signal.aborted && !(err instanceof AppError)) throw cancelled();
        throw err;
      }
    } finally {
      call.signal.removeEventListener('abort', forward);
      this.open.delete(exchange);
    }
  }

  /**
   * Asks a worker to end every MCP session of `caller` (`POST /sessions/close`); answers how many ended.
   * Throws `worker_unavailable` when the worker does not answer 200 within SESSIONS_CLOSE_TIMEOUT_MS.
   */
  async closeSessions(target: WorkerTarget, caller: string): Promise<number> {
    const body: WorkerSessionsCloseBody = { caller };
    let res: Awaited<ReturnType<Agent['request']>>;
    try {
      res = await this.agent.request({
        origin: workerOrigin(target.runtime),
        path: WORKER_ROUTES.sessionsClose,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...this.hopHeaders(target) },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(SESSIONS_CLOSE_TIMEOUT_MS),
      });
    } catch (err) {
      throw requestFailed(err, target);
    }
    if (res.statusCode !== 200) throw await answerError(res.statusCode, res.body);
    return WorkerSessionsClosedSchema.parse(await res.body.json()).closed;
  }

  /**
   * A fetch for an MCP client of a worker's `/mcp` (the aggregated endpoint's link to a worker): over the
   * same pool, with the worker's credential and the caller on every request. A JSON-RPC message that names
   * a request id in `_meta[REQUEST_ID_META]` carries it as `x-request-id`, so the worker logs the hub's id.
   */
  mcpFetch(target: WorkerTarget, caller: string): (url: string | URL, init?: RequestInit) => Promise<Response> {
    const hop = this.hopHeaders(target, undefined, caller);
    return async (url, init) => {
      const headers = new Headers(init?.headers);
      for (const [name, value] of Object.entries(hop)) headers.set(name, value);
      const body = init?.body;
      if (typeof body === 'string' && body.includes(REQUEST_ID_META)) {
        const id = requestIdOfMessage(body);
        if (id) headers.set(REQUEST_ID_HEADER, id);
      }
      // undici's own fetch takes its pool as `dispatcher`; its Response is the web Response.
      const options = { ...init, headers: Object.fromEntries(headers), dispatcher: this.agent };
      return (await undiciFetch(url, options as unknown as Parameters<typeof undiciFetch>[1])) as unknown as Response;
    };
  }

  /** Ends the long-lived streams being relayed (the hub is closing; calls in flight go on). */
  endStreams(): void {
    for (const exchange of this.open) if (exchange.stream) exchange.abort.abort();
  }

  /** Ends everything still open (the hub's drain deadline passed). */
  endAll(): void {
    for (const exchange of this.open) exchange.abort.abort();
  }

  /** Ends everything still open and closes the pool. */
  async close(): Promise<void> {
    this.endAll();
    await this.agent.close();
  }

  /**
   * The headers of every request to a worker: its credential (for requests to it only: never copied into an
   * answer or a log line), the request id, and who calls (the worker binds MCP sessions to it).
   */
  private hopHeaders(target: WorkerTarget, requestId?: string, caller?: string): Record<string, string> {
    const headers: Record<string, string> = { [WORKER_TOKEN_HEADER]: target.runtime.workerToken ?? '' };
    if (requestId !== undefined) headers[REQUEST_ID_HEADER] = requestId;
    if (caller !== undefined) headers[WORKER_CALLER_HEADER] = caller;
    return headers;
  }
}
