import { createServer, type Server } from 'node:net';
import getPort, { portNumbers } from 'get-port';
import { afterAll, describe, expect, it } from 'vitest';
import { testRedis } from '../../../test/support.js';
import { NoFreePortError, PortAllocator } from '../src/port-allocator.js';
import { RuntimeStore } from '../src/runtime-store.js';

const t = testRedis();
afterAll(() => t.cleanup());

/** Whether nothing listens on `port` now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/**
 * `size` consecutive free ports, below the kernel's ephemeral range (32768+): other test files running at the same
 * time take their ports, and their connections' local ports, from that range, so a range found free here stays so.
 */
async function freeRange(size: number): Promise<number> {
  for (;;) {
    const base = await getPort({ port: portNumbers(20_000, 32_000 - size) });
    const all = await Promise.all(Array.from({ length: size }, (_, i) => isFree(base + i)));
    if (all.every(Boolean)) return base;
  }
}

describe('PortAllocator', () => {
  it('never hands out one port twice, across two supervisors claiming at once', async () => {
    const base = await freeRange(40);
    const a = new PortAllocator(new RuntimeStore(t.redis, t.keys, 'sup-a'), '127.0.0.1', base, 40);
    const b = new PortAllocator(new RuntimeStore(t.redis, t.keys, 'sup-b'), '127.0.0.1', base, 40);
    const claimed = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).claim()));
    expect(new Set(claimed).size).toBe(30);
    for (const port of claimed) {
      expect(port).toBeGreaterThanOrEqual(base);
      expect(port).toBeLessThan(base + 40);
    }
    expect((await t.redis.smembers(t.keys.runtimePorts)).length).toBe(30);
  });

  it('skips a port that something on the host already uses, and fails clearly when the range is full', async () => {
    const base = await freeRange(2);
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(base, '127.0.0.1', r));
    const store = new RuntimeStore(t.redis, t.keys, 'sup-c');
    const allocator = new PortAllocator(store, '127.0.0.1', base, 2);
    try {
      expect(await allocator.claim()).toBe(base + 1);
      await expect(allocator.claim()).rejects.toBeInstanceOf(NoFreePortError);
      await allocator.release(base + 1);
      expect(await t.redis.sismember(t.keys.runtimePorts, String(base + 1))).toBe(0);
    } finally {
      squatter.close();
    }
  });
});
