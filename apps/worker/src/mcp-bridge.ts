import { randomUUID } from 'node:crypto';
import {
  AppError,
  isRequestId,
  type Logger,
  metaTraceparent,
  REQUEST_ID_HEADER,
  spanName,
  TRACE_ATTR,
  type Tracer,
  toolCallAttributes,
  validTraceparent,
} from '@mcp-hub/shared';
import {
  type InputFlows,
  type McpFrontServerFactory,
  type McpServerContext,
  type ProgressUpdate,
  progressSender,
  type RoundNotifier,
} from '@mcp-hub/shared/mcp-front';
import {
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  LOG_LEVEL_META_KEY,
  type LoggingLevel,
  ProtocolError,
  ProtocolErrorCode,
  Server,
  type ServerCapabilities,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import { bridgeSession, handlePerSession } from './bridge-session.js';
import type { CallRunner } from './call-runner.js';
import type { Subscriber } from './client-fanout.js';
import type { WorkerGate } from './http-server.js';
import { PASSTHROUGH_METHODS, type PassthroughMethod, type UpstreamFeatures } from './upstream/upstream.js';
import type { UpstreamLink, UpstreamLinks } from './upstream-links.js';

export interface McpBridgeDeps {
  /** What downstream clients see as the server's name (the server id) and version. */
  serverInfo: { name: string; version: string };
  /** The worker's upstream sessions: one shared, or one per client. */
  links: UpstreamLinks;
  runner: CallRunner;
  gate: WorkerGate;
  log: Logger;
  /** Deadline of a forwarded request that is not a tool call (resources, prompts, completion), in milliseconds. */
  requestTimeoutMs: number;
  /** Requests that wait on their client across rounds (`input_required`). */
  flows: InputFlows;
  /** Traces tool calls (tracing on); unset: tracing is off. */
  tracer?: Tracer;
}

const FEATURE_OF: Record<PassthroughMethod, keyof UpstreamFeatures> = {
  'resources/list': 'resources',
  'resources/read': 'resources',
  'resources/templates/list': 'resources',
  'prompts/list': 'prompts',
  'prompts/get': 'prompts',
  'completion/complete': 'completions',
  'logging/setLevel': 'logging',
  'resources/subscribe': 'resourceSubscriptions',
  'resources/unsubscribe': 'resourceSubscriptions',
};

/** Forwarded requests that the upstream may answer only after asking its client (they serve `input_required`). */
const INTERACTIVE: ReadonlySet<PassthroughMethod> = new Set(['prompts/get', 'resources/read']);
/** Handled per downstream session (bridge-session.ts), not forwarded as they are. */
const PER_SESSION: ReadonlySet<PassthroughMethod> = new Set([
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
]);

/** Rounds of questions one request may take (the SDK's 2025 shim stops at 8 by default). */
const MAX_INPUT_ROUNDS = 64;

type Operation = (link: UpstreamLink, signal: AbortSignal, onProgress: (p: ProgressUpdate) => void) => Promise<unknown>;

/**
 * The server factory behind the worker's MCP endpoints: one low-level Server per downstream session (2025
 * eras) or request (2026-07-28), each with its own JSON-RPC id space, forwarding to the worker's upstream
 * session (or, in `per-client` mode, the client's own). Tool calls go through the call runner, so they are
 * logged, timed out and counted as on `POST /tools/:tool`. What the upstream asks its client goes to the
 * downstream client whose call caused it (client-requests.ts), as `input_required` rounds (shared mcp-front/input-flows.ts)
 * that the SDK turns into real requests for 2025 sessions.
 */
export function createBridgeServerFactory(deps: McpBridgeDeps): McpFrontServerFactory {
  return (ctx) => createBridgeServer(deps, ctx);
}

function createBridgeServer(deps: McpBridgeDeps, ctx: McpServerContext): Server {
  const { links, runner, gate, flows } = deps;
  const features = links.primary.upstream.features();
  const capabilities: ServerCapabilities = { tools: { listChanged: true } };
  if (features.resources) {
    capabilities.resources = { listChanged: true, ...(features.resourceSubscriptions ? { subscribe: true } : {}) };
  }
  if (features.prompts) capabilities.prompts = { listChanged: true };
  if (features.completions) capabilities.completions = {};
  if (features.logging) capabilities.logging = {};
  const server = new Server(deps.serverInfo, {
    capabilities,
    requestState: { verify: flows.codec.verify },
    inputRequired: { maxRounds: MAX_INPUT_ROUNDS },
  });
  const caller = typeof ctx.auth === 'string' ? ctx.auth : '';
  const session = ctx.era === 'legacy' ? bridgeSession(links, server) : undefined;
  /** Which upstream session serves this client: its 2025 session's, or its principal's for 2026 requests. */
  const linkOwner = session?.owner ?? `caller:${caller}`;

  /** What the client of this request can answer: its session's capabilities, or the request's envelope. */
  const capabilitiesOf = (rc: ServerContext): ClientCapabilities | undefined =>
    session
      ? server.getClientCapabilities()
      : (envelopeField(rc, CLIENT_CAPABILITIES_META_KEY) as ClientCapabilities | undefined);

  /** Runs `operation` on the client's upstream as a flow whose questions go to this request's client. */
  const interactive = (rc: ServerContext, operation: Operation) => {
    const logLevel = session ? undefined : (envelopeField(rc, LOG_LEVEL_META_KEY) as LoggingLevel | undefined);
    return flows.round(rc, caller, session?.owner, capabilitiesOf(rc), async (channel, signal, onProgress, notify) => {
      const { link, release } = await links.acquire(linkOwner, !session);
      session?.attach(link);
      const leave = link.router.enterCall(channel);
      session?.calls.add(rc);
      const stopLogs = logLevel ? await listenToLogs(link, logLevel, notify) : undefined;
      try {
        return await operation(link, signal, onProgress);
      } finally {
        stopLogs?.();
        session?.calls.delete(rc);
        leave();
        release();
      }
    });
  };

  server.setRequestHandler('tools/list', async () => ({ tools: gate.tools() as Tool[] }));

  server.setRequestHandler('tools/call', async (request, rc) => {
    const { name, arguments: args = {} } = request.params;
    try {
      gate.admit(name);
    } catch (error) {
      throw toProtocolError(error);
    }
    const requestId = requestIdOf(rc, ctx);
    // The parent: the hub's hop (its `traceparent` header), else the message's `_meta` (a hub→worker session).
    const parent =
      validTraceparent(rc.http?.req?.headers.get('traceparent') ?? undefined) ?? metaTraceparent(request.params);
    const span = deps.tracer?.start(
      spanName('tools/call', name),
      'server',
      { ...toolCallAttributes(requestId, name), [TRACE_ATTR.session]: session ? rc.sessionId : undefined },
      parent,
    );
    try {
      const result = await interactive(rc, async (link, signal, onProgress) => {
        const outcome = await runner.run({
          tool: name,
          args: args as Record<string, unknown>,
          requestId,
          clientSignal: signal,
          onProgress,
          upstream: link.upstream,
          span,
          traceparent: span ? undefined : parent,
        });
        if (outcome.kind === 'result') return outcome.result;
        if (outcome.kind === 'cancelled') {
          throw new ProtocolError(ProtocolErrorCode.InternalError, 'the request was cancelled');
        }
        throw toProtocolError(outcome.error);
      });
      // What this round answers (a round asking the client for input is no failure): later rounds of one call
      // come back through here with the flow's outcome, so the type is read from the answer, not the operation.
      span?.end((result as { isError?: unknown }).isError === true ? 'tool_error' : undefined);
      return result as never;
    } catch (error) {
      span?.end(protocolErrorType(error));
      throw error;
    }
  });

  for (const method of PASSTHROUGH_METHODS) {
    if (!features[FEATURE_OF[method]]) continue;
    if (PER_SESSION.has(method)) {
      if (session) handlePerSession(session, server, method, toProtocolError);
      continue;
    }
    server.setRequestHandler(method, async (request, rc) => {
      const { _meta, ...params } = (request.params ?? {}) as Record<string, unknown>;
      const forward: Operation = async (link, signal, onProgress) => {
        try {
          return await link.upstream.request(method, params, { signal, onProgress, timeoutMs: deps.requestTimeoutMs });
        } catch (error) {
          if (signal.aborted) throw new ProtocolError(ProtocolErrorCode.InternalError, 'cancelled');
          throw toProtocolError(error);
        }
      };
      if (INTERACTIVE.has(method)) return (await interactive(rc, forward)) as never;
      const { link, release } = await links.acquire(linkOwner, !session);
      try {
        session?.attach(link);
        const onProgress = progressSender(rc);
        return (await forward(link, rc.mcpReq.signal, (p) => onProgress?.(p))) as never;
      } finally {
        release();
      }
    });
  }
  if (session) {
    server.setNotificationHandler('notifications/roots/list_changed', () => session.rootsChanged());
  }
  return server;
}

/**
 * A 2026-07-28 request that names a log level in its envelope hears the upstream's log messages at that
 * level on its own stream while it runs.
 */
async function listenToLogs(link: UpstreamLink, level: LoggingLevel, notify: RoundNotifier): Promise<() => void> {
  if (!link.upstream.features().logging) return () => {};
  const listener: Subscriber = {
    owner: `request:${randomUUID()}`,
    logLevel: undefined,
    uris: new Set(),
    notify,
  };
  link.fanout.add(listener);
  await link.fanout.setLevel(listener, level).catch(() => {});
  return () => link.fanout.remove(listener);
}

/** One reserved key of a 2026-07-28 request's `_meta` envelope (the SDK types the envelope as opaque). */
function envelopeField(rc: ServerContext, key: string): unknown {
  return (rc.mcpReq.envelope as Record<string, unknown> | undefined)?.[key];
}

/** The request id of the HTTP request that carries this call (set by the hub), else a new one. */
function requestIdOf(rc: ServerContext, ctx: McpServerContext): string {
  const given = rc.http?.req?.headers.get(REQUEST_ID_HEADER);
  if (given && isRequestId(given)) return given;
  // A 2026-07-28 instance serves one request: the one whose id the factory was given.
  if (ctx.era === 'modern' && ctx.requestId) return ctx.requestId;
  return randomUUID();
}

/** The `error.type` of a failed request: the worker's code (tool_timeout, upstream_error…), else the JSON-RPC code. */
function protocolErrorType(error: unknown): string {
  if (!ProtocolError.isInstance(error)) return 'internal';
  const code = (error.data as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : `rpc_${error.code}`;
}

/** An upstream's JSON-RPC error keeps its code; the worker's own failures become internal errors naming their code. */
function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof AppError) {
    const { rpcCode, rpcData } = (error.details ?? {}) as { rpcCode?: unknown; rpcData?: unknown };
    if (typeof rpcCode === 'number') return new ProtocolError(rpcCode, error.message, rpcData);
    if (error.code === 'tool_not_found' || error.code === 'invalid_arguments') {
      return new ProtocolError(ProtocolErrorCode.InvalidParams, error.message, { code: error.code });
    }
    return new ProtocolError(ProtocolErrorCode.InternalError, error.message, { code: error.code });
  }
  return new ProtocolError(ProtocolErrorCode.InternalError, 'internal error', { code: 'internal_error' });
}
