import { timingSafeEqual } from 'node:crypto';
import {
  AppError,
  type Logger,
  MESSAGES_PATH_HEADER,
  MESSAGES_PATH_RE,
  markLogged,
  parseOrThrow,
  REQUEST_ID_HEADER,
  registerErrorHandling,
  requestIdFrom,
  SseStream,
  spanName,
  type ToolInput,
  type ToolResultEvent,
  type Tracer,
  toolCallAttributes,
  validTraceparent,
  WORKER_CALLER_HEADER,
  WORKER_DISPATCH_HEADER,
  WORKER_ROUTES,
  WORKER_TOKEN_HEADER,
  type WorkerHealth,
  WorkerSessionsCloseBodySchema,
} from '@mcp-hub/shared';
import type { McpFront } from '@mcp-hub/shared/mcp-front';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import { type CallRunner, outcomeError } from './call-runner.js';

import type { ToolResult } from './upstream/upstream.js';

/** Tool arguments can be large (documents, images as base64); the hub applies its own, smaller limit first. */
export const MAX_ARGUMENTS_BYTES = 16 * 1024 * 1024;

/** What the HTTP layer asks of the worker. */
export interface WorkerGate {
  /** The `/healthz` body; `ok` says whether it answers 200. */
  health(): { ok: boolean; body: WorkerHealth };
  tools(): readonly ToolInput[];
  /** Throws AppError `tool_not_found` or `worker_unavailable` when this call cannot start. */
  admit(tool: string): void;
}

export interface HttpServerDeps {
  log: Logger;
  /** The credential every request must carry in WORKER_TOKEN_HEADER (from the supervisor, per run). */
  token: string;
  gate: WorkerGate;
  runner: CallRunner;
  /** Interval of SSE keep-alive comments, in milliseconds. */
  keepAliveIntervalMs: number;
  /** Serves the standard MCP endpoints (`/mcp`, `/sse`, `/messages`); left out, they are not routed. */
  front?: McpFront;
  /** Traces each call (tracing on): a server span whose parent is the hub's hop (`traceparent`). */
  tracer?: Tracer;
}

/** Where legacy SSE clients post their messages when the hub does not say (MESSAGES_PATH_HEADER). */
export const DEFAULT_MESSAGES_PATH = WORKER_ROUTES.messages;

/**
 * Builds the worker's Fastify app (not listening) serving the routes of WORKER_ROUTES: `/healthz`,
 * `GET /tools`, `POST /tools/:tool`, `POST /sessions/close`, and with a front the MCP endpoints
 * `POST|GET|DELETE /mcp`, `GET /sse` and `POST /messages`.
 */
