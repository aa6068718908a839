import { createServer, type Server } from 'node:net';
import getPort from 'get-port';
import { afterAll, describe, expect, it } from 'vitest';
import { testRedis } from '../../../test/support.js';
import { NoFreePortError, PortAllocator } from '../src/port-allocator.js';
import { RuntimeStore } from '../src/runtime-store.js';

const t = testRedis();
afterAll(() => t.cleanup());

async function freeRange(size: number): Promise<number> {
  for (;;) {
    const base = await getPort();
    if (base + size < 65_000) return base;
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
