import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import {
  AppError,
  jitteredBackoffMs,
  type Logger,
  maskUrlCredentials,
  type ServerSpec,
  type ToolInput,
} from '@mcp-hub/shared';
import {
  Client,
  ProtocolError,
  SdkError,
  SdkErrorCode,
  SSEClientTransport,
  SseError,
  StreamableHTTPClientTransport,
  type Tool,
  type Transport,
} from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createBoundedFetch } from './bounded-fetch.js';
import { terminateProcess } from './process-exit.js';
import { type StdioLaunch, type StdioLauncher, UNCONFINED } from './stdio-sandbox.js';
import {
  type CallToolOptions,
  NO_FEATURES,
  type PassthroughMethod,
  type ToolResult,
  type Upstream,
  type UpstreamFeatures,
  type UpstreamRequestOptions,
  type UpstreamState,
  UpstreamStateMachine,
} from './upstream.js';

/**
 * The worker is a proxy: it hands the server's result on as the server sent it, for the client at the end
 * to judge. Skipping the SDK's result parsing (a zod union that fails a branch on every call, building an
 * error each time) halves the worker's CPU per call.
 */
const PASS_THROUGH_RESULT = {
  '~standard': {
    version: 1 as const,
    vendor: 'mcp-hub',
    validate: (value: unknown) =>
      value !== null && typeof value === 'object'
        ? { value: value as ToolResult }
        : { issues: [{ message: 'a tools/call result must be an object' }] },
  },
};

/** The same for forwarded requests (resources, prompts, completion): the downstream client judges them. */
const PASS_THROUGH_OBJECT = {
  '~standard': {
    version: 1 as const,
    vendor: 'mcp-hub',
    validate: (value: unknown) =>
      value !== null && typeof value === 'object'
        ? { value: value as Record<string, unknown> }
        : { issues: [{ message: 'a result must be an object' }] },
  },
};

export type McpServerSpec = Extract<ServerSpec, { transport: 'stdio' | 'sse' | 'streamable-http' }>;

export interface McpUpstreamOptions {
  spec: McpServerSpec;
  log: Logger;
  /** How long `initialize` may take, per attempt, in milliseconds. */
  connectTimeoutMs: number;
  /** Remote upstreams only: how often a connected session is pinged to notice a silent drop, in milliseconds. */
  pingIntervalMs: number;
  /** Remote upstreams only: first and largest delay between reconnection attempts, in milliseconds. */
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
  /** Largest message taken from the upstream (a stdio line, a JSON body, one SSE event), in bytes. */
  maxMessageBytes: number;
  /** Stdio only: how the command is started (inside a sandbox, or as given). Default: as given. */
  launcher?: StdioLauncher;
}

const CLIENT_INFO = { name: 'mcp-hub-worker', version: '0.1.0' };
/** Coalesces bursts of `tools/list_changed` (a server registering tools one by one). */
const TOOLS_CHANGED_DEBOUNCE_MS = 100;
/**
 * The SDK's own per-request timeout must never win over the call runner's deadline (which knows the
 * request and answers `tool_timeout`), so it is set this much later.
 */
const SDK_TIMEOUT_SLACK_MS = 5_000;
/** How long to wait for the last stderr lines of an exited child before describing its exit. */
const STDERR_DRAIN_MS = 500;
const STDERR_TAIL_LINES = 5;
const STDERR_LINE_MAX_CHARS = 4_000;
const TERMINATE_SESSION_TIMEOUT_MS = 1_000;
/** Routine after a cancelled or timed-out call: the server's late progress or answer for a request nobody awaits. */
const LATE_PROGRESS_RE = /progress notification for an unknown token|response for an unknown message ID/i;

/**
 * Remembers the child's pid once spawned: the SDK forgets it as soon as closing starts (including the close
 * it does itself when `initialize` fails), and the worker must still see the child gone.
 */
