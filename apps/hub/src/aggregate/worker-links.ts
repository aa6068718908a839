import type { Logger } from '@mcp-hub/shared';
import {
  CLIENT_REQUEST_METHODS,
  type ClientChannel,
  type ClientRequestMethod,
  missingCapability,
  OrderedClient,
  type RoundNotifier,
} from '@mcp-hub/shared/mcp-front';
import {
  type Client,
  type ClientCapabilities,
  type LoggingLevel,
  ProtocolError,
  ProtocolErrorCode,
  StreamableHTTPClientTransport,
} from '@modelcontextprotocol/client';
import type { WorkerClient, WorkerTarget } from '../workers/worker-client.js';
import { workerOrigin } from '../workers/worker-client.js';

/** A downstream client a worker's questions and notifications go to: its call's flow, or its 2025 session. */
export interface LinkCaller {
  channel: ClientChannel;
  notify: RoundNotifier;
}

/** The notifications of a worker that the aggregated endpoint passes on to the downstream client. */
export const LINK_NOTIFICATIONS = [
  'notifications/message',
  'notifications/resources/updated',
  'notifications/elicitation/complete',
] as const;
export type LinkNotification = (typeof LINK_NOTIFICATIONS)[number];

/** JSON-RPC "method not found": what a client without the capability answers. */
const METHOD_NOT_FOUND = -32_601;
const CLIENT_INFO = { name: 'mcp-hub-aggregate', version: '0.1.0' };
/** What a link for 2026-07-28 requests declares: anything; each request's own envelope is checked per question. */
export const EVERY_CLIENT_CAPABILITY: ClientCapabilities = {
  sampling: { context: {}, tools: {} },
  elicitation: { form: {}, url: {} },
  roots: { listChanged: true },
};

/**
 * The result schema of requests passed through to a worker: the downstream client judges the result, and
 * skipping the SDK's parsing keeps the hub's CPU per call low.
 */
export const PASS_THROUGH = {
  '~standard': {
    version: 1 as const,
    vendor: 'mcp-hub',
    validate: (value: unknown) =>
      value !== null && typeof value === 'object'
        ? { value: value as Record<string, unknown> }
        : { issues: [{ message: 'a result must be an object' }] },
  },
};

/**
 * One MCP session (2025 era) from the hub to a worker's `/mcp`, for one downstream 2025 session, or leased
 * to one 2026-07-28 request at a time. What the worker asks its client goes to the downstream client of the
 * newest call in flight on it, else to the 2025 session it serves (`home`); its notifications likewise.
 */
export class WorkerLink {
  readonly client: Client;
  readonly ready: Promise<void>;
  busy = 0;
  lastUsed = Date.now();
  /** The log level last set on the worker session. */
  logLevel: LoggingLevel | undefined;
  private readonly callers: LinkCaller[] = [];
  private readonly transport: StreamableHTTPClientTransport;
  private closed = false;

  constructor(
    readonly key: string,
    readonly group: string,
    readonly target: WorkerTarget,
    /** The server's namespace (resource URIs in its notifications are renamed with it). */
    readonly namespace: string,
    fetch: ReturnType<WorkerClient['mcpFetch']>,
    capabilities: ClientCapabilities,
    private readonly home: LinkCaller | undefined,
    onNotification: (link: WorkerLink, method: LinkNotification, params: Record<string, unknown>) => void,
    connectTimeoutMs: number,
  ) {
    this.client = new OrderedClient(CLIENT_INFO, { capabilities });
    const declared: Record<ClientRequestMethod, unknown> = {
      'sampling/createMessage': capabilities.sampling,
      'elicitation/create': capabilities.elicitation,
      'roots/list': capabilities.roots,
    };
    for (const method of CLIENT_REQUEST_METHODS) {
      // The SDK refuses a handler for a capability the client did not declare; the worker then hears
      // "method not found", as from the downstream client itself.
      if (!declared[method]) continue;
      this.client.setRequestHandler(method, async (request, ctx) => {
        return (await this.ask(
          method,
          request.params as Record<string, unknown> | undefined,
          ctx.mcpReq.signal,
        )) as never;
      });
    }
    for (const method of LINK_NOTIFICATIONS) {
      this.client.setNotificationHandler(method, (notification) =>
        onNotification(this, method, (notification.params ?? {}) as Record<string, unknown>),
      );
    }
    this.transport = new StreamableHTTPClientTransport(new URL('/mcp', workerOrigin(target.runtime)), { fetch });
    this.ready = this.client.connect(this.transport, { timeout: connectTimeoutMs });
  }

