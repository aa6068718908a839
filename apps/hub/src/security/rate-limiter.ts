import { AppError, defineScripts, type Logger, type RedisKeys } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';

/**
 * Per-API-key rate limits: fixed windows aligned to the UTC hour and the UTC day, optionally per key+server
 * or per key+server+tool, plus a cap on concurrent calls per key. In Redis, one EVALSHA per call checks every
 * window and the concurrency slot and, only when all of them pass, counts the call everywhere (a denied call
 * consumes no quota). When Redis is unreachable the same semantics run on in-memory counters of this hub
 * (starting empty) until a periodic PING answers again.
 */

export type RateScope = 'key' | 'server' | 'tool';
export type RateWindow = 'hour' | 'day';

/** `server` counts per key+server and `tool` per key+server+tool; a rule whose server/tool is absent is skipped. */
export interface Rule {
  scope: RateScope;
  window: RateWindow;
  limit: number;
}

/** The pseudo-rule a call is denied by when the key already holds `limit` concurrent calls. */
export interface ConcurrencyRule {
  scope: 'concurrent';
  limit: number;
}

export interface CheckRequest {
  keyId: string;
  server?: string;
  tool?: string;
  rules: readonly Rule[];
  /** Most calls of this key in flight at once; unset or 0: no cap. */
  concurrent?: number;
  /** Unique per call: the member of the concurrency set. */
  callId: string;
}

export interface AllowedDecision {
  allowed: true;
  /** The tightest rule (least remaining), which the headers describe; null when no window rule applied. */
  rule: Rule | null;
  limit: number;
  /** Calls left in the tightest rule's window, this call counted. */
  remaining: number;
  /** End of the tightest rule's window, epoch seconds. */
  resetAt: number;
  /** Seconds from the check until `resetAt`. */
  resetAfterS: number;
  /** Frees the concurrency slot; idempotent, never rejects. A no-op when no cap applied. */
  release(): Promise<void>;
}

export interface DeniedDecision {
  allowed: false;
  /** The rule that denied the call (of several over their limit, the one whose window ends last). */
  rule: Rule | ConcurrencyRule;
  limit: number;
  remaining: 0;
  /** Epoch seconds at which the call may succeed again (for the concurrency cap: a guess, 1 s away). */
  resetAt: number;
  resetAfterS: number;
  retryAfterS: number;
}

export type Decision = AllowedDecision | DeniedDecision;

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
/** Window counters outlive their window by this much, so a hub with a slightly late clock still finds them. */
const WINDOW_GRACE_MS = 60_000;
const CONCURRENCY_RETRY_AFTER_S = 1;
const WINDOW_MS: Record<RateWindow, number> = { hour: 3_600_000, day: 86_400_000 };

/**
 * KEYS[1] the key's concurrency sorted set, KEYS[2] the key's index of live window keys, KEYS[3..] window counters
 * ARGV[1] now (ms), ARGV[2] concurrency cap (0 = none), ARGV[3] call id, ARGV[4] slot expiry (ms, the score),
 * ARGV[5] slot set TTL (ms), then per window counter: limit, window end (ms)
 * Returns {allowed (1 | 0), slots held, count of each counter}. All or nothing: when any counter is at its
 * limit or the cap is reached nothing is written and the counts are the current ones; otherwise every counter
 * is incremented (the counts include this call) and a slot is taken. A counter gets its TTL (and its index
 * entry) when it is created; expired slots and index entries are pruned as they are met.
 */
const CHECK = `
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local n = #KEYS - 2
local counts = {}
local allowed = 1
for i = 1, n do
  local c = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  counts[i] = c
  if c >= tonumber(ARGV[4 + 2 * i]) then allowed = 0 end
end
local held = 0
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  held = redis.call('ZCARD', KEYS[1])
  if held >= cap then allowed = 0 end
end
if allowed == 1 then
  local indexTtl = 0
  for i = 1, n do
    local c = redis.call('INCR', KEYS[i + 2])
    counts[i] = c
    if c == 1 then
      local windowEnd = tonumber(ARGV[5 + 2 * i])
      local ttl = windowEnd - now + ${WINDOW_GRACE_MS}
      redis.call('PEXPIRE', KEYS[i + 2], ttl)
      redis.call('ZADD', KEYS[2], windowEnd + ${WINDOW_GRACE_MS}, KEYS[i + 2])
      if ttl > indexTtl then indexTtl = ttl end
    end
  end
  if indexTtl > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    if redis.call('PTTL', KEYS[2]) < indexTtl then redis.call('PEXPIRE', KEYS[2], indexTtl) end
  end
  if cap > 0 then
    redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    held = held + 1
  end
end
local out = {allowed, held}
for i = 1, n do out[i + 2] = counts[i] end
return out
`;

