import type { Logger } from '@mcp-hub/shared';
import type { LoggingLevel } from '@modelcontextprotocol/server';
import type { ForwardedNotification, Upstream } from './upstream/upstream.js';

/** MCP's log levels, least severe first (RFC 5424 order). */
const LEVELS: readonly LoggingLevel[] = [
  'debug',
  'info',
  'notice',
  'warning',
  'error',
  'critical',
  'alert',
  'emergency',
];
const severity = (level: unknown): number => LEVELS.indexOf(level as LoggingLevel);

/** A 2025 downstream session as a receiver of the upstream's notifications. */
export interface Subscriber {
  readonly owner: string;
  /** Set by the session's `logging/setLevel`; no log messages before. */
  logLevel: LoggingLevel | undefined;
  /** The resources the session subscribed to. */
  readonly uris: Set<string>;
  notify(method: ForwardedNotification, params: Record<string, unknown>): Promise<void>;
}

/** URL-mode elicitations remembered for their completion notice. */
const MAX_PENDING_ELICITATIONS = 1_000;

/** Most resources one session may subscribe to. */
export const MAX_SUBSCRIPTIONS_PER_SESSION = 1_000;

/**
 * Shares one upstream's notifications among the downstream sessions that asked for them: log messages go to
 * the sessions that set a level, filtered by it (the upstream is set to the most verbose level any session
 * asked for); resource updates go to the sessions subscribed to the resource (the upstream is subscribed once
 * per resource, and unsubscribed when the last session leaves); an elicitation's completion goes to the
 * session that was asked.
 */
export class ClientFanout {
  private readonly subscribers = new Set<Subscriber>();
  /** Sessions per subscribed URI. */
  private readonly byUri = new Map<string, Set<Subscriber>>();
  /** URL-mode elicitations in flight: elicitation id → the session asked. */
  private readonly elicitations = new Map<string, string>();
  private upstreamLevel: LoggingLevel | undefined;

  constructor(
    private readonly upstream: Upstream,
    private readonly log: Logger,
    private readonly requestTimeoutMs: number,
  ) {}

  add(subscriber: Subscriber): void {
    this.subscribers.add(subscriber);
  }

  /** The session ended: its subscriptions end, and the upstream's when it was the last subscriber. */
  remove(subscriber: Subscriber): void {
    if (!this.subscribers.delete(subscriber)) return;
    for (const uri of subscriber.uris) void this.unsubscribe(subscriber, uri).catch(() => {});
  }

  async setLevel(subscriber: Subscriber, level: LoggingLevel): Promise<void> {
    subscriber.logLevel = level;
    // The upstream sends at the most verbose level anyone asked for; each session is filtered here.
    if (this.upstreamLevel === undefined || severity(level) < severity(this.upstreamLevel)) {
      await this.forward('logging/setLevel', { level });
      this.upstreamLevel = level;
    }
  }

  async subscribe(subscriber: Subscriber, uri: string): Promise<void> {
    if (subscriber.uris.has(uri)) return;
    if (subscriber.uris.size >= MAX_SUBSCRIPTIONS_PER_SESSION) {
      throw new Error(`a session may subscribe to at most ${MAX_SUBSCRIPTIONS_PER_SESSION} resources`);
    }
    let sessions = this.byUri.get(uri);
    if (!sessions) {
      await this.forward('resources/subscribe', { uri });
      sessions = this.byUri.get(uri) ?? new Set();
      this.byUri.set(uri, sessions);
    }
    sessions.add(subscriber);
    subscriber.uris.add(uri);
  }

  async unsubscribe(subscriber: Subscriber, uri: string): Promise<void> {
    subscriber.uris.delete(uri);
    const sessions = this.byUri.get(uri);
    if (!sessions?.delete(subscriber) || sessions.size > 0) return;
    this.byUri.delete(uri);
    await this.forward('resources/unsubscribe', { uri });
  }

  /** A URL-mode elicitation was sent to `owner`: its completion notice goes there. */
  elicitationSent(elicitationId: unknown, owner: string): void {
    if (typeof elicitationId !== 'string' || elicitationId.length > 256) return;
    this.elicitations.set(elicitationId, owner);
    // Completions that never come must not grow the table: the oldest is forgotten first.
    if (this.elicitations.size > MAX_PENDING_ELICITATIONS) {
      this.elicitations.delete(this.elicitations.keys().next().value as string);
    }
  }

  /** Passes one notification of the upstream to the sessions it is for. */
  deliver(method: ForwardedNotification, params: Record<string, unknown>): void {
    for (const subscriber of this.recipients(method, params)) {
      subscriber
        .notify(method, params)
        .catch((err: unknown) =>
          this.log.debug(
            { event: 'mcp.notify_failed', method, owner: subscriber.owner, err },
            'notification not delivered',
          ),
        );
    }
  }

  private recipients(method: ForwardedNotification, params: Record<string, unknown>): Iterable<Subscriber> {
    if (method === 'notifications/message') {
      const level = severity(params.level);
      if (level < 0) return [];
      return [...this.subscribers].filter((s) => s.logLevel !== undefined && level >= severity(s.logLevel));
    }
    if (method === 'notifications/resources/updated') {
      return typeof params.uri === 'string' ? (this.byUri.get(params.uri) ?? []) : [];
    }
    const owner = this.elicitations.get(params.elicitationId as string);
    if (owner === undefined) return [];
    this.elicitations.delete(params.elicitationId as string);
    return [...this.subscribers].filter((s) => s.owner === owner);
  }

  private async forward(
    method: 'logging/setLevel' | 'resources/subscribe' | 'resources/unsubscribe',
    params: Record<string, unknown>,
  ): Promise<void> {
    await this.upstream.request(method, params, {
      signal: AbortSignal.timeout(this.requestTimeoutMs),
      timeoutMs: this.requestTimeoutMs,
    });
  }
}