export function buildHttpServer(deps: HttpServerDeps): FastifyInstance {
  const { log, gate, runner } = deps;
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // The call path logs its own lines; one per request from Fastify would double them on the hot path.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestIdFrom,
    bodyLimit: MAX_ARGUMENTS_BYTES,
    return503OnClosing: true,
  });

  app.removeContentTypeParser('text/plain');
  // An empty body is an empty argument object: tools without arguments are called with no body at all.
  const parseJson = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, {});
    return parseJson(req, text, done);
  });
  registerErrorHandling(app, log);

  const tokenMatches = tokenChecker(deps.token);
  app.addHook('onRequest', async (req, reply) => {
    reply.header(REQUEST_ID_HEADER, req.id);
    // Every route, /healthz included: the worker listens on a predictable local port, and only the hub and
    // its supervisor hold the token. Its identity and load are nobody else's business either.
    if (!tokenMatches(req.headers[WORKER_TOKEN_HEADER])) {
      throw new AppError('unauthorized', 'this worker answers only its hub');
    }
  });

  app.get(WORKER_ROUTES.health, async (_req, reply) => {
    const { ok, body } = gate.health();
    return reply.code(ok ? 200 : 503).send(body);
  });

  app.get(WORKER_ROUTES.tools, async () => ({ tools: gate.tools() }));

  app.post<{ Params: { tool: string } }>(WORKER_ROUTES.toolCall, async (req, reply) => {
    const tool = req.params.tool;
    const args = req.body ?? {};
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      throw new AppError('invalid_arguments', 'the body must be a JSON object of arguments');
    }
    gate.admit(tool);
    const requestId = req.id;
    const client = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) client.abort();
    });
    const span = deps.tracer?.start(
      spanName('tools/call', tool),
      'server',
      toolCallAttributes(requestId, tool),
      validTraceparent(req.headers.traceparent),
    );
    const call = {
      tool,
      args: args as Record<string, unknown>,
      requestId,
      clientSignal: client.signal,
      span,
      traceparent: span ? undefined : validTraceparent(req.headers.traceparent),
    };

    if (wantsJson(req.headers.accept)) {
      const outcome = await runner.run(call);
      span?.end(outcomeError(outcome));
      // The runner logged it (tool.call.failed): the error handler does not log it again.
      if (outcome.kind === 'error') throw markLogged(outcome.error);
      if (outcome.kind === 'cancelled') return reply.hijack();
      return resultBody(requestId, outcome.result);
    }

    reply.hijack();
    const stream = new SseStream(reply.raw, { [REQUEST_ID_HEADER]: requestId }, deps.keepAliveIntervalMs);
    const outcome = await runner.run({
      ...call,
      onProgress: (p) =>
        stream.send('progress', { request_id: requestId, progress: p.progress, total: p.total, message: p.message }),
      ...(req.headers[WORKER_DISPATCH_HEADER] === '1'
        ? { onDispatch: () => stream.send('dispatched', { request_id: requestId }) }
        : {}),
    });
    span?.end(outcomeError(outcome));
    // The last event and the end of the stream leave in one write.
    if (outcome.kind === 'result') stream.finish('result', resultBody(requestId, outcome.result));
    else if (outcome.kind === 'error') {
      const { code, message, details } = outcome.error;
      stream.finish('error', {
        request_id: requestId,
        code,
        message,
        ...(details === undefined ? {} : { details }),
        ...(outcome.lost ? { lost: true } : {}),
      });
    } else stream.end();
    if (stream.droppedProgress > 0) {
      deps.log.info(
        { event: 'tool.call.progress_dropped', request_id: requestId, tool, dropped: stream.droppedProgress },
        'dropped progress events for a client that read too slowly',
      );
    }
  });

  const front = deps.front;
  // The hub ends the sessions of a key that no longer authenticates: it could not use them (the hub checks
  // every request), but they would hold their slots of the session caps and their streams until idle.
  app.post(WORKER_ROUTES.sessionsClose, async (req) => {
    const { caller } = parseOrThrow(WorkerSessionsCloseBodySchema, req.body, 'session close request');
    const closed = front ? await front.closeSessions((auth) => auth === caller, 'caller_closed') : 0;
    log.info({ event: 'mcp.session.caller_closed', caller, sessions: closed }, 'ended the MCP sessions of a caller');
    return { closed };
  });

  if (front) {
    // The front writes the raw response itself (streams, SDK status codes); Fastify only parsed the body.
    app.route({
      method: ['POST', 'GET', 'DELETE'],
      url: WORKER_ROUTES.mcp,
      handler: async (req, reply) => {
        reply.hijack();
        await front.handleMcp(req.raw, reply.raw, req.method === 'POST' ? req.body : undefined, callerOf(req));
      },
    });
    app.get(WORKER_ROUTES.sse, async (req, reply) => {
      const given = req.headers[MESSAGES_PATH_HEADER];
      const messagesPath = typeof given === 'string' && MESSAGES_PATH_RE.test(given) ? given : DEFAULT_MESSAGES_PATH;
      reply.hijack();
      await front.handleSse(req.raw, reply.raw, messagesPath, callerOf(req));
    });
    app.post(WORKER_ROUTES.messages, async (req, reply) => {
      reply.hijack();
      await front.handleMessages(req.raw, reply.raw, req.body, callerOf(req));
    });
  }

  return app;
}

/**
 * A constant-time check of a presented token: the comparison's time does not tell a caller how much of a
 * guess was right. Only the length can differ in time, and it is no secret (the supervisor's tokens all
 * have the same length); hashing both sides to hide it cost ten times as much per request.
 */
export function tokenChecker(expected: string): (given: string | string[] | undefined) => boolean {
  const want = Buffer.from(expected, 'utf8');
  return (given) => {
    if (typeof given !== 'string') return false;
    const got = Buffer.from(given, 'utf8');
    return got.length === want.length && timingSafeEqual(got, want);
  };
}

/**
 * Who the hub says is calling (`x-mcp-hub-caller`: an API key id, or `admin`): an MCP session is bound to the
 * caller that opened it, so one caller cannot use another's session id.
 */
function callerOf(req: FastifyRequest): string | undefined {
  const caller = req.headers[WORKER_CALLER_HEADER];
  return typeof caller === 'string' ? caller : undefined;
}

/** JSON mode only when the client accepts JSON and not an event stream (the hub sends one or the other). */
function wantsJson(accept: string | undefined): boolean {
  return accept?.includes('application/json') === true && !accept.includes('text/event-stream');
}

function resultBody(requestId: string, result: ToolResult): ToolResultEvent {
  return {
    request_id: requestId,
    content: result.content,
    ...(result.structuredContent === undefined ? {} : { structuredContent: result.structuredContent }),
    isError: result.isError === true,
  };
}