class PidTrackingStdioTransport extends StdioClientTransport {
  spawnedPid: number | undefined;

  override async start(): Promise<void> {
    await super.start();
    this.spawnedPid = this.pid ?? undefined;
  }
}

interface Session {
  client: Client;
  transport: Transport;
  /** Resolves when the stdio child's stderr has ended (immediately for remote sessions). */
  stderrDone: Promise<void>;
  stderrTail: string[];
}

/** Creates the upstream of a stdio, SSE or Streamable HTTP MCP server, through the MCP SDK client. */
export function createMcpUpstream(options: McpUpstreamOptions): Upstream {
  return new McpUpstream(options);
}

class McpUpstream implements Upstream {
  private readonly log: Logger;
  private readonly machine: UpstreamStateMachine;
  private readonly remote: boolean;
  private session: Session | undefined;
  private closing: Promise<void> | undefined;
  private toolsListener: (() => void) | undefined;
  private listListener: ((list: 'resources' | 'prompts') => void) | undefined;
  private closeListener: ((error: Error) => void) | undefined;
  /** The first connection (memoized: connect() twice must not spawn a second child). */
  private connecting: Promise<void> | undefined;
  private probing = false;
  private pingTimer: NodeJS.Timeout | undefined;
  /** Aborted by close(): wakes a reconnect backoff sleep. */
  private readonly closeController = new AbortController();

  constructor(private readonly options: McpUpstreamOptions) {
    this.log = options.log;
    this.machine = new UpstreamStateMachine(options.log);
    this.remote = options.spec.transport !== 'stdio';
  }

  get state(): UpstreamState {
    return this.machine.state;
  }

  get pid(): number | undefined {
    const transport = this.session?.transport;
    return transport instanceof PidTrackingStdioTransport ? (transport.pid ?? undefined) : undefined;
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

  features(): UpstreamFeatures {
    const capabilities = this.machine.state === 'connected' ? this.session?.client.getServerCapabilities() : undefined;
    if (!capabilities) return NO_FEATURES;
    return {
      resources: capabilities.resources !== undefined,
      resourceSubscriptions: capabilities.resources?.subscribe === true,
      prompts: capabilities.prompts !== undefined,
      completions: capabilities.completions !== undefined,
    };
  }

  async request(
    method: PassthroughMethod,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
  ): Promise<Record<string, unknown>> {
    const client = this.requireClient();
    const onProgress = options.onProgress;
    try {
      return (await client.request({ method, ...(params ? { params } : {}) }, PASS_THROUGH_OBJECT, {
        signal: options.signal,
        timeout: options.timeoutMs,
        ...(onProgress ? { onprogress: (p) => onProgress(boundedProgress(p)) } : {}),
      })) as Record<string, unknown>;
    } catch (error) {
      if (options.signal.aborted) throw error;
      throw this.toCallError(error);
    }
  }

  connect(): Promise<void> {
    this.connecting ??= this.remote ? this.connectWithBackoff() : this.openSession();
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
    const client = this.requireClient();
    const onProgress = options.onProgress;
    try {
      return (await client.request({ method: 'tools/call', params: { name, arguments: args } }, PASS_THROUGH_RESULT, {
        signal: options.signal,
        timeout: options.timeoutMs + SDK_TIMEOUT_SLACK_MS,
        ...(onProgress ? { onprogress: (p) => onProgress(boundedProgress(p)) } : {}),
      })) as ToolResult;
    } catch (error) {
      // An aborted call is the caller's doing: it knows why (timeout, client gone, shutdown).
      if (options.signal.aborted) throw error;
      throw this.toCallError(error);
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closeController.abort();
      clearTimeout(this.pingTimer);
      const session = this.session;
      this.session = undefined;
      this.machine.transition('closed');
      if (session) await this.disposeSession(session);
    })();
    return this.closing;
  }

