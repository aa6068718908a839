import { describe, expect, it } from 'vitest';
import { Semaphore } from './semaphore.js';

describe('Semaphore', () => {
  it('lets at most `limit` holders in, in arrival order, and ignores double releases', async () => {
    const slots = new Semaphore(2);
    const order: number[] = [];
    const a = await slots.acquire();
    const b = await slots.acquire();
    const c = slots.acquire().then((release) => {
      order.push(3);
      return release;
    });
    const d = slots.acquire().then((release) => {
      order.push(4);
      return release;
    });
    // The semaphore works on promises alone: once this turn of the event loop is over, every waiter that could
    // have been let in has been.
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    expect(slots.inUse).toBe(2);
    a();
    a();
    const releaseC = await c;
    expect(order).toEqual([3]);
    b();
    (await d)();
    releaseC();
    expect(slots.inUse).toBe(0);
  });
});
