import { afterEach, describe, expect, it, vi } from 'vitest';
import { ShutdownWrites } from './bounded.js';

const never = () => new Promise<never>(() => {});

describe('ShutdownWrites', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers a write that lands with its value', async () => {
    const writes = new ShutdownWrites(2_000);
    expect(await writes.wait(Promise.resolve('OK'))).toBe('OK');
    expect(await writes.wait(Promise.resolve(0))).toBe(0);
  });

  it('waits its deadline once for a write that hangs, then no longer waits for the next ones', async () => {
    vi.useFakeTimers();
    const writes = new ShutdownWrites(2_000);
    let first: unknown = 'pending';
    const firstDone = writes.wait(never()).then((v) => {
      first = v;
    });
    await vi.advanceTimersByTimeAsync(1_999);
    expect(first).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    await firstDone;
    expect(first).toBeUndefined();
    // No timer is advanced any more: a write that waited would never settle here.
    expect(await writes.wait(never())).toBeUndefined();
    expect(await writes.wait(Promise.resolve('late'))).toBeUndefined();
  });

  it('ignores the failure of a write it no longer waits for', async () => {
    const writes = new ShutdownWrites(1);
    await writes.wait(never());
    const failing = Promise.reject(new Error('connection is closed'));
    expect(await writes.wait(failing)).toBeUndefined();
  });
});
