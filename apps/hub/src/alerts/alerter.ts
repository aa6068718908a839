import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { type Dispatcher, request } from 'undici';
import type { AlertWebhookStore } from './webhook-store.js';

/** What the hub alerts on (a webhook may ask for some of them only). */
export const ALERT_TYPES = [
  'worker.crash_loop',
  'worker.unhealthy',
  'tools.emptied',
  'limiter.memory',
  'redis.down',
  'test',
] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

export interface Alert {
  type: AlertType;
  /** The server it is about, if any. */
  server?: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface AlerterOptions {
  /** One alert of a type (and server) per window, across every hub replica sharing the Redis. */
  dedupeMs?: number;
  /** The first retry waits this long, each next one twice as long. */
  retryBaseMs?: number;
  attempts?: number;
  timeoutMs?: number;
  /** Sends the deliveries (one that checks each address at connect time: url-guard.ts guardedConnector). */
  dispatcher?: Dispatcher;
}

const DEFAULTS: Required<Omit<AlerterOptions, 'dispatcher'>> & { dispatcher?: Dispatcher } = {
  dedupeMs: 10 * 60_000,
  retryBaseMs: 1_000,
  attempts: 6,
  timeoutMs: 5_000,
};
/** Alerts being delivered (with their retries) at most; more are dropped with a warn line. */
const MAX_PENDING = 1_000;
/** Deliveries waiting in Redis for their next attempt at most (across hubs); more are given up with a warn line. */
const MAX_QUEUED = 1_000;
/** Due retries one hub claims per look at the queue. */
const CLAIM_BATCH = 20;
/** How long a claimed retry is this hub's: past it (the hub died mid-attempt), another hub may claim it again. */
const LEASE_MS = 60_000;
/** Claims a queued retry if it is still due (KEYS[1]: the queue; ARGV: member, now, lease end): 1 when won. */
const CLAIM_SCRIPT = `local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0`;

/** A delivery waiting for its next attempt (the webhook's URL and secret are read again when it is due). */
interface QueuedDelivery {
  webhook: string;
  delivery: string;
  type: AlertType;
  body: string;
  attempt: number;
}

/** One attempt in hand: with the webhook's URL and secret, and the queue entry it was claimed from, if any. */
interface Attempt extends QueuedDelivery {
  url: string;
  secret: string;
  claimed?: string | undefined;
}

/**
 * Sends alerts to the registered webhooks: a JSON POST signed with the webhook's secret (`X-MCP-Hub-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`), retried with a doubling backoff until a 2xx (the same
 * `X-MCP-Hub-Delivery` id on every attempt, for receivers to drop repeats), and deduplicated per type and server
 * for `dedupeMs` across replicas (a Redis `SET NX`; in memory while Redis is down). A retry waits in Redis
 * (`alert_retries`, scored by when it is due) and any hub running claims it when due (`ZREM`: one hub only), so a
 * delivery outlives the hub that failed it; while Redis is down it waits in this hub's memory.
 */
function parseQueued(member: string): QueuedDelivery | undefined {
  try {
    const value = JSON.parse(member) as Partial<QueuedDelivery>;
    if (
      typeof value.webhook === 'string' &&
      typeof value.delivery === 'string' &&
      typeof value.body === 'string' &&
      typeof value.attempt === 'number' &&
      (ALERT_TYPES as readonly string[]).includes(String(value.type))
    ) {
      return value as QueuedDelivery;
    }
  } catch {
    // not ours
  }
  return undefined;
}

export class Alerter {
  private readonly opts: typeof DEFAULTS;
  private readonly localDedupe = new Map<string, number>();
  private pending = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private readonly poller: NodeJS.Timeout;
  private polling = false;

  constructor(
    private readonly redis: Redis,
    private readonly keys: { alertDedupe(id: string): string; alertRetries: string },
    private readonly webhooks: AlertWebhookStore,
    private readonly log: Logger,
    options: AlerterOptions = {},
  ) {
    this.opts = { ...DEFAULTS, ...options };
    this.poller = setInterval(() => void this.claimDue(), Math.max(100, Math.min(1_000, this.opts.retryBaseMs)));
    this.poller.unref();
  }

  /**
   * Fires `alert` unless the same type and server fired within the window; `only` sends it to that webhook alone,
   * without the window (a test alert).
   */
  fire(alert: Alert, only?: string): void {
    void this.send(alert, only).catch((err: unknown) =>
      this.log.warn({ event: 'alert.failed', type: alert.type, server: alert.server, err }, 'alert not sent'),
    );
  }

  private async send(alert: Alert, only: string | undefined): Promise<void> {
    if (this.closed) return;
    if (only === undefined && !(await this.firstInWindow(`${alert.type}:${alert.server ?? ''}`))) return;
    const hooks = (await this.webhooks.list()).filter((w) =>
      only === undefined ? w.events === undefined || w.events.includes(alert.type) : w.id === only,
    );
    if (hooks.length === 0) return;
    const delivery = randomUUID();
    const body = JSON.stringify({ id: delivery, ...alert, at: new Date().toISOString() });
    this.log.warn(
      { event: 'alert.fired', type: alert.type, server: alert.server, delivery, webhooks: hooks.length },
      alert.message,
    );
    for (const hook of hooks) {
      if (this.pending >= MAX_PENDING) {
        this.log.warn({ event: 'alert.dropped', type: alert.type, webhook: hook.id }, 'too many alerts pending');
        continue;
      }
      let secret: string;
      try {
        secret = await this.webhooks.secretOf(hook);
      } catch (err) {
        this.log.warn(
          { event: 'alert.dropped', type: alert.type, webhook: hook.id, err },
          'webhook secret does not open',
        );
        continue;
      }
      this.pending++;
      void this.deliver({ webhook: hook.id, url: hook.url, secret, delivery, type: alert.type, body, attempt: 1 });
    }
  }

