import { metaTraceparent } from '@mcp-hub/shared';
import type { FetchLike } from '@modelcontextprotocol/client';

/** JSON-RPC error code of the synthetic answers (the spec's "internal error"). */
const INTERNAL_ERROR = -32603;
/** Bytes of an oversized message kept to find its JSON-RPC id (at its start and at its end). */
const ID_PROBE_BYTES = 512;
const LF = 0x0a;
const CR = 0x0d;

/** What happened to an upstream message that the limiter stopped. */
export interface OversizeInfo {
  /** The JSON-RPC id answered with an error in its place, when one could be found. */
  id: string | number | undefined;
  limitBytes: number;
  kind: 'sse-event' | 'json-body';
}

export interface BoundedFetchOptions {
  /** Largest upstream message (a JSON body, or one SSE event), counted after decompression. */
  maxMessageBytes: number;
  /** Told of every message that was stopped (the worker logs it). */
  onOversize?: (info: OversizeInfo) => void;
  fetch?: FetchLike;
}

export interface BoundedFetch {
  fetch: FetchLike;
  /** POSTs whose request is still being answered (tests and diagnostics). */
  readonly openRequests: number;
}

type JsonRpcId = string | number;

/** The ids of the requests, and the ids named by `notifications/cancelled`, in an outgoing JSON-RPC body. */
function outgoing(body: unknown): { ids: JsonRpcId[]; cancelled: JsonRpcId[]; traceparent?: string } {
  const out: { ids: JsonRpcId[]; cancelled: JsonRpcId[]; traceparent?: string } = { ids: [], cancelled: [] };
  if (typeof body !== 'string') return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return out;
  }
  for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
    if (message === null || typeof message !== 'object') continue;
    const m = message as { id?: unknown; method?: unknown; params?: { requestId?: unknown } };
    if (typeof m.method !== 'string') continue;
    if ((typeof m.id === 'string' || typeof m.id === 'number') && m.id !== null) out.ids.push(m.id);
    // The worker's span of a call (mcp-calls.ts) goes in the HTTP header too, for collectors that read only that.
    const traceparent = Array.isArray(parsed) ? undefined : metaTraceparent(m.params);
    if (traceparent) out.traceparent = traceparent;
    const target = m.params?.requestId;
    if (m.method === 'notifications/cancelled' && (typeof target === 'string' || typeof target === 'number')) {
      out.cancelled.push(target);
    }
  }
  return out;
}

/** The request's headers with `traceparent` set. */
function traced(init: RequestInit | undefined, traceparent: string): Headers {
  const headers = new Headers(init?.headers);
  headers.set('traceparent', traceparent);
  return headers;
}

function errorMessage(id: JsonRpcId, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id, error: { code: INTERNAL_ERROR, message } });
}

function sseEvent(json: string): Uint8Array {
  return new TextEncoder().encode(`event: message\ndata: ${json}\n\n`);
}

const HEAD_ID_RE = /^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")/;
const TAIL_ID_RE = /,\s*"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*\}\s*$/;

/**
 * The JSON-RPC id of a message known only by its first and last bytes: `{"jsonrpc":"2.0","id":…` at its start
 * or `…,"id":…}` at its end (the SDKs put it at one or the other).
 */
