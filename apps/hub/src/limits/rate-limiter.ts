import { AppError, defineScripts, type Logger, type RedisKeys } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { type CheckRequest, type Decision, decide, type Plan, plan, type StoreResult } from './rate-limit-decision.js';
import { MemoryStore } from './rate-limit-memory-store.js';
import { CHECK, type LimiterCommands, RESET } from './rate-limit-scripts.js';

/**
 * The limiter of one hub: the rate-limit decision (rate-limit-decision.ts) counted in Redis by one script
 * (rate-limit-scripts.ts), or, while Redis is unreachable, in this hub's memory (rate-limit-memory-store.ts)
 * until a periodic PING answers again.
 */

export type LimiterMode = 'redis' | 'memory';

export interface LimiterStatus {
  mode: LimiterMode;
  /** When the current mode began (ISO 8601). */
  since: string;
  /** The error that caused the last fallback, null if there was none. */
  lastError: string | null;
  /** How many times the limiter fell back to memory since it started. */
  fallbacks: number;
}

export interface RateLimiterOptions {
  /** Longest wait for the limiter's own Redis calls before falling back to memory; default 1000 ms. */
  commandTimeoutMs?: number;
  /** How often Redis is PINGed while in memory mode; default 1000 ms. */
  probeIntervalMs?: number;
  /** How long a concurrency slot lives if never released (a crashed hub); default 10 minutes. */
  slotTtlMs?: number;
}

/**
 * A Redis that is down fails the limiter's calls at once (its client has no offline queue), so this only decides
 * when a connected Redis that stopped answering counts as down. It must outlast a burst: thousands of checks
 * queued at once on a loaded host wait tens of milliseconds, and falling back then would start every hub's
 * memory counters from zero in the middle of the burst (100 ms flipped a 200-call burst in tests under load).
 */
