import { type FailureRecord, type ServerSpec, WORKER_EXIT_CODES, workerSpecDigest } from '@mcp-hub/shared';
import type { ShutdownWrites } from './bounded.js';
import type { SupervisorContext } from './context.js';
import { afterFailedRun, afterHealthCheck } from './decide.js';
import { hasProcess } from './lifecycle.js';
import { NoFreePortError } from './port-allocator.js';
import { type ExitInfo, isAlive, isWorkerInstance, stopProcessGroup } from './process-manager.js';
import { WorkerReplacement } from './worker-replacement.js';
import { logFields, type ManagedWorker, portTakenAgain } from './worker-set.js';
import { startupPause, WorkerSpawner, watchFailed } from './worker-spawn.js';

/**
 * The runs of workers: launching a process, watching it start, noticing its exit, stopping it, and its
 * health checks. Every notice carries the run generation it was made for (`ManagedWorker.run`) and is
 * dropped once the worker moved on to another run. Planned restarts (a successor taking over, the replaced
 * worker draining) are `WorkerReplacement`'s; this class is what the reconciler calls for both.
 */
export class WorkerRuns {
  private readonly spawner: WorkerSpawner;
  private readonly replacement: WorkerReplacement;

  constructor(
    private readonly ctx: SupervisorContext,
    /** The worker's entry script (its bundle, dist/bundle/worker.mjs). */
    entry: string,
  ) {
    this.spawner = new WorkerSpawner(ctx, entry);
    this.replacement = new WorkerReplacement(ctx, this.spawner, this);
  }

  /** Starts a process for `w` and watches it become healthy. */
  async launch(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    const { config, ports, workers, log } = this.ctx;
    const release = await this.spawner.acquireSlot();
    if (this.ctx.isClosed() || !workers.isCurrent(w)) return release();
    const spawned = await this.spawner.claimAndSpawn(w.id, release);
    if (spawned instanceof NoFreePortError) {
      w.lastError = spawned.message;
      this.noteFailure(w, { reason: 'no_free_port', error: spawned.message });
      w.nextAttemptAt = Date.now() + config.backoffMaxMs;
      await workers.transition(w, 'wait', 'no_free_port');
      workers.schedule(w, w.nextAttemptAt);
      return;
    }
    const { instance, token, port } = spawned;
    const run = w.run + 1;
    Object.assign(w, {
      run,
      port,
      pid: spawned.pid,
      instance,
      token,
      own: true,
      exited: spawned.exited,
      specRev: spec.rev,
      specDigest: workerSpecDigest(spec),
      restartRequests,
      startedAt: new Date().toISOString(),
      startedAtMs: Date.now(),
      healthFailures: 0,
      nextAttemptAt: undefined,
    });
    // Watchers first: whatever happens to the record, the process is followed and the slot is freed.
    void spawned.exited.then((info) => this.onExit(w, run, info)).catch(watchFailed(this.ctx, w.id, 'exit'));
    log.info({ event: 'worker.spawned', ...logFields(w), reason }, 'worker spawned');
    this.ctx.stats.spawned(reason);
    try {
      await workers.transition(w, 'spawn', reason);
    } catch (err) {
      release();
      await stopProcessGroup(spawned.pid, config.stopGraceMs, spawned.exited);
      await ports.release(port).catch(() => {});
      throw err;
    }
    if (!workers.isCurrent(w)) {
      // The lease was lost while starting: the process was never recorded, so it must not live on.
      release();
      await stopProcessGroup(spawned.pid, config.stopGraceMs, spawned.exited);
      await ports.release(port).catch(() => {});
      return;
    }
    void this.watchStartup(w, run)
      .catch(watchFailed(this.ctx, w.id, 'startup'))
      .finally(release);
  }

