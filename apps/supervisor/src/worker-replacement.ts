import {
  type ServerSpec,
  WORKER_DRAIN_QUIET_MS,
  WORKER_DRAIN_SIGNAL,
  WORKER_EXIT_CODES,
  workerSpecDigest,
} from '@mcp-hub/shared';
import type { SupervisorContext } from './context.js';
import { afterFailedReplacement } from './decide.js';
import { NoFreePortError } from './port-allocator.js';
import { type ExitInfo, isWorkerInstance, stopProcessGroup } from './process-manager.js';
import { logFields, type ManagedWorker, type NextRun, portTakenAgain } from './worker-set.js';
import { startupPause, type WorkerSpawner, watchFailed } from './worker-spawn.js';

/** A worker replaced by its successor, draining. */
interface Retiree {
  id: string;
  pid?: number;
  port?: number;
  instance: string;
  own: boolean;
  exited?: Promise<ExitInfo>;
}

/** What a planned restart hands back to the runs (`WorkerRuns`), which own a worker's current run. */
export interface RunHandoff {
  /** No port for a successor: restart in place instead. */
  restart(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void>;
  /** The exit of the run the worker switched to. */
  onExit(w: ManagedWorker, run: number, info: ExitInfo): Promise<void>;
}

/**
 * Planned restarts of running workers (spec change, restart request) without a gap: the successor starts on
 * another port while the worker goes on serving; once the successor is healthy the record switches to it
 * (`runtime.update`: hubs send new calls there) and the old worker drains (WORKER_DRAIN_SIGNAL: its calls in
 * flight finish). If the successor fails, the old worker keeps serving, `last_error` says why, and the
 * attempt is retried after a backoff.
 */
export class WorkerReplacement {
  /** Replaced workers draining, until they are gone. */
  private readonly retiring = new Map<Promise<void>, Retiree>();

  constructor(
    private readonly ctx: SupervisorContext,
    private readonly spawner: WorkerSpawner,
    private readonly runs: RunHandoff,
  ) {}

  /** Starts a successor for the running worker `w` and watches it take over. */
  async replace(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    const { workers, log } = this.ctx;
    const release = await this.spawner.acquireSlot();
    if (this.ctx.isClosed() || !workers.isCurrent(w) || w.status !== 'running' || w.next !== undefined) {
      return release();
    }
    log.info({ event: 'worker.restart', ...logFields(w), reason, planned: true }, 'starting a successor worker');
    const spawned = await this.spawner.claimAndSpawn(w.id, release);
    // No port for a successor: restart in place (a short gap) rather than not at all.
    if (spawned instanceof NoFreePortError) return this.runs.restart(w, spec, restartRequests, reason);
    const { port } = spawned;
    const next: NextRun = {
      pid: spawned.pid,
      port,
      instance: spawned.instance,
      token: spawned.token,
      exited: spawned.exited,
      specRev: spec.rev,
      specDigest: workerSpecDigest(spec),
      timeoutMs: spec.timeoutMs,
      restartRequests,
      reason,
      startedAtMs: Date.now(),
    };
    w.next = next;
    log.info(
      { event: 'worker.spawned', server: w.id, pid: next.pid, port, reason, replacing: w.pid },
      'successor worker spawned',
    );
    void this.watchSuccessor(w, next)
      .catch(watchFailed(this.ctx, w.id, 'successor'))
      .finally(release);
  }

  /** Polls the successor's /healthz until it answers as itself (then switches to it), exits, or times out. */
  private async watchSuccessor(w: ManagedWorker, next: NextRun): Promise<void> {
    const { config, health, store, workers } = this.ctx;
    const deadline = next.startedAtMs + config.startTimeoutMs;
    let exit: ExitInfo | undefined;
    void next.exited.then((info) => {
      exit = info;
    });
    const current = () => !this.ctx.isClosed() && workers.isCurrent(w) && w.next === next;
    while (current() && exit === undefined && Date.now() < deadline) {
      const result = await health.check(w.host, next.port, next.token);
      if (!current()) break;
      if (result.ok && result.health?.instance === next.instance) return this.switchTo(w, next);
      await startupPause(next.startedAtMs);
    }
    // Aborted (a stop, a crash of the running worker, another restart): whoever aborted stopped it.
    if (w.next !== next) return;
    w.next = undefined;
    await this.stopSuccessor(w.id, next, 'replace_failed');
    if (this.ctx.isClosed() || !workers.isCurrent(w)) return;
    const note = exit === undefined ? null : await store.readLastError(w.id).catch(() => null);
    const why =
      note ??
      (exit === undefined
        ? `the new worker was not healthy within ${config.startTimeoutMs} ms`
        : `the new worker exited with ${exit.signal ?? `code ${exit.code}`}`);
    const portTaken = exit !== undefined && portTakenAgain(w, exit.code);
    await this.replaceFailed(w, next, why, exit?.code === WORKER_EXIT_CODES.specUnavailable, portTaken);
  }

