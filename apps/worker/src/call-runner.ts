import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { AppError, type Logger, spanName, TRACE_ATTR, type TraceSpan, traceFields } from '@mcp-hub/shared';
import { isLost, type ToolProgress, type ToolResult, type Upstream } from './upstream/upstream.js';

export interface CallRequest {
  tool: string;
  args: Record<string, unknown>;
  requestId: string;
  /** Aborted when the client goes away: the upstream call is cancelled. */
  clientSignal?: AbortSignal;
  onProgress?: (progress: ToolProgress) => void;
  /** Called once when the call is handed to the upstream (not for a call that fails before). */
  onDispatch?: () => void;
  /** The upstream session to call (a client's own, in `per-client` mode); the runner's by default. */
  upstream?: Upstream;
  /** The worker's span of the request (tracing on): the call to the upstream is its child, its ids go in the logs. */
  span?: TraceSpan;
  /** Tracing off: the caller's traceparent, passed on to the upstream as it came (the worker stays transparent). */
  traceparent?: string;
}

export type CallOutcome =
  | { kind: 'result'; result: ToolResult }
  /** `lost`: the upstream (or the worker) went away while it had the call; whether it ran is unknown. */
  | { kind: 'error'; error: AppError; lost: boolean }
  /** The client went away; there is nobody to answer. */
  | { kind: 'cancelled' };

/** The `error.type` of a call's span: none for a result, `tool_error` for one with isError. */
export function outcomeError(outcome: CallOutcome): string | undefined {
  if (outcome.kind === 'result') return outcome.result.isError ? 'tool_error' : undefined;
  return outcome.kind === 'error' ? outcome.error.code : 'cancelled';
}

export interface CallRunnerDeps {
  upstream: Upstream;
  log: Logger;
  /** The server's per-call deadline, in milliseconds. */
  timeoutMs: number;
  /** The idle clock (milliseconds, monotonic); `performance.now` unless a test gives its own. */
  now?: () => number;
}

/** How often a draining runner looks whether its calls have ended, in milliseconds. */
const DRAIN_POLL_MS = 20;

/** The abort reason of a call whose client went away. */
class ClientGoneError extends Error {
  constructor() {
    super('the client went away');
    this.name = 'ClientGoneError';
  }
}

/**
 * Runs tool calls against the upstream: enforces the deadline, cancels on client disconnect or shutdown,
 * maps failures to AppError, logs each call, and counts calls in flight for `/healthz`.
 */
export class CallRunner {
  private readonly inflight = new Map<AbortController, Promise<CallOutcome>>();
  private readonly now: () => number;
  private lastCallEndedAt: number;

  constructor(private readonly deps: CallRunnerDeps) {
    this.now = deps.now ?? (() => performance.now());
    this.lastCallEndedAt = this.now();
  }

  get activeCalls(): number {
    return this.inflight.size;
  }

  /**
   * Starts the idle clock over, as a call ending does. The worker calls it when it becomes ready: a worker
   * woken for a call must not count its own start as idle time (it could be stopped for idleness again before
   * the call that woke it arrives, whenever the start took longer than the idle TTL).
   */
  touch(): void {
    this.lastCallEndedAt = this.now();
  }

  /** Milliseconds since the last call ended (or since the worker became ready, when none has). */
  idleMs(): number {
    return Math.max(0, Math.round(this.now() - this.lastCallEndedAt));
  }

  /** Runs one call; never rejects: the outcome says how it ended. */
  run(request: CallRequest): Promise<CallOutcome> {
    const controller = new AbortController();
    const outcome = this.execute(request, controller);
    this.inflight.set(controller, outcome);
    // Registered before the caller's own continuation, so a finished call no longer counts when it answers.
    void outcome.finally(() => this.inflight.delete(controller));
    return outcome;
  }