  /** Polls a starting worker's /healthz until it answers as itself, it goes away, or the start times out. */
  async watchStartup(w: ManagedWorker, run: number): Promise<void> {
    const { config, health, workers, log } = this.ctx;
    const deadline = Date.now() + config.startTimeoutMs;
    const current = () => !this.ctx.isClosed() && w.run === run && w.status === 'starting';
    while (current() && Date.now() < deadline) {
      if (!w.own && w.pid !== undefined && !isAlive(w.pid)) return this.onExit(w, run, { code: null, signal: null });
      const result = await health.check(w.host, w.port as number, w.token);
      if (w.run !== run || w.status !== 'starting') return;
      if (result.ok && result.health?.instance === w.instance) {
        w.lastHeartbeat = new Date().toISOString();
        w.lastError = undefined;
        w.portsTaken = 0;
        await workers.transition(w, 'healthy', w.reason);
        log.info({ event: 'worker.ready', ...logFields(w), startup_ms: Date.now() - w.startedAtMs }, 'worker healthy');
        this.ctx.stats.ready(Date.now() - w.startedAtMs);
        return;
      }
      await startupPause(w.startedAtMs);
    }
    if (!current()) return;
    w.lastError = `not healthy within ${config.startTimeoutMs} ms`;
    this.noteFailure(w, { reason: 'start_timeout', error: w.lastError });
    const stopped = await this.stopProcess(w, 'start_timeout');
    // A restart may have launched a new run while the old one was being stopped: leave that one alone.
    if (workers.isCurrent(w) && w.run === stopped) await this.failedRun(w, 'start_failed');
  }

  /** The process of run `run` went away. Notices about an earlier run are ignored. */
  async onExit(w: ManagedWorker, run: number, info: ExitInfo): Promise<void> {
    const { ports, store, workers, log } = this.ctx;
    // Its figures (for the hub's /metrics) go with it; a successor's come with its first health check.
    if (workers.isCurrent(w) && w.run === run) this.ctx.stats.workerGone(w.id);
    if (this.ctx.isClosed() || !workers.isCurrent(w) || w.run !== run || !hasProcess(w.status)) return;
    if (w.status === 'stopping') return;
    log.warn(
      { event: 'worker.terminated', ...logFields(w), reason: 'exited', code: info.code, signal: info.signal },
      'worker exited',
    );
    // A successor still starting is dropped: the crash path starts a fresh run at once.
    await this.replacement.abortSuccessor(w, 'exited');
    // The worker is gone, but its stdio server may linger in its process group: end it.
    if (w.pid !== undefined) await stopProcessGroup(w.pid, 0);
    if (w.port !== undefined) await ports.release(w.port).catch(() => {});
    const note = await store.readLastError(w.id).catch(() => null);
    w.lastError = note ?? `exited with ${info.signal ?? `code ${info.code}`}`;
    this.noteFailure(w, { reason: 'exited', error: w.lastError, code: info.code, signal: info.signal });
    if (!workers.isCurrent(w) || w.run !== run) return; // stopped or replaced meanwhile
    // Exit code 3: the spec itself is refused (missing, disabled, or against the stdio policy). Starting it
    // again cannot help, so it waits the longest backoff; a spec change or restart request starts it at once.
    await this.failedRun(w, 'exited', info.code === WORKER_EXIT_CODES.specUnavailable, portTakenAgain(w, info.code));
  }

  /**
   * Adds a failed run to the server's failure history (best effort: a Redis failure here is logged, never in the
   * way of the restart).
   */
  private noteFailure(w: ManagedWorker, failure: Pick<FailureRecord, 'reason' | 'error' | 'code' | 'signal'>): void {
    const { store, log, stats } = this.ctx;
    stats.failed(failure.reason);
    void store
      .recordFailure(w.id, { ...failure, pid: w.pid, instance: w.instance, restarts: w.restarts })
      .catch((err: unknown) =>
        log.warn({ event: 'failure.record_failed', server: w.id, err }, 'could not record a failure in its history'),
      );
  }

