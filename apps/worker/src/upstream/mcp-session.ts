import { AppError, type Logger, type ToolInput } from '@mcp-hub/shared';
import { type Client, SdkError, SdkErrorCode, type Transport } from '@modelcontextprotocol/client';
import { forwardCall, forwardRequest, toToolInput } from './mcp-calls.js';
import { createUpstreamClient } from './mcp-client.js';
import {
  type CallToolOptions,
  type ClientRequestHandler,
  NO_FEATURES,
  type NotificationListener,
  type PassthroughMethod,
  type ToolResult,
  type Upstream,
  type UpstreamFeatures,
  type UpstreamRequestOptions,
  type UpstreamState,
  UpstreamStateMachine,
} from './upstream.js';

/** What every MCP upstream (stdio or remote) is given. */
export interface McpSessionOptions {
  log: Logger;
  /** How long `initialize` may take, per attempt, in milliseconds. */
  connectTimeoutMs: number;
  /** Largest message taken from the upstream (a stdio line, a JSON body, one SSE event), in bytes. */
  maxMessageBytes: number;
}

/** One connection to the server: an SDK client over its transport. Transports add what they need. */
export interface McpSession {
  client: Client;
  transport: Transport;
}

/** Routine after a cancelled or timed-out call: the server's late progress or answer for a request nobody awaits. */
const LATE_PROGRESS_RE = /progress notification for an unknown token|response for an unknown message ID/i;

/**
 * The transport-independent part of an MCP upstream: the state machine, tools/list, the call and request
 * passthrough, the session's close and error handling, and close(). A subclass per transport opens the
 * session (`openTransport`), decides how to connect (once, or with reconnection) and what a lost session means.
 * The session's SDK client is built in `mcp-client.ts`; how a call crosses it (results passed on unparsed,
 * failures as `AppError`s) is `mcp-calls.ts`.
 */
export abstract class McpSessionUpstream<S extends McpSession> implements Upstream {
  protected readonly log: Logger;
  protected readonly machine: UpstreamStateMachine;
  protected session: S | undefined;
  protected closing: Promise<void> | undefined;
  private toolsListener: (() => void) | undefined;
  private listListener: ((list: 'resources' | 'prompts') => void) | undefined;
  protected closeListener: ((error: Error) => void) | undefined;
  private clientRequestHandler: ClientRequestHandler | undefined;
  private notificationListener: NotificationListener | undefined;
  /** The first connection (memoized: connect() twice must not spawn a second child). */
  private connecting: Promise<void> | undefined;

  constructor(protected readonly options: McpSessionOptions) {
    this.log = options.log;
    this.machine = new UpstreamStateMachine(options.log);
  }

  get state(): UpstreamState {
    return this.machine.state;
  }

  /** The stdio child's pid; undefined for remote upstreams. */
  get pid(): number | undefined {
    return undefined;
  }

  onStateChange(listener: (state: UpstreamState) => void): void {
    this.machine.onChange(listener);
  }

  onToolsChanged(listener: () => void): void {
    this.toolsListener = listener;
  }

  onClose(listener: (error: Error) => void): void {
    this.closeListener = listener;
  }

  onListChanged(listener: (list: 'resources' | 'prompts') => void): void {
    this.listListener = listener;
  }

  onClientRequest(handler: ClientRequestHandler): void {
    this.clientRequestHandler = handler;
  }

  onNotification(listener: NotificationListener): void {
    this.notificationListener = listener;
  }

  async rootsChanged(): Promise<void> {
    const client = this.machine.state === 'connected' ? this.session?.client : undefined;
    await client?.sendRootsListChanged();
  }

  features(): UpstreamFeatures {
    const capabilities = this.machine.state === 'connected' ? this.session?.client.getServerCapabilities() : undefined;
    if (!capabilities) return NO_FEATURES;
    return {
      resources: capabilities.resources !== undefined,
      resourceSubscriptions: capabilities.resources?.subscribe === true,
      prompts: capabilities.prompts !== undefined,
      completions: capabilities.completions !== undefined,
      logging: capabilities.logging !== undefined,
    };
  }

  async request(
    method: PassthroughMethod,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
  ): Promise<Record<string, unknown>> {
    return forwardRequest(this.requireClient(), method, params, options, () => this.callFailed());
  }

  connect(): Promise<void> {
    this.connecting ??= this.firstConnect();
    return this.connecting;
  }

  async listTools(): Promise<ToolInput[]> {
    const client = this.requireClient();
    const { tools } = await client.listTools(undefined, {
      cacheMode: 'refresh',
      timeout: this.options.connectTimeoutMs,
    });
    return tools.map(toToolInput);
  }

