import { createKeys, createRedis } from '@mcp-hub/shared';
import getPort from 'get-port';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import { UsageRecorder, utcDay } from '../src/stores/usage.js';

const DAY1 = Date.UTC(2030, 0, 1, 10, 0, 0);
const DAY2 = Date.UTC(2030, 0, 2, 9, 0, 0);

describe('UsageRecorder', () => {
  let env: ReturnType<typeof testRedis>;
  let now: number;
  let recorder: UsageRecorder;

  beforeEach(() => {
    env = testRedis();
    now = DAY2;
    recorder = new UsageRecorder(env.redis, env.keys, captureLogger().log, () => now);
  });

  afterEach(async () => {
    await recorder.close();
    await env.cleanup();
  });

  it('records calls per day, server and tool and reads them back', async () => {
    recorder.record({ keyId: 'k1', server: 's1', tool: 'echo', ok: true, latencyMs: 10, at: DAY1 });
    recorder.record({ keyId: 'k1', server: 's1', tool: 'echo', ok: false, latencyMs: 20.4, at: DAY2 });
    recorder.record({ keyId: 'k1', server: 's2', tool: 'add', ok: true, latencyMs: 5, at: DAY2 + 1000 });
    recorder.record({ keyId: 'k2', server: 's1', tool: 'echo', ok: true, latencyMs: 1, at: DAY2 });
    await recorder.flush();

    const report = await recorder.get('k1', { days: 3 });
    expect(report).toEqual({
      keyId: 'k1',
      total: {
        calls: 3,
        errors: 1,
        latencyMsSum: 35,
        servers: { s1: 2, s2: 1 },
        tools: { 's1/echo': 2, 's2/add': 1 },
      },
      days: [
        { day: '2029-12-31', calls: 0, errors: 0, latencyMsSum: 0, servers: {}, tools: {} },
        { day: '2030-01-01', calls: 1, errors: 0, latencyMsSum: 10, servers: { s1: 1 }, tools: { 's1/echo': 1 } },
        {
          day: '2030-01-02',
          calls: 2,
          errors: 1,
          latencyMsSum: 25,
          servers: { s1: 1, s2: 1 },
          tools: { 's1/echo': 1, 's2/add': 1 },
        },
      ],
      lastRequestAt: new Date(DAY2 + 1000).toISOString(),
    });
    expect((await recorder.get('k2')).total.calls).toBe(1);
    expect((await recorder.get('k2')).days).toHaveLength(7);
  });

  it('answers zeros for a key never used', async () => {
    const report = await recorder.get('nobody', { days: 1 });
    expect(report).toEqual({
      keyId: 'nobody',
      total: { calls: 0, errors: 0, latencyMsSum: 0, servers: {}, tools: {} },
      days: [{ day: utcDay(now), calls: 0, errors: 0, latencyMsSum: 0, servers: {}, tools: {} }],
      lastRequestAt: null,
    });
  });

  it('writes in the background, expires day hashes and keeps the total', async () => {
    recorder.record({ keyId: 'k1', server: 's1', tool: 't', ok: true, latencyMs: 3 });
    expect(await env.redis.exists(env.keys.usage('k1'))).toBe(0); // not yet: batched
    // No flush(): the recorder's own timer writes it.
    await waitFor(
      'the timer to write the batch',
      async () => (await env.redis.hget(env.keys.usage('k1'), 'calls')) === '1',
    );
    const ttl = await env.redis.ttl(env.keys.usageDay('k1', utcDay(now)));
    expect(ttl).toBeGreaterThan(34 * 86_400);
    expect(ttl).toBeLessThanOrEqual(35 * 86_400);
    expect(await env.redis.ttl(env.keys.usage('k1'))).toBe(-1);
  });

  it('writes a full batch at once and sums a burst exactly', async () => {
    const small = new UsageRecorder(env.redis, env.keys, captureLogger().log, () => now, {
      maxBatch: 10,
      flushIntervalMs: 60_000,
    });
    for (let i = 0; i < 1000; i++)
      small.record({ keyId: 'k1', server: 's1', tool: 't', ok: i % 10 !== 0, latencyMs: 2 });
    await small.flush();
    const { total } = await small.get('k1');
    expect(total).toMatchObject({ calls: 1000, errors: 100, latencyMsSum: 2000, servers: { s1: 1000 } });
    await small.close();
  });

  it('never moves last_request_at backwards', async () => {
    recorder.record({ keyId: 'k1', server: 's1', tool: 't', ok: true, latencyMs: 1, at: DAY2 });
    await recorder.flush();
    recorder.record({ keyId: 'k1', server: 's1', tool: 't', ok: true, latencyMs: 1, at: DAY1 });
    await recorder.flush();
    expect((await recorder.get('k1')).lastRequestAt).toBe(new Date(DAY2).toISOString());
  });

  it('drops a batch Redis cannot take, without throwing, and logs it at debug', async () => {
    const { log, lines } = captureLogger();
    const dead = createRedis(`redis://127.0.0.1:${await getPort({ host: '127.0.0.1' })}`, 'limiter', log);
    const offline = new UsageRecorder(dead, createKeys('test:dead:'), log);
    offline.record({ keyId: 'k1', server: 's1', tool: 't', ok: true, latencyMs: 1 });
    await offline.flush();
    expect(lines.some((l) => l.event === 'usage.write_failed' && l.level === 'debug')).toBe(true);
    // Counted, and one warn line for the whole run of failures however many batches it drops.
    offline.record({ keyId: 'k1', server: 's1', tool: 't', ok: true, latencyMs: 1 });
    offline.record({ keyId: 'k1', server: 's1', tool: 't', ok: false, latencyMs: 1 });
    await offline.flush();
    expect(offline.droppedCalls).toBe(3);
    expect(lines.filter((l) => l.event === 'usage.dropped' && l.level === 'warn')).toHaveLength(1);
    await offline.close();
    dead.disconnect();
  });
});