  /** Counts a failed run and restarts at once (first failure) or after an exponential backoff; a refused spec waits the longest. */
  private async failedRun(
    w: ManagedWorker,
    event: 'exited' | 'start_failed',
    specRefused = false,
    portTaken = false,
  ): Promise<void> {
    const { config, workers, log } = this.ctx;
    // Only a live run can fail; a stop that raced with the exit has already settled the state.
    if (w.status !== 'starting' && w.status !== 'running' && w.status !== 'unhealthy') return;
    const outcome = afterFailedRun({
      status: w.status,
      event,
      crashes: w.crashes,
      ranMs: Date.now() - w.startedAtMs,
      nowMs: Date.now(),
      stableAfterMs: config.stableAfterMs,
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
      specRefused,
      portTaken,
    });
    w.crashes = outcome.crashes;
    w.restarts += 1;
    for (const step of outcome.steps) {
      if (step.nextAttemptAt !== undefined) w.nextAttemptAt = step.nextAttemptAt;
      await workers.transition(w, step.event, outcome.reason);
    }
    log.info(
      {
        event: 'worker.restart',
        ...logFields(w),
        reason: outcome.reason,
        crashes: w.crashes,
        delay_ms: w.nextAttemptAt ? w.nextAttemptAt - Date.now() : 0,
      },
      'worker will be restarted',
    );
    if (w.nextAttemptAt !== undefined) workers.schedule(w, w.nextAttemptAt);
    else void this.ctx.enqueue(w.id);
  }

  /** A planned restart of a running worker without a gap (`WorkerReplacement`). */
  replace(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    return this.replacement.replace(w, spec, restartRequests, reason);
  }

  /** Resolves when every replaced worker has drained and stopped. */
  retired(): Promise<void> {
    return this.replacement.retired();
  }

  /** Ports of processes that no record names: successors starting and replaced workers draining. */
  portsInUse(): number[] {
    return this.replacement.portsInUse();
  }

  /** Keeps the process through a change of fields the worker does not read: only the rev it serves moves on. */
  async noteSpec(w: ManagedWorker, specRev: number): Promise<void> {
    w.specRev = specRev;
    this.ctx.log.info(
      { event: 'worker.kept', ...logFields(w), spec_rev: specRev, reason: 'metadata_changed' },
      'spec changed in fields the worker does not read; the worker keeps running',
    );
    if (hasProcess(w.status)) await this.ctx.store.mergeFields(w.id, { specRev });
  }

  /** Ends the current run (if any) and launches a new one at once, with a fresh crash count. */
  async restart(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    this.ctx.log.info({ event: 'worker.restart', ...logFields(w), reason }, 'restarting worker');
    await this.replacement.abortSuccessor(w, reason);
    if (hasProcess(w.status)) {
      await this.ctx.workers.transition(w, 'restart', reason);
      await this.stopProcess(w, reason);
    } else if (w.status === 'backoff' || w.status === 'pending' || w.status === 'stopped') {
      w.nextAttemptAt = undefined;
    }
    w.crashes = 0;
    await this.launch(w, spec, restartRequests, reason);
  }

  /**
   * Ends the current process of `w` (group SIGTERM, then SIGKILL) and frees its port. Returns the run
   * generation it moved `w` to; pending exit and startup notices of the stopped run are stale from then on.
   */
  async stopProcess(w: ManagedWorker, reason: string, writes?: ShutdownWrites): Promise<number> {
    const { config, ports, log } = this.ctx;
    const { pid, port, instance } = w;
    w.run += 1;
    const stoppedRun = w.run;
    // An adopted worker is not our child: make sure the pid is still that worker before signalling it.
    const stillOurs = w.own || (pid !== undefined && isWorkerInstance(pid, instance) !== false);
    if (pid !== undefined && stillOurs) {
      const how = await stopProcessGroup(pid, config.stopGraceMs, w.own ? w.exited : undefined);
      log.info({ event: 'worker.terminated', server: w.id, pid, port, reason, how }, 'worker stopped');
    }
    if (port !== undefined) {
      const released = ports.release(port).catch(() => {});
      await (writes === undefined ? released : writes.wait(released));
    }
    return stoppedRun;
  }