  async callTool(name: string, args: Record<string, unknown>, options: CallToolOptions): Promise<ToolResult> {
    return forwardCall(this.requireClient(), name, args, options, () => this.callFailed());
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopTimers();
      const session = this.session;
      this.session = undefined;
      this.machine.transition('closed');
      if (session) await this.disposeSession(session);
    })();
    return this.closing;
  }

  // ---- what each transport decides -----------------------------------------------------------------------

  /** The first connect(): one attempt (stdio) or attempts until one succeeds (remote). */
  protected abstract firstConnect(): Promise<void>;

  /** Builds the transport of a new session around `client` (not started yet). */
  protected abstract openTransport(client: Client): Promise<S>;

  /** The session's transport closed while connected (the child exited, the connection dropped). */
  protected abstract sessionClosed(session: S): void;

  /** Why `initialize` failed, for an error other than its timeout. */
  protected abstract describeFailure(session: S, message: string): Promise<string>;

  /** A transport error on the live session, already logged; remote upstreams check the session is still there. */
  protected sessionFailed(_session: S, _error: Error): void {}

  /** A call failed for a reason other than the server's answer or a timeout. */
  protected callFailed(): void {}

  /** The session is connected and in use. */
  protected sessionConnected(_session: S): void {}

  /** close() started: wake or stop whatever the transport had scheduled. */
  protected stopTimers(): void {}

  /** Before the client closes: e.g. tell the server the session ends. */
  protected async beforeDispose(_session: S): Promise<void> {}

  /** While the client closes: e.g. make sure the child process is gone. */
  protected async whileDisposing(_session: S): Promise<void> {}

  // ---- the session core ----------------------------------------------------------------------------------

  private requireClient(): Client {
    const client = this.session?.client;
    if (!client || this.machine.state !== 'connected') {
      throw new AppError('worker_unavailable', `the upstream is ${this.machine.state}; retry shortly`);
    }
    return client;
  }

  /** Opens one session; on failure releases it (no child left behind) and throws why. */
  protected async openSession(): Promise<void> {
    const session = await this.openTransport(
      // Each listener checks that its client is still the live session's: a late notification of a session
      // being replaced must not trigger a sync.
      createUpstreamClient({
        isLive: (client) => this.session?.client === client,
        toolsChanged: () => this.toolsListener?.(),
        listChanged: (list) => this.listListener?.(list),
        clientRequestHandler: () => this.clientRequestHandler,
        notificationListener: () => this.notificationListener,
      }),
    );
    // Closed while the transport was being prepared (a sandbox probe): nothing is spawned for nobody.
    if (this.closing) throw new Error('the upstream was closed while connecting');
    session.client.onclose = () => this.handleSessionClosed(session);
    session.client.onerror = (error) => this.handleSessionError(session, error);
    this.session = session;
    try {
      await session.client.connect(session.transport, { timeout: this.options.connectTimeoutMs });
    } catch (error) {
      if (this.session === session) this.session = undefined;
      await this.disposeSession(session);
      throw new Error(await this.describeConnectFailure(session, error), { cause: error });
    }
    if (this.closing) {
      await this.disposeSession(session);
      throw new Error('the upstream was closed while connecting');
    }
    this.log.info(
      {
        event: 'upstream.connected',
        transport: this.transportName,
        pid: this.pid,
        upstream_server: session.client.getServerVersion(),
      },
      'upstream connected',
    );
    this.machine.transition('connected');
    this.sessionConnected(session);
  }

  /** The spec's transport, for logs. */
  protected abstract get transportName(): string;

  private handleSessionClosed(session: S): void {
    if (this.session !== session || this.closing) return;
    // A failure during connect is reported by openSession.
    if (this.machine.state !== 'connected') return;
    this.sessionClosed(session);
  }

  private handleSessionError(session: S, error: Error): void {
    if (this.session !== session || this.closing) return;
    // The SDK drops a progress notification or an answer that arrives after its call ended (cancelled, timed
    // out) and reports it here; that is routine, not a transport problem.
    if (LATE_PROGRESS_RE.test(error.message)) {
      this.log.debug({ event: 'upstream.error', err: error }, 'upstream transport error');
      return;
    }
    this.log.warn({ event: 'upstream.error', err: error }, 'upstream transport error');
    this.sessionFailed(session, error);
  }

  /** Closes a session's client and transport; for stdio, waits until the child is really gone. */
  protected async disposeSession(session: S): Promise<void> {
    await this.beforeDispose(session);
    const closed = session.client.close().catch((error: unknown) => {
      this.log.warn({ event: 'upstream.close_failed', err: error }, 'closing the upstream client failed');
    });
    await this.whileDisposing(session);
    await closed;
    try {
      await session.transport.close();
    } catch {
      // Already closed with the client.
    }
  }

  private async describeConnectFailure(session: S, error: unknown): Promise<string> {
    if (SdkError.isInstance(error) && error.code === SdkErrorCode.RequestTimeout) {
      return `the upstream did not answer initialize within ${this.options.connectTimeoutMs} ms`;
    }
    return this.describeFailure(session, error instanceof Error ? error.message : String(error));
  }
}