  private requireClient(): Client {
    const client = this.session?.client;
    if (!client || this.machine.state !== 'connected') {
      throw new AppError('worker_unavailable', `the upstream is ${this.machine.state}; retry shortly`);
    }
    return client;
  }

  /** Opens one session; on failure releases it (no child left behind) and throws why. */
  private async openSession(): Promise<void> {
    const spec = this.options.spec;
    // The sandbox is prepared (and probed) before each spawn; if it cannot run, the start fails here.
    const launch =
      spec.transport === 'stdio'
        ? await (this.options.launcher ?? UNCONFINED).prepare({
            command: spec.config.command,
            args: spec.config.args,
            env: spec.config.env,
            cwd: spec.config.cwd,
          })
        : undefined;
    const session = this.createSession(launch);
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
        transport: this.options.spec.transport,
        pid: this.pid,
        upstream_server: session.client.getServerVersion(),
      },
      'upstream connected',
    );
    this.machine.transition('connected');
    if (this.remote) this.schedulePing(session);
  }

  private createSession(launch: StdioLaunch | undefined): Session {
    const spec = this.options.spec;
    const client = new Client(CLIENT_INFO, {
      listChanged: {
        tools: {
          autoRefresh: false,
          debounceMs: TOOLS_CHANGED_DEBOUNCE_MS,
          onChanged: () => {
            if (this.session?.client === client) this.toolsListener?.();
          },
        },
        resources: {
          autoRefresh: false,
          debounceMs: TOOLS_CHANGED_DEBOUNCE_MS,
          onChanged: () => {
            if (this.session?.client === client) this.listListener?.('resources');
          },
        },
        prompts: {
          autoRefresh: false,
          debounceMs: TOOLS_CHANGED_DEBOUNCE_MS,
          onChanged: () => {
            if (this.session?.client === client) this.listListener?.('prompts');
          },
        },
      },
    });
    let transport: Transport;
    let stderrDone: Promise<void> = Promise.resolve();
    const stderrTail: string[] = [];
    if (spec.transport === 'stdio') {
      if (!launch) throw new Error('a stdio session needs its launch');
      const stdio = new PidTrackingStdioTransport({
        command: launch.command,
        args: launch.args,
        // Merged over the SDK's safe inherited variables (PATH, HOME, …) by the transport itself.
        env: launch.env,
        cwd: launch.cwd,
        stderr: 'pipe',
        maxBufferSize: this.options.maxMessageBytes,
      });
      stderrDone = this.forwardStderr(stdio, stderrTail);
      transport = stdio;
    } else {
      const url = new URL(spec.config.url);
      const requestInit = { headers: spec.config.headers };
      const { fetch } = createBoundedFetch({
        maxMessageBytes: this.options.maxMessageBytes,
        onOversize: ({ id, limitBytes, kind }) =>
          this.log.warn(
            { event: 'upstream.message_too_large', rpc_id: id, limit_bytes: limitBytes, kind },
            'dropped an upstream message over the size limit; its request fails',
          ),
      });
      transport =
        spec.transport === 'sse'
          ? new SSEClientTransport(url, { requestInit, fetch })
          : new StreamableHTTPClientTransport(url, { requestInit, fetch });
    }
    const session: Session = { client, transport, stderrDone, stderrTail };
    client.onclose = () => this.handleSessionClosed(session);
    client.onerror = (error) => this.handleSessionError(session, error);
    return session;
  }

  /** Turns each stderr line of the child into a log line (stdout is the JSON-RPC channel and never logged). */
  private forwardStderr(transport: PidTrackingStdioTransport, tail: string[]): Promise<void> {
    const stderr = transport.stderr;
    if (!stderr) return Promise.resolve();
    const lines = createInterface({
      input: stderr as unknown as NodeJS.ReadableStream,
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    lines.on('line', (raw: string) => {
      const line = raw.length > STDERR_LINE_MAX_CHARS ? `${raw.slice(0, STDERR_LINE_MAX_CHARS)}…` : raw;
      if (line.trim() === '') return;
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
      this.log.info({ event: 'upstream.stderr', line }, 'upstream stderr');
    });
    return new Promise((resolve) => lines.once('close', () => resolve()));
  }

  private handleSessionClosed(session: Session): void {
    if (this.session !== session || this.closing) return;
    // A failure during connect is reported by openSession.
    if (this.machine.state !== 'connected') return;
    if (this.remote) {
      this.lost(session, 'the connection closed');
      return;
    }
    this.session = undefined;
    this.machine.transition('down', 'the stdio server exited');
    void (async () => {
      await Promise.race([session.stderrDone, delay(STDERR_DRAIN_MS)]);
      await this.disposeSession(session);
      const reason = withStderr('the stdio server exited', session.stderrTail);
      this.log.error({ event: 'upstream.exited', reason }, 'the stdio server exited');
      this.closeListener?.(new Error(reason));
    })();
  }

  private handleSessionError(session: Session, error: Error): void {
    if (this.session !== session || this.closing) return;
    // The SDK drops a progress notification or an answer that arrives after its call ended (cancelled, timed
    // out) and reports it here; that is routine, not a transport problem.
    if (LATE_PROGRESS_RE.test(error.message)) {
      this.log.debug({ event: 'upstream.error', err: error }, 'upstream transport error');
      return;
    }
    this.log.warn({ event: 'upstream.error', err: error }, 'upstream transport error');
    if (!this.remote || this.machine.state !== 'connected') return;
    // The SSE transport's event stream broke: the session is gone. Anything else may be a passing
    // failure of one request, so ask the server whether it is still there.
    if (error instanceof SseError) this.lost(session, error.message);
    else this.probe(session);
  }

  /** A remote session was lost: 503 until a new one is up, reconnecting with backoff meanwhile. */
  private lost(session: Session, reason: string): void {
    if (this.session !== session || this.closing || this.machine.state !== 'connected') return;
    this.session = undefined;
    clearTimeout(this.pingTimer);
    this.machine.transition('down', reason);
    void this.disposeSession(session);
    void this.connectWithBackoff().catch(() => {});
  }

  private async connectWithBackoff(): Promise<void> {
    for (let attempt = 0; !this.closing; attempt++) {
      if (attempt > 0) {
        const delayMs = jitteredBackoffMs(
          attempt - 1,
          this.options.reconnectBaseDelayMs,
          this.options.reconnectMaxDelayMs,
        );
        this.log.info({ event: 'upstream.reconnect_scheduled', attempt, delayMs }, 'upstream reconnect scheduled');
        try {
          await delay(delayMs, undefined, { signal: this.closeController.signal });
        } catch {
          break;
        }
      }
      this.machine.transition('connecting');
      try {
        await this.openSession();
        return;
      } catch (error) {
        if (this.closing) break;
        const reason = error instanceof Error ? error.message : String(error);
        this.log.warn({ event: 'upstream.connect_failed', attempt, err: error }, 'upstream connection failed');
        this.machine.transition('down', reason);
      }
    }
    throw new Error('the upstream was closed before it connected');
  }

  private schedulePing(session: Session): void {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      void this.ping(session).then(() => {
        if (this.session === session && this.machine.state === 'connected') this.schedulePing(session);
      });
    }, this.options.pingIntervalMs);
    this.pingTimer.unref();
  }

  /** Pings at once (at most one probe at a time) after an error that may mean the session is gone. */
  private probe(session: Session): void {
    if (this.probing) return;
    this.probing = true;
    void this.ping(session).finally(() => {
      this.probing = false;
    });
  }

  private async ping(session: Session): Promise<void> {
    try {
      await session.client.ping({ timeout: this.options.connectTimeoutMs });
    } catch (error) {
      this.lost(session, `ping failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Closes a session's client and transport; for stdio, waits until the child is really gone. */
  private async disposeSession(session: Session): Promise<void> {
    const transport = session.transport;
    const pid = transport instanceof PidTrackingStdioTransport ? transport.spawnedPid : undefined;
    if (transport instanceof StreamableHTTPClientTransport && transport.sessionId !== undefined) {
      // Polite: lets the server free the session now rather than at its own timeout.
      await Promise.race([transport.terminateSession().catch(() => {}), delay(TERMINATE_SESSION_TIMEOUT_MS)]);
    }
    // The SDK's close ends the child's stdin first, then escalates on fixed 2 s timers; the same escalation
    // runs here alongside on shorter ones, so that even a server ignoring SIGTERM is gone in about 2 s.
    const closed = session.client.close().catch((error: unknown) => {
      this.log.warn({ event: 'upstream.close_failed', err: error }, 'closing the upstream client failed');
    });
    if (pid !== undefined && !(await terminateProcess(pid))) {
      this.log.error({ event: 'upstream.kill_failed', pid }, 'the stdio server survived SIGKILL');
    }
    await closed;
    try {
      await transport.close();
    } catch {
      // Already closed with the client.
    }
  }

  private async describeConnectFailure(session: Session, error: unknown): Promise<string> {
    if (SdkError.isInstance(error) && error.code === SdkErrorCode.RequestTimeout) {
      return `the upstream did not answer initialize within ${this.options.connectTimeoutMs} ms`;
    }
    const message = error instanceof Error ? error.message : String(error);
    const spec = this.options.spec;
    if (spec.transport !== 'stdio') return `could not connect to ${maskUrlCredentials(spec.config.url)}: ${message}`;
    await Promise.race([session.stderrDone, delay(STDERR_DRAIN_MS)]);
    return withStderr(`the stdio server failed to start (${message})`, session.stderrTail);
  }

  private toCallError(error: unknown): AppError {
    if (ProtocolError.isInstance(error)) {
      return new AppError('upstream_error', error.message, { rpcCode: error.code }, { cause: error });
    }
    if (SdkError.isInstance(error) && error.code === SdkErrorCode.RequestTimeout) {
      return new AppError('tool_timeout', 'the upstream did not answer in time', undefined, { cause: error });
    }
    const session = this.session;
    if (this.remote && session) this.probe(session);
    const message = error instanceof Error ? error.message : String(error);
    return new AppError('upstream_error', `the upstream failed: ${message}`, undefined, { cause: error });
  }
}

/** Longest progress `message` passed on: a status line, not a channel for bulk data from the upstream. */
export const MAX_PROGRESS_MESSAGE_CHARS = 4_096;

/** An upstream progress notification as the worker passes it on, its message cut to MAX_PROGRESS_MESSAGE_CHARS. */
function boundedProgress(p: { progress: number; total?: number; message?: string }) {
  const message =
    typeof p.message === 'string' && p.message.length > MAX_PROGRESS_MESSAGE_CHARS
      ? `${p.message.slice(0, MAX_PROGRESS_MESSAGE_CHARS)}…`
      : p.message;
  return { progress: p.progress, total: p.total, message };
}

function withStderr(reason: string, tail: string[]): string {
  const last = tail.at(-1);
  return last === undefined ? reason : `${reason}; last stderr line: ${last}`;
}

/** The fields of an MCP tool that the registry keeps (no `_meta`, icons or execution hints). */
function toToolInput(tool: Tool): ToolInput {
  const input: ToolInput = { name: tool.name, inputSchema: tool.inputSchema as ToolInput['inputSchema'] };
  if (tool.title !== undefined) input.title = tool.title;
  if (tool.description !== undefined) input.description = tool.description;
  if (tool.outputSchema !== undefined) input.outputSchema = tool.outputSchema as Record<string, unknown>;
  if (tool.annotations !== undefined) input.annotations = tool.annotations as Record<string, unknown>;
  return input;
}