  get serverId(): string {
    return this.target.serverId;
  }

  /** A downstream call runs on this link until the returned function is called. */
  enter(caller: LinkCaller): () => void {
    this.callers.push(caller);
    return () => {
      const at = this.callers.indexOf(caller);
      if (at >= 0) this.callers.splice(at, 1);
    };
  }

  /** Where a notification of the worker goes: the newest call's stream, else the 2025 session's. */
  notify(method: string, params: Record<string, unknown>): Promise<void> {
    const caller = this.callers.at(-1) ?? this.home;
    return caller ? caller.notify(method, params) : Promise.resolve();
  }

  /** Whether the worker behind it is still the run it was opened on. */
  serves(target: WorkerTarget): boolean {
    const a = this.target.runtime;
    const b = target.runtime;
    return a.instance === b.instance && a.port === b.port && a.workerToken === b.workerToken;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Tells the worker the session ended (its per-client upstream session ends with it), then closes.
    await this.transport.terminateSession().catch(() => {});
    await this.client.close().catch(() => {});
  }

  private ask(
    method: ClientRequestMethod,
    params: Record<string, unknown> | undefined,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    const caller = this.callers.at(-1) ?? this.home;
    if (!caller) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, 'no client can answer this request');
    const missing = missingCapability(method, params, caller.channel.capabilities());
    if (missing) throw new ProtocolError(METHOD_NOT_FOUND, `the calling client does not support ${missing}`);
    return caller.channel.ask(method, params, signal);
  }
}

export interface WorkerLinksOptions {
  client: WorkerClient;
  log: Logger;
  /** A worker's notification for the downstream client of `link` (the aggregator renames resource URIs). */
  onNotification: (link: WorkerLink, method: LinkNotification, params: Record<string, unknown>) => void;
  /** Most links open at once; the least recently used idle leased one makes room, else a request is refused. */
  max: number;
  /** A leased link unused this long is closed, in milliseconds. */
  idleMs: number;
  /** How long opening a session with a worker may take, in milliseconds. */
  connectTimeoutMs: number;
}

export interface LinkRequest {
  /** The downstream 2025 session (its links live as long as it), or the 2026-07-28 caller (leased links). */
  owner: string;
  /** A 2026-07-28 request: a link of the owner's that no other request holds, or a new one. */
  exclusive: boolean;
  target: WorkerTarget;
  namespace: string;
  /** The caller the worker binds the session to. */
  caller: string;
  capabilities: ClientCapabilities;
  /** The 2025 session itself, asked outside any call. */
  home?: LinkCaller;
  /** A log level the session should have (set once per link and level). */
  logLevel?: LoggingLevel;
}

/**
 * The aggregated endpoint's MCP sessions with workers: one per (downstream 2025 session, worker), opened at
 * the session's first request to that worker and closed with it; for 2026-07-28 requests, a pool per
 * (caller, worker) of sessions leased to one request at a time (two requests asking their clients at once
 * must not share a worker session), closed when idle. At most `max` at once.
 */
export class WorkerLinks {
  private readonly links = new Map<string, WorkerLink>();
  private readonly reaper: NodeJS.Timeout;
  private leases = 0;

  constructor(private readonly options: WorkerLinksOptions) {
    this.reaper = setInterval(() => this.reapIdle(), Math.max(1_000, Math.floor(options.idleMs / 4)));
    this.reaper.unref();
  }

  get size(): number {
    return this.links.size;
  }

