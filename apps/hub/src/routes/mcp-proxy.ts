import {
  AppError,
  keyCaller,
  type Logger,
  MCP_REQUEST_HEADERS,
  MESSAGES_PATH_HEADER,
  metaTraceparent,
  SLUG_RE,
  spanName,
  TRACE_ATTR,
  type Tracer,
  type TraceSpan,
  traceFields,
  validTraceparent,
  WORKER_ROUTES,
} from '@mcp-hub/shared';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CallGuard } from '../access/call-guard.js';
import type { Principal } from '../access/principal.js';
import { type HubMetrics, mcpTransport, methodLabel, statusError } from '../metrics/hub-metrics.js';
import type { RegistryCache } from '../registry-cache.js';
import type { RelayOutcome, WorkerClient } from '../workers/worker-client.js';
import type { WorkerLocator } from '../workers/worker-locator.js';

export interface McpProxyRoutesOptions {
  cache: RegistryCache;
  workers: WorkerLocator;
  client: WorkerClient;
  guard: CallGuard;
  log: Logger;
  /** Counts each POST as an MCP operation and each relayed stream (HUB_METRICS); unset: not counted. */
  metrics?: HubMetrics;
  /** Traces each POST (a server span, a client span for the hop to the worker); unset: tracing is off. */
  tracer?: Tracer;
  /**
   * Told when a key opens or uses an MCP session on a server's worker, so that the session can be ended there
   * once the key dies (the worker cannot tell a revoked key from a live one).
   */
  sessionUsed(keyId: string, serverId: string): void;
}

/** Time for a worker's response headers on the MCP endpoints: tool calls stream, so headers come at once. */
const HEADERS_TIMEOUT_MS = 30_000;

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An MCP transport endpoint: allowed browser origins get CORS answers (Origin is checked on every route). */
    mcp?: boolean;
  }
}

/** The body of a POST on an MCP endpoint, as the client sent it (the worker parses it). */
const rawBodies = new WeakMap<object, Buffer>();

/**
 * The JSON body parser of the MCP endpoints. Bodies go on byte for byte (kept in `rawBodies`), but only bodies the
 * hub itself could read: what it limits and counts (the tools/call messages) must be what the worker runs. A
 * leading byte-order mark is dropped first. Encapsulated: only the plugin that calls it parses this way.
 */
