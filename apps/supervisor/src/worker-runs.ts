import { randomBytes } from 'node:crypto';
import {
  type ServerSpec,
  WORKER_DRAIN_QUIET_MS,
  WORKER_DRAIN_SIGNAL,
  WORKER_EXIT_CODES,
  WORKER_TOKEN_BYTES,
  workerSpecDigest,
} from '@mcp-hub/shared';
import { bounded } from './bounded.js';
import type { SupervisorContext } from './context.js';
import { afterFailedReplacement, afterFailedRun, afterHealthCheck } from './decide.js';
import { hasProcess } from './lifecycle.js';
import { NoFreePortError } from './port-allocator.js';
import { type ExitInfo, isAlive, isWorkerInstance, spawnWorker, stopProcessGroup } from './process-manager.js';
import { Semaphore } from './semaphore.js';
import { logFields, type ManagedWorker, type NextRun } from './worker-set.js';

const STARTUP_POLL_MS = 25;

type SpawnedRun = ReturnType<typeof spawnWorker> & { instance: string; token: string; port: number };

/** A worker replaced by its successor, draining. */
interface Retiree {
  id: string;
  pid?: number;
  port?: number;
  instance: string;
  own: boolean;
  exited?: Promise<ExitInfo>;
}

/**
 * The runs of workers: launching a process, watching it start, noticing its exit, stopping it, and its
 * health checks. Every notice carries the run generation it was made for (`ManagedWorker.run`) and is
 * dropped once the worker moved on to another run.
 */
export class WorkerRuns {
  private readonly startSlots: Semaphore;
  /** Replaced workers draining, until they are gone. */
  private readonly retiring = new Map<Promise<void>, Retiree>();

  constructor(
    private readonly ctx: SupervisorContext,
    /** The worker's entry script (its dist/main.js). */
    private readonly entry: string,
  ) {
    this.startSlots = new Semaphore(ctx.config.startConcurrency);
  }

