import { AppError, errorBody, type Logger, type RuntimeRecord } from '@mcp-hub/shared';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Agent, errors as undiciErrors } from 'undici';
import type { CallGuard } from '../auth/call-guard.js';
import type { RegistryCache } from '../registry-cache.js';
import { RETRY_AFTER_S, type WorkerLocator, workerAuth, workerOrigin, workerUnavailable } from '../worker-locator.js';
import { relayBody } from '../worker-proxy.js';

export interface ToolCallRoutesOptions {
  cache: RegistryCache;
  workers: WorkerLocator;
  guard: CallGuard;
  log: Logger;
}

/** Extra time the hub waits for a worker's headers beyond the tool's own timeout (the worker enforces that one). */
const HEADERS_GRACE_MS = 5_000;
const SERVER_ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function wantsJson(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/event-stream');
}

/**
 * `POST /mcp/:id/:tool`: validate the arguments against the tool's schema, find the server's worker, and
 * pass its SSE (or JSON) answer through unbuffered. Registry data comes from the in-process cache; the
 * hop to the worker is a keep-alive undici pool (docs/adr/0002-hub-to-worker-hop.md).
 */
export async function toolCallRoutes(app: FastifyInstance, opts: ToolCallRoutesOptions): Promise<void> {
  const { cache, workers, guard, log } = opts;
  const agent = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, connections: 256, pipelining: 1 });
  app.addHook('onClose', () => agent.close());

  // Arguments are forwarded as the client sent them (no re-serialization on the hot path); an empty body
  // is an empty argument object, for tools that take none.
  const rawBodies = new WeakMap<object, string>();
  const parseJson = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, {});
    rawBodies.set(req, text);
    return parseJson(req, text, done);
  });

  app.post<{ Params: { id: string; tool: string } }>(
    '/mcp/:id/:tool',
    { config: { logRequest: false } },
    async (req, reply) => {
      const { id, tool } = req.params;
      const requestId = req.id;
      const args = req.body ?? {};
      log.info(
        {
          event: 'tool.call.accepted',
          request_id: requestId,
          server: id,
          tool,
          args_size: Number(req.headers['content-length'] ?? 0),
        },
        'tool call accepted',
      );
      try {
        if (typeof args !== 'object' || Array.isArray(args) || args === null) {
          throw new AppError('invalid_arguments', 'the body must be a JSON object of tool arguments');
        }
        const spec = SERVER_ID_RE.test(id) ? await cache.server(id) : null;
        if (!spec) throw new AppError('server_not_found', `server "${id}" not found`);
        const [cached, runtime] = await Promise.all([cache.tool(id, tool), cache.runtime(id)]);
        if (!cached) {
          // Before a worker first ran, a server's tools are unknown: that is "not yet", not "no such tool".
          if (runtime?.status !== 'running' && (await cache.toolCount(id)) === 0) throw workerUnavailable(id, runtime);
          throw new AppError('tool_not_found', `server "${id}" has no tool "${tool}"`);
        }
        const problems = cached.validate(args);
        if (problems) {
          throw new AppError(
            'invalid_arguments',
            `invalid arguments for ${id}/${tool}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
            problems,
          );
        }
        const done = await guard.admit(req.principal, id, tool, reply);
        let status = 0;
        try {
          const worker = await workers.running(id, runtime);
          status = await proxy(req, reply, worker, spec.timeoutMs, args);
        } finally {
          done(status >= 200 && status < 400);
        }
        return reply;
      } catch (err) {
        if (err instanceof AppError) {
          if (err.code === 'worker_unavailable') reply.header('retry-after', RETRY_AFTER_S);
          log.warn(
            {
              event: 'tool.call.failed',
              request_id: requestId,
              server: id,
              tool,
              error: err.message,
              code: err.code,
              traceback: err.cause instanceof Error ? err.cause.stack : err.stack,
            },
            'tool call failed',
          );
        }
        throw err;
      }
    },
  );

  async function proxy(
    req: FastifyRequest<{ Params: { id: string; tool: string } }>,
    reply: FastifyReply,
    runtime: RuntimeRecord,
    timeoutMs: number,
    args: unknown,
  ): Promise<number> {
    const { id, tool } = req.params;
    const requestId = req.id;
    const origin = workerOrigin(runtime);
    const path = `/tools/${encodeURIComponent(tool)}`;
    const targetUrl = `${origin}${path}`;
    const json = wantsJson(req);
    const started = performance.now();
    const abort = new AbortController();
    const onClientGone = () => {
      if (!reply.raw.writableEnded) abort.abort();
    };
    reply.raw.once('close', onClientGone);
    // A client that left during validation or a wake already fired 'close': do not run the call for nobody.
    if (reply.raw.destroyed || req.raw.socket.destroyed) abort.abort();
    log.info(
      { event: 'tool.call.proxy.start', request_id: requestId, server: id, tool, target_url: targetUrl },
      'proxying',
    );

    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: json ? 'application/json' : 'text/event-stream',
      'x-request-id': requestId,
    };
    const traceparent = req.headers.traceparent;
    if (typeof traceparent === 'string') headers.traceparent = traceparent;

    let upstream: Awaited<ReturnType<Agent['request']>>;
    try {
      upstream = await agent.request({
        origin,
        path,
        method: 'POST',
        // The credential goes on the request only: `headers` is also used for the answer below.
        headers: { ...headers, ...workerAuth(runtime) },
        body: rawBodies.get(req) ?? JSON.stringify(args),
        signal: abort.signal,
        headersTimeout: timeoutMs + HEADERS_GRACE_MS,
        bodyTimeout: 0, // a long call streams nothing for minutes but keep-alive comments
      });
    } catch (err) {
      if (abort.signal.aborted) {
        reply.hijack();
        return 0;
      }
      const timedOut = err instanceof undiciErrors.HeadersTimeoutError;
      throw new AppError(
        timedOut ? 'tool_timeout' : 'worker_unavailable',
        timedOut ? `${id}/${tool} did not answer within ${timeoutMs} ms` : `the worker of "${id}" is unreachable`,
        undefined,
        { cause: err },
      );
    }

    reply.hijack();
    const res = reply.raw;
    const contentType = String(upstream.headers['content-type'] ?? 'application/json');
    const streaming = contentType.startsWith('text/event-stream');
    const answerHeaders: Record<string, string | string[]> = {
      ...(reply.getHeaders() as Record<string, string | string[]>),
      'content-type': contentType,
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      'x-request-id': requestId,
    };
    if (upstream.headers['retry-after']) answerHeaders['retry-after'] = String(upstream.headers['retry-after']);
    let status = upstream.statusCode;
    try {
      await relayBody(res, status, answerHeaders, upstream.body, streaming);
    } catch (err) {
      if (!abort.signal.aborted) {
        status = 0;
        log.warn(
          {
            event: 'tool.call.failed',
            request_id: requestId,
            server: id,
            tool,
            error: (err as Error).message,
            code: 'worker_unavailable',
            traceback: (err as Error).stack,
          },
          'worker went away mid-call',
        );
        const message = `the worker of "${id}" went away during the call`;
        if (streaming) {
          res.write(sseEvent('error', { request_id: requestId, code: 'worker_unavailable', message }));
        } else if (!res.headersSent) {
          const failure = new AppError('worker_unavailable', message);
          res.writeHead(failure.statusCode, {
            ...headers,
            'content-type': 'application/json',
            'retry-after': RETRY_AFTER_S,
          });
          res.write(JSON.stringify(errorBody(failure, requestId)));
        }
      }
    } finally {
      res.off('close', onClientGone);
      if (!res.writableEnded) res.end();
    }
    log.info(
      {
        event: 'tool.call.proxy.done',
        request_id: requestId,
        server: id,
        tool,
        target_url: targetUrl,
        status,
        latency: Math.round((performance.now() - started) * 100) / 100,
        cancelled: abort.signal.aborted || undefined,
      },
      'proxied',
    );
    return status;
  }
}
