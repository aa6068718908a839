import { describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { KeyedSerialQueue } from './keyed-queue.js';

describe('KeyedSerialQueue', () => {
  it('runs one task per key at a time, coalesces requests made meanwhile, and keeps keys independent', async () => {
    const log: string[] = [];
    let active = 0;
    let maxActiveA = 0;
    // Every task holds until the test lets them go, so the requests below all arrive while the first ones run.
    let letGo: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const queue = new KeyedSerialQueue(
      async (key) => {
        if (key === 'a') maxActiveA = Math.max(maxActiveA, ++active);
        log.push(`start ${key}`);
        await held;
        log.push(`end ${key}`);
        if (key === 'a') active--;
      },
      () => {},
    );
    const first = queue.enqueue('a');
    queue.enqueue('a');
    queue.enqueue('a');
    queue.enqueue('b');
    await waitFor('both keys started', () => log.includes('start a') && log.includes('start b'));
    letGo();
    await first;
    await queue.idle();
    expect(maxActiveA).toBe(1);
    expect(log.filter((l) => l === 'start a')).toHaveLength(2);
    expect(log.filter((l) => l === 'start b')).toHaveLength(1);
    expect(log.indexOf('start b')).toBeLessThan(log.indexOf('end a'));
  });

  it('reports a failing task and keeps going', async () => {
    const errors: string[] = [];
    let runs = 0;
    const queue = new KeyedSerialQueue(
      async () => {
        runs++;
        throw new Error('boom');
      },
      (key, err) => errors.push(`${key}: ${(err as Error).message}`),
    );
    await queue.enqueue('x');
    await queue.enqueue('x');
    expect(runs).toBe(2);
    expect(errors).toEqual(['x: boom', 'x: boom']);
  });
});
