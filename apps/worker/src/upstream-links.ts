import type { Logger, SessionMode } from '@mcp-hub/shared';
import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';
import { ClientFanout } from './client-fanout.js';
import { ClientRequestRouter } from './client-requests.js';
import type { Upstream } from './upstream/upstream.js';

/** One upstream session with what routes its traffic to and from downstream clients. */
export interface UpstreamLink {
  readonly upstream: Upstream;
  /** Sends the upstream's own requests to the right downstream client. */
  readonly router: ClientRequestRouter;
  /** Shares the upstream's log messages and resource updates among the sessions that asked. */
  readonly fanout: ClientFanout;
}

export interface UpstreamLinksOptions {
  mode: SessionMode;
  /** The worker's own upstream: tools/list, the REST path, and every client in `shared` mode. */
  primary: Upstream;
  /** Makes (not connects) one more upstream session for a client, in `per-client` mode. */
  create: (owner: string) => Upstream;
  log: Logger;
  /** Deadline of the fan-out's own requests upstream (setLevel, subscribe), in milliseconds. */
  requestTimeoutMs: number;
  /** Most per-client upstreams at once; the least recently used idle one makes room, else a client is refused. */
  max: number;
  /** A per-client upstream unused this long is closed, in milliseconds. */
  idleMs: number;
  /** An upstream said a resource changed (for the 2026-07-28 `subscriptions/listen` streams). */
  onResourceUpdated: (uri: string) => void;
}

interface ClientLink extends UpstreamLink {
  /** The key it is kept under: the session, or the principal and a number (exclusive leases). */
  owner: string;
  /** The session or principal it serves. */
  group: string;
  ready: Promise<void>;
  lastUsed: number;
  /** Requests in flight on it. */
  busy: number;
}

/**
 * The upstream sessions of a worker. In `shared` mode there is one, for every client. In `per-client` mode
 * each downstream 2025 session, or each principal of 2026-07-28 requests, gets its own (for stdio, its own
 * child process), made at its first request, closed when its session ends or it idles, at most `max` at once.
 * Nothing on a stdio wire says which client a server's request is for; one session per client answers it.
 */
export class UpstreamLinks {
  readonly primary: UpstreamLink;
  private readonly clients = new Map<string, ClientLink>();
  private readonly reaper: NodeJS.Timeout | undefined;
  private leases = 0;
  private closed = false;

  constructor(private readonly options: UpstreamLinksOptions) {
    this.primary = this.link(options.primary);
    if (options.mode === 'per-client') {
      this.reaper = setInterval(() => this.reapIdle(), Math.max(1_000, Math.floor(options.idleMs / 4)));
      this.reaper.unref();
    }
  }

  get mode(): SessionMode {
    return this.options.mode;
  }

  /** Upstream sessions open for clients (per-client mode). */
  get clientCount(): number {
    return this.clients.size;
  }

  /**
   * The upstream a client's request goes to, connected; `release` must be called when the request ends.
   * Throws a ProtocolError when a per-client session cannot be made.
   */
  async acquire(
    owner: string | undefined,
    /**
     * A lease for one request alone: an idle session of `owner`'s, or a new one. 2026-07-28 requests are
     * stateless, so two requests of one principal that ask their client at once each need their own session.
     */
    exclusive = false,
  ): Promise<{ link: UpstreamLink; release: () => void }> {
    if (this.options.mode === 'shared' || owner === undefined) return { link: this.primary, release: () => {} };
    let link = exclusive ? this.idleOf(owner) : this.clients.get(owner);
    if (!link) link = this.open(owner, exclusive ? `${owner}#${++this.leases}` : owner);
    link.busy++;
    link.lastUsed = Date.now();
    const held = link;
    const release = () => {
      held.busy--;
      held.lastUsed = Date.now();
    };
    try {
      await held.ready;
    } catch (error) {
      release();
      throw new ProtocolError(
        ProtocolErrorCode.InternalError,
        `could not open an upstream session for this client: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return { link: held, release };
  }

  /** A client's 2025 session ended: its upstream session ends too. */
  drop(owner: string): void {
    const link = this.clients.get(owner);
    if (link) void this.closeLink(link, 'client_gone');
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    await Promise.allSettled([...this.clients.values()].map((link) => this.closeLink(link, 'shutdown')));
  }

  private link(upstream: Upstream): UpstreamLink {
    const fanout = new ClientFanout(upstream, this.options.log, this.options.requestTimeoutMs);
    const router = new ClientRequestRouter(this.options.log, (method, params, owner) => {
      if (method === 'elicitation/create' && params?.mode === 'url')
        fanout.elicitationSent(params.elicitationId, owner);
    });
    upstream.onClientRequest(router.route);
    upstream.onNotification((method, params) => {
      fanout.deliver(method, params);
      if (method === 'notifications/resources/updated' && typeof params.uri === 'string') {
        this.options.onResourceUpdated(params.uri);
      }
    });
    return { upstream, router, fanout };
  }

  private idleOf(group: string): ClientLink | undefined {
    for (const link of this.clients.values()) if (link.group === group && link.busy === 0) return link;
    return undefined;
  }

  private open(group: string, owner: string): ClientLink {
    if (this.closed) throw new ProtocolError(ProtocolErrorCode.InternalError, 'the worker is shutting down');
    if (this.clients.size >= this.options.max && !this.evictOne()) {
      this.options.log.warn(
        { event: 'upstream.client_session.refused', max: this.options.max },
        'no room for another per-client upstream session',
      );
      throw new ProtocolError(
        ProtocolErrorCode.InternalError,
        `this server runs at most ${this.options.max} client sessions at once and all are busy; retry later`,
      );
    }
    const upstream = this.options.create(owner);
    const link: ClientLink = {
      ...this.link(upstream),
      owner,
      group,
      ready: upstream.connect(),
      lastUsed: Date.now(),
      busy: 0,
    };
    link.ready.catch(() => this.forget(link));
    upstream.onClose(() => this.forget(link));
    this.clients.set(owner, link);
    this.options.log.info(
      { event: 'upstream.client_session.open', owner, sessions: this.clients.size },
      'opened an upstream session for a client',
    );
    return link;
  }

  private evictOne(): boolean {
    let oldest: ClientLink | undefined;
    for (const link of this.clients.values()) {
      if (link.busy === 0 && (!oldest || link.lastUsed < oldest.lastUsed)) oldest = link;
    }
    if (!oldest) return false;
    void this.closeLink(oldest, 'evicted');
    return true;
  }

  private reapIdle(): void {
    const now = Date.now();
    for (const link of this.clients.values()) {
      if (link.busy === 0 && now - link.lastUsed >= this.options.idleMs) void this.closeLink(link, 'idle');
    }
  }

  private forget(link: ClientLink): void {
    if (this.clients.get(link.owner) === link) this.clients.delete(link.owner);
  }

  private async closeLink(link: ClientLink, reason: string): Promise<void> {
    this.forget(link);
    this.options.log.info(
      { event: 'upstream.client_session.close', owner: link.owner, reason, sessions: this.clients.size },
      'closed the upstream session of a client',
    );
    await link.upstream.close().catch(() => {});
  }
}
