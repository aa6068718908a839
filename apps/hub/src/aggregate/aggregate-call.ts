import {
  type Logger,
  type RuntimeRecord,
  type ServerSpec,
  spanName,
  TRACE_ATTR,
  type Tracer,
  type TraceSpan,
  toolCallAttributes,
  traceFields,
} from '@mcp-hub/shared';
import { progressSender } from '@mcp-hub/shared/mcp-front';
import {
  type CallToolResult,
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  LOG_LEVEL_META_KEY,
  ProtocolError,
  ProtocolErrorCode,
  type ServerContext,
} from '@modelcontextprotocol/server';
import type { CallGuard } from '../access/call-guard.js';
import type { Principal } from '../access/principal.js';
import { canSee } from '../access/principal.js';
import type { RegistryCache } from '../registry-cache.js';
import { REQUEST_ID_META, type WorkerClient } from '../workers/worker-client.js';
import { safeToRepeat, type WorkerLocator } from '../workers/worker-locator.js';
import { asAppError, type Downstream, envelopeField, type LinkOperation, ms } from './aggregate-support.js';
import type { Catalog } from './catalog.js';
import { PASS_THROUGH } from './worker-links.js';

/** Extra time for a tool call beyond the server's own timeout (the worker enforces that one). */
const CALL_TIMEOUT_SLACK_MS = 5_000;

export interface AggregateCallsDeps {
  cache: RegistryCache;
  guard: CallGuard;
  workers: WorkerLocator;
  client: WorkerClient;
  log: Logger;
  separator: string;
  /** Traces each call (a server span, a client span for the hop to the worker); unset: tracing is off. */
  tracer?: Tracer;
  catalogFor: (principal: Principal) => Promise<Catalog>;
  /** Runs an operation on a worker session as a flow whose questions go to this request's client. */
  interactive: (
    down: Downstream,
    rc: ServerContext,
    spec: ServerSpec,
    operation: LinkOperation,
    before?: () => Promise<RuntimeRecord>,
  ) => Promise<Record<string, unknown>>;
}

/**
 * A `tools/call` on the aggregated endpoint: the name resolved in the caller's catalog and checked again on
 * the current spec, admitted by the call guard (limits, usage), and run on the owning worker — by the REST
 * call path when nothing can be asked of the client, else over a worker session as a flow.
 */
export class AggregateCalls {
  constructor(private readonly deps: AggregateCallsDeps) {}

  /** `traceparent`: the client's, from its HTTP request or the message's `_meta` (the parent of the call's span). */
  async call(
    down: Downstream,
    name: string,
    args: Record<string, unknown>,
    requestId: string,
    rc: ServerContext,
    traceparent?: string,
  ): Promise<Record<string, unknown>> {
    const span = this.deps.tracer?.start(
      'tools/call',
      'server',
      toolCallAttributes(requestId, undefined, true),
      traceparent,
    );
    // Tracing off: the client's traceparent goes on to the worker as it came.
    if (!span) return this.run(down, name, args, requestId, rc, undefined, traceparent);
    try {
      const result = await this.run(down, name, args, requestId, rc, span, undefined);
      span.end(result.isError === true ? 'tool_error' : undefined);
      return result;
    } catch (err) {
      span.end(ProtocolError.isInstance(err) ? `rpc_${err.code}` : 'internal');
      throw err;
    }
  }