export function idOfTruncatedMessage(head: string, tail: string): JsonRpcId | undefined {
  const data = (text: string) =>
    text
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
  const raw = HEAD_ID_RE.exec(data(head))?.[1] ?? TAIL_ID_RE.exec(data(tail) || tail.trim())?.[1];
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as JsonRpcId;
  } catch {
    return undefined;
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1 && parts[0]) return parts[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Splits an SSE byte stream into whole events and passes each on once complete; an event larger than the limit is
 * dropped as it arrives (never held whole) and, where its JSON-RPC id can be found, answered with an error.
 */
class SseEventLimiter {
  private parts: Uint8Array[] = [];
  private size = 0;
  /** Whether the current line has had a byte other than CR (a line without is an event boundary). */
  private lineHasContent = false;
  private skipping = false;
  /** Whether the dropped event was already answered (its id was known when it passed the limit). */
  private answered = false;
  private head = '';
  private tail = new Uint8Array(0);

  /**
   * `oversized` answers a dropped message (undefined id: none could be found); `answeredEarly` is called when
   * that answer could go out as soon as the limit was passed (the caller may then hang up).
   */
  constructor(
    private readonly limit: number,
    private readonly fallbackId: JsonRpcId | undefined,
    private readonly oversized: (id: JsonRpcId | undefined) => Uint8Array | undefined,
    private readonly answeredEarly: () => void,
  ) {}

  push(chunk: Uint8Array, emit: (bytes: Uint8Array) => void): void {
    let start = 0;
    for (let lf = chunk.indexOf(LF, start); lf !== -1; lf = chunk.indexOf(LF, start)) {
      for (let i = start; i < lf && !this.lineHasContent; i++) if (chunk[i] !== CR) this.lineHasContent = true;
      const boundary = !this.lineHasContent;
      this.lineHasContent = false;
      this.append(chunk.subarray(start, lf + 1), emit);
      if (boundary) this.finish(emit);
      start = lf + 1;
    }
    if (start < chunk.length) {
      for (let i = start; i < chunk.length && !this.lineHasContent; i++)
        if (chunk[i] !== CR) this.lineHasContent = true;
      this.append(chunk.subarray(start), emit);
    }
  }

  /** At the end of the stream: a partial event goes on as it is (the parser discards it), a dropped one is answered. */
  end(emit: (bytes: Uint8Array) => void): void {
    if (this.skipping || this.size > 0) this.finish(emit);
  }

  private append(bytes: Uint8Array, emit: (bytes: Uint8Array) => void): void {
    if (bytes.length === 0) return;
    if (this.skipping) {
      if (this.answered) return;
      const joined = concat([this.tail, bytes], this.tail.length + bytes.length);
      this.tail = joined.slice(Math.max(0, joined.length - ID_PROBE_BYTES));
      return;
    }
    this.size += bytes.length;
    this.parts.push(bytes);
    if (this.size <= this.limit) return;
    const whole = concat(this.parts, this.size);
    this.head = new TextDecoder().decode(whole.subarray(0, ID_PROBE_BYTES));
    this.tail = whole.slice(Math.max(0, whole.length - ID_PROBE_BYTES));
    this.parts = [];
    this.size = 0;
    this.skipping = true;
    // An event may never end: answer now when the id is already known, rather than at its end.
    const id = idOfTruncatedMessage(this.head, '') ?? this.fallbackId;
    if (id === undefined) return;
    this.answered = true;
    const answer = this.oversized(id);
    if (answer) emit(answer);
    this.answeredEarly();
  }

  private finish(emit: (bytes: Uint8Array) => void): void {
    if (this.skipping) {
      if (!this.answered) {
        const answer = this.oversized(idOfTruncatedMessage(this.head, new TextDecoder().decode(this.tail)));
        if (answer) emit(answer);
      }
      this.skipping = false;
      this.answered = false;
      this.head = '';
      this.tail = new Uint8Array(0);
      return;
    }
    const event = concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    emit(event);
  }
}

/** Reads a whole body, or undefined (the rest cancelled) once it passes `limit` bytes. */
async function readBounded(body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | undefined> {
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return concat(parts, size);
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    parts.push(value);
  }
}

/** Statuses that may not carry a body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** The upstream's headers minus what no longer describes the re-wrapped (decoded) body. */
function decodedHeaders(response: Response): Headers {
  const headers = new Headers(response.headers);
  headers.delete('content-encoding');
  headers.delete('content-length');
  return headers;
}

function isEventStream(response: Response): boolean {
  return (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() === 'text/event-stream';
}

/**
 * A `fetch` for the MCP SDK's remote transports that bounds what an upstream can make the worker hold, and closes
 * what a cancelled call left open:
 * - every JSON body and every SSE event is capped at `maxMessageBytes` after decompression (a 100 KB gzip bomb
 *   stops at the cap); SSE streams are passed on event by event, never buffered whole; a message over the cap
 *   is answered in its place with a JSON-RPC error for its id, so the call fails at once instead of hanging;
 * - when the SDK sends `notifications/cancelled` for a request (2025-era sessions; 2026-era ones abort the
 *   request's own stream), the POST stream still answering that request is closed, so the upstream stops
 *   streaming into a call nobody waits for.
 */
export function createBoundedFetch(options: BoundedFetchOptions): BoundedFetch {
  const base: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const limit = options.maxMessageBytes;
  const tooLarge = `the upstream's message is larger than ${limit} bytes (MCP_UPSTREAM_MAX_MESSAGE_BYTES)`;
  /** Requests (JSON-encoded id) still being answered → how to stop their POST. */
  const open = new Map<string, () => void>();

  const oversized = (kind: OversizeInfo['kind']) => (id: JsonRpcId | undefined) => {
    options.onOversize?.({ id, limitBytes: limit, kind });
    return id === undefined ? undefined : sseEvent(errorMessage(id, tooLarge));
  };

  const bounded: FetchLike = async (url, init) => {
    const { ids, cancelled, traceparent } = outgoing(init?.body);
    for (const id of cancelled) open.get(JSON.stringify(id))?.();
    const controller = new AbortController();
    const signal = init?.signal ? AbortSignal.any([init.signal, controller.signal]) : controller.signal;
    const keys = ids.map((id) => JSON.stringify(id));
    let stop: () => void = () => controller.abort();
    const release = () => {
      for (const key of keys) if (open.get(key) === cancel) open.delete(key);
    };
    const cancel = () => stop();
    for (const key of keys) open.set(key, cancel);

    let response: Response;
    try {
      response = await base(url, { ...init, signal, ...(traceparent ? { headers: traced(init, traceparent) } : {}) });
    } catch (error) {
      release();
      throw error;
    }
    const body = response.body;
    if (body === null || NULL_BODY_STATUSES.has(response.status)) {
      release();
      return response;
    }

    if (!isEventStream(response)) {
      try {
        const bytes = await readBounded(body, limit);
        const init = { status: response.status, statusText: response.statusText, headers: decodedHeaders(response) };
        if (bytes !== undefined) return new Response(bytes, init);
        options.onOversize?.({ id: ids.length === 1 ? ids[0] : undefined, limitBytes: limit, kind: 'json-body' });
        if (!response.ok || ids.length === 0) {
          return new Response(tooLarge, { ...init, status: response.ok ? 502 : response.status });
        }
        const errors = ids.map((id) => errorMessage(id, tooLarge));
        const json = ids.length === 1 ? (errors[0] ?? '') : `[${errors.join(',')}]`;
        return new Response(json, { status: 200, headers: { 'content-type': 'application/json' } });
      } finally {
        release();
      }
    }

    const reader = body.getReader();
    let closed = false;
    let hangUp = false;
    // A POST stream serves its own request only: once that is answered, nothing more on it is worth reading.
    const limiter = new SseEventLimiter(limit, ids.length === 1 ? ids[0] : undefined, oversized('sse-event'), () => {
      hangUp = ids.length > 0;
    });
    let out!: ReadableStreamDefaultController<Uint8Array>;
    const finish = () => {
      closed = true;
      release();
    };
    stop = () => {
      if (closed) return;
      finish();
      // The SDK has given up on the request: answer it for the stream parser (so it neither waits nor tries to
      // resume this stream) and hang up on the upstream.
      const id = ids[0];
      if (id !== undefined) out.enqueue(sseEvent(errorMessage(id, 'cancelled')));
      out.close();
      void reader.cancel().catch(() => {});
      controller.abort();
    };
    const stream = new ReadableStream<Uint8Array>(
      {
        start(c) {
          out = c;
        },
        async pull(c) {
          for (;;) {
            let chunk: Awaited<ReturnType<typeof reader.read>>;
            try {
              chunk = await reader.read();
            } catch (error) {
              if (closed) return;
              finish();
              c.error(error);
              return;
            }
            if (closed) return;
            let emitted = false;
            const emit = (bytes: Uint8Array) => {
              c.enqueue(bytes);
              emitted = true;
            };
            if (chunk.done) {
              limiter.end(emit);
              finish();
              c.close();
              return;
            }
            limiter.push(chunk.value, emit);
            if (hangUp) {
              finish();
              c.close();
              void reader.cancel().catch(() => {});
              controller.abort();
              return;
            }
            if (emitted) return;
          }
        },
        cancel(reason) {
          if (closed) return;
          finish();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(stream, {
      status: response.status,
      statusText: response.statusText,
      headers: decodedHeaders(response),
    });
  };

  return {
    fetch: bounded,
    get openRequests() {
      return open.size;
    },
  };
}
