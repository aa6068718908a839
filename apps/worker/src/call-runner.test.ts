import { describe, expect, it } from 'vitest';
import { captureLogger } from '../../../test/support.js';
import { CallRunner } from './call-runner.js';
import type { Upstream } from './upstream/upstream.js';

describe('CallRunner idle clock', () => {
  it('starts over when the worker becomes ready, so a slow start is not idle time', () => {
    let clock = 0;
    // No call runs here: the upstream is never touched.
    const runner = new CallRunner({
      upstream: {} as Upstream,
      log: captureLogger('worker').log,
      timeoutMs: 1_000,
      now: () => clock,
    });
    clock += 5_000;
    expect(runner.idleMs()).toBe(5_000);
    runner.touch();
    expect(runner.idleMs()).toBe(0);
    clock += 700;
    expect(runner.idleMs()).toBe(700);
  });
});
