import { randomUUID } from 'node:crypto';
import { AppError, isRequestId, type Logger, REQUEST_ID_HEADER } from '@mcp-hub/shared';
import { type McpFrontServerFactory, type McpServerContext, progressSender } from '@mcp-hub/shared/mcp-front';
import {
  ProtocolError,
  ProtocolErrorCode,
  Server,
  type ServerCapabilities,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import type { CallRunner } from './call-runner.js';
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
}

const FEATURE_OF: Record<PassthroughMethod, keyof UpstreamFeatures> = {
  'resources/list': 'resources',
  'resources/read': 'resources',
  'resources/templates/list': 'resources',
  'prompts/list': 'prompts',
  'prompts/get': 'prompts',
  'completion/complete': 'completions',
};

/**
 * The server factory behind the worker's MCP endpoints: one low-level Server per downstream session (2025
 * eras) or request (2026-07-28), each with its own JSON-RPC id space, all forwarding to the worker's one
 * upstream session. Tool calls go through the call runner, so they are logged, timed out and counted as on
 * `POST /tools/:tool`.
 */
export function createBridgeServerFactory(deps: McpBridgeDeps): McpFrontServerFactory {
  return (ctx) => createBridgeServer(deps, ctx);
}

function createBridgeServer(deps: McpBridgeDeps, ctx: McpServerContext): Server {
  const { upstream, runner, gate } = deps;
  const features = upstream.features();
  const capabilities: ServerCapabilities = { tools: { listChanged: true } };
  // Subscriptions are not forwarded (they would need per-downstream routing of resources/updated).
  if (features.resources) capabilities.resources = { listChanged: true };
  if (features.prompts) capabilities.prompts = { listChanged: true };
  if (features.completions) capabilities.completions = {};
  const server = new Server(deps.serverInfo, { capabilities });

  server.setRequestHandler('tools/list', async () => ({ tools: gate.tools() as Tool[] }));

  server.setRequestHandler('tools/call', async (request, rc) => {
    const { name, arguments: args = {} } = request.params;
    try {
      gate.admit(name);
    } catch (error) {
      throw toProtocolError(error);
    }
    const requestId = requestIdOf(rc, ctx);
    const outcome = await runner.run({
      tool: name,
      args: args as Record<string, unknown>,
      requestId,
      clientSignal: rc.mcpReq.signal,
      onProgress: progressSender(rc),
    });
    if (outcome.kind === 'result') return outcome.result as never;
    if (outcome.kind === 'cancelled')
      throw new ProtocolError(ProtocolErrorCode.InternalError, 'the request was cancelled');
    throw toProtocolError(outcome.error);
  });

  for (const method of PASSTHROUGH_METHODS) {
    if (!features[FEATURE_OF[method]]) continue;
    server.setRequestHandler(method, async (request, rc) => {
      const { _meta, ...params } = (request.params ?? {}) as Record<string, unknown>;
      try {
        return (await upstream.request(method, params, {
          signal: rc.mcpReq.signal,
          onProgress: progressSender(rc),
          timeoutMs: deps.requestTimeoutMs,
        })) as never;
      } catch (error) {
        if (rc.mcpReq.signal.aborted) throw new ProtocolError(ProtocolErrorCode.InternalError, 'cancelled');
        throw toProtocolError(error);
      }
    });
  }
  return server;
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