  private async firstInWindow(key: string): Promise<boolean> {
    try {
      return (await this.redis.set(this.keys.alertDedupe(key), '1', 'PX', this.opts.dedupeMs, 'NX')) === 'OK';
    } catch {
      const now = Date.now();
      const last = this.localDedupe.get(key);
      if (last !== undefined && now - last < this.opts.dedupeMs) return false;
      this.localDedupe.set(key, now);
      return true;
    }
  }

  private async deliver(job: Attempt): Promise<void> {
    const { webhook, delivery, type, body, attempt } = job;
    let status = 0;
    try {
      const t = Math.floor(Date.now() / 1000);
      const signature = createHmac('sha256', job.secret).update(`${t}.${body}`).digest('hex');
      const res = await request(job.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'mcp-hub-alerts',
          'x-mcp-hub-event': type,
          'x-mcp-hub-delivery': delivery,
          'x-mcp-hub-signature': `t=${t},v1=${signature}`,
        },
        body,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        ...(this.opts.dispatcher ? { dispatcher: this.opts.dispatcher } : {}),
      });
      status = res.statusCode;
      await res.body.dump();
    } catch {
      status = 0;
    }
    try {
      if (status >= 200 && status < 300) {
        this.log.info({ event: 'alert.delivered', webhook, delivery, type, attempt }, 'alert delivered');
        return;
      }
      if (attempt >= this.opts.attempts) {
        this.log.warn({ event: 'alert.undelivered', webhook, delivery, type, attempt, status }, 'alert not delivered');
        return;
      }
      const wait = this.opts.retryBaseMs * 2 ** (attempt - 1);
      this.log.warn({ event: 'alert.retry', webhook, delivery, type, attempt, status, wait_ms: wait }, 'alert retry');
      if (await this.enqueue({ webhook, delivery, type, body, attempt: attempt + 1 }, Date.now() + wait)) return;
      // Redis is away: the retry waits in this hub's memory instead (not once the hub is closing).
      if (this.closed || this.timers.size >= MAX_PENDING) {
        this.log.warn(
          { event: 'alert.undelivered', webhook, delivery, type, attempt, status, reason: 'redis_unavailable' },
          'alert retry could not be kept',
        );
        return;
      }
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.pending++;
        void this.deliver({ ...job, attempt: attempt + 1, claimed: undefined });
      }, wait);
      timer.unref();
      this.timers.add(timer);
    } finally {
      this.pending--;
      // Done with the queue entry this attempt came from (its successor, if any, is queued already).
      if (job.claimed !== undefined) await this.redis.zrem(this.keys.alertRetries, job.claimed).catch(() => {});
    }
  }

  /** Puts a retry in the shared queue; false when Redis could not take it. */
  private async enqueue(next: QueuedDelivery, dueMs: number): Promise<boolean> {
    try {
      if ((await this.redis.zcard(this.keys.alertRetries)) >= MAX_QUEUED) {
        this.log.warn(
          { event: 'alert.undelivered', webhook: next.webhook, delivery: next.delivery, type: next.type },
          'too many alert retries queued; this one is given up',
        );
        return true;
      }
      await this.redis.zadd(this.keys.alertRetries, dueMs, JSON.stringify(next));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Claims the due retries and sends them. A claim is a lease (CLAIM_SCRIPT pushes the entry's time LEASE_MS on, if
   * it is still due: one hub wins); the entry goes only once its attempt ended, so a hub that dies mid-attempt
   * leaves it to be claimed again when the lease runs out.
   */
  private async claimDue(): Promise<void> {
    if (this.closed || this.polling) return;
    this.polling = true;
    try {
      const now = Date.now();
      const due = await this.redis.zrangebyscore(this.keys.alertRetries, '-inf', now, 'LIMIT', 0, CLAIM_BATCH);
      for (const member of due) {
        if (this.closed || this.pending >= MAX_PENDING) break;
        const won = await this.redis.eval(CLAIM_SCRIPT, 1, this.keys.alertRetries, member, now, now + LEASE_MS);
        if (won !== 1) continue;
        const next = parseQueued(member);
        const hook = next && (await this.webhooks.get(next.webhook));
        let secret: string | undefined;
        try {
          secret = hook ? await this.webhooks.secretOf(hook) : undefined;
        } catch {
          // a secret sealed with another key: given up below
        }
        if (!next || !hook || secret === undefined) {
          // Not ours, a webhook deleted meanwhile, or a secret that no longer opens: nothing more to send.
          this.log.warn(
            { event: 'alert.undelivered', webhook: next?.webhook, delivery: next?.delivery },
            'alert retry dropped',
          );
          await this.redis.zrem(this.keys.alertRetries, member);
          continue;
        }
        this.pending++;
        void this.deliver({ ...next, url: hook.url, secret, claimed: member });
      }
    } catch {
      // Redis away: the next look tries again (a lease taken meanwhile runs out).
    } finally {
      this.polling = false;
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.poller);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}
