import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { AppError, type HubEvent, type Logger } from '@mcp-hub/shared';
import { canSee, type Principal } from '../access/principal.js';

/** Events kept for `Last-Event-ID` resumption: at most this many… */
export const EVENT_WINDOW_SIZE = 1_000;
/** …and none older than this. */
export const EVENT_WINDOW_MS = 5 * 60_000;
/** Event streams open on one hub at most, and per API key. */
export const MAX_EVENT_STREAMS = 500;
export const MAX_EVENT_STREAMS_PER_KEY = 10;
const KEEP_ALIVE_MS = 15_000;
/** Bytes a client may leave unread before its stream is ended (it resumes with Last-Event-ID). */
const MAX_UNREAD_BYTES = 1024 * 1024;
/** What a browser's EventSource waits before it reconnects. */
const RETRY_MS = 2_000;

interface Entry {
  seq: number;
  at: number;
  /** The project of the event's server (undefined: no project, only the admin sees it). */
  project: string | undefined;
  frame: string;
}

interface Client {
  res: ServerResponse;
  principal: Principal;
  keyId: string | undefined;
}

/**
 * The live status feed (`GET /api/events`): the registry and runtime events this hub receives from Redis, each
 * given an id (`<hub epoch>-<sequence>`) and sent to every open stream whose caller may see the event's server.
 * The last events (EVENT_WINDOW_SIZE, EVENT_WINDOW_MS) are kept, so a client that reconnects with
 * `Last-Event-ID` gets what it missed. An id this hub cannot resume from (another replica's, one from before a
 * restart, or one older than the window) gets a `reset` event first: the client re-reads the state it shows.
 */
export class EventFeed {
  private readonly epoch = randomBytes(6).toString('hex');
  private seq = 0;
  private ring: Entry[] = [];
  /** The project of every server an event named, so a `server.delete` (the spec is gone) is still filtered. */
  private readonly projects = new Map<string, string | undefined>();
  private readonly clients = new Set<Client>();
  private queue: Promise<void> = Promise.resolve();
  private readonly keepAlive: NodeJS.Timeout;

  constructor(
    /** The project of a server now: undefined for none, null when there is no such server. */
    private readonly projectOf: (id: string) => Promise<string | undefined | null>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.keepAlive = setInterval(() => {
      for (const c of this.clients) this.write(c, ': keep-alive\n\n');
    }, KEEP_ALIVE_MS);
    this.keepAlive.unref();
  }

  get open(): number {
    return this.clients.size;
  }

  /** Takes one event; events are numbered and sent in the order they came. */
  push(event: HubEvent): void {
    this.queue = this.queue
      .then(() => this.ingest(event))
      .catch((err: unknown) =>
        this.log.warn({ event: 'events.feed_failed', err, server: event.id }, 'an event was not sent to the feed'),
      );
  }

  /** Waits until every event pushed so far was sent (tests, shutdown). */
  settled(): Promise<void> {
    return this.queue;
  }

  private async ingest(event: HubEvent): Promise<void> {
    let project: string | undefined;
    if (event.type === 'server.delete') {
      project = this.projects.get(event.id);
      this.projects.delete(event.id);
    } else {
      const now = await this.projectOf(event.id);
      if (now === null) project = this.projects.get(event.id);
      else {
        project = now;
        this.projects.set(event.id, now);
      }
    }
    const seq = ++this.seq;
    const data = {
      type: event.type,
      server: event.id,
      ...('status' in event ? { status: event.status } : {}),
      ...('tool' in event ? { tool: event.tool } : {}),
      ...('rev' in event ? { rev: event.rev } : {}),
      ts: event.ts,
    };
    const entry: Entry = {
      seq,
      at: this.now(),
      project,
      frame: `id: ${this.epoch}-${seq}\nevent: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`,
    };
    this.ring.push(entry);
    this.trim();
    for (const c of this.clients) if (canSee(c.principal, project)) this.write(c, entry.frame);
  }

  private trim(): void {
    const oldest = this.now() - EVENT_WINDOW_MS;
    let drop = Math.max(0, this.ring.length - EVENT_WINDOW_SIZE);
    while (drop < this.ring.length && (this.ring[drop] as Entry).at < oldest) drop++;
    if (drop > 0) this.ring = this.ring.slice(drop);
  }

  /** Throws `rate_limited` when the hub, or the caller's key, holds too many streams already. */
  admit(principal: Principal): void {
    if (this.clients.size >= MAX_EVENT_STREAMS) {
      throw new AppError('rate_limited', `this hub has ${MAX_EVENT_STREAMS} event streams open; retry later`);
    }
    const keyId = principal.kind === 'key' ? principal.keyId : undefined;
    if (keyId === undefined) return;
    let mine = 0;
    for (const c of this.clients) if (c.keyId === keyId) mine++;
    if (mine >= MAX_EVENT_STREAMS_PER_KEY) {
      throw new AppError('rate_limited', `this key has ${MAX_EVENT_STREAMS_PER_KEY} event streams open`);
    }
  }

  /**
   * Opens a stream on `res` for `principal`, replaying what it missed after `lastEventId`. Throws
   * `rate_limited` when the hub, or the caller's key, holds too many streams.
   */
  subscribe(res: ServerResponse, principal: Principal, lastEventId: string | undefined): void {
    this.admit(principal);
    const keyId = principal.kind === 'key' ? principal.keyId : undefined;
    this.trim();
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    const client: Client = { res, principal, keyId };
    let head = `retry: ${RETRY_MS}\n\n`;
    if (lastEventId !== undefined) {
      const from = this.resumeFrom(lastEventId);
      if (from === undefined) {
        head += `event: reset\ndata: ${JSON.stringify({ reason: 'the events after this id are no longer known here: read the state again' })}\n\n`;
      } else {
        for (const e of this.ring) if (e.seq > from && canSee(principal, e.project)) head += e.frame;
      }
    }
    res.write(head);
    this.clients.add(client);
    res.once('close', () => this.clients.delete(client));
  }

  /** The sequence to replay after, or undefined when this hub cannot tell what came after `id`. */
  private resumeFrom(id: string): number | undefined {
    const m = /^([0-9a-f]{12})-(\d{1,15})$/.exec(id);
    if (!m || m[1] !== this.epoch) return undefined;
    const seq = Number(m[2]);
    if (seq > this.seq) return undefined;
    const oldest = this.ring[0]?.seq ?? this.seq + 1;
    // Resumable when nothing after `seq` was dropped from the window.
    return seq >= oldest - 1 ? seq : undefined;
  }

  private write(c: Client, text: string): void {
    if (c.res.writableEnded || c.res.destroyed) return;
    if (c.res.writableLength > MAX_UNREAD_BYTES) {
      // Too slow a reader: end its stream rather than hold its events (it resumes with Last-Event-ID).
      this.clients.delete(c);
      c.res.end();
      return;
    }
    c.res.write(text);
  }

  /** Ends every stream (the hub is closing). */
  close(): void {
    clearInterval(this.keepAlive);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }
}
