import { errorMark, type Logger, type ToolInput } from '@mcp-hub/shared';

/** A tool call's answer, as MCP's `CallToolResult` (the fields the worker passes on). */
export interface ToolResult {
  content: unknown[];
  structuredContent?: unknown;
  isError?: boolean;
}

/** One progress notification of a running call. */
export interface ToolProgress {
  progress: number;
  total?: number;
  message?: string;
}

export interface CallToolOptions {
  /** Aborts the call; an MCP upstream then sends `notifications/cancelled`. */
  signal: AbortSignal;
  onProgress?: (progress: ToolProgress) => void;
  /** The call's deadline in milliseconds; the caller enforces it, adapters only use it to size their own timers. */
  timeoutMs: number;
  requestId: string;
  /** Called once, right before the call is handed to the upstream (nothing it can fail on comes after). */
  onDispatch?: () => void;
  /**
   * The W3C traceparent of the worker's span for this call (tracing on): MCP upstreams get it in
   * `params._meta.traceparent` (and HTTP ones as a header too), REST APIs as a header.
   */
  traceparent?: string;
}

/** Errors of calls whose upstream (or worker) went away while it had them: whether they ran is unknown. */
const lostCalls = errorMark();

/** Marks `error` as the end of a call its upstream had and lost (a stdio child that died, the worker closing). */
export function markLost<E extends Error>(error: E): E {
  return lostCalls.mark(error);
}

export function isLost(error: unknown): boolean {
  return lostCalls.has(error);
}

export interface UpstreamRequestOptions {
  /** Aborts the request; an MCP upstream then sends `notifications/cancelled`. */
  signal: AbortSignal;
  onProgress?: (progress: ToolProgress) => void;
  /** How long the upstream may take, in milliseconds. */
  timeoutMs: number;
}

/** What the upstream serves besides tools (MCP servers only; a REST API serves tools alone). */
export interface UpstreamFeatures {
  resources: boolean;
  /** Whether the upstream accepts `resources/subscribe`. */
  resourceSubscriptions: boolean;
  prompts: boolean;
  completions: boolean;
  /** Whether the upstream sends log messages (`logging` capability): it accepts `logging/setLevel`. */
  logging: boolean;
}

/** The MCP methods the worker forwards as they are, when the upstream has the feature. */
export const PASSTHROUGH_METHODS = [
  'resources/list',
  'resources/read',
  'resources/templates/list',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
] as const;
export type PassthroughMethod = (typeof PASSTHROUGH_METHODS)[number];

/** JSON-RPC's "method not found", for upstreams that lack a feature. */
export const METHOD_NOT_FOUND = -32_601;

export const NO_FEATURES: Readonly<UpstreamFeatures> = Object.freeze({
  resources: false,
  resourceSubscriptions: false,
  prompts: false,
  completions: false,
  logging: false,
});

import { CLIENT_REQUEST_METHODS, type ClientRequestMethod } from '@mcp-hub/shared/mcp-front/client';

/** The requests an MCP server may send its client (the worker passes each on to a downstream client). */
export { CLIENT_REQUEST_METHODS, type ClientRequestMethod };

/** Answers a request the upstream sent its client; throws an MCP `ProtocolError` to refuse it. */
export type ClientRequestHandler = (
  method: ClientRequestMethod,
  params: Record<string, unknown> | undefined,
  signal: AbortSignal,
) => Promise<Record<string, unknown>>;

/** The notifications of an upstream the worker passes on to the clients that asked for them. */
export const FORWARDED_NOTIFICATIONS = [
  'notifications/message',
  'notifications/resources/updated',
  'notifications/elicitation/complete',
] as const;
export type ForwardedNotification = (typeof FORWARDED_NOTIFICATIONS)[number];
export type NotificationListener = (method: ForwardedNotification, params: Record<string, unknown>) => void;

