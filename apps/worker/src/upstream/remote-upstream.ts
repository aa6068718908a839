import { setTimeout as delay } from 'node:timers/promises';
import { jitteredBackoffMs, maskUrlCredentials, type ServerSpec } from '@mcp-hub/shared';
import { type Client, SSEClientTransport, SseError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createBoundedFetch } from './bounded-fetch.js';
import { type McpSession, type McpSessionOptions, McpSessionUpstream } from './mcp-session.js';
import type { Upstream } from './upstream.js';

export type RemoteServerSpec = Extract<ServerSpec, { transport: 'sse' | 'streamable-http' }>;

export interface RemoteUpstreamOptions extends McpSessionOptions {
  spec: RemoteServerSpec;
  /** How often a connected session is pinged to notice a silent drop, in milliseconds. */
  pingIntervalMs: number;
  /** First and largest delay between reconnection attempts, in milliseconds. */
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
}

interface RemoteSession extends McpSession {
  transport: SSEClientTransport | StreamableHTTPClientTransport;
}

const TERMINATE_SESSION_TIMEOUT_MS = 1_000;

/**
 * Creates the upstream of an SSE or Streamable HTTP MCP server: a lost session (closed stream, failed
 * ping) answers 503 while it reconnects with backoff, until close().
 */
export function createRemoteUpstream(options: RemoteUpstreamOptions): Upstream {
  return new RemoteUpstream(options);
}

class RemoteUpstream extends McpSessionUpstream<RemoteSession> {
  private probing = false;
  private pingTimer: NodeJS.Timeout | undefined;
  /** Aborted by close(): wakes a reconnect backoff sleep. */
  private readonly closeController = new AbortController();

  constructor(private readonly remote: RemoteUpstreamOptions) {
    super(remote);
  }

  protected get transportName(): string {
    return this.remote.spec.transport;
  }

  protected firstConnect(): Promise<void> {
    return this.connectWithBackoff();
  }

  protected async openTransport(client: Client): Promise<RemoteSession> {
    const spec = this.remote.spec;
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
    const transport =
      spec.transport === 'sse'
        ? new SSEClientTransport(url, { requestInit, fetch })
        : new StreamableHTTPClientTransport(url, { requestInit, fetch });
    return { client, transport };
  }

  protected sessionClosed(session: RemoteSession): void {
    this.lost(session, 'the connection closed');
  }

  protected override sessionFailed(session: RemoteSession, error: Error): void {
    if (this.machine.state !== 'connected') return;
    // The SSE transport's event stream broke: the session is gone. Anything else may be a passing
    // failure of one request, so ask the server whether it is still there.
    if (error instanceof SseError) this.lost(session, error.message);
    else this.probe(session);
  }

  protected override callFailed(): void {
    const session = this.session;
    if (session) this.probe(session);
  }

  protected override sessionConnected(session: RemoteSession): void {
    this.schedulePing(session);
  }

  protected override stopTimers(): void {
    this.closeController.abort();
    clearTimeout(this.pingTimer);
  }

  protected override async beforeDispose(session: RemoteSession): Promise<void> {
    const transport = session.transport;
    if (transport instanceof StreamableHTTPClientTransport && transport.sessionId !== undefined) {
      // Polite: lets the server free the session now rather than at its own timeout.
      await Promise.race([transport.terminateSession().catch(() => {}), delay(TERMINATE_SESSION_TIMEOUT_MS)]);
    }
  }

  protected async describeFailure(_session: RemoteSession, message: string): Promise<string> {
    return `could not connect to ${maskUrlCredentials(this.remote.spec.config.url)}: ${message}`;
  }

  /** A remote session was lost: 503 until a new one is up, reconnecting with backoff meanwhile. */
  private lost(session: RemoteSession, reason: string): void {
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
          this.remote.reconnectBaseDelayMs,
          this.remote.reconnectMaxDelayMs,
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

  private schedulePing(session: RemoteSession): void {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      void this.ping(session).then(() => {
        if (this.session === session && this.machine.state === 'connected') this.schedulePing(session);
      });
    }, this.remote.pingIntervalMs);
    this.pingTimer.unref();
  }

  /** Pings at once (at most one probe at a time) after an error that may mean the session is gone. */
  private probe(session: RemoteSession): void {
    if (this.probing) return;
    this.probing = true;
    void this.ping(session).finally(() => {
      this.probing = false;
    });
  }

  private async ping(session: RemoteSession): Promise<void> {
    try {
      await session.client.ping({ timeout: this.options.connectTimeoutMs });
    } catch (error) {
      this.lost(session, `ping failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