  /**
   * Waits until no call is in flight and none has ended for `quietMs`, counted from now at the earliest
   * (calls that come meanwhile are run: they were sent to this address before the switch to a successor), or
   * until `maxMs` passed. Resolves true when drained, false at the deadline.
   */
  async drain(quietMs: number, maxMs: number): Promise<boolean> {
    const start = performance.now();
    const deadline = start + maxMs;
    for (;;) {
      const now = performance.now();
      const quietFor = now - Math.max(start, this.lastCallEndedAt);
      if (this.inflight.size === 0 && quietFor >= quietMs) return true;
      if (now >= deadline) return false;
      const wait = this.inflight.size === 0 ? quietMs - quietFor : DRAIN_POLL_MS;
      await delay(Math.max(1, Math.min(wait, deadline - now)));
    }
  }

  /** Ends every call in flight with `error` (e.g. worker_unavailable on shutdown) and waits for them to settle. */
  async abortAll(error: AppError): Promise<void> {
    for (const controller of this.inflight.keys()) controller.abort(error);
    await Promise.allSettled(this.inflight.values());
  }

  private async execute(request: CallRequest, controller: AbortController): Promise<CallOutcome> {
    const { log, timeoutMs } = this.deps;
    const upstream = request.upstream ?? this.deps.upstream;
    const { tool, requestId, clientSignal } = request;
    const started = performance.now();
    const timer = setTimeout(() => {
      controller.abort(new AppError('tool_timeout', `tool "${tool}" did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onClientGone = () => controller.abort(new ClientGoneError());
    if (clientSignal?.aborted) onClientGone();
    else clientSignal?.addEventListener('abort', onClientGone, { once: true });
    const trace = traceFields(request.span);
    log.info({ event: 'tool.call.start', request_id: requestId, ...trace, tool }, 'tool call started');
    const hop = request.span?.child(spanName('tools/call', tool), 'client', {
      [TRACE_ATTR.method]: 'tools/call',
      [TRACE_ATTR.tool]: tool,
      [TRACE_ATTR.hubRequestId]: requestId,
      [TRACE_ATTR.networkTransport]: upstream.pid === undefined ? 'tcp' : 'pipe',
    });

    let outcome: CallOutcome;
    let failure: unknown;
    let dispatched = false;
    try {
      if (controller.signal.aborted) throw controller.signal.reason;
      const result = await upstream.callTool(tool, request.args, {
        signal: controller.signal,
        onProgress: request.onProgress,
        onDispatch: () => {
          dispatched = true;
          request.onDispatch?.();
        },
        timeoutMs,
        requestId,
        traceparent: hop ? hop.traceparent : request.traceparent,
      });
      outcome = { kind: 'result', result };
    } catch (error) {
      failure = error;
      // Once aborted, the reason is the truth, whatever the upstream threw while unwinding.
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : error;
      if (reason instanceof ClientGoneError) outcome = { kind: 'cancelled' };
      else if (reason instanceof AppError)
        outcome = { kind: 'error', error: reason, lost: dispatched && isLost(reason) };
      else
        outcome = { kind: 'error', error: new AppError('internal_error', 'the call failed unexpectedly'), lost: false };
    } finally {
      clearTimeout(timer);
      clientSignal?.removeEventListener('abort', onClientGone);
      this.lastCallEndedAt = this.now();
    }

    const latency = Math.round((performance.now() - started) * 100) / 100;
    const status =
      outcome.kind === 'result'
        ? outcome.result.isError
          ? 'tool_error'
          : 'ok'
        : outcome.kind === 'cancelled'
          ? 'cancelled'
          : outcome.error.code;
    if (outcome.kind === 'error') {
      const { error } = outcome;
      const cause = error.cause ?? failure ?? error;
      // A bug of ours is an error with its stack; a timeout, an upstream that failed or went away, a worker
      // shutting down are expected: one warn line.
      const bug = error.code === 'internal_error';
      log[bug ? 'error' : 'warn'](
        {
          event: 'tool.call.failed',
          request_id: requestId,
          ...trace,
          tool,
          error: error.message,
          code: error.code,
          ...(outcome.lost ? { lost: true } : {}),
          ...(bug ? { traceback: cause instanceof Error ? cause.stack : String(cause) } : {}),
        },
        'tool call failed',
      );
    }
    hop?.end(status === 'ok' ? undefined : status);
    log.info({ event: 'tool.call.done', request_id: requestId, ...trace, tool, latency, status }, 'tool call done');
    return outcome;
  }
}
