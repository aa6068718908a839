import type { Logger, ServerSpec, SessionMode, Tracer, WorkerConfig } from '@mcp-hub/shared';
import { createMcpFront, InputFlows, type McpFront } from '@mcp-hub/shared/mcp-front';
import type { CallRunner } from './call-runner.js';
import type { WorkerGate } from './http-server.js';
import { createBridgeServerFactory } from './mcp-bridge.js';
import { createModernPassthrough } from './upstream/modern-passthrough.js';
import type { Upstream } from './upstream/upstream.js';
import { UpstreamLinks } from './upstream-links.js';

/** Most requests waiting on their client at once (`input_required` rounds). */
const MAX_FLOWS = 1_000;

export interface WorkerFrontDeps {
  config: Readonly<WorkerConfig>;
  spec: ServerSpec;
  version: string;
  log: Logger;
  runner: CallRunner;
  gate: WorkerGate;
  upstream: Upstream;
  mode: SessionMode;
  /** A further upstream session for one client (`per-client` servers). */
  createUpstream: (owner: string) => Upstream;
  connectTimeoutMs: number;
  keepAliveMs: number;
  sessionIdleTtlMs: number;
  perClientMaxSessions: number;
  perClientIdleMs: number;
  /** Traces tool calls (tracing on); unset: tracing is off. */
  tracer?: Tracer;
}

/**
 * The worker's MCP endpoints (`/mcp`, `/sse`, `/messages`): the SDK's server bridged to the upstream, with the
 * upstream sessions of clients (`UpstreamLinks`) and the rounds waiting on a client (`InputFlows`). Loaded by
 * `LazyFront` when the first MCP request comes: a worker that only ever serves `POST /tools/:tool` never loads
 * the MCP server SDK.
 */
export function createWorkerFront(deps: WorkerFrontDeps): McpFront {
  const { config, spec, log } = deps;
  const mcpLog = log.child({ component: 'mcp' });
  const links = new UpstreamLinks({
    mode: deps.mode,
    primary: deps.upstream,
    create: deps.createUpstream,
    log: mcpLog,
    requestTimeoutMs: spec.timeoutMs,
    max: deps.perClientMaxSessions,
    idleMs: deps.perClientIdleMs,
    onResourceUpdated: (uri) => front.resourceUpdated(uri),
  });
  const flows = new InputFlows({
    log: mcpLog,
    // A flow lives as long as its upstream call may: the call's deadline ends it anyway.
    roundTimeoutMs: spec.timeoutMs,
    maxFlows: MAX_FLOWS,
  });
  const front = createMcpFront({
    serverFactory: createBridgeServerFactory({
      serverInfo: { name: config.serverId, version: deps.version },
      runner: deps.runner,
      gate: deps.gate,
      log,
      requestTimeoutMs: spec.timeoutMs,
      links,
      flows,
      tracer: deps.tracer,
    }),
    log: mcpLog,
    ...(spec.transport === 'streamable-http'
      ? {
          modernPassthrough: createModernPassthrough({
            spec,
            log: log.child({ component: 'upstream' }),
            maxMessageBytes: config.upstreamMaxMessageBytes,
            probeTimeoutMs: deps.connectTimeoutMs,
          }).forward,
        }
      : {}),
    keepAliveMs: deps.keepAliveMs,
    sessionIdleTtlMs: deps.sessionIdleTtlMs,
  });
  let closing: Promise<void> | undefined;
  return {
    ...front,
    close() {
      closing ??= (async () => {
        flows.closeAll(new Error('the worker is shutting down'));
        await front.close();
        // The primary upstream is the worker's: only the clients' own sessions end here.
        await links.close();
      })();
      return closing;
    },
  };
}
