import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import {
  AppError,
  drained,
  ERROR_STATUS,
  type ErrorCode,
  errorMark,
  isRequestId,
  type RuntimeRecord,
} from '@mcp-hub/shared';
import { errors as undiciErrors } from 'undici';
import type { WorkerTarget } from './worker-client.js';

/** Whether a worker's error event names one of the hub's error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_STATUS, code);
}

// The HTTP side of the hub's worker client: addresses, forwarded headers, error mapping and body relay.

/** Where a JSON-RPC request to a worker carries the hub's request id (lifted into `x-request-id`). */
export const REQUEST_ID_META = 'io.mcp-hub/request-id';

export function requestIdOfMessage(body: string): string | undefined {
  try {
    const message = JSON.parse(body) as { params?: { _meta?: Record<string, unknown> } };
    const id = message.params?._meta?.[REQUEST_ID_META];
    return typeof id === 'string' && isRequestId(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** The origin (`http://host:port`) of a running worker. */
export function workerOrigin(runtime: RuntimeRecord): string {
  return `http://${runtime.host ?? '127.0.0.1'}:${runtime.port}`;
}

export function forwarded(req: IncomingHttpHeaders, names: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = req[name];
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

/** Errors of requests a worker never received: safe to send again, to the worker that replaced it. */
const neverDelivered = errorMark();

/**
 * Whether a request to a worker failed before the worker got it: its address was stale (connection refused:
 * the worker is gone; 401: another run's worker listens there now). Such a call is sent again, never one
 * that may have reached the upstream.
 */
export function wasNeverDelivered(err: unknown): boolean {
  return neverDelivered.has(err);
}

/** Errors of calls a worker had handed to its upstream when it (or the upstream) went away. */
const lostCalls = errorMark();

/**
 * Whether a call failed after its worker had handed it to the upstream, because the worker or the upstream went
 * away: it may have run. Sent again only for a tool that says that is safe (`idempotentHint`, `readOnlyHint`).
 */
export function wasLostInFlight(err: unknown): boolean {
  return lostCalls.has(err);
}

export function lostInFlight(error: AppError): AppError {
  return lostCalls.mark(error);
}

export function staleAddress(target: WorkerTarget, cause?: unknown): AppError {
  const error = new AppError(
    'worker_unavailable',
    `the worker of "${target.serverId}" is no longer at ${workerOrigin(target.runtime)}`,
    undefined,
    { cause },
  );
  return neverDelivered.mark(error);
}

/**
 * Whether a worker's answer says it served nothing: a 401 (another run's worker on that port refused this run's
 * token) or its own 503 `worker_unavailable` before any stream (it is shutting down, or its upstream is not
 * connected: the call never reached the upstream). Reads the body of such an answer, leaves others untouched.
 */
export async function refusedUnserved(
  res: { statusCode: number; headers: IncomingHttpHeaders; body: { dump(): Promise<void>; json(): Promise<unknown> } },
  toolRoute: boolean,
): Promise<boolean> {
  if (res.statusCode === 401) {
    await res.body.dump();
    return true;
  }
  if (!toolRoute || res.statusCode !== 503 || !String(res.headers['content-type'] ?? '').startsWith('application/json'))
    return false;
  const parsed = (await res.body.json().catch(() => null)) as { error?: unknown } | null;
  const error = parsed?.error;
  // The worker's error shape, or Fastify's own answer while the worker closes (return503OnClosing).
  const unserved =
    error === 'Service Unavailable' ||
    (typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'worker_unavailable');
  if (!unserved) throw new AppError('worker_unavailable', 'the worker answered 503');
  return true;
}

/**
 * Whether a request to a worker was never served: its port refused the connection (nothing listens there any
 * more), or, when the worker answers headers before it starts the work, the connection was lost before them
 * (a pooled keep-alive connection to a worker that was just killed).
 */
function unserved(err: unknown, headersBeforeWork: boolean): boolean {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  if (e?.code === 'ECONNREFUSED' || e?.cause?.code === 'ECONNREFUSED') return true;
  return headersBeforeWork && (err instanceof undiciErrors.SocketError || e?.code === 'ECONNRESET');
}

/**
 * The one mapping of a request to a worker that got no answer: headers that did not come in time are
 * `timeoutError` (default `worker_unavailable`), an unserved request a stale address (never delivered, see
 * `unserved`), anything else `worker_unavailable`.
 */
export function requestFailed(
  err: unknown,
  target: WorkerTarget,
  timeoutError?: () => AppError,
  headersBeforeWork = false,
): AppError {
  if (err instanceof AppError) return err;
  if (unserved(err, headersBeforeWork)) return staleAddress(target, err);
  const timedOut = err instanceof undiciErrors.HeadersTimeoutError;
  if (timedOut && timeoutError) return timeoutError();
  const what = timedOut ? 'did not answer in time' : 'is unreachable';
  return new AppError('worker_unavailable', `the worker of "${target.serverId}" ${what}`, undefined, { cause: err });
}

/**
 * The error of a worker's non-stream answer where a stream or 200 was expected: the code of its error body,
 * else `worker_unavailable` for a 5xx (a worker shutting down answers a bare 503) and `upstream_error` otherwise.
 */
export async function answerError(
  status: number,
  body: AsyncIterable<unknown> & { json(): Promise<unknown> },
): Promise<AppError> {
  const parsed = (await body.json().catch(() => ({}))) as { error?: { code?: unknown; message?: unknown } } | null;
  const error = typeof parsed?.error === 'object' && parsed.error !== null ? parsed.error : undefined;
  if (error && isErrorCode(error.code)) {
    return new AppError(error.code, String(error.message ?? `the worker answered ${status}`));
  }
  return new AppError(status >= 500 ? 'worker_unavailable' : 'upstream_error', `the worker answered ${status}`);
}

/**
 * Writes a worker's answer to the client: an event stream chunk by chunk as the worker writes it (with
 * back-pressure), anything else read whole and sent in one write (a length and `end(body)`: headers and
 * body leave together, no chunked terminator after them). Plain loops, not stream.pipeline, which costs
 * an AbortController and an error object per call on the hot path. Throws when the worker's body fails.
 */
export async function relayBody(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
  body: AsyncIterable<unknown>,
  streaming: boolean,
): Promise<void> {
  if (streaming) {
    res.writeHead(status, headers);
    res.flushHeaders();
    for await (const chunk of body) {
      if (!res.write(chunk)) await drained(res);
    }
    return;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  const whole = Buffer.concat(chunks);
  headers['content-length'] = String(whole.length);
  res.writeHead(status, headers);
  res.end(whole);
}