  /** Starts a process for `w` and watches it become healthy. */
  async launch(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    const { config, ports, workers, log } = this.ctx;
    const release = await this.startSlots.acquire();
    if (this.ctx.isClosed() || !workers.isCurrent(w)) return release();
    const spawned = await this.claimAndSpawn(w.id, release);
    if (spawned instanceof NoFreePortError) {
      w.lastError = spawned.message;
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
    const report = (what: string) => (err: unknown) =>
      log.error({ event: 'supervisor.watch_failed', server: w.id, what, err }, 'watching a worker failed');
    void spawned.exited.then((info) => this.onExit(w, run, info)).catch(report('exit'));
    log.info({ event: 'worker.spawned', ...logFields(w), reason }, 'worker spawned');
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
    void this.watchStartup(w, run).catch(report('startup')).finally(release);
  }

  /**
   * Claims a port and spawns a worker process for server `id` there, with a fresh instance id and credential.
   * When it fails the start slot is released (`release`); a full port range is returned, not thrown.
   */
  private async claimAndSpawn(id: string, release: () => void): Promise<SpawnedRun | NoFreePortError> {
    const { ports } = this.ctx;
    let port: number;
    try {
      port = await ports.claim();
    } catch (err) {
      release();
      if (err instanceof NoFreePortError) return err;
      throw err;
    }
    try {
      return { ...this.spawnRun(id, port), port };
    } catch (err) {
      release();
      await ports.release(port);
      throw err;
    }
  }

  private spawnRun(id: string, port: number): Omit<SpawnedRun, 'port'> {
    const { config } = this.ctx;
    const instance = randomBytes(8).toString('hex');
    const token = randomBytes(WORKER_TOKEN_BYTES).toString('base64url');
    const spawned = spawnWorker(this.entry, {
      ...config.workerInheritedEnv,
      ...(config.secretKey === undefined ? {} : { HUB_SECRET_KEY: config.secretKey }),
      MCP_WORKER_TOKEN: token,
      MCP_SERVER_ID: id,
      MCP_WORKER_HOST: config.workerHost,
      MCP_WORKER_PORT: String(port),
      MCP_WORKER_INSTANCE: instance,
      REDIS_URL: config.redisUrl,
      KEY_PREFIX: config.keyPrefix,
      LOG_LEVEL: config.logLevel,
      MCP_UPSTREAM_MAX_MESSAGE_BYTES: String(config.upstreamMaxMessageBytes),
    });
    return { ...spawned, instance, token };
  }

  /**
   * A planned restart of a running worker (spec change, restart request) without a gap: the successor starts
   * on another port while the worker goes on serving; once the successor is healthy the record switches to it
   * (`runtime.update`: hubs send new calls there) and the old worker drains (WORKER_DRAIN_SIGNAL: its calls in
   * flight finish). If the successor fails, the old worker keeps serving, `last_error` says why, and the
   * attempt is retried after a backoff.
   */
  async replace(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    const { workers, log } = this.ctx;
    const release = await this.startSlots.acquire();
    if (this.ctx.isClosed() || !workers.isCurrent(w) || w.status !== 'running' || w.next !== undefined) {
      return release();
    }
    log.info({ event: 'worker.restart', ...logFields(w), reason, planned: true }, 'starting a successor worker');
    const spawned = await this.claimAndSpawn(w.id, release);
    // No port for a successor: restart in place (a short gap) rather than not at all.
    if (spawned instanceof NoFreePortError) return this.restart(w, spec, restartRequests, reason);
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
      .catch((err: unknown) =>
        log.error(
          { event: 'supervisor.watch_failed', server: w.id, what: 'successor', err },
          'watching a worker failed',
        ),
      )
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
      const elapsed = Date.now() - next.startedAtMs;
      await new Promise((r) => setTimeout(r, elapsed < 2_000 ? STARTUP_POLL_MS : STARTUP_POLL_MS * 8));
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
    await this.replaceFailed(w, next, why, exit?.code === WORKER_EXIT_CODES.specUnavailable);
  }

  /** The successor failed: the running worker stays, the record says why, and the attempt waits a backoff. */
  private async replaceFailed(w: ManagedWorker, next: NextRun, why: string, specRefused: boolean): Promise<void> {
    const { config, store, workers, log } = this.ctx;
    const outcome = afterFailedReplacement({
      failures: w.replaceFailures,
      nowMs: Date.now(),
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
      specRefused,
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
    void next.exited
      .then((info) => this.onExit(w, run, info))
      .catch((err: unknown) =>
        log.error({ event: 'supervisor.watch_failed', server: w.id, what: 'exit', err }, 'watching a worker failed'),
      );
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
        await workers.transition(w, 'healthy', w.reason);
        log.info({ event: 'worker.ready', ...logFields(w), startup_ms: Date.now() - w.startedAtMs }, 'worker healthy');
        return;
      }
      // Poll fast at first (a healthy start takes a few hundred ms), then back off to spare a busy host.
      const elapsed = Date.now() - w.startedAtMs;
      await new Promise((r) => setTimeout(r, elapsed < 2_000 ? STARTUP_POLL_MS : STARTUP_POLL_MS * 8));
    }
    if (!current()) return;
    w.lastError = `not healthy within ${config.startTimeoutMs} ms`;
    const stopped = await this.stopProcess(w, 'start_timeout');
    // A restart may have launched a new run while the old one was being stopped: leave that one alone.
    if (workers.isCurrent(w) && w.run === stopped) await this.failedRun(w, 'start_failed');
  }

  /** The process of run `run` went away. Notices about an earlier run are ignored. */
  async onExit(w: ManagedWorker, run: number, info: ExitInfo): Promise<void> {
    const { ports, store, workers, log } = this.ctx;
    if (this.ctx.isClosed() || !workers.isCurrent(w) || w.run !== run || !hasProcess(w.status)) return;
    if (w.status === 'stopping') return;
    log.warn(
      { event: 'worker.terminated', ...logFields(w), reason: 'exited', code: info.code, signal: info.signal },
      'worker exited',
    );
    // A successor still starting is dropped: the crash path starts a fresh run at once.
    await this.abortSuccessor(w, 'exited');
    // The worker is gone, but its stdio server may linger in its process group: end it.
    if (w.pid !== undefined) await stopProcessGroup(w.pid, 0);
    if (w.port !== undefined) await ports.release(w.port).catch(() => {});
    const note = await store.readLastError(w.id).catch(() => null);
    w.lastError = note ?? `exited with ${info.signal ?? `code ${info.code}`}`;
    if (!workers.isCurrent(w) || w.run !== run) return; // stopped or replaced meanwhile
    // Exit code 3: the spec itself is refused (missing, disabled, or against the stdio policy). Starting it
    // again cannot help, so it waits the longest backoff; a spec change or restart request starts it at once.
    await this.failedRun(w, 'exited', info.code === WORKER_EXIT_CODES.specUnavailable);
  }

  /** Counts a failed run and restarts at once (first failure) or after an exponential backoff; a refused spec waits the longest. */
  private async failedRun(w: ManagedWorker, event: 'exited' | 'start_failed', specRefused = false): Promise<void> {
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
    await this.abortSuccessor(w, reason);
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
  async stopProcess(w: ManagedWorker, reason: string, redisDeadlineMs?: number): Promise<number> {
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
      await (redisDeadlineMs === undefined ? released : bounded(released, redisDeadlineMs));
    }
    return stoppedRun;
  }

  /**
   * Stops a worker for good (deleted, disabled, idle, shutdown). With `redisDeadlineMs` (shutdown), each
   * Redis write waits at most that long, so the process is stopped even while Redis is unreachable.
   */
  async stopWorker(w: ManagedWorker, reason: string, keepRecord: boolean, redisDeadlineMs?: number): Promise<void> {
    const { store, workers } = this.ctx;
    const redisStep = <T>(p: Promise<T>) => (redisDeadlineMs === undefined ? p : bounded(p, redisDeadlineMs));
    clearTimeout(w.timer);
    await this.abortSuccessor(w, reason);
    const port = w.port;
    if (hasProcess(w.status)) {
      await redisStep(workers.transition(w, 'stop', reason));
      await this.stopProcess(w, reason, redisDeadlineMs);
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
      w.wanted = 'health_restart';
      void this.ctx.enqueue(w.id);
    }
  }
}