export const DEFAULT_LIMITER_COMMAND_TIMEOUT_MS = 1_000;
export const DEFAULT_LIMITER_PROBE_INTERVAL_MS = 1_000;
export const DEFAULT_SLOT_TTL_MS = 10 * 60_000;
class TimeoutError extends Error {
  constructor(ms: number) {
    super(`redis did not answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(ms)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * The rate limiter of one hub. Give it a Redis client that fails fast (`createRedis(url, 'limiter')`: no
 * offline queue, 5 s command timeout); its own calls are also cut at `commandTimeoutMs`. Call `close()` to
 * stop the probe timer.
 */
export class RateLimiter {
  private readonly redis: Redis & LimiterCommands;
  private readonly memory = new MemoryStore();
  private readonly commandTimeoutMs: number;
  private readonly probeIntervalMs: number;
  private readonly slotTtlMs: number;
  private current: LimiterMode = 'redis';
  private readonly fallbackListeners: (() => void)[] = [];
  private since: number;
  private lastError: string | null = null;
  private fallbacks = 0;
  /** When Redis last answered one of the limiter's checks (clock ms); tells a slow Redis from a gone one. */
  private lastReplyAt = Number.NEGATIVE_INFINITY;
  private probeTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
    options: RateLimiterOptions = {},
  ) {
    this.redis = defineScripts<LimiterCommands>(redis, {
      mcpRateCheck: { lua: CHECK },
      mcpRateReset: { numberOfKeys: 2, lua: RESET },
    });
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_LIMITER_COMMAND_TIMEOUT_MS;
    this.probeIntervalMs = options.probeIntervalMs ?? DEFAULT_LIMITER_PROBE_INTERVAL_MS;
    this.slotTtlMs = options.slotTtlMs ?? DEFAULT_SLOT_TTL_MS;
    this.since = clock();
  }

  /** Checks and counts one call (one Redis round trip); see Decision. Never throws for Redis failures. */
  async check(req: CheckRequest): Promise<Decision> {
    const p = plan(req, this.keys, this.clock(), this.slotTtlMs);
    if (this.current === 'redis') {
      const sentAt = this.clock();
      const applied = this.applyInRedis(p);
      try {
        const result = await withTimeout(applied, this.commandTimeoutMs).catch((err: unknown) => {
          // Slow is not down: when Redis answered other checks since this one was sent, this one is queued behind
          // a burst (or an event loop busy with it), so wait for it (the client's own command timeout still ends
          // the wait). Only a Redis that answered nothing in all that time counts as gone.
          if (err instanceof TimeoutError && this.lastReplyAt >= sentAt) return applied;
          throw err;
        });
        return decide(p, result, () => this.releaseInRedis(p.keyId, p.callId));
      } catch (err) {
        // The script may still run after the timeout: free the slot it would hold for a call that is now
        // counted in memory instead (its window counts stay; they err on the safe side).
        if (err instanceof TimeoutError && p.cap > 0) {
          applied.then(
            (late) => {
              if (late.allowed) void this.releaseInRedis(p.keyId, p.callId);
            },
            () => {},
          );
        }
        this.fallBack(err);
      }
    }
    return decide(p, this.memory.apply(p), () => {
      this.memory.release(p.keyId, p.callId);
      return Promise.resolve();
    });
  }

  /**
   * Deletes the key's window counters and concurrency slots, in Redis and in memory. Throws redis_unavailable
   * when Redis cannot be reached (its counters would come back with it).
   */
  async resetKey(keyId: string): Promise<void> {
    this.memory.reset(keyId);
    try {
      await withTimeout(
        this.redis.mcpRateReset(this.keys.rateConcurrent(keyId), this.keys.rateIndex(keyId)),
        this.commandTimeoutMs * 10,
      );
    } catch (err) {
      throw new AppError('redis_unavailable', 'could not reset the rate limits: Redis is unreachable', undefined, {
        cause: err,
      });
    }
  }

  mode(): LimiterMode {
    return this.current;
  }

  /** Told each time the limiter falls back to memory (Redis unreachable). */
  onFallback(listener: () => void): void {
    this.fallbackListeners.push(listener);
  }

  /** For /readyz details. */
  status(): LimiterStatus {
    return {
      mode: this.current,
      since: new Date(this.since).toISOString(),
      lastError: this.lastError,
      fallbacks: this.fallbacks,
    };
  }

  /** Stops probing; checks keep working in the current mode. */
  close(): void {
    this.closed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  private async applyInRedis(p: Plan): Promise<StoreResult> {
    const args: (string | number)[] = [p.windows.length + 2, this.keys.rateConcurrent(p.keyId)];
    args.push(this.keys.rateIndex(p.keyId));
    for (const w of p.windows) args.push(w.key);
    args.push(p.nowMs, p.cap, p.callId, p.slotExpiryMs, this.slotTtlMs);
    for (const w of p.windows) args.push(w.limit, w.endMs);
    const reply = await this.redis.mcpRateCheck(...args);
    this.lastReplyAt = this.clock();
    return { allowed: reply[0] === 1, held: reply[1] ?? 0, counts: reply.slice(2) };
  }

  /** A slot that cannot be freed now expires on its own (slotTtlMs), so failures are only logged. */
  private async releaseInRedis(keyId: string, callId: string): Promise<void> {
    try {
      await withTimeout(this.redis.zrem(this.keys.rateConcurrent(keyId), callId), this.commandTimeoutMs);
    } catch (err) {
      this.log.debug({ event: 'ratelimit.release_failed', err }, 'could not free a concurrency slot');
    }
  }

  private fallBack(err: unknown): void {
    if (this.current === 'memory') return;
    this.current = 'memory';
    this.since = this.clock();
    this.lastError = err instanceof Error ? err.message : String(err);
    this.fallbacks += 1;
    // Memory counters start empty: this hub cannot know what Redis had counted.
    this.memory.clear();
    this.log.warn(
      { event: 'ratelimit.fallback', err },
      'redis unreachable: rate limits fall back to this hub’s memory',
    );
    for (const listener of this.fallbackListeners) listener();
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.closed) return;
    this.probeTimer = setTimeout(() => void this.probe(), this.probeIntervalMs);
    this.probeTimer.unref();
  }

  private async probe(): Promise<void> {
    this.probeTimer = null;
    if (this.closed || this.current === 'redis') return;
    try {
      await withTimeout(this.redis.ping(), this.commandTimeoutMs * 5);
    } catch {
      this.memory.sweep(this.clock());
      this.scheduleProbe();
      return;
    }
    if (this.closed) return;
    const outageMs = this.clock() - this.since;
    this.current = 'redis';
    this.since = this.clock();
    this.memory.clear();
    this.log.info({ event: 'ratelimit.recovered', outage_ms: outageMs }, 'redis is back: rate limits use it again');
  }
}
