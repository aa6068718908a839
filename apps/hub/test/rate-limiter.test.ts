import { once } from 'node:events';
import { closeRedis, createKeys, createRedis, errorHeaders, isAppError } from '@mcp-hub/shared';
import getPort from 'get-port';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { DurableRedis } from '../../../test/redis-server.js';
import { captureLogger, testPrefix, testRedis } from '../../../test/support.js';
import {
  type AllowedDecision,
  type Decision,
  type DeniedDecision,
  type Rule,
  rateLimitedError,
  rateLimitHeaders,
} from '../src/limits/rate-limit-decision.js';
import { RateLimiter } from '../src/limits/rate-limiter.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** 2030-01-01T00:00:00Z plus 30 minutes: mid-hour, so hour and day windows end at different times. */
const T0 = Date.UTC(2030, 0, 1, 0, 30, 0);

let callSeq = 0;
const callId = (): string => `call-${++callSeq}`;

function allowed(d: Decision): AllowedDecision {
  expect(d.allowed).toBe(true);
  return d as AllowedDecision;
}

function denied(d: Decision): DeniedDecision {
  expect(d.allowed).toBe(false);
  return d as DeniedDecision;
}

describe('RateLimiter (Redis)', () => {
  let env: ReturnType<typeof testRedis>;
  let limiter: RateLimiter;
  let now: number;

  beforeEach(() => {
    env = testRedis();
    now = T0;
    limiter = new RateLimiter(env.redis, env.keys, captureLogger().log, () => now);
  });

  afterEach(async () => {
    limiter.close();
    await env.cleanup();
  });

  it('allows exactly the limit out of 200 concurrent checks', async () => {
    const rules: Rule[] = [{ scope: 'key', window: 'hour', limit: 50 }];
    const decisions = await Promise.all(
      Array.from({ length: 200 }, () => limiter.check({ keyId: 'k1', rules, callId: callId() })),
    );
    expect(decisions.filter((d) => d.allowed)).toHaveLength(50);
    const remaining = decisions.filter((d) => d.allowed).map((d) => d.remaining);
    expect(new Set(remaining).size).toBe(50);
    expect(Math.min(...remaining)).toBe(0);
    expect(await env.redis.get(env.keys.rateWindow('key:k1', 'hour', (T0 - (T0 % HOUR_MS)) / 1000))).toBe('50');
    expect(limiter.mode()).toBe('redis');
  });

  it('counts nothing anywhere when one rule denies', async () => {
    const rules: Rule[] = [
      { scope: 'key', window: 'hour', limit: 10 },
      { scope: 'tool', window: 'hour', limit: 2 },
    ];
    const call = (tool: string) => limiter.check({ keyId: 'k1', server: 's1', tool, rules, callId: callId() });
    allowed(await call('a'));
    allowed(await call('a'));
    for (let i = 0; i < 5; i++) {
      const d = denied(await call('a'));
      expect(d.rule).toEqual({ scope: 'tool', window: 'hour', limit: 2 });
      expect(d.remaining).toBe(0);
    }
    // Only the two allowed calls were counted against the key rule.
    const d = allowed(await call('b'));
    expect(d.rule).toEqual({ scope: 'tool', window: 'hour', limit: 2 });
    expect(d.remaining).toBe(1);
    const hour = (T0 - (T0 % HOUR_MS)) / 1000;
    expect(await env.redis.get(env.keys.rateWindow('key:k1', 'hour', hour))).toBe('3');
    expect(await env.redis.get(env.keys.rateWindow('tool:k1:s1:a', 'hour', hour))).toBe('2');
  });

  it('keeps hour and day windows apart and reports the rule that blocks longest', async () => {
    const rules: Rule[] = [
      { scope: 'key', window: 'hour', limit: 2 },
      { scope: 'key', window: 'day', limit: 3 },
    ];
    const call = () => limiter.check({ keyId: 'k1', rules, callId: callId() });
    const first = allowed(await call());
    expect(first.rule?.window).toBe('hour');
    expect(first.remaining).toBe(1);
    expect(first.resetAt).toBe((T0 + 30 * 60_000) / 1000);
    expect(first.resetAfterS).toBe(1800);
    allowed(await call());
    const hourly = denied(await call());
    expect(hourly.rule).toEqual({ scope: 'key', window: 'hour', limit: 2 });
    expect(hourly.resetAt).toBe((T0 + 30 * 60_000) / 1000);
    expect(hourly.retryAfterS).toBe(1800);

    now = T0 + HOUR_MS; // 01:30, a new hour of the same day
    const third = allowed(await call());
    expect(third.rule?.window).toBe('day');
    expect(third.remaining).toBe(0);
    const daily = denied(await call());
    expect(daily.rule).toEqual({ scope: 'key', window: 'day', limit: 3 });
    allowed(await limiter.check({ keyId: 'k1', rules: [rules[0] as Rule], callId: callId() }));
    // Both windows are now full: the day's, which ends last, is the one to wait for.
    const both = denied(await call());
    expect(both.rule.scope === 'key' && both.rule.window).toBe('day');
    expect(both.resetAt).toBe(Date.UTC(2030, 0, 2) / 1000);
    expect(both.retryAfterS).toBe((Date.UTC(2030, 0, 2) - now) / 1000);

    now = T0 + DAY_MS; // the next day
    expect(allowed(await call()).remaining).toBe(1);
  });

  it('counts per server and per tool independently', async () => {
    const rules: Rule[] = [
      { scope: 'server', window: 'day', limit: 3 },
      { scope: 'tool', window: 'day', limit: 2 },
    ];
    const call = (server: string, tool: string, keyId = 'k1') =>
      limiter.check({ keyId, server, tool, rules, callId: callId() });
    allowed(await call('s1', 'a'));
    allowed(await call('s1', 'a'));
    expect(denied(await call('s1', 'a')).rule.scope).toBe('tool');
    const b = allowed(await call('s1', 'b'));
    expect(b.rule?.scope).toBe('server');
    expect(b.remaining).toBe(0);
    expect(denied(await call('s1', 'c')).rule.scope).toBe('server');
    // Another server, and another key on the same server, have their own counters.
    expect(allowed(await call('s2', 'a')).remaining).toBe(1);
    expect(allowed(await call('s1', 'a', 'k2')).remaining).toBe(1);
    // A rule that needs a server is skipped for a call without one.
    expect(allowed(await limiter.check({ keyId: 'k1', rules, callId: callId() })).rule).toBeNull();
  });

  it('does not let ids with separators share a counter', async () => {
    const rules: Rule[] = [{ scope: 'tool', window: 'day', limit: 1 }];
    allowed(await limiter.check({ keyId: 'k', server: 's', tool: 't:x', rules, callId: callId() }));
    allowed(await limiter.check({ keyId: 'k:s', server: 't', tool: 'x', rules, callId: callId() }));
  });

  it('caps concurrent calls per key and frees a slot on release, once', async () => {
    const check = (keyId = 'k1') => limiter.check({ keyId, rules: [], concurrent: 3, callId: callId() });
    const held = [allowed(await check()), allowed(await check()), allowed(await check())];
    const fourth = denied(await check());
    expect(fourth.rule).toEqual({ scope: 'concurrent', limit: 3 });
    expect(fourth.retryAfterS).toBe(1);
    allowed(await check('k2')); // another key has its own slots
    await held[0]?.release();
    await held[0]?.release(); // idempotent: frees one slot, not two
    const fifth = allowed(await check());
    expect(denied(await check()).rule.scope).toBe('concurrent');
    expect(await env.redis.zcard(env.keys.rateConcurrent('k1'))).toBe(3);
    await fifth.release();
    expect(await env.redis.zcard(env.keys.rateConcurrent('k1'))).toBe(2);
  });

  it('lets the slots of a crashed hub expire', async () => {
    const short = new RateLimiter(env.redis, env.keys, captureLogger().log, () => now, { slotTtlMs: 60_000 });
    const check = () => short.check({ keyId: 'k1', rules: [], concurrent: 1, callId: callId() });
    allowed(await check()); // never released
    denied(await check());
    now += 60_001;
    allowed(await check());
    short.close();
  });

  it('does not take a slot when a window denies, nor count when the cap denies', async () => {
    const rules: Rule[] = [{ scope: 'key', window: 'hour', limit: 1 }];
    const a = allowed(await limiter.check({ keyId: 'k1', rules, concurrent: 1, callId: callId() }));
    expect(denied(await limiter.check({ keyId: 'k1', rules: [], concurrent: 1, callId: callId() })).rule.scope).toBe(
      'concurrent',
    );
    await a.release();
    expect(denied(await limiter.check({ keyId: 'k1', rules, concurrent: 1, callId: callId() })).rule.scope).toBe('key');
    expect(await env.redis.zcard(env.keys.rateConcurrent('k1'))).toBe(0);
  });

  it('resetKey deletes the key’s counters and slots, and only that key’s', async () => {
    const rules: Rule[] = [
      { scope: 'key', window: 'hour', limit: 1 },
      { scope: 'server', window: 'day', limit: 1 },
      { scope: 'tool', window: 'day', limit: 1 },
    ];
    const call = (keyId: string) =>
      limiter.check({ keyId, server: 's1', tool: 't', rules, concurrent: 5, callId: callId() });
    allowed(await call('k1'));
    allowed(await call('k2'));
    denied(await call('k1'));
    await limiter.resetKey('k1');
    expect(await env.redis.exists(env.keys.rateConcurrent('k1'), env.keys.rateIndex('k1'))).toBe(0);
    const left = await env.redis.keys(`${env.prefix}rate*`);
    expect(left.some((k) => k.includes('k1'))).toBe(false);
    expect(left.filter((k) => k.includes('k2'))).toHaveLength(5); // 3 windows, the slots, the index
    allowed(await call('k1'));
    denied(await call('k2'));
    await limiter.resetKey('never-used');
  });

  it('gives every counter a TTL to the end of its window and indexes it', async () => {
    const rules: Rule[] = [
      { scope: 'key', window: 'hour', limit: 5 },
      { scope: 'key', window: 'day', limit: 5 },
    ];
    allowed(await limiter.check({ keyId: 'k1', rules, concurrent: 2, callId: callId() }));
    const hourKey = env.keys.rateWindow('key:k1', 'hour', (T0 - 30 * 60_000) / 1000);
    const dayKey = env.keys.rateWindow('key:k1', 'day', Date.UTC(2030, 0, 1) / 1000);
    const hourTtl = await env.redis.pttl(hourKey);
    expect(hourTtl).toBeGreaterThan(30 * 60_000);
    expect(hourTtl).toBeLessThanOrEqual(31 * 60_000);
    expect(await env.redis.pttl(dayKey)).toBeGreaterThan(HOUR_MS * 23);
    expect((await env.redis.zrange(env.keys.rateIndex('k1'), '0', '-1')).sort()).toEqual([dayKey, hourKey].sort());
    expect(await env.redis.pttl(env.keys.rateIndex('k1'))).toBeGreaterThan(HOUR_MS * 23);
    expect(await env.redis.pttl(env.keys.rateConcurrent('k1'))).toBeGreaterThan(9 * 60_000);
  });

  it('merges rules that share a counter, keeping the lowest limit', async () => {
    const rules: Rule[] = [
      { scope: 'key', window: 'hour', limit: 5 },
      { scope: 'key', window: 'hour', limit: 2 },
    ];
    const d = allowed(await limiter.check({ keyId: 'k1', rules, callId: callId() }));
    expect(d.limit).toBe(2);
    expect(d.remaining).toBe(1); // counted once, not twice
  });
});

