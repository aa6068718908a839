import {
  AppError,
  type Logger,
  markLogged,
  type RuntimeRecord,
  SLUG_RE,
  spanName,
  TRACE_ATTR,
  type Tracer,
  type TraceSpan,
  toolCallAttributes,
  traceFields,
  validTraceparent,
  workerToolPath,
} from '@mcp-hub/shared';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CallGuard } from '../access/call-guard.js';
import { StreamAnswer } from '../http/stream-answer.js';
import type { HubMetrics } from '../metrics/hub-metrics.js';
import type { RegistryCache } from '../registry-cache.js';
import type { EndpointAccess } from '../routing/endpoint-access.js';
import type { GroupForRouting, GroupRouter, MemberView, RouteDecision } from '../routing/router.js';
import { toolAllowed } from '../routing/tool-filter.js';
import type { GroupStore } from '../stores/group-store.js';
import { type WorkerClient, workerOrigin } from '../workers/worker-client.js';
import { safeToRepeat, type WorkerLocator } from '../workers/worker-locator.js';

export interface ToolCallRoutesOptions {
  cache: RegistryCache;
  workers: WorkerLocator;
  client: WorkerClient;
  guard: CallGuard;
  log: Logger;
  /** Counts each call at the edge and on the hop to the worker (HUB_METRICS); unset: not counted. */
  metrics?: HubMetrics;
  /** Traces each call (a server span, a client span for the hop to the worker); unset: tracing is off. */
  tracer?: Tracer;
  /** Calls through server groups (`POST /api/projects/:pid/groups/:gid/tools/:tool`); unset: not routed. */
  groups?: {
    store: GroupStore;
    router: GroupRouter;
    /** What the router needs of each member for a call of `tool` (from the registry cache). */
    members(group: GroupForRouting, tool: string): Promise<Map<string, MemberView>>;
    endpoints: EndpointAccess;
  };
}

/** Longest tool name a call through a group may name. */
const MAX_TOOL_NAME = 256;

/** The label of a server or tool a call named that does not exist. */
const UNKNOWN = '(unknown)';

/** Client request headers passed on to the worker (distributed tracing), when the hub does not trace itself. */
const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

function wantsJson(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/event-stream');
}

/**
 * `POST /mcp/:id/:tool`: validate the arguments against the tool's schema, find the server's worker, and
 * answer its events as an event stream (or one JSON body). Registry data comes from the in-process cache; the
 * hop to the worker is the hub's WorkerClient (docs/adr/0002-hub-to-worker-hop.md).
 */
