import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import {
  AppError,
  drained,
  ERROR_STATUS,
  type ErrorCode,
  errorBody,
  errorHeaders,
  isRequestId,
  type RuntimeRecord,
  toolCallFrame,
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

/**
 * The one mapping of a request to a worker that got no answer: headers that did not come in time are
 * `timeoutError` (default `worker_unavailable`), anything else (refused, reset) `worker_unavailable`.
 */
export function requestFailed(err: unknown, target: WorkerTarget, timeoutError?: () => AppError): AppError {
  if (err instanceof AppError) return err;
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

/** Tells a client of the REST call route that the worker went away mid-answer, in the contract's shape. */
export function tellBroken(
  res: ServerResponse,
  requestId: string,
  target: WorkerTarget,
  headers: Record<string, string | string[]>,
  streaming: boolean,
): void {
  const failure = new AppError('worker_unavailable', `the worker of "${target.serverId}" went away during the call`);
  if (streaming) {
    res.write(toolCallFrame('error', { request_id: requestId, code: failure.code, message: failure.message }));
  } else if (!res.headersSent) {
    const { 'content-length': _length, ...rest } = headers;
    res.writeHead(failure.statusCode, { ...rest, 'content-type': 'application/json', ...errorHeaders(failure) });
    res.write(JSON.stringify(errorBody(failure, requestId)));
  }
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
