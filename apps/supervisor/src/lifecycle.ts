import { backoffMs, type RuntimeStatus } from '@mcp-hub/shared';

/** What can happen to a worker. */
export type LifecycleEvent =
  | 'wait' // cannot start yet (capacity)
  | 'spawn' // a process was started
  | 'healthy' // /healthz answered 200
  | 'health_failed' // /healthz failed
  | 'start_failed' // it never became healthy, or exited while starting
  | 'exited' // a running process went away
  | 'restart' // spec change, restart request, or too many failed health checks
  | 'backoff' // crash loop: wait before the next start
  | 'stop' // deleted, disabled, idle, or shutdown
  | 'stopped'; // the process is gone

/**
 * The allowed transitions (the design's lifecycle):
 * pending → starting → running ⇄ unhealthy → restarting → starting …;
 * running → stopping → stopped; starting/restarting → backoff → starting.
 * Anything not listed is a bug and throws.
 */
export const TRANSITIONS: Readonly<Record<RuntimeStatus, Readonly<Partial<Record<LifecycleEvent, RuntimeStatus>>>>> = {
  pending: { wait: 'pending', spawn: 'starting', stop: 'stopped' },
  starting: {
    healthy: 'running',
    start_failed: 'backoff',
    exited: 'backoff',
    restart: 'restarting',
    stop: 'stopping',
  },
  running: { health_failed: 'unhealthy', exited: 'restarting', restart: 'restarting', stop: 'stopping' },
  unhealthy: {
    healthy: 'running',
    health_failed: 'unhealthy',
    exited: 'restarting',
    restart: 'restarting',
    stop: 'stopping',
  },
  restarting: { spawn: 'starting', backoff: 'backoff', wait: 'pending', stop: 'stopped' },
  backoff: { spawn: 'starting', wait: 'pending', stop: 'stopped' },
  stopping: { stopped: 'stopped' },
  stopped: { spawn: 'starting', wait: 'pending', stop: 'stopped' },
};

export class IllegalTransitionError extends Error {
  constructor(
    readonly from: RuntimeStatus,
    readonly event: LifecycleEvent,
  ) {
    super(`illegal worker transition: ${event} in state ${from}`);
    this.name = 'IllegalTransitionError';
  }
}

/** The state after `event` in `from`; throws IllegalTransitionError for a transition the table does not allow. */
export function nextStatus(from: RuntimeStatus, event: LifecycleEvent): RuntimeStatus {
  const to = TRANSITIONS[from][event];
  if (to === undefined) throw new IllegalTransitionError(from, event);
  return to;
}

/** States in which a worker process may be alive. */
export function hasProcess(status: RuntimeStatus): boolean {
  return status === 'starting' || status === 'running' || status === 'unhealthy' || status === 'stopping';
}

/** Crash-loop delay before attempt `crashes` (1 = the first crash restarts at once), in ms. */
export function backoffDelayMs(crashes: number, baseMs: number, maxMs: number): number {
  return crashes <= 1 ? 0 : backoffMs(crashes - 2, baseMs, maxMs);
}