export async function toolCallRoutes(app: FastifyInstance, opts: ToolCallRoutesOptions): Promise<void> {
  const { cache, workers, client, guard, log, metrics, tracer } = opts;
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
    (req, reply) => handleCall(req, reply, req.params.id, req.params.tool),
  );

  if (opts.groups) {
    const { store: groups, router, members, endpoints } = opts.groups;
    // A call through a server group: its rules pick the member (routing/router.ts), then it is a call of that
    // server's tool like the one above (arguments checked, limits and usage per server, SSE or JSON answer).
    app.post<{ Params: { pid: string; gid: string; tool: string } }>(
      '/api/projects/:pid/groups/:gid/tools/:tool',
      { config: { logRequest: false } },
      (req, reply) => {
        const { pid, gid, tool } = req.params;
        return routedCall(req, reply, tool, `${pid}/${gid}`, async () => {
          if (!SLUG_RE.test(gid)) throw new AppError('group_not_found', `group "${gid}" not found`);
          return { group: await groups.forCall(pid, gid) };
        });
      },
    );

    // A call through a connection endpoint (`/e/<token>/tools/<tool>`): the endpoint's group, or every server of its
    // project, routed the same way; only keys bound to it (and the admin) may use it.
    app.post<{ Params: { token: string; tool: string } }>(
      '/e/:token/tools/:tool',
      { config: { logRequest: false } },
      async (req, reply) => {
        // Refusals (an unknown token, an unbound key) are logged like any failed call, under `endpoint`: never the token.
        return routedCall(req, reply, req.params.tool, 'endpoint', async () => {
          const endpoint = await endpoints.authorize(req.params.token, req.principal);
          const filter = endpoint.tools;
          return {
            group: await endpoints.routing(endpoint),
            name: `endpoint:${endpoint.id}`,
            ...(filter ? { allows: (server: string, name: string) => toolAllowed(filter, server, name) } : {}),
          };
        });
      },
    );

    /** Lets `router` pick the server for a call of `tool` among what `target` resolves to, then calls it. */
    const routedCall = async (
      req: FastifyRequest,
      reply: FastifyReply,
      tool: string,
      named: string,
      target: () => Promise<{
        group: GroupForRouting;
        name?: string;
        /** The endpoint's tool filter: a tool it denies is no tool of that server here. */
        allows?: (server: string, tool: string) => boolean;
      }>,
    ) => {
      let name = named;
      let decision: RouteDecision;
      let group: GroupForRouting;
      try {
        const resolved = await target();
        group = resolved.group;
        name = resolved.name ?? name;
        // Names past this length are no tool of any server (and would only cost the rules' matching).
        if (tool.length > MAX_TOOL_NAME) throw new AppError('tool_not_found', `no tool "${tool.slice(0, 64)}…"`);
        const found = await members(group, tool);
        const allows = resolved.allows;
        const visible = allows
          ? new Map([...found].map(([id, m]) => [id, { ...m, hasTool: (n: string) => m.hasTool(n) && allows(id, n) }]))
          : found;
        decision = router.decide(group, { tool, args: req.body ?? {} }, visible);
        if (decision.server === undefined || decision.tool === undefined) {
          if (decision.candidates.every((c) => !c.hasTool)) {
            throw new AppError('tool_not_found', `no server of "${name}" has a tool "${tool}"`);
          }
          throw new AppError('worker_unavailable', `no server of "${name}" can serve "${tool}" now`, {
            candidates: decision.candidates.map(({ id, status }) => ({ id, status })),
          });
        }
      } catch (err) {
        if (err instanceof AppError) {
          log.warn(
            {
              event: 'tool.call.failed',
              request_id: req.id,
              group: name,
              tool: tool.slice(0, 256),
              error: err.message,
              code: err.code,
            },
            'tool call failed',
          );
          markLogged(err);
        }
        throw err;
      }
      return handleCall(req, reply, decision.server, decision.tool, { group: name, rule: decision.rule });
    };
  }

  /**
   * One call of server `id`'s tool `tool`: validate the arguments against the tool's schema, find the server's
   * worker, and answer its events as an event stream (or one JSON body). `via` names the group (and rule) that
   * chose the server, for the log.
   */
  async function handleCall(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    tool: string,
    via?: { group: string; rule: string | undefined },
  ): Promise<FastifyReply> {
    const requestId = req.id;
    const args = req.body ?? {};
    const stream = wantsJson(req) ? undefined : new StreamAnswer(reply, log);
    const started = performance.now();
    // Label values only for what exists: a client cannot mint series by naming servers or tools.
    const labels = { server: UNKNOWN, tool: UNKNOWN };
    let errorType: string | undefined;
    const streamClosed = stream && metrics?.streamOpened();
    // The client's traceparent (when valid) is the parent; the name gets its tool once the tool is known.
    const span = tracer?.start(
      'tools/call',
      'server',
      toolCallAttributes(requestId, undefined, true),
      validTraceparent(req.headers.traceparent),
    );
    log.info(
      {
        event: 'tool.call.accepted',
        request_id: requestId,
        ...traceFields(span),
        server: id,
        tool,
        ...(via ? { group: via.group, rule: via.rule } : {}),
        args_size: Number(req.headers['content-length'] ?? 0),
      },
      'tool call accepted',
    );
    try {
      if (typeof args !== 'object' || Array.isArray(args) || args === null) {
        throw new AppError('invalid_arguments', 'the body must be a JSON object of tool arguments');
      }
      const spec = SLUG_RE.test(id) ? await cache.server(id) : null;
      if (!spec) throw new AppError('server_not_found', `server "${id}" not found`);
      labels.server = id;
      span?.set(TRACE_ATTR.hubServer, id);
      let [cached, runtime] = await Promise.all([cache.tool(id, tool), cache.runtime(id)]);
      if (!cached && runtime?.status !== 'running' && (await cache.toolCount(id)) === 0) {
        // Before a worker first ran, a server's tools are unknown: that is "not yet", not "no such tool". The
        // call waits for the worker (which lists its tools before it runs), then looks again.
        runtime = await workers.running(id, { known: runtime, timeoutMs: spec.timeoutMs, requestId });
        cached = await cache.tool(id, tool);
      }
      if (!cached) throw new AppError('tool_not_found', `server "${id}" has no tool "${tool}"`);
      labels.tool = tool;
      if (span) {
        span.rename(spanName('tools/call', tool));
        span.set(TRACE_ATTR.tool, tool);
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
        const answered = await workers.withWorker(
          id,
          (worker) => answer(req, reply, id, tool, worker, spec.timeoutMs, args, stream, span),
          {
            known: runtime,
            timeoutMs: spec.timeoutMs,
            requestId,
            ...(safeToRepeat(cached.tool) ? { repeatableTool: tool } : {}),
          },
        );
        status = answered.status;
        if (answered.isError) errorType = 'tool_error';
        else if (status === 0) errorType = 'cancelled';
      } finally {
        done(status >= 200 && status < 400);
      }
      return reply;
    } catch (err) {
      errorType = err instanceof AppError ? err.code : 'internal';
      // An expected failure (503 worker_unavailable, 429 rate_limited, 4xx) is this one warn line without a
      // stack; anything else is a bug, logged at error with its stack by the error handler.
      if (err instanceof AppError) {
        log.warn(
          {
            event: 'tool.call.failed',
            request_id: requestId,
            ...traceFields(span),
            server: id,
            tool,
            error: err.message,
            code: err.code,
          },
          'tool call failed',
        );
        markLogged(err);
      }
      // The client already has an event stream: the failure is its last event.
      if (stream?.started) return stream.fail(err);
      throw err;
    } finally {
      span?.end(errorType);
      if (streamClosed) streamClosed();
      metrics?.operation({
        method: 'tools/call',
        tool: labels.tool,
        server: labels.server,
        transport: 'rest',
        errorType,
        seconds: (performance.now() - started) / 1000,
      });
    }
  }

  /**
   * Sends the call to a worker and answers the client. The hub reads the worker's event stream itself (with
   * `dispatched` events, so a call the upstream never had can be sent again to the worker's successor) and
   * answers one JSON body, or, for a client that takes an event stream, its own stream: opened when the first
   * worker's stream starts and kept open across such a resend, so the client sees one stream of progress and
   * one result whichever worker ran the call. Failures before an answer started are thrown for the error
   * handler (the one error shape with its status); `StreamAnswer.fail` ends a stream that had started.
   */
  /** Resolves the worker's status (0 when there was none) and whether the result was a tool error. */
  async function answer(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    tool: string,
    runtime: RuntimeRecord,
    timeoutMs: number,
    args: unknown,
    stream: StreamAnswer | undefined,
    span: TraceSpan | undefined,
  ): Promise<{ status: number; isError: boolean }> {
    const requestId = req.id;
    // One client span per hop: a call resent to a worker's successor has two.
    const hop = span?.child(spanName('tools/call', tool), 'client', {
      [TRACE_ATTR.method]: 'tools/call',
      [TRACE_ATTR.tool]: tool,
      [TRACE_ATTR.hubServer]: id,
      [TRACE_ATTR.serverAddress]: runtime.host,
      [TRACE_ATTR.serverPort]: runtime.port,
    });
    const proxied = proxyLines(req, id, tool, runtime, span);
    const clientGone = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableEnded) clientGone.abort();
    };
    reply.raw.once('close', onClose);
    if (reply.raw.destroyed || req.raw.socket.destroyed) clientGone.abort();
    let status = 0;
    let isError = false;
    const hopStarted = performance.now();
    try {
      const result = await client.callTool({
        target: { serverId: id, runtime },
        tool,
        args,
        body: rawBodies.get(req),
        headers: req.headers,
        forwardHeaders: TRACE_HEADERS,
        traceparent: hop?.traceparent,
        requestId,
        signal: clientGone.signal,
        timeoutMs,
        ...(stream && {
          onStream: () => stream.open(),
          onProgress: (progress) => stream.open().send('progress', { request_id: requestId, ...progress }),
        }),
      });
      status = 200;
      isError = result.isError;
      hop?.end(isError ? 'tool_error' : undefined);
      metrics?.clientOperation(
        'tools/call',
        id,
        (performance.now() - hopStarted) / 1000,
        isError ? 'tool_error' : undefined,
      );
      if (stream) stream.open().finish('result', { request_id: requestId, ...result });
      else {
        reply.header('cache-control', 'no-cache').header('x-accel-buffering', 'no');
        await reply.code(status).send({ request_id: requestId, ...result });
      }
    } catch (err) {
      const errorType = err instanceof AppError ? err.code : 'internal';
      hop?.end(errorType, err instanceof Error ? err.message : undefined);
      metrics?.clientOperation('tools/call', id, (performance.now() - hopStarted) / 1000, errorType);
      if (!clientGone.signal.aborted) throw err;
      // Nobody to answer: the worker saw the disconnect and cancelled the call upstream.
      if (!stream?.started) reply.hijack();
      if (!reply.raw.writableEnded) reply.raw.end();
    } finally {
      reply.raw.off('close', onClose);
    }
    proxied(status, clientGone.signal.aborted);
    return { status, isError };
  }

  /** Logs `tool.call.proxy.start` now; the function it returns logs `tool.call.proxy.done` with the outcome. */
  function proxyLines(
    req: FastifyRequest,
    id: string,
    tool: string,
    runtime: RuntimeRecord,
    span: TraceSpan | undefined,
  ) {
    const fields = {
      request_id: req.id,
      ...traceFields(span),
      server: id,
      tool,
      target_url: `${workerOrigin(runtime)}${workerToolPath(tool)}`,
    };
    const started = performance.now();
    log.info({ event: 'tool.call.proxy.start', ...fields }, 'proxying');
    return (status: number, cancelled: boolean) =>
      log.info(
        {
          event: 'tool.call.proxy.done',
          ...fields,
          status,
          latency: Math.round((performance.now() - started) * 100) / 100,
          cancelled: cancelled || undefined,
        },
        'proxied',
      );
  }
}
