import { RUNTIME_STATUSES, type RuntimeStatus } from '@mcp-hub/shared';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs, IllegalTransitionError, type LifecycleEvent, nextStatus, TRANSITIONS } from './lifecycle.js';

const EVENTS: LifecycleEvent[] = [
  'wait',
  'spawn',
  'healthy',
  'health_failed',
  'start_failed',
  'exited',
  'restart',
  'backoff',
  'stop',
  'stopped',
];

function run(from: RuntimeStatus, events: LifecycleEvent[]): RuntimeStatus {
  return events.reduce(nextStatus, from);
}

describe('worker lifecycle', () => {
  it('answers every (state, event) pair: the table value, or IllegalTransitionError', () => {
    let allowed = 0;
    for (const status of RUNTIME_STATUSES) {
      for (const event of EVENTS) {
        const to = TRANSITIONS[status][event];
        if (to === undefined) {
          expect(() => nextStatus(status, event), `${status} + ${event}`).toThrow(IllegalTransitionError);
        } else {
          expect(nextStatus(status, event)).toBe(to);
          expect(RUNTIME_STATUSES).toContain(to);
          allowed++;
        }
      }
    }
    expect(allowed).toBeGreaterThan(20);
  });

  it('follows the design paths', () => {
    expect(run('pending', ['spawn', 'healthy'])).toBe('running');
    expect(run('running', ['health_failed', 'healthy'])).toBe('running');
    expect(run('running', ['health_failed', 'restart', 'spawn'])).toBe('starting');
    expect(run('running', ['stop', 'stopped'])).toBe('stopped');
    expect(run('starting', ['start_failed', 'spawn'])).toBe('starting');
    expect(run('running', ['exited', 'backoff', 'spawn', 'healthy'])).toBe('running');
    expect(run('stopped', ['spawn', 'healthy'])).toBe('running');
  });

  it('can stop from every state, and never leaves stopping except to stopped', () => {
    for (const status of RUNTIME_STATUSES) {
      const afterStop = status === 'stopping' ? 'stopping' : nextStatus(status, 'stop');
      const end = afterStop === 'stopping' ? nextStatus(afterStop, 'stopped') : afterStop;
      expect(end, status).toBe('stopped');
    }
    expect(Object.keys(TRANSITIONS.stopping)).toEqual(['stopped']);
  });

  it('refuses nonsense such as healthy while stopped', () => {
    expect(() => nextStatus('stopped', 'healthy')).toThrow('illegal worker transition: healthy in state stopped');
    expect(() => nextStatus('backoff', 'exited')).toThrow(IllegalTransitionError);
  });

  it('backs off exponentially after the first crash, capped', () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffDelayMs(n, 500, 5_000))).toEqual([0, 500, 1_000, 2_000, 4_000, 5_000]);
  });
});