/**
 * The life of an upstream session: `connecting` → `connected`, `down` while it is lost (remote upstreams
 * reconnect from there; a stdio one never comes back), `closed` once `close()` ran.
 */
export type UpstreamState = 'connecting' | 'connected' | 'down' | 'closed';

const ALLOWED_TRANSITIONS: Record<UpstreamState, readonly UpstreamState[]> = {
  connecting: ['connected', 'down', 'closed'],
  connected: ['down', 'closed'],
  down: ['connecting', 'closed'],
  closed: [],
};

export class IllegalTransitionError extends Error {
  constructor(from: UpstreamState, to: UpstreamState) {
    super(`illegal upstream transition ${from} → ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

/**
 * The one place that assigns an upstream's state: checks the transition, logs `upstream.state`, and
 * tells the listener. Re-entering the current state is a no-op.
 */
export class UpstreamStateMachine {
  private current: UpstreamState = 'connecting';
  private listener: ((state: UpstreamState) => void) | undefined;

  constructor(private readonly log: Logger) {}

  get state(): UpstreamState {
    return this.current;
  }

  onChange(listener: (state: UpstreamState) => void): void {
    this.listener = listener;
  }

  transition(to: UpstreamState, reason?: string): void {
    const from = this.current;
    if (from === to) return;
    if (!ALLOWED_TRANSITIONS[from].includes(to)) throw new IllegalTransitionError(from, to);
    this.current = to;
    const level = to === 'down' ? 'warn' : 'info';
    this.log[level]({ event: 'upstream.state', from, to, reason }, 'upstream state changed');
    this.listener?.(to);
  }
}

/**
 * One upstream session (a stdio child, a remote MCP server, or a REST API) behind the calls of a worker.
 * Listeners are single slots: the worker is the only consumer.
 */
export interface Upstream {
  readonly state: UpstreamState;
  /** The stdio child's pid while it runs; undefined for other transports. */
  readonly pid: number | undefined;
  /**
   * Opens the session. stdio: rejects when the server cannot start or answer `initialize` in time (fatal).
   * Remote: keeps retrying with backoff and resolves on the first success (rejects only if closed first).
   */
  connect(): Promise<void>;
  /** The upstream's current `tools/list`. */
  listTools(): Promise<ToolInput[]>;
  /** Runs one call; throws AppError (`upstream_error`, `worker_unavailable`, `invalid_arguments`) on failure. */
  callTool(name: string, args: Record<string, unknown>, options: CallToolOptions): Promise<ToolResult>;
  /** What the connected upstream serves besides tools (none while not connected). */
  features(): UpstreamFeatures;
  /**
   * Forwards one request (resources, prompts, completion) and passes its result on unparsed; throws AppError
   * `upstream_error` (with the upstream's `rpcCode` in details), `tool_timeout` or `worker_unavailable`.
   */
  request(
    method: PassthroughMethod,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
  ): Promise<Record<string, unknown>>;
  /** Called after each state change (e.g. `connected` again after a remote reconnect). */
  onStateChange(listener: (state: UpstreamState) => void): void;
  /** Called when the upstream says its tool list changed (`notifications/tools/list_changed`). */
  onToolsChanged(listener: () => void): void;
  /** Called when the upstream says its resource or prompt list changed. */
  onListChanged(listener: (list: 'resources' | 'prompts') => void): void;
  /** Answers the requests the upstream sends its client (sampling, elicitation, roots). */
  onClientRequest(handler: ClientRequestHandler): void;
  /** Called for each log message, resource update or elicitation completion the upstream sends. */
  onNotification(listener: NotificationListener): void;
  /** Tells the upstream its roots changed (`notifications/roots/list_changed`); a no-op when not connected. */
  rootsChanged(): Promise<void>;
  /** Called once when the upstream is gone for good without `close()` (a stdio child that exited). */
  onClose(listener: (error: Error) => void): void;
  /** Ends the session and releases everything; a stdio child is gone when this resolves. Idempotent. */
  close(): Promise<void>;
}