describe('rateLimitHeaders', () => {
  it('describes an allowed call', () => {
    const d: AllowedDecision = {
      allowed: true,
      rule: { scope: 'key', window: 'hour', limit: 100 },
      limit: 100,
      remaining: 42,
      resetAt: 2_000_000_000,
      resetAfterS: 600,
      release: async () => {},
    };
    expect(rateLimitHeaders(d)).toEqual({
      'RateLimit-Limit': '100',
      'RateLimit-Remaining': '42',
      'RateLimit-Reset': '600',
      'X-RateLimit-Limit': '100',
      'X-RateLimit-Remaining': '42',
      'X-RateLimit-Reset': '600',
    });
    expect(rateLimitHeaders({ ...d, rule: null })).toEqual({});
  });

  it('a denied call has the RateLimit headers, and its error the quota and its Retry-After', () => {
    const d: DeniedDecision = {
      allowed: false,
      rule: { scope: 'tool', window: 'day', limit: 5 },
      limit: 5,
      remaining: 0,
      resetAt: 2_000_000_000,
      resetAfterS: 3600,
      retryAfterS: 3600,
    };
    expect(rateLimitHeaders(d)).toMatchObject({ 'RateLimit-Remaining': '0' });
    const err = rateLimitedError(d);
    // Retry-After is declared with the error code, so every path that answers the error sends it.
    expect(errorHeaders(err)).toEqual({ 'retry-after': '3600' });
    expect(isAppError(err) && err.statusCode).toBe(429);
    expect(err.code).toBe('rate_limited');
    expect(err.details).toMatchObject({ limit: 5, remaining: 0, retryAfterS: 3600 });
    expect(err.message).toContain('5 calls per day per tool');
  });
});