  private async run(
    down: Downstream,
    name: string,
    args: Record<string, unknown>,
    requestId: string,
    rc: ServerContext,
    span: TraceSpan | undefined,
    clientTraceparent: string | undefined,
  ): Promise<Record<string, unknown>> {
    const { cache, guard, workers, log } = this.deps;
    const { principal } = down;
    const catalog = await this.deps.catalogFor(principal);
    const ambiguous = catalog.ambiguity(name);
    if (ambiguous) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `tool "${name}" is ambiguous: servers ${ambiguous.join(', ')} all have it (prefixMode "never"); call it as <namespace>${this.deps.separator}${name}`,
        { reason: 'ambiguous', servers: ambiguous },
      );
    }
    const entry = catalog.resolve(name);
    if (!entry) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown tool "${name}"`);
    const server = entry.serverId;
    const tool = entry.tool.name;
    // The catalog may be older than the spec: the server's owner is checked again on the current one, so a
    // name can only reach a server of the caller's project.
    const found = await cache.server(server);
    const spec = found && canSee(principal, found.project) ? found : null;
    const cached = spec ? await cache.tool(server, tool) : null;
    const problems = cached?.validate(args);
    if (!spec || !cached || problems) {
      const message = problems
        ? `invalid arguments for ${name}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`
        : `unknown tool "${name}"`;
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, message);
    }
    let done: ((ok: boolean) => void) | undefined;
    let started = 0;
    const fields = { request_id: requestId, ...traceFields(span), server, tool, via: 'mcp' };
    let hop: TraceSpan | undefined;
    let traceparent = clientTraceparent;
    if (span) {
      span.rename(spanName('tools/call', name));
      span.set(TRACE_ATTR.tool, name);
      span.set(TRACE_ATTR.hubServer, server);
    }
    /** The client span of the hop to the worker: once per call, after admission (a refused call has no hop). */
    const startHop = () => {
      if (!span || hop) return;
      hop = span.child(spanName('tools/call', tool), 'client', {
        [TRACE_ATTR.method]: 'tools/call',
        [TRACE_ATTR.tool]: tool,
        [TRACE_ATTR.hubServer]: server,
      });
      traceparent = hop.traceparent;
    };
    try {
      if (!this.mayListen(down, rc)) {
        // Nothing the worker could ask or tell this client: the REST call path, one hop cheaper than a worker
        // session (bench: `pnpm bench mcp`, path d).
        started = performance.now();
        log.info({ event: 'tool.call.accepted', ...fields }, 'tool call accepted');
        done = await guard.admit(principal, server, tool);
        startHop();
        const onProgress = progressSender(rc);
        const result = await workers.withWorker(
          server,
          (runtime) =>
            this.deps.client.callTool({
              target: { serverId: server, runtime },
              tool,
              args,
              requestId,
              signal: rc.mcpReq.signal,
              timeoutMs: spec.timeoutMs,
              onProgress,
              traceparent,
            }),
          { timeoutMs: spec.timeoutMs, requestId, ...(safeToRepeat(cached.tool) ? { repeatableTool: tool } : {}) },
        );
        done(!result.isError);
        hop?.end(result.isError ? 'tool_error' : undefined);
        log.info({ event: 'tool.call.done', ...fields, latency: ms(started) }, 'tool call done');
        return result as Record<string, unknown>;
      }
      const result = await this.deps.interactive(
        down,
        rc,
        spec,
        // Runs once per call (later rounds answer the flow it started): the hop spans the whole call.
        async (link, signal, onProgress) => {
          startHop();
          const outcome = (await link.client.request(
            {
              method: 'tools/call',
              params: {
                name: tool,
                arguments: args,
                // The worker takes the span of this hop as its parent from here (a worker session has no per-call headers).
                _meta: { [REQUEST_ID_META]: requestId, ...(traceparent ? { traceparent } : {}) },
              },
            },
            PASS_THROUGH,
            { signal, timeout: spec.timeoutMs + CALL_TIMEOUT_SLACK_MS, onprogress: onProgress },
          )) as CallToolResult;
          done?.(!outcome.isError);
          done = undefined;
          hop?.end(outcome.isError ? 'tool_error' : undefined);
          log.info({ event: 'tool.call.done', ...fields, latency: ms(started) }, 'tool call done');
          return outcome;
        },
        // Admission once per call (not per round): limits, usage and the worker, before the flow starts.
        async () => {
          started = performance.now();
          log.info({ event: 'tool.call.accepted', ...fields }, 'tool call accepted');
          done = await guard.admit(principal, server, tool);
          return workers.running(server, { timeoutMs: spec.timeoutMs, requestId });
        },
      );
      return result;
    } catch (err) {
      done?.(false);
      const error = asAppError(err);
      hop?.end(error.code, error.message);
      log.warn({ event: 'tool.call.failed', ...fields, code: error.code, error: error.message }, 'tool call failed');
      if (rc.mcpReq.signal.aborted)
        throw new ProtocolError(ProtocolErrorCode.InternalError, 'the request was cancelled');
      if (error.code === 'rate_limited') {
        throw new ProtocolError(ProtocolErrorCode.InternalError, error.message, {
          code: error.code,
          ...(error.details as object),
        });
      }
      if (ProtocolError.isInstance(err) && err.code !== ProtocolErrorCode.InternalError) throw err;
      // Execution failures are tool results the model can read, as MCP advises.
      return { content: [{ type: 'text', text: `${error.code}: ${error.message}` }], isError: true };
    }
  }

  /**
   * Whether the worker may have something for this client during a call: a question it can answer
   * (sampling, elicitation, roots) or log messages at a level it set.
   */
  mayListen(down: Downstream, rc: ServerContext): boolean {
    const capabilities = down.session
      ? down.server.getClientCapabilities()
      : (envelopeField(rc, CLIENT_CAPABILITIES_META_KEY) as ClientCapabilities | undefined);
    const logLevel = down.session ? down.session.logLevel : envelopeField(rc, LOG_LEVEL_META_KEY);
    return Boolean(capabilities?.sampling || capabilities?.elicitation || capabilities?.roots || logLevel);
  }
}
