import { backoffMs, type RuntimeRecord, type RuntimeStatus, type ServerSpec, workerSpecDigest } from '@mcp-hub/shared';
import { admitWorker, type ProjectKey } from './admission.js';
import { backoffDelayMs, type LifecycleEvent } from './lifecycle.js';

/**
 * The supervisor's decisions as pure functions of what it read: no Redis, no processes, no clock of
 * their own (`nowMs` is an input). The reconciler and the worker runs carry them out.
 */

/** What the reconciler needs to know of a worker this supervisor runs. */
export interface LocalWorkerView {
  status: RuntimeStatus;
  specRev: number;
  /** `workerSpecDigest` of the spec the worker runs ('' when unknown: an adopted worker of an older rev). */
  specDigest: string;
  restartRequests: number;
  /** A successor run is starting (a planned restart under way). */
  replacing?: boolean;
  /** A planned restart failed (the old worker kept serving): the next attempt not before this (epoch ms). */
  replaceRetryAt?: number;
  /** An action the health loop asked for. */
  wanted?: 'idle_stop' | 'health_restart';
  nextAttemptAt?: number;
  reason?: string;
}

export interface DecisionInput {
  spec: ServerSpec | null;
  runtime: RuntimeRecord | null;
  /** The server's restart-request counter in the registry. */
  restartRequests: number;
  /** The worker this supervisor runs for the server, if any. */
  local?: LocalWorkerView;
  nowMs: number;
}

export type StopReason = 'deleted' | 'disabled' | 'idle';
export type PlannedReason = 'spec_changed' | 'restart_requested';

export type Action =
  | { do: 'nothing' }
  /** The server should not run and nothing of it is left here (deleted, disabled, or stopped for idleness). */
  | { do: 'stay_stopped'; reason: StopReason }
  /** Stop the local worker; an idle stop keeps its record (status stopped) so that it stays stopped. */
  | { do: 'stop'; reason: StopReason; keepRecord: boolean }
  /** No local worker, but a record of one for a server that should not run: clean it if its owner is gone. */
  | { do: 'clean_orphan'; reason: StopReason }
  /** The health loop found the worker idle: stop it, remembering the restart requests seen. */
  | { do: 'stop_idle' }
  | { do: 'restart'; reason: 'health' | PlannedReason }
  /**
   * A planned restart of a running worker: start the successor on a new port, switch the record once it is
   * healthy, then drain and stop the old one (which keeps serving if the successor fails).
   */
  | { do: 'replace'; reason: PlannedReason }
  /** The spec changed in fields the worker does not read: keep the process, note the rev. */
  | { do: 'note_spec'; specRev: number }
  /** Crash-loop backoff (or no free port): try again at `untilMs`. */
  | { do: 'wait_backoff'; untilMs: number }
  /** Start the next run of a worker that is between runs. */
  | { do: 'relaunch'; reason: string }
  /** No local worker: take the lease, adopt the recorded worker if `adopt`, else ask for a slot (`placeNewWorker`). */
  | { do: 'claim'; adopt: boolean };

/** A record with everything needed to find its worker again. */
export function adoptable(runtime: RuntimeRecord | null): boolean {
  return runtime?.pid !== undefined && runtime.port !== undefined && runtime.instance !== undefined;
}

