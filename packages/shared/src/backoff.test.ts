import { describe, expect, it } from 'vitest';
import { backoffMs, jitteredBackoffMs } from './backoff.js';

describe('backoffMs', () => {
  it('doubles from the base and stops at the cap', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffMs(n, 500, 10_000))).toEqual([500, 1_000, 2_000, 4_000, 8_000, 10_000]);
    expect(backoffMs(10_000, 50, 2_000)).toBe(2_000);
  });

  it('jitters by ±20% and never passes the cap', () => {
    expect(jitteredBackoffMs(2, 500, 10_000, () => 0)).toBe(1_600);
    expect(jitteredBackoffMs(2, 500, 10_000, () => 1)).toBe(2_400);
    expect(jitteredBackoffMs(40, 500, 10_000, () => 1)).toBe(10_000);
    for (let attempt = 0; attempt < 40; attempt++) {
      const ms = jitteredBackoffMs(attempt, 500, 10_000);
      expect(ms).toBeGreaterThanOrEqual(Math.floor(backoffMs(attempt, 500, 10_000) * 0.8));
      expect(ms).toBeLessThanOrEqual(10_000);
    }
  });
});
