import { randomUUID } from 'node:crypto';
import {
  type ClientCapabilities,
  createRequestStateCodec,
  inputRequired,
  ProtocolError,
  ProtocolErrorCode,
  type RequestStateCodec,
  type ServerContext,
} from '@modelcontextprotocol/server';
import type { Logger } from '../logger.js';
import type { ClientChannel, ClientRequestMethod } from './client-channel.js';
import { type ProgressUpdate, progressSender } from './progress.js';

/**
 * A request that the upstream answers only after its client answered questions of its own (sampling,
 * elicitation, roots), served in the multi-round-trip style of MCP 2026-07-28: the worker keeps the upstream
 * request running, answers the downstream request with `input_required` (the questions, and a signed
 * `requestState` naming the flow), and the client's retry, carrying `inputResponses`, hands the answers to
 * the waiting upstream and waits again, until the upstream answers or asks more.
 *
 * One code path serves both eras: on a 2025 session the SDK's legacy shim turns each `input_required` into
 * real server→client requests on the call's own stream and re-enters the handler with their answers.
 */
export interface FlowOptions {
  log: Logger;
  /** HMAC key of `requestState` (≥ 32 bytes); by default one random key per worker run. */
  stateKey?: Uint8Array | string;
  /** How long a flow waits for the client's next round once it was asked something, in milliseconds. */
  roundTimeoutMs: number;
  /** Most flows at once (open upstream requests waiting on or for a client); more are refused. */
  maxFlows: number;
}

/** Sends a notification on the stream of the flow's current round (dropped between rounds). */
export type RoundNotifier = (method: string, params: Record<string, unknown>) => Promise<void>;

/** What a flow runs: the upstream request, its questions going to `channel`. */
export type FlowOperation = (
  channel: ClientChannel,
  signal: AbortSignal,
  onProgress: (p: ProgressUpdate) => void,
  notify: RoundNotifier,
) => Promise<unknown>;

type Outcome = { ok: true; value: Record<string, unknown> } | { ok: false; error: unknown };

interface Ask {
  method: ClientRequestMethod;
  params: Record<string, unknown> | undefined;
  resolve: (result: Record<string, unknown>) => void;
  reject: (error: unknown) => void;
}

/** One upstream request in flight on behalf of one downstream caller, across the caller's rounds. */
class Flow implements ClientChannel {
  readonly id = randomUUID();
  readonly abort = new AbortController();
  readonly asks = new Map<string, Ask>();
  /** Keys asked but not yet handed to the client in an `input_required` result. */
  readonly unsent = new Set<string>();
  outcome: Outcome | undefined;
  /** Wakes the round that waits (a new question, or the outcome). */
  wake: (() => void) | undefined;
  progress: ((update: ProgressUpdate) => void) | undefined;
  notifier: RoundNotifier | undefined;
  capabilitiesOfRound: ClientCapabilities | undefined;
  /** Ends a flow whose client did not come back in time. */
  expiry: NodeJS.Timeout | undefined;
  private nextKey = 0;

  constructor(
    readonly owner: string,
    readonly caller: string,
    readonly method: string,
  ) {}

  capabilities(): ClientCapabilities | undefined {
    return this.capabilitiesOfRound;
  }

  ask(method: ClientRequestMethod, params: Record<string, unknown> | undefined, signal: AbortSignal) {
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const key = `r${++this.nextKey}`;
      const forget = () => {
        this.asks.delete(key);
        this.unsent.delete(key);
      };
      // The upstream gave up on its question (cancelled it, or its call ended).
      const onAbort = () => {
        forget();
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.asks.set(key, {
        method,
        params,
        resolve: (result) => {
          signal.removeEventListener('abort', onAbort);
          forget();
          resolve(result);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          forget();
          reject(error);
        },
      });
      this.unsent.add(key);
      this.wake?.();
    });
  }
}

/** The payload of a `requestState` the worker mints: which flow the retry continues. */
interface FlowState {
  f: string;
}

export class InputFlows {
  private readonly flows = new Map<string, Flow>();
  readonly codec: RequestStateCodec<FlowState>;

  constructor(private readonly options: FlowOptions) {
    this.codec = createRequestStateCodec<FlowState>({
      key: options.stateKey ?? crypto.getRandomValues(new Uint8Array(32)),
      ttlSeconds: Math.ceil(options.roundTimeoutMs / 1000),
    });
  }

  get size(): number {
    return this.flows.size;
  }

  /**
   * Serves one round of a downstream request: the first (starts `operation` with the flow as the channel its
   * questions go to) or a retry (its `requestState` names the flow, its `inputResponses` answer the
   * questions). Answers the operation's result, or `input_required` while it waits on the client.
   */
  async round(
    rc: ServerContext,
    caller: string,
    /** The downstream session the request belongs to (2025); a 2026 request's flow is its own owner. */
    owner: string | undefined,
    capabilities: ClientCapabilities | undefined,
    operation: FlowOperation,
  ): Promise<Record<string, unknown>> {
    const flow = this.flowOf(rc, caller) ?? this.start(rc, caller, owner, operation);
    flow.capabilitiesOfRound = capabilities;
    this.answer(flow, rc.mcpReq.inputResponses);
    return this.serve(flow, rc);
  }