describe('RateLimiter fallback', () => {
  const servers: DurableRedis[] = [];
  afterAll(async () => {
    for (const server of servers) await server.destroy();
  });

  async function setUp(commandTimeoutMs?: number, clientTimeoutMs = commandTimeoutMs) {
    const server = new DurableRedis(await getPort({ host: '127.0.0.1' }));
    servers.push(server);
    await server.start();
    const { log, lines } = captureLogger();
    const redis = createRedis(
      server.url,
      'limiter',
      log,
      clientTimeoutMs === undefined ? {} : { commandTimeout: clientTimeoutMs },
    );
    await once(redis, 'ready');
    const keys = createKeys(testPrefix());
    const limiter = new RateLimiter(redis, keys, log, Date.now, { probeIntervalMs: 100, commandTimeoutMs });
    const events = (name: string) => lines.filter((l) => l.event === name);
    return { server, redis, keys, limiter, events };
  }

  it('falls back to memory when Redis dies and returns to it, counters intact, when it is back', async () => {
    // A command timeout longer than the test's: a dead Redis must fail each check at once (no offline queue), never
    // by waiting out the timeout, or this test cannot finish.
    const { server, redis, keys, limiter, events } = await setUp(120_000);
    const rules: Rule[] = [{ scope: 'key', window: 'hour', limit: 100 }];
    const check = () => limiter.check({ keyId: 'k1', rules, concurrent: 10, callId: callId() });
    for (let i = 0; i < 5; i++) {
      const decision = await check();
      if (decision.allowed) await decision.release();
    }
    const windowKey = keys.rateWindow('key:k1', 'hour', Math.floor(Date.now() / HOUR_MS) * 3600);

    await server.kill('SIGKILL');
    const during: Decision[] = [];
    for (let i = 0; i < 20; i++) {
      const d = await check();
      during.push(d);
      if (d.allowed) await d.release();
    }
    expect(limiter.mode()).toBe('memory');
    expect(during.every((d) => d.allowed)).toBe(true);
    // Memory counters start empty: the 20 calls of the outage are all this hub knows of.
    expect(during.at(-1)?.remaining).toBe(100 - 20);
    expect(events('ratelimit.fallback')).toHaveLength(1);
    expect(events('ratelimit.fallback')[0]).toMatchObject({ level: 'warn' });
    expect(limiter.status()).toMatchObject({ mode: 'memory', fallbacks: 1 });
    expect(limiter.status().lastError).toEqual(expect.any(String));
    // A reset cannot reach Redis: it says so rather than pretend.
    await expect(limiter.resetKey('k1')).rejects.toMatchObject({ code: 'redis_unavailable' });

    await server.start();
    await waitFor('the limiter back on Redis', () => limiter.mode() === 'redis', 15_000);
    expect(events('ratelimit.recovered')).toHaveLength(1);
    expect(events('ratelimit.fallback')).toHaveLength(1);
    expect(await redis.get(windowKey)).toBe('5');
    const after = allowed(await check());
    expect(after.remaining).toBe(100 - 6);
    await after.release();
    expect(await redis.zcard(keys.rateConcurrent('k1'))).toBe(0);

    limiter.close();
    await closeRedis(redis);
  });

  it('times out on a Redis that stops answering, then recovers', async () => {
    const { server, redis, limiter, events } = await setUp(200);
    const rules: Rule[] = [{ scope: 'key', window: 'day', limit: 1000 }];
    const check = () => limiter.check({ keyId: 'k1', rules, callId: callId() });
    allowed(await check());
    server.signal('SIGSTOP');
    try {
      allowed(await check());
      expect(limiter.mode()).toBe('memory');
      allowed(await check());
      expect(events('ratelimit.fallback')).toHaveLength(1);
    } finally {
      server.signal('SIGCONT');
    }
    await waitFor('the limiter back on Redis', () => limiter.mode() === 'redis', 15_000);
    expect(events('ratelimit.recovered')).toHaveLength(1);
    allowed(await check());
    limiter.close();
    await closeRedis(redis);
  });
});