  /**
   * A connected link for one request; `release` must be called when the request ends. Throws a
   * ProtocolError when none can be opened.
   */
  async acquire(req: LinkRequest): Promise<{ link: WorkerLink; release: () => void }> {
    const group = `${req.owner}|${req.target.serverId}`;
    let link = req.exclusive ? this.idleOf(group, req.target) : this.links.get(group);
    if (link && !link.serves(req.target)) {
      this.discard(link, 'worker_restarted');
      link = undefined;
    }
    link ??= this.open(req, group);
    link.busy++;
    link.lastUsed = Date.now();
    const held = link;
    const release = () => {
      held.busy--;
      held.lastUsed = Date.now();
    };
    try {
      await held.ready;
      if (req.logLevel && held.logLevel !== req.logLevel && held.client.getServerCapabilities()?.logging) {
        await held.client.setLoggingLevel(req.logLevel, { timeout: this.options.connectTimeoutMs });
        held.logLevel = req.logLevel;
      }
    } catch (error) {
      release();
      this.discard(held, 'connect_failed');
      throw new ProtocolError(
        ProtocolErrorCode.InternalError,
        `could not reach server "${req.target.serverId}": ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return { link: held, release };
  }

  /** The links of a 2025 session (for setLevel and roots changes). */
  ofOwner(owner: string): WorkerLink[] {
    return [...this.links.values()].filter((link) => link.group.startsWith(`${owner}|`));
  }

  /** A downstream 2025 session ended: its worker sessions end too. */
  dropOwner(owner: string): void {
    for (const link of this.ofOwner(owner)) this.discard(link, 'client_gone');
  }

  /** A link that failed (its worker went away or forgot the session): the next request opens a new one. */
  discard(link: WorkerLink, reason: string): void {
    if (this.links.get(link.key) !== link) return;
    this.links.delete(link.key);
    this.options.log.info(
      { event: 'mcp.aggregate.link.close', server: link.serverId, reason, links: this.links.size },
      'closed a session with a worker',
    );
    void link.close();
  }

  async close(): Promise<void> {
    clearInterval(this.reaper);
    const all = [...this.links.values()];
    this.links.clear();
    await Promise.allSettled(all.map((link) => link.close()));
  }

  private idleOf(group: string, target: WorkerTarget): WorkerLink | undefined {
    for (const link of this.links.values()) {
      if (link.group === group && link.busy === 0 && link.serves(target)) return link;
    }
    return undefined;
  }

  private open(req: LinkRequest, group: string): WorkerLink {
    if (this.links.size >= this.options.max && !this.evictOne()) {
      this.options.log.warn(
        { event: 'mcp.aggregate.link.refused', max: this.options.max, server: req.target.serverId },
        'no room for another session with a worker',
      );
      throw new ProtocolError(ProtocolErrorCode.InternalError, 'the hub is at its limit of worker sessions; retry');
    }
    const key = req.exclusive ? `${group}#${++this.leases}` : group;
    const link = new WorkerLink(
      key,
      group,
      req.target,
      req.namespace,
      this.options.client.mcpFetch(req.target, req.caller),
      req.capabilities,
      req.home,
      this.options.onNotification,
      this.options.connectTimeoutMs,
    );
    link.client.onclose = () => {
      if (this.links.get(key) === link) this.links.delete(key);
    };
    link.ready.catch(() => {});
    this.links.set(key, link);
    this.options.log.info(
      { event: 'mcp.aggregate.link.open', server: req.target.serverId, links: this.links.size },
      'opened a session with a worker',
    );
    return link;
  }

  private evictOne(): boolean {
    let oldest: WorkerLink | undefined;
    for (const link of this.links.values()) {
      if (link.key === link.group) continue;
      if (link.busy === 0 && (!oldest || link.lastUsed < oldest.lastUsed)) oldest = link;
    }
    if (!oldest) return false;
    this.discard(oldest, 'evicted');
    return true;
  }

  private reapIdle(): void {
    const now = Date.now();
    for (const link of this.links.values()) {
      // Leased links idle out; a 2025 session's live as long as the session.
      if (link.key !== link.group && link.busy === 0 && now - link.lastUsed >= this.options.idleMs) {
        this.discard(link, 'idle');
      }
    }
  }
}