  /**
   * Stops a worker for good (deleted, disabled, idle, shutdown). With `writes` (shutdown), each Redis write
   * waits a bounded time, so the process is stopped even while Redis is unreachable.
   */
  async stopWorker(w: ManagedWorker, reason: string, keepRecord: boolean, writes?: ShutdownWrites): Promise<void> {
    const { store, workers } = this.ctx;
    const redisStep = <T>(p: Promise<T>) => (writes === undefined ? p : writes.wait(p));
    clearTimeout(w.timer);
    await this.replacement.abortSuccessor(w, reason);
    const port = w.port;
    if (hasProcess(w.status)) {
      await redisStep(workers.transition(w, 'stop', reason));
      await this.stopProcess(w, reason, writes);
      await redisStep(workers.transition(w, 'stopped', reason));
    } else if (w.status !== 'stopped') {
      await redisStep(workers.transition(w, 'stop', reason));
    }
    workers.remove(w);
    if (keepRecord) {
      await redisStep(store.releaseLease(w.id));
    } else {
      await redisStep(store.deleteRecord(w.id, port));
    }
  }

  /** One health check of a running worker; asks the reconciler for an idle stop or a restart when due. */
  async checkHealth(w: ManagedWorker): Promise<void> {
    const { config, health, store, workers, log } = this.ctx;
    if (w.status !== 'running' && w.status !== 'unhealthy') return;
    const run = w.run;
    if (!w.own && w.pid !== undefined && (!isAlive(w.pid) || isWorkerInstance(w.pid, w.instance) === false)) {
      // An adopted worker is not our child, so no exit event comes: notice its death (or a reused pid) here.
      return this.onExit(w, run, { code: null, signal: null });
    }
    const result = await health.check(w.host, w.port as number, w.token);
    if (w.run !== run || !workers.isCurrent(w)) return;
    const outcome = afterHealthCheck({
      status: w.status,
      ok: result.ok && result.health?.instance === w.instance,
      failures: w.healthFailures,
      failureLimit: config.healthFailures,
      activeCalls: result.health?.activeCalls,
      idleMs: result.health?.idleMs,
      idleTtlMs: config.workerIdleTtlMs,
    });
    if (outcome.healthy) {
      if (result.health) this.ctx.stats.workerHealth(w.id, result.health);
      w.healthFailures = 0;
      w.lastHeartbeat = new Date().toISOString();
      if (outcome.recovered) await workers.transition(w, 'healthy', 'recovered');
      else await store.mergeFields(w.id, { lastHeartbeat: w.lastHeartbeat });
      if (outcome.idle) {
        log.info({ event: 'worker.idle', ...logFields(w), idle_ms: result.health?.idleMs }, 'stopping an idle worker');
        w.wanted = 'idle_stop';
        void this.ctx.enqueue(w.id);
      }
      return;
    }
    w.healthFailures = outcome.failures;
    this.ctx.stats.healthFailed();
    log.warn(
      {
        event: 'worker.health.fail',
        server: w.id,
        port: w.port,
        response_code: result.status,
        failures: w.healthFailures,
        error: result.error,
      },
      'worker health check failed',
    );
    if (outcome.markUnhealthy) await workers.transition(w, 'health_failed', 'health');
    if (outcome.restart) {
      w.lastError = `health check failed ${w.healthFailures} times (last status ${result.status || 'no answer'})`;
      this.noteFailure(w, {
        reason: 'unhealthy',
        error: result.error ? `${w.lastError}: ${result.error}` : w.lastError,
      });
      w.wanted = 'health_restart';
      void this.ctx.enqueue(w.id);
    }
  }
}