/**
 * KEYS[1] the key's concurrency sorted set, KEYS[2] the key's index of live window keys
 * Deletes every window counter in the index, the index and the concurrency slots. Returns how many keys went.
 * (The counter names are read from the index, so under Redis Cluster the prefix must carry a hash tag, as for
 * every script here.)
 */
const RESET = `
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local deleted = 0
for i = 1, #members, 500 do
  deleted = deleted + redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
end
return deleted + redis.call('DEL', KEYS[1], KEYS[2])
`;

interface LimiterCommands {
  mcpRateCheck(...args: (string | number)[]): Promise<number[]>;
  mcpRateReset(...args: string[]): Promise<number>;
}

/** One window counter a check touches (rules that share a counter are merged, keeping the lowest limit). */
interface PlannedWindow {
  rule: Rule;
  key: string;
  limit: number;
  endMs: number;
}

interface Plan {
  keyId: string;
  callId: string;
  nowMs: number;
  windows: PlannedWindow[];
  cap: number;
  slotExpiryMs: number;
}

interface StoreResult {
  allowed: boolean;
  held: number;
  counts: number[];
}

/** Start of the UTC hour or day containing `nowMs`, in ms. */
export function windowStartMs(window: RateWindow, nowMs: number): number {
  const size = WINDOW_MS[window];
  return Math.floor(nowMs / size) * size;
}

/**
 * The scope part of a window key. Components are URI-encoded so that a `:` inside an id cannot make two
 * different (key, server, tool) triples share a counter.
 */
function scopeName(rule: Rule, req: CheckRequest): string | null {
  const keyId = encodeURIComponent(req.keyId);
  if (rule.scope === 'key') return `key:${keyId}`;
  if (req.server === undefined) return null;
  const server = encodeURIComponent(req.server);
  if (rule.scope === 'server') return `server:${keyId}:${server}`;
  if (req.tool === undefined) return null;
  return `tool:${keyId}:${server}:${encodeURIComponent(req.tool)}`;
}

function plan(req: CheckRequest, keys: RedisKeys, nowMs: number, slotTtlMs: number): Plan {
  const windows: PlannedWindow[] = [];
  for (const rule of req.rules) {
    const scope = scopeName(rule, req);
    if (scope === null) continue;
    const startMs = windowStartMs(rule.window, nowMs);
    const key = keys.rateWindow(scope, rule.window, startMs / 1000);
    const same = windows.find((w) => w.key === key);
    if (same) {
      if (rule.limit < same.limit) {
        same.limit = rule.limit;
        same.rule = rule;
      }
      continue;
    }
    windows.push({ rule, key, limit: rule.limit, endMs: startMs + WINDOW_MS[rule.window] });
  }
  const cap = req.concurrent !== undefined && req.concurrent > 0 ? Math.floor(req.concurrent) : 0;
  return { keyId: req.keyId, callId: req.callId, nowMs, windows, cap, slotExpiryMs: nowMs + slotTtlMs };
}

const ceilS = (ms: number): number => Math.ceil(ms / 1000);

function decide(p: Plan, result: StoreResult, release: () => Promise<void>): Decision {
  if (!result.allowed) {
    let over: PlannedWindow | undefined;
    p.windows.forEach((w, i) => {
      if ((result.counts[i] ?? 0) >= w.limit && (over === undefined || w.endMs > over.endMs)) over = w;
    });
    if (over) {
      const resetAfterS = Math.max(1, ceilS(over.endMs - p.nowMs));
      return {
        allowed: false,
        rule: over.rule,
        limit: over.limit,
        remaining: 0,
        resetAt: ceilS(over.endMs),
        resetAfterS,
        retryAfterS: resetAfterS,
      };
    }
    return {
      allowed: false,
      rule: { scope: 'concurrent', limit: p.cap },
      limit: p.cap,
      remaining: 0,
      resetAt: ceilS(p.nowMs) + CONCURRENCY_RETRY_AFTER_S,
      resetAfterS: CONCURRENCY_RETRY_AFTER_S,
      retryAfterS: CONCURRENCY_RETRY_AFTER_S,
    };
  }
  let tightest: PlannedWindow | undefined;
  let tightestRemaining = Number.POSITIVE_INFINITY;
  p.windows.forEach((w, i) => {
    const remaining = Math.max(0, w.limit - (result.counts[i] ?? 0));
    if (remaining < tightestRemaining || (remaining === tightestRemaining && tightest && w.endMs > tightest.endMs)) {
      tightest = w;
      tightestRemaining = remaining;
    }
  });
  let released = false;
  const releaseOnce = (): Promise<void> => {
    if (released || p.cap === 0) return Promise.resolve();
    released = true;
    return release();
  };
  if (!tightest) {
    return { allowed: true, rule: null, limit: 0, remaining: 0, resetAt: 0, resetAfterS: 0, release: releaseOnce };
  }
  return {
    allowed: true,
    rule: tightest.rule,
    limit: tightest.limit,
    remaining: tightestRemaining,
    resetAt: ceilS(tightest.endMs),
    resetAfterS: Math.max(0, ceilS(tightest.endMs - p.nowMs)),
    release: releaseOnce,
  };
}

