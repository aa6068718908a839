import { describe, expect, it } from 'vitest';
import { captureLogger } from '../../../../test/support.js';
import { IllegalTransitionError, type UpstreamState, UpstreamStateMachine } from './upstream.js';

const STATES: UpstreamState[] = ['connecting', 'connected', 'down', 'closed'];
const ALLOWED = new Set([
  'connecting→connected',
  'connecting→down',
  'connecting→closed',
  'connected→down',
  'connected→closed',
  'down→connecting',
  'down→closed',
]);

/** A machine driven into `state` through allowed transitions. */
function machineIn(state: UpstreamState) {
  const captured = captureLogger('worker');
  const machine = new UpstreamStateMachine(captured.log);
  const path: Record<UpstreamState, UpstreamState[]> = {
    connecting: [],
    connected: ['connected'],
    down: ['down'],
    closed: ['closed'],
  };
  for (const step of path[state]) machine.transition(step);
  return { machine, captured };
}

describe('UpstreamStateMachine', () => {
  for (const from of STATES) {
    for (const to of STATES) {
      if (from === to) continue;
      const allowed = ALLOWED.has(`${from}→${to}`);
      it(`${allowed ? 'allows' : 'refuses'} ${from} → ${to}`, () => {
        const { machine, captured } = machineIn(from);
        const changes: UpstreamState[] = [];
        machine.onChange((state) => changes.push(state));
        if (allowed) {
          machine.transition(to, 'because');
          expect(machine.state).toBe(to);
          expect(changes).toEqual([to]);
          expect(captured.lines.at(-1)).toMatchObject({ event: 'upstream.state', from, to, reason: 'because' });
        } else {
          expect(() => machine.transition(to)).toThrow(IllegalTransitionError);
          expect(machine.state).toBe(from);
          expect(changes).toEqual([]);
        }
      });
    }
  }

  it('treats re-entering the current state as a no-op', () => {
    const { machine, captured } = machineIn('down');
    const before = captured.lines.length;
    machine.transition('down');
    expect(captured.lines).toHaveLength(before);
  });
});
