import { randomUUID } from 'node:crypto';
import { AppError, isRequestId, type Logger, REQUEST_ID_HEADER } from '@mcp-hub/shared';
import {
  type McpFrontServerFactory,
  type McpServerContext,
  type ProgressUpdate,
  progressSender,
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
import type { CallRunner } from './call-runner.js';
import type { ClientFanout, Subscriber } from './client-fanout.js';
import type { ClientChannel, ClientRequestRouter } from './client-requests.js';
import type { InputFlows } from './input-flows.js';
import type { WorkerGate } from './http-server.js';
import {
  PASSTHROUGH_METHODS,
  type PassthroughMethod,
  type Upstream,
  type UpstreamFeatures,
} from './upstream/upstream.js';

export interface McpBridgeDeps {
  /** What downstream clients see as the server's name (the server id) and version. */
  serverInfo: { name: string; version: string };
  upstream: Upstream;
  runner: CallRunner;
  gate: WorkerGate;
  log: Logger;
  /** Deadline of a forwarded request that is not a tool call (resources, prompts, completion), in milliseconds. */
  requestTimeoutMs: number;
  /** Finds the downstream client that answers the upstream's own requests. */
  router: ClientRequestRouter;
  /** Shares the upstream's log messages and resource updates among the sessions that asked. */
  fanout: ClientFanout;
  /** Requests that wait on their client across rounds (`input_required`). */
  flows: InputFlows;
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
/** Handled per downstream session here, not forwarded as they are. */
const PER_SESSION: ReadonlySet<PassthroughMethod> = new Set([
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
]);

/** Rounds of questions one request may take (the SDK's 2025 shim stops at 8 by default). */
const MAX_INPUT_ROUNDS = 64;

/**
 * The server factory behind the worker's MCP endpoints: one low-level Server per downstream session (2025
 * eras) or request (2026-07-28), each with its own JSON-RPC id space, all forwarding to the worker's one
 * upstream session. Tool calls go through the call runner, so they are logged, timed out and counted as on
 * `POST /tools/:tool`. What the upstream asks its client goes to the downstream client whose call caused it
 * (client-requests.ts), as `input_required` rounds (input-flows.ts) that the SDK turns into real requests
 * for 2025 sessions.
 */
export function createBridgeServerFactory(deps: McpBridgeDeps): McpFrontServerFactory {
  return (ctx) => createBridgeServer(deps, ctx);
}

function createBridgeServer(deps: McpBridgeDeps, ctx: McpServerContext): Server {
  const { upstream, runner, gate, router, fanout, flows } = deps;
  const features = upstream.features();
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
  const session = ctx.era === 'legacy' ? legacySession(deps, server) : undefined;

  /** What the client of this request can answer: its session's capabilities, or the request's envelope. */
  const capabilitiesOf = (rc: ServerContext): ClientCapabilities | undefined =>
    session
      ? server.getClientCapabilities()
      : (envelopeField(rc, CLIENT_CAPABILITIES_META_KEY) as ClientCapabilities | undefined);

  /** Runs `operation` as a flow whose questions go to this request's client. */
  const interactive = (
    rc: ServerContext,
    operation: (signal: AbortSignal, onProgress: (p: ProgressUpdate) => void) => Promise<unknown>,
  ) =>
    withRequestLogs(deps, rc, session, () =>
      flows.round(rc, caller, session?.owner, capabilitiesOf(rc), async (channel, signal, onProgress) => {
        const leave = router.enterCall(channel);
        session?.calls.add(rc);
        try {
          return await operation(signal, onProgress);
        } finally {
          session?.calls.delete(rc);
          leave();
        }
      }),
    );

  server.setRequestHandler('tools/list', async () => ({ tools: gate.tools() as Tool[] }));

  server.setRequestHandler('tools/call', async (request, rc) => {
    const { name, arguments: args = {} } = request.params;
    try {
      gate.admit(name);
    } catch (error) {
      throw toProtocolError(error);
    }
    const requestId = requestIdOf(rc, ctx);
    return (await interactive(rc, async (signal, onProgress) => {
      const outcome = await runner.run({
        tool: name,
        args: args as Record<string, unknown>,
        requestId,
        clientSignal: signal,
        onProgress,
      });
      if (outcome.kind === 'result') return outcome.result;
      if (outcome.kind === 'cancelled') throw new ProtocolError(ProtocolErrorCode.InternalError, 'the request was cancelled');
      throw toProtocolError(outcome.error);
    })) as never;
  });

  for (const method of PASSTHROUGH_METHODS) {
    if (!features[FEATURE_OF[method]]) continue;
    if (PER_SESSION.has(method)) {
      if (session) handlePerSession(deps, server, session, method);
      continue;
    }
    server.setRequestHandler(method, async (request, rc) => {
      const { _meta, ...params } = (request.params ?? {}) as Record<string, unknown>;
      const forward = async (signal: AbortSignal, onProgress?: (p: ProgressUpdate) => void) => {
        try {
          return await upstream.request(method, params, { signal, onProgress, timeoutMs: deps.requestTimeoutMs });
        } catch (error) {
          if (signal.aborted) throw new ProtocolError(ProtocolErrorCode.InternalError, 'cancelled');
          throw toProtocolError(error);
        }
      };
      if (INTERACTIVE.has(method)) return (await interactive(rc, forward)) as never;
      return (await forward(rc.mcpReq.signal, progressSender(rc))) as never;
    });
  }
  return server;
}

/** A 2025 session's side of the router and the fan-out: how to reach it outside and inside its calls. */
interface LegacySession extends Subscriber, ClientChannel {
  /** The session's calls in flight: a notification for the session rides on the newest one's stream. */
  readonly calls: Set<ServerContext>;
}

function legacySession(deps: McpBridgeDeps, server: Server): LegacySession {
  const calls = new Set<ServerContext>();
  const session: LegacySession = {
    owner: `session:${randomUUID()}`,
    calls,
    logLevel: undefined,
    uris: new Set(),
    capabilities: () => server.getClientCapabilities(),
    ask: (method, params, signal) =>
      server.request({ method, ...(params ? { params } : {}) } as never, { signal }) as Promise<
        Record<string, unknown>
      >,
    notify: (method, params) => {
      if (method === 'notifications/elicitation/complete' || calls.size === 0) {
        return server.notification({ method, params });
      }
      // Inside a call the notification goes on that call's stream, which the client reads for sure.
      const newest = [...calls].at(-1) as ServerContext;
      return newest.mcpReq.notify({ method, params });
    },
  };
  let leave: (() => void) | undefined;
  server.oninitialized = () => {
    leave = deps.router.openSession(session);
    deps.fanout.add(session);
  };
  const previous = server.onclose;
  server.onclose = () => {
    previous?.();
    leave?.();
    deps.fanout.remove(session);
  };
  return session;
}

function handlePerSession(deps: McpBridgeDeps, server: Server, session: LegacySession, method: PassthroughMethod) {
  const run = async (action: () => Promise<void>) => {
    try {
      await action();
    } catch (error) {
      if (ProtocolError.isInstance(error)) throw error;
      throw error instanceof AppError
        ? toProtocolError(error)
        : new ProtocolError(ProtocolErrorCode.InvalidParams, error instanceof Error ? error.message : String(error));
    }
    return {};
  };
  if (method === 'logging/setLevel') {
    server.setRequestHandler(method, (request) => run(() => deps.fanout.setLevel(session, request.params.level)));
  } else if (method === 'resources/subscribe') {
    server.setRequestHandler(method, (request) => run(() => deps.fanout.subscribe(session, request.params.uri)));
  } else if (method === 'resources/unsubscribe') {
    server.setRequestHandler(method, (request) => run(() => deps.fanout.unsubscribe(session, request.params.uri)));
  }
}

/**
 * A 2026-07-28 request that names a log level in its envelope gets the upstream's log messages at that level
 * on its own stream while it runs.
 */
async function withRequestLogs<T>(
  deps: McpBridgeDeps,
  rc: ServerContext,
  session: LegacySession | undefined,
  run: () => Promise<T>,
): Promise<T> {
  const level = envelopeField(rc, LOG_LEVEL_META_KEY) as LoggingLevel | undefined;
  if (session || level === undefined || !deps.upstream.features().logging) return run();
  const listener: Subscriber = {
    owner: `request:${String(rc.mcpReq.id)}`,
    logLevel: undefined,
    uris: new Set(),
    notify: (method, params) => rc.mcpReq.notify({ method, params }),
  };
  deps.fanout.add(listener);
  try {
    await deps.fanout.setLevel(listener, level).catch(() => {});
    return await run();
  } finally {
    deps.fanout.remove(listener);
  }
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

/** An upstream's JSON-RPC error keeps its code; the worker's own failures become internal errors naming their code. */
function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof AppError) {
    const rpcCode = (error.details as { rpcCode?: unknown } | undefined)?.rpcCode;
    if (typeof rpcCode === 'number') return new ProtocolError(rpcCode, error.message);
    if (error.code === 'tool_not_found' || error.code === 'invalid_arguments') {
      return new ProtocolError(ProtocolErrorCode.InvalidParams, error.message, { code: error.code });
    }
    return new ProtocolError(ProtocolErrorCode.InternalError, error.message, { code: error.code });
  }
  return new ProtocolError(ProtocolErrorCode.InternalError, 'internal error', { code: 'internal_error' });
}