/**
 * The headers of a decision: RateLimit-Limit/Remaining/Reset (IETF draft; Reset in seconds from now), and the
 * same values under X-RateLimit-* (seconds too, as @fastify/rate-limit sends them). Empty when no window rule
 * applied to an allowed call. A denied call's Retry-After comes with its error (`rate_limited` in ERROR_HEADERS).
 */
export function rateLimitHeaders(decision: Decision): Record<string, string> {
  const headers: Record<string, string> = {};
  if (decision.allowed && decision.rule === null) return headers;
  const limit = String(decision.limit);
  const remaining = String(decision.remaining);
  const reset = String(decision.resetAfterS);
  headers['RateLimit-Limit'] = limit;
  headers['RateLimit-Remaining'] = remaining;
  headers['RateLimit-Reset'] = reset;
  headers['X-RateLimit-Limit'] = limit;
  headers['X-RateLimit-Remaining'] = remaining;
  headers['X-RateLimit-Reset'] = reset;
  return headers;
}

/** The 429 a denied decision becomes (code rate_limited); `details` carries the rule and remaining quota. */
export function rateLimitedError(decision: DeniedDecision): AppError {
  const { rule, limit, remaining, resetAt, retryAfterS } = decision;
  const what =
    rule.scope === 'concurrent'
      ? `${limit} concurrent calls`
      : `${limit} calls per ${rule.window}${rule.scope === 'key' ? '' : ` per ${rule.scope}`}`;
  return new AppError('rate_limited', `rate limit reached (${what}); retry in ${retryAfterS} s`, {
    rule,
    limit,
    remaining,
    resetAt,
    retryAfterS,
  });
}

/** The same semantics as the CHECK script, on this process's memory. Synchronous, hence atomic. */
class MemoryStore {
  /** key id → window key → {count, end of the window ms} */
  private readonly windows = new Map<string, Map<string, { count: number; endMs: number }>>();
  /** key id → call id → slot expiry ms */
  private readonly slots = new Map<string, Map<string, number>>();

  apply(p: Plan): StoreResult {
    const own = this.windows.get(p.keyId);
    const counts = p.windows.map((w) => {
      const entry = own?.get(w.key);
      return entry && entry.endMs > p.nowMs ? entry.count : 0;
    });
    let allowed = p.windows.every((w, i) => (counts[i] ?? 0) < w.limit);
    let slots = this.slots.get(p.keyId);
    let held = 0;
    if (p.cap > 0) {
      if (slots) for (const [id, expiry] of slots) if (expiry <= p.nowMs) slots.delete(id);
      held = slots?.size ?? 0;
      if (held >= p.cap) allowed = false;
    }
    if (!allowed) return { allowed, held, counts };
    let map = own;
    if (!map) {
      map = new Map();
      this.windows.set(p.keyId, map);
    }
    p.windows.forEach((w, i) => {
      const count = (counts[i] ?? 0) + 1;
      counts[i] = count;
      map.set(w.key, { count, endMs: w.endMs });
    });
    if (p.cap > 0) {
      if (!slots) {
        slots = new Map();
        this.slots.set(p.keyId, slots);
      }
      slots.set(p.callId, p.slotExpiryMs);
      held += 1;
    }
    return { allowed, held, counts };
  }

  release(keyId: string, callId: string): void {
    const slots = this.slots.get(keyId);
    if (!slots) return;
    slots.delete(callId);
    if (slots.size === 0) this.slots.delete(keyId);
  }

  reset(keyId: string): void {
    this.windows.delete(keyId);
    this.slots.delete(keyId);
  }

  /** Drops expired counters and slots, so a long outage does not grow memory without bound. */
  sweep(nowMs: number): void {
    for (const [keyId, map] of this.windows) {
      for (const [key, entry] of map) if (entry.endMs <= nowMs) map.delete(key);
      if (map.size === 0) this.windows.delete(keyId);
    }
    for (const [keyId, slots] of this.slots) {
      for (const [id, expiry] of slots) if (expiry <= nowMs) slots.delete(id);
      if (slots.size === 0) this.slots.delete(keyId);
    }
  }

  clear(): void {
    this.windows.clear();
    this.slots.clear();
  }
}

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