/** The level-triggered decision for one server: desired (spec, requests) against actual (record, local worker). */
export function decide(input: DecisionInput): Action {
  const { spec, runtime, restartRequests, local, nowMs } = input;
  // A worker stopped for idleness stays stopped until someone asks for it again (a restart request).
  const idleStopped =
    spec !== null &&
    runtime?.status === 'stopped' &&
    runtime.reason === 'idle' &&
    restartRequests <= (runtime.restartRequests ?? 0);

  if (!spec?.enabled || idleStopped) {
    const reason: StopReason = !spec ? 'deleted' : !spec.enabled ? 'disabled' : 'idle';
    if (local) return { do: 'stop', reason, keepRecord: reason === 'idle' };
    if (runtime && !idleStopped) return { do: 'clean_orphan', reason };
    return { do: 'stay_stopped', reason };
  }

  if (!local) return { do: 'claim', adopt: adoptable(runtime) };
  if (local.status === 'stopping') return { do: 'nothing' };
  if (local.wanted === 'idle_stop' && local.status === 'running') return { do: 'stop_idle' };
  if (local.wanted === 'health_restart' && local.status === 'unhealthy') return { do: 'restart', reason: 'health' };
  const planned = plannedRestart(spec, restartRequests, local);
  if (planned === 'metadata') return { do: 'note_spec', specRev: spec.rev };
  if (planned !== undefined) {
    // A running worker goes on serving until its successor is ready; any other state has nothing to keep.
    if (local.status !== 'running') return { do: 'restart', reason: planned };
    if (local.replacing) return { do: 'nothing' };
    if (local.replaceRetryAt !== undefined && nowMs < local.replaceRetryAt) {
      return { do: 'wait_backoff', untilMs: local.replaceRetryAt };
    }
    return { do: 'replace', reason: planned };
  }
  if (local.status === 'backoff' || local.status === 'restarting' || local.status === 'pending') {
    if (local.nextAttemptAt !== undefined && nowMs < local.nextAttemptAt) {
      return { do: 'wait_backoff', untilMs: local.nextAttemptAt };
    }
    return { do: 'relaunch', reason: local.reason ?? 'restart' };
  }
  return { do: 'nothing' };
}

/** Why the worker should run anew: its spec changed in what it reads, or a restart was asked; 'metadata' when only other fields changed. */
function plannedRestart(
  spec: ServerSpec,
  restartRequests: number,
  local: LocalWorkerView,
): PlannedReason | 'metadata' | undefined {
  if (spec.rev !== local.specRev && workerSpecDigest(spec) !== local.specDigest) return 'spec_changed';
  if (restartRequests > local.restartRequests) return 'restart_requested';
  if (spec.rev !== local.specRev) return 'metadata';
  return undefined;
}

export interface PlacementInput {
  project: ProjectKey;
  runtime: RuntimeRecord | null;
  /** Workers this supervisor runs per project and in all, and the other servers waiting per project. */
  slots: {
    running: ReadonlyMap<ProjectKey, number>;
    total: number;
    waiting: ReadonlyMap<ProjectKey, number>;
  };
  workerMax: number;
  perProjectMax: number;
}

export type Placement =
  /** `wake`: a worker stopped for idleness, asked for again; `takeover`: a server whose record is another's. */
  | { do: 'start'; reason: 'start' | 'takeover' | 'wake' }
  /** Wait for a slot; `writeRecord` is false when the record already says so (nothing to announce). */
  | { do: 'wait_pending'; reason: string; writeRecord: boolean };

/** Whether a server with no live worker gets a slot now (docs/adr/0006-tenant-fair-sharing.md). */
export function placeNewWorker(input: PlacementInput): Placement {
  const { project, runtime, slots } = input;
  const admission = admitWorker({
    project,
    ...slots,
    workerMax: input.workerMax,
    perProjectMax: input.perProjectMax,
  });
  if (!admission.admit) {
    const already = runtime?.status === 'pending' && runtime.reason === admission.reason;
    return { do: 'wait_pending', reason: admission.reason, writeRecord: !already };
  }
  const idle = runtime?.status === 'stopped' && runtime.reason === 'idle';
  return { do: 'start', reason: idle ? 'wake' : runtime ? 'takeover' : 'start' };
}

export interface FailedRunInput {
  /** The state the run failed in. */
  status: 'starting' | 'running' | 'unhealthy';
  event: 'exited' | 'start_failed';
  /** Consecutive failed runs before this one. */
  crashes: number;
  /** How long the run lasted. */
  ranMs: number;
  nowMs: number;
  stableAfterMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** The worker refused its spec (exit code 3): retrying soon cannot help, so it waits the longest backoff. */
  specRefused?: boolean;
  /**
   * The worker found its port taken (exit code 4) and fewer than PORT_TAKEN_RETRIES starts in a row did: not
   * the server's fault, so it starts again at once (on another port) and counts no crash.
   */
  portTaken?: boolean;
}

