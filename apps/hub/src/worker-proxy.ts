import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { AppError, drained } from '@mcp-hub/shared';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Agent, errors as undiciErrors } from 'undici';

/** Request headers an MCP client sends that the worker's MCP endpoints read. */
const FORWARDED_REQUEST_HEADERS = [
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'mcp-method',
  'mcp-name',
  'last-event-id',
  'traceparent',
  'tracestate',
] as const;

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the hub sets itself are not copied back. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'date',
  'x-request-id',
]);

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

export interface ForwardOptions {
  agent: Agent;
  origin: string;
  /** Path and query on the worker. */
  path: string;
  /** The raw body to send on (POST), as the client sent it. */
  body?: Buffer | string;
  /** Extra request headers for the worker (e.g. `x-mcp-messages-path`). */
  headers?: Record<string, string>;
  /** Time allowed for the worker's response headers. */
  headersTimeoutMs: number;
}

export interface ForwardOutcome {
  status: number;
  /** true when the client went away before the answer ended. */
  cancelled: boolean;
  /** Set when the worker failed after its answer had started. */
  error?: Error;
}

function forwardedHeaders(req: IncomingHttpHeaders, requestId: string): Record<string, string> {
  const out: Record<string, string> = { 'x-request-id': requestId };
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = req[name];
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

/**
 * Passes one request through to a worker and its answer back unbuffered (SSE streams chunk by chunk,
 * long-lived GET streams included): the MCP endpoints are plain passthrough, the worker speaks MCP.
 * A client that goes away aborts the hop, which the worker sees as a disconnect (and cancels).
 * Throws AppError `worker_unavailable` before the answer started; after that, failures end the stream.
 */
export async function forwardToWorker(
  req: FastifyRequest,
  reply: FastifyReply,
  opts: ForwardOptions,
): Promise<ForwardOutcome> {
  const abort = new AbortController();
  const onClientGone = () => {
    if (!reply.raw.writableEnded) abort.abort();
  };
  reply.raw.once('close', onClientGone);
  if (reply.raw.destroyed || req.raw.socket.destroyed) abort.abort();

  let upstream: Awaited<ReturnType<Agent['request']>>;
  try {
    upstream = await opts.agent.request({
      origin: opts.origin,
      path: opts.path,
      method: req.method as 'GET' | 'POST' | 'DELETE',
      headers: { ...forwardedHeaders(req.headers, req.id), ...opts.headers },
      body: opts.body,
      signal: abort.signal,
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: 0, // standalone GET streams and long calls stay quiet for minutes between keep-alives
    });
  } catch (err) {
    reply.raw.off('close', onClientGone);
    if (abort.signal.aborted) {
      reply.hijack();
      if (!reply.raw.writableEnded) reply.raw.end();
      return { status: 0, cancelled: true };
    }
    const timedOut = err instanceof undiciErrors.HeadersTimeoutError;
    throw new AppError(
      'worker_unavailable',
      timedOut ? 'the worker did not answer in time' : 'the worker is unreachable',
      undefined,
      { cause: err },
    );
  }

  reply.hijack();
  const res = reply.raw;
  const headers: Record<string, string | string[]> = {
    ...(reply.getHeaders() as Record<string, string | string[]>),
    'x-request-id': req.id,
  };
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value !== undefined && !DROPPED_RESPONSE_HEADERS.has(name)) headers[name] = value;
  }
  const streaming = String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream');
  if (streaming) {
    headers['cache-control'] = 'no-cache';
    headers['x-accel-buffering'] = 'no';
  }
  let error: Error | undefined;
  try {
    await relayBody(res, upstream.statusCode, headers, upstream.body, streaming);
  } catch (err) {
    if (!abort.signal.aborted) error = err as Error;
  } finally {
    res.off('close', onClientGone);
    if (!res.writableEnded) res.end();
  }
  return { status: upstream.statusCode, cancelled: abort.signal.aborted, error };
}