  /** Ends every flow (shutdown): their upstream requests are cancelled. */
  closeAll(reason: Error): void {
    for (const flow of this.flows.values()) this.end(flow, reason);
  }

  private flowOf(rc: ServerContext, caller: string): Flow | undefined {
    const state = rc.mcpReq.requestState<FlowState | string>();
    if (state === undefined) return undefined;
    const flow = typeof state === 'object' ? this.flows.get(state.f) : undefined;
    // A verified state names a flow of this worker run; a flow is its caller's alone, and for the same method.
    if (!flow || flow.caller !== caller || flow.method !== rc.mcpReq.method) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Invalid or expired requestState', {
        reason: 'invalid_request_state',
      });
    }
    return flow;
  }

  private start(rc: ServerContext, caller: string, owner: string | undefined, operation: FlowOperation): Flow {
    if (this.flows.size >= this.options.maxFlows) {
      throw new ProtocolError(ProtocolErrorCode.InternalError, 'too many requests in flight on this server; retry');
    }
    const flow = new Flow(owner ?? `request:${randomUUID()}`, caller, rc.mcpReq.method);
    this.flows.set(flow.id, flow);
    const notify: RoundNotifier = (method, params) => flow.notifier?.(method, params) ?? Promise.resolve();
    operation(flow, flow.abort.signal, (p) => flow.progress?.(p), notify).then(
      (value) => this.settle(flow, { ok: true, value: value as Record<string, unknown> }),
      (error: unknown) => this.settle(flow, { ok: false, error }),
    );
    return flow;
  }

  private settle(flow: Flow, outcome: Outcome): void {
    flow.outcome = outcome;
    for (const ask of flow.asks.values()) ask.reject(new Error('the request ended'));
    // Between rounds (the client is answering) the flow stays, so that the client's next round gets this
    // outcome rather than "expired"; the round timer started with the last input_required ends it otherwise.
    if (flow.wake) flow.wake();
    else if (!flow.expiry) this.flows.delete(flow.id);
  }

  /** Hands the client's answers to the questions that wait on them. Unknown keys are ignored. */
  private answer(flow: Flow, responses: Record<string, unknown> | undefined): void {
    if (!responses) return;
    for (const [key, value] of Object.entries(responses)) {
      const ask = flow.asks.get(key);
      if (!ask || flow.unsent.has(key)) continue;
      if (value === null || typeof value !== 'object') {
        ask.reject(new ProtocolError(ProtocolErrorCode.InvalidParams, 'the client answered with a non-object'));
      } else ask.resolve(value as Record<string, unknown>);
    }
  }

  private async serve(flow: Flow, rc: ServerContext): Promise<Record<string, unknown>> {
    if (flow.expiry) clearTimeout(flow.expiry);
    flow.expiry = undefined;
    flow.progress = progressSender(rc);
    flow.notifier = (method, params) => rc.mcpReq.notify({ method, params });
    // The client of this round went away: nobody will retry; the upstream request is cancelled.
    const onGone = () => this.end(flow, new Error('the client went away'));
    rc.mcpReq.signal.addEventListener('abort', onGone, { once: true });
    try {
      for (;;) {
        if (flow.outcome) {
          this.flows.delete(flow.id);
          if (flow.outcome.ok) return flow.outcome.value;
          throw flow.outcome.error;
        }
        if (flow.unsent.size > 0) return await this.inputRequired(flow);
        await new Promise<void>((resolve) => {
          flow.wake = resolve;
        });
        flow.wake = undefined;
      }
    } finally {
      flow.wake = undefined;
      flow.progress = undefined;
      flow.notifier = undefined;
      rc.mcpReq.signal.removeEventListener('abort', onGone);
    }
  }

  private async inputRequired(flow: Flow): Promise<Record<string, unknown>> {
    const inputRequests: Record<string, { method: string; params?: Record<string, unknown> }> = {};
    for (const key of flow.unsent) {
      const ask = flow.asks.get(key);
      if (ask) inputRequests[key] = { method: ask.method, ...(ask.params ? { params: ask.params } : {}) };
    }
    flow.unsent.clear();
    flow.expiry = setTimeout(
      () => this.end(flow, new Error('the client did not answer in time')),
      this.options.roundTimeoutMs,
    );
    flow.expiry.unref();
    this.options.log.info(
      { event: 'mcp.input_required', flow: flow.id, method: flow.method, requests: Object.keys(inputRequests).length },
      'the upstream asked its client; answered input_required',
    );
    const requestState = await this.codec.mint({ f: flow.id });
    return inputRequired({ inputRequests: inputRequests as never, requestState }) as unknown as Record<string, unknown>;
  }

  private end(flow: Flow, reason: Error): void {
    if (flow.expiry) clearTimeout(flow.expiry);
    this.flows.delete(flow.id);
    if (!flow.abort.signal.aborted) flow.abort.abort(reason);
    for (const ask of flow.asks.values()) ask.reject(reason);
  }
}