export function useMcpBodyParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let buffer = body as Buffer;
    if (buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf) buffer = buffer.subarray(3);
    rawBodies.set(req, buffer);
    if (buffer.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(buffer.toString('utf8')));
    } catch (err) {
      done(new AppError('invalid_json', `the body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });
}

/**
 * The per-server MCP endpoints, passed through to the server's worker, which holds the upstream session
 * and the downstream MCP sessions (docs/adr/0004-mcp-endpoints.md):
 * - `POST|GET|DELETE /mcp/:id`: Streamable HTTP, both the 2026-07-28 (stateless) and the 2025 (sessions) era;
 * - `GET /sse/:id` and `POST /messages/:id?sessionId=…`: the legacy HTTP+SSE transport.
 */
export async function mcpProxyRoutes(app: FastifyInstance, opts: McpProxyRoutesOptions): Promise<void> {
  const { cache, workers, client, guard, log, metrics, tracer } = opts;

  useMcpBodyParser(app);

  async function serverOf(req: IdRequest): Promise<string> {
    const { id } = req.params;
    const spec = SLUG_RE.test(id) ? await cache.server(id) : null;
    if (!spec || spec.enabled === false) throw new AppError('server_not_found', `server "${id}" not found`);
    return id;
  }

  async function pass(req: IdRequest, reply: FastifyReply, path: string, headers?: Record<string, string>) {
    const observe = metrics && observeMcp(metrics, req, reply, path !== WORKER_ROUTES.mcp);
    const span = tracer && req.method === 'POST' ? traceMcp(tracer, req, reply) : undefined;
    const id = await serverOf(req);
    span?.set(TRACE_ATTR.hubServer, id);
    if (observe || span) {
      if (observe) observe.server = id;
      const [name, ...more] = toolCallsOf(req.body);
      if (name !== undefined && more.length === 0 && (await cache.tool(id, name))) {
        if (observe) observe.tool = name;
        if (span) {
          span.rename(spanName('tools/call', name));
          span.set(TRACE_ATTR.tool, name);
        }
      }
    }
    // Every tools/call (each of a batch) is limited and counted like a call on the REST route.
    const dones: ((ok: boolean) => void)[] = [];
    const done = (ok: boolean) => {
      for (const d of dones) d(ok);
    };
    try {
      for (const name of toolCallsOf(req.body)) {
        // Names the server does not have are counted under one name, so clients cannot grow usage records.
        const tool = (await cache.tool(id, name)) ? name : '(unknown)';
        dones.push(await guard.admit(req.principal, id, tool, reply));
      }
    } catch (err) {
      done(false);
      throw err;
    }
    if (req.principal.kind === 'key' && opensOrUsesSession(req, path)) opts.sessionUsed(req.principal.keyId, id);
    const started = performance.now();
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    const method = methodLabel(req.body);
    const hop = span?.child(spanName(method), 'client', { [TRACE_ATTR.method]: method, [TRACE_ATTR.hubServer]: id });
    const hopHeaders = hop ? { ...headers, traceparent: hop.traceparent } : headers;
    let outcome: RelayOutcome;
    try {
      outcome = await workers.withWorker(
        id,
        (runtime) =>
          client.relay(req, reply, {
            target: { serverId: id, runtime },
            path: `${path}${query}`,
            body: req.method === 'POST' ? (rawBodies.get(req) ?? '') : undefined,
            headers: hopHeaders,
            forwardHeaders: MCP_REQUEST_HEADERS,
            // The worker binds each MCP session to the caller that opened it.
            caller: callerId(req.principal),
            headersTimeoutMs: HEADERS_TIMEOUT_MS,
            // A GET is a standalone or legacy event stream: it lasts until someone ends it, so the hub ends it
            // when it closes rather than waiting for it.
            // So is a 2026-07-28 `subscriptions/listen`, whatever its content type (some servers send JSON lines).
            stream: req.method === 'GET' || rpcMethod(req.body) === 'subscriptions/listen',
          }),
        { requestId: req.id },
      );
    } catch (err) {
      hop?.end(err instanceof AppError ? err.code : 'internal');
      done(false);
      throw err;
    }
    hop?.end(outcome.error ? 'broken_answer' : statusError(outcome.status));
    done(outcome.status >= 200 && outcome.status < 400 && outcome.error === undefined);
    if (observe && outcome.error) observe.errorType = 'broken_answer';
    log.info(
      {
        event: 'mcp.proxy.done',
        request_id: req.id,
        ...traceFields(span),
        server: id,
        method: req.method,
        path,
        rpc_method: rpcMethod(req.body),
        session_id: req.headers['mcp-session-id'],
        status: outcome.status,
        cancelled: outcome.cancelled || undefined,
        error: outcome.error?.message,
        latency: Math.round((performance.now() - started) * 100) / 100,
      },
      'mcp request proxied',
    );
    return reply;
  }

  const config = { logRequest: false, mcp: true };
  for (const method of ['POST', 'GET', 'DELETE'] as const) {
    app.route<{ Params: { id: string } }>({
      method,
      url: '/mcp/:id',
      config,
      handler: (req, reply) => pass(req, reply, WORKER_ROUTES.mcp),
    });
  }
  app.get<{ Params: { id: string } }>('/sse/:id', { config }, (req, reply) =>
    pass(req, reply, WORKER_ROUTES.sse, { [MESSAGES_PATH_HEADER]: `/messages/${req.params.id}` }),
  );
  app.post<{ Params: { id: string } }>('/messages/:id', { config }, (req, reply) =>
    pass(req, reply, WORKER_ROUTES.messages),
  );
}

/** The caller a worker binds sessions to: the API key id, or `admin`. */
export function callerId(principal: Principal): string {
  return principal.kind === 'key' ? keyCaller(principal.keyId) : principal.kind;
}

/**
 * Whether a request on a per-server endpoint opens or uses a 2025-era session: anything on the legacy SSE
 * transport, and on `/mcp` an `initialize` or a request naming a session (2026-07-28 requests hold none).
 */
function opensOrUsesSession(req: FastifyRequest, path: string): boolean {
  if (path !== WORKER_ROUTES.mcp) return true;
  return req.headers['mcp-session-id'] !== undefined || rpcMethod(req.body) === 'initialize';
}

/** The tool names of the `tools/call` messages of a body (one message or a batch). */
export function toolCallsOf(body: unknown): string[] {
  const out: string[] = [];
  for (const message of Array.isArray(body) ? body : [body]) {
    if (!message || typeof message !== 'object' || (message as { method?: unknown }).method !== 'tools/call') continue;
    const name = (message as { params?: { name?: unknown } }).params?.name;
    out.push(typeof name === 'string' ? name : '');
  }
  return out;
}

/** The JSON-RPC method of a message (or the first of a batch), for logs. */
export function rpcMethod(body: unknown): string | undefined {
  const first = Array.isArray(body) ? body[0] : body;
  if (first && typeof first === 'object' && 'method' in first && typeof first.method === 'string') return first.method;
  return undefined;
}

/**
 * The server span of a POST on an MCP endpoint, named after its JSON-RPC method: its parent is the client's
 * `traceparent` header, else the message's `params._meta.traceparent` (the OpenTelemetry MCP conventions); it ends
 * with the answer, failed for a status of 400 or more.
 */
function traceMcp(tracer: Tracer, req: FastifyRequest, reply: FastifyReply): TraceSpan {
  const body = req.body;
  const message = Array.isArray(body) ? undefined : (body as { id?: unknown; params?: unknown } | undefined);
  const method = methodLabel(body);
  const session = req.headers['mcp-session-id'];
  const version = req.headers['mcp-protocol-version'];
  const rpcId = message?.id;
  const span = tracer.start(
    spanName(method),
    'server',
    {
      [TRACE_ATTR.method]: method,
      [TRACE_ATTR.session]: typeof session === 'string' ? session : undefined,
      [TRACE_ATTR.protocolVersion]: typeof version === 'string' ? version : undefined,
      [TRACE_ATTR.rpcRequestId]: typeof rpcId === 'string' || typeof rpcId === 'number' ? String(rpcId) : undefined,
      [TRACE_ATTR.networkTransport]: 'tcp',
      [TRACE_ATTR.networkProtocol]: 'http',
      [TRACE_ATTR.hubRequestId]: req.id,
    },
    validTraceparent(req.headers.traceparent) ?? metaTraceparent(message?.params),
  );
  const res = reply.raw;
  res.once('close', () => {
    const status = res.writableFinished ? res.statusCode : 0;
    if (status !== 0) span.set(TRACE_ATTR.httpStatus, status);
    span.end(statusError(status));
  });
  return span;
}

/** What an MCP exchange is counted under; filled in as the request is understood. */
export interface McpObservation {
  server: string;
  tool?: string;
  errorType?: string;
}

/**
 * Counts one request on an MCP endpoint when its answer ends: a POST as an operation of its JSON-RPC method
 * (`mcp_server_operation_duration_seconds`; a status of 400 or more is its error), a GET as an open event stream
 * while it lasts. The server label stays `(unknown)` until the route found the server.
 */
export function observeMcp(metrics: HubMetrics, req: FastifyRequest, reply: FastifyReply, legacy: boolean) {
  const observation: McpObservation = { server: '(unknown)' };
  const started = performance.now();
  const res = reply.raw;
  if (req.method === 'GET') {
    res.once('close', metrics.streamOpened());
    return observation;
  }
  if (req.method !== 'POST') return observation;
  const method = methodLabel(req.body);
  const transport = mcpTransport(req.headers, legacy);
  res.once('close', () => {
    metrics.operation({
      method,
      tool: method === 'tools/call' ? (observation.tool ?? '(unknown)') : undefined,
      server: observation.server,
      transport,
      errorType: observation.errorType ?? statusError(res.writableFinished ? res.statusCode : 0),
      seconds: (performance.now() - started) / 1000,
    });
  });
  return observation;
}