export interface FailedRunOutcome {
  crashes: number;
  reason: 'exited' | 'start_failed';
  /** Transitions to make in order; `nextAttemptAt` (epoch ms) is set before the one that carries it. */
  steps: { event: LifecycleEvent; nextAttemptAt?: number }[];
}

/**
 * Counts a failed run: a run that ended before `stableAfterMs` (or never started) adds to the crash loop,
 * a stable one starts a new count. The first failure restarts at once, the next ones after an exponential
 * backoff; a failed start always waits at least `backoffBaseMs`.
 */
export function afterFailedRun(input: FailedRunInput): FailedRunOutcome {
  const { status, event, nowMs } = input;
  const reason = event === 'start_failed' ? 'start_failed' : 'exited';
  if (input.portTaken && status === 'starting') {
    return { crashes: input.crashes, reason, steps: [{ event, nextAttemptAt: nowMs }] };
  }
  const crashes = status === 'starting' || input.ranMs < input.stableAfterMs ? input.crashes + 1 : 1;
  const delay = input.specRefused
    ? input.backoffMaxMs
    : backoffDelayMs(crashes, input.backoffBaseMs, input.backoffMaxMs);
  if (status === 'starting') {
    // starting → backoff
    return { crashes, reason, steps: [{ event, nextAttemptAt: nowMs + Math.max(delay, input.backoffBaseMs) }] };
  }
  // running/unhealthy → restarting (→ backoff)
  const steps: FailedRunOutcome['steps'] = [{ event: 'exited' }];
  if (delay > 0) steps.push({ event: 'backoff', nextAttemptAt: nowMs + delay });
  return { crashes, reason, steps };
}

export interface FailedReplacementInput {
  /** Planned restarts of this worker that failed in a row before this one. */
  failures: number;
  nowMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** The successor refused its spec (exit code 3): only a new spec or restart request can help soon. */
  specRefused?: boolean;
  /** The successor found its port taken (exit code 4), within PORT_TAKEN_RETRIES: try again at once. */
  portTaken?: boolean;
}

/**
 * A successor that never became healthy: the running worker stays, and the planned restart is tried again
 * after an exponential backoff (the base delay at first; the longest for a refused spec), so a bad spec
 * change neither takes the server down nor spawns processes in a tight loop.
 */
export function afterFailedReplacement(input: FailedReplacementInput): { failures: number; retryAt: number } {
  if (input.portTaken) return { failures: input.failures, retryAt: input.nowMs };
  const failures = input.failures + 1;
  const delay = input.specRefused
    ? input.backoffMaxMs
    : backoffMs(failures - 1, input.backoffBaseMs, input.backoffMaxMs);
  return { failures, retryAt: input.nowMs + delay };
}

export interface HealthInput {
  /** The worker's status when the answer came (a stop may have begun meanwhile). */
  status: RuntimeStatus;
  /** /healthz answered 200 as the expected instance. */
  ok: boolean;
  /** Consecutive failed checks before this one. */
  failures: number;
  failureLimit: number;
  activeCalls?: number;
  idleMs?: number;
  /** 0 disables idle stops. */
  idleTtlMs: number;
}

export type HealthOutcome =
  | { healthy: true; recovered: boolean; idle: boolean }
  | { healthy: false; failures: number; markUnhealthy: boolean; restart: boolean };

/** What one health check means for a running worker. */
export function afterHealthCheck(input: HealthInput): HealthOutcome {
  if (input.ok) {
    const idle =
      input.idleTtlMs > 0 && input.activeCalls === 0 && input.idleMs !== undefined && input.idleMs >= input.idleTtlMs;
    return { healthy: true, recovered: input.status === 'unhealthy', idle };
  }
  const failures = input.failures + 1;
  return {
    healthy: false,
    failures,
    markUnhealthy: input.status === 'running',
    restart: failures >= input.failureLimit,
  };
}
