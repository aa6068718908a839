import { describe, expect, it } from 'vitest';
import { backoffDelay } from './remote-upstream.js';

describe('backoffDelay', () => {
  it('doubles from the base with jitter and never passes the cap', () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const ms = backoffDelay(attempt, 500, 10_000);
      const exact = Math.min(500 * 2 ** attempt, 10_000);
      expect(ms).toBeGreaterThanOrEqual(Math.floor(exact * 0.8));
      expect(ms).toBeLessThanOrEqual(10_000);
    }
  });
});