  /** The successor failed: the running worker stays, the record says why, and the attempt waits a backoff. */
  private async replaceFailed(
    w: ManagedWorker,
    next: NextRun,
    why: string,
    specRefused: boolean,
    portTaken: boolean,
  ): Promise<void> {
    const { config, store, workers, log } = this.ctx;
    const outcome = afterFailedReplacement({
      failures: w.replaceFailures,
      nowMs: Date.now(),
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
      specRefused,
      portTaken,
    });
    w.replaceFailures = outcome.failures;
    w.replaceRetryAt = outcome.retryAt;
    w.lastError = why;
    await store.mergeFields(w.id, { lastError: why });
    log.warn(
      {
        event: 'worker.replace_failed',
        ...logFields(w),
        reason: next.reason,
        error: why,
        failures: w.replaceFailures,
        delay_ms: outcome.retryAt - Date.now(),
      },
      'the new worker did not start; the running one goes on serving',
    );
    workers.schedule(w, outcome.retryAt);
  }

  /** The successor is healthy: the record names it from now on, and the old worker drains and stops. */
  private async switchTo(w: ManagedWorker, next: NextRun): Promise<void> {
    const { workers, log } = this.ctx;
    const old: Retiree = { id: w.id, pid: w.pid, port: w.port, instance: w.instance, own: w.own, exited: w.exited };
    w.next = undefined;
    const run = w.run + 1;
    const now = new Date().toISOString();
    Object.assign(w, {
      run,
      pid: next.pid,
      port: next.port,
      instance: next.instance,
      token: next.token,
      own: true,
      exited: next.exited,
      specRev: next.specRev,
      specDigest: next.specDigest,
      restartRequests: next.restartRequests,
      startedAt: new Date(next.startedAtMs).toISOString(),
      startedAtMs: next.startedAtMs,
      lastHeartbeat: now,
      lastError: undefined,
      healthFailures: 0,
      crashes: 0,
      replaceFailures: 0,
      replaceRetryAt: undefined,
    });
    void next.exited.then((info) => this.runs.onExit(w, run, info)).catch(watchFailed(this.ctx, w.id, 'exit'));
    // One write switches every hub: the record names the successor and `runtime.update` drops their cached copy.
    if (w.status === 'unhealthy') await workers.transition(w, 'healthy', next.reason);
    else {
      w.reason = next.reason;
      await workers.persist(w);
    }
    if (!workers.isCurrent(w)) {
      // The lease was lost: the record still names the old worker, which its new owner adopts.
      await this.stopSuccessor(w.id, next, 'lease_lost');
      return;
    }
    log.info(
      {
        event: 'worker.replaced',
        ...logFields(w),
        reason: next.reason,
        previous_pid: old.pid,
        previous_port: old.port,
        startup_ms: Date.now() - next.startedAtMs,
      },
      'worker replaced; the previous one drains',
    );
    this.retire(old, next.timeoutMs);
    // A change made while the successor started is looked at now.
    void this.ctx.enqueue(w.id);
  }

  /** Stops a successor that never took over and frees its port. */
  private async stopSuccessor(id: string, next: NextRun, reason: string): Promise<void> {
    const { config, ports, log } = this.ctx;
    const how = await stopProcessGroup(next.pid, config.stopGraceMs, next.exited);
    await ports.release(next.port).catch(() => {});
    log.info({ event: 'worker.terminated', server: id, pid: next.pid, port: next.port, reason, how }, 'worker stopped');
  }

  /** Ends a planned restart under way (the running worker stops or is restarted another way). */
  async abortSuccessor(w: ManagedWorker, reason: string): Promise<void> {
    const next = w.next;
    if (next === undefined) return;
    w.next = undefined;
    await this.stopSuccessor(w.id, next, reason);
  }

  /**
   * Drains a replaced worker: WORKER_DRAIN_SIGNAL lets its calls in flight (and calls still sent to its
   * address by hubs that had not heard of the switch) finish; SIGKILL to its group once they could not run any
   * longer. Its port is freed when it is gone.
   */
  private retire(old: Retiree, timeoutMs: number): void {
    const { config, ports, log } = this.ctx;
    const done = (async () => {
      const { pid, port } = old;
      // An adopted worker is not our child: make sure the pid is still that worker before signalling it.
      if (pid !== undefined && (old.own || isWorkerInstance(pid, old.instance) !== false)) {
        const graceMs = timeoutMs + WORKER_DRAIN_QUIET_MS + config.stopGraceMs;
        const how = await stopProcessGroup(pid, graceMs, old.own ? old.exited : undefined, WORKER_DRAIN_SIGNAL);
        log.info({ event: 'worker.terminated', server: old.id, pid, port, reason: 'replaced', how }, 'worker drained');
      }
      if (port !== undefined) await ports.release(port).catch(() => {});
    })().catch((err: unknown) =>
      log.error({ event: 'supervisor.watch_failed', server: old.id, what: 'retire', err }, 'retiring a worker failed'),
    );
    this.retiring.set(done, old);
    void done.finally(() => this.retiring.delete(done));
  }

  /** Resolves when every replaced worker has drained and stopped. */
  async retired(): Promise<void> {
    await Promise.all([...this.retiring.keys()]);
  }

  /** Ports of processes that no record names: successors starting and replaced workers draining. */
  portsInUse(): number[] {
    const ports: number[] = [];
    for (const old of this.retiring.values()) if (old.port !== undefined) ports.push(old.port);
    for (const w of this.ctx.workers.all()) if (w.next !== undefined) ports.push(w.next.port);
    return ports;
  }
}
