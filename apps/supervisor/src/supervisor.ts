import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  closeRedis,
  createKeys,
  createRedis,
  type Logger,
  parseEvent,
  Registry,
  type RuntimeRecord,
  type RuntimeStatus,
  type ServerSpec,
  type SupervisorConfig,
  WORKER_EXIT_CODES,
  WORKER_TOKEN_BYTES,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { admitWorker, type ProjectKey } from './admission.js';
import { HealthChecker } from './health-checker.js';
import { KeyedSerialQueue } from './keyed-queue.js';
import { backoffDelayMs, hasProcess, type LifecycleEvent, nextStatus } from './lifecycle.js';
import { NoFreePortError, PortAllocator } from './port-allocator.js';
import { type ExitInfo, isAlive, isWorkerInstance, spawnWorker, stopProcessGroup } from './process-manager.js';
import { RuntimeStore } from './runtime-store.js';
import { Semaphore } from './semaphore.js';

const STARTUP_POLL_MS = 25;
const HEALTH_TIMEOUT_MS = 1_500;
const CLOSE_DEADLINE_MS = 30_000;
/** On shutdown, how long any one Redis step may take: stopping the processes must not wait for a dead Redis. */
const SHUTDOWN_REDIS_MS = 2_000;

/** `promise`, or undefined once `ms` have passed (the promise goes on; its failure is ignored). */
function bounded<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  promise.catch(() => {});
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const DEFAULT_WORKER_ENTRY = fileURLToPath(new URL('../../worker/dist/main.js', import.meta.url));

export interface SupervisorDeps {
  config: Readonly<SupervisorConfig>;
  log: Logger;
  /** Redis for commands (retrying); opened from config when left out. */
  redis?: Redis;
}

/** One worker this supervisor runs; the object lives across restarts, its process does not. */
interface ManagedWorker {
  id: string;
  /** The server's project ('' for none): what its slot counts against. */
  project: ProjectKey;
  status: RuntimeStatus;
  host: string;
  port?: number;
  pid?: number;
  instance: string;
  /** The credential of the current run (random per spawn); the hub reads it from the runtime record. */
  token: string;
  specRev: number;
  restartRequests: number;
  startedAt?: string;
  startedAtMs: number;
  restarts: number;
  /** Consecutive failed runs (exits before stableAfterMs, or failed starts). */
  crashes: number;
  healthFailures: number;
  lastError?: string;
  nextAttemptAt?: number;
  reason?: string;
  exited?: Promise<ExitInfo>;
  own: boolean;
  timer?: NodeJS.Timeout;
  lastHeartbeat?: string;
  /** An action the health loop asks of the reconciler, which alone changes a worker. */
  wanted?: 'idle_stop' | 'health_restart';
}

export interface Supervisor {
  readonly id: string;
  /** Full sync, then events and periodic resync. */
  start(): Promise<void>;
  /** Reconciles one server now (tests and the event path). */
  reconcile(id: string): Promise<void>;
  /** A snapshot of the workers this supervisor runs. */
  workers(): { id: string; status: RuntimeStatus; pid?: number; port?: number; instance: string }[];
  /** Stops loops, then stops workers (or leaves them for adoption with keepWorkersOnExit). Memoized. */
  close(): Promise<void>;
}

/** Builds a supervisor; nothing runs until `start()`. */
export function createSupervisor(deps: SupervisorDeps): Supervisor {
  const { config } = deps;
  const supervisorId = config.supervisorId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const log = deps.log.child({ supervisor: supervisorId });
  const keys = createKeys(config.keyPrefix);
  const ownsRedis = deps.redis === undefined;
  const redis = deps.redis ?? createRedis(config.redisUrl, 'loop', log.child({ component: 'redis' }));
  let subscriber: Redis | undefined;
  const registry = new Registry(redis, keys, (key, field, err) =>
    log.warn({ event: 'registry.invalid_record', key, field, err }, 'skipped a stored record that does not parse'),
  );
  const store = new RuntimeStore(redis, keys, supervisorId);
  const ports = new PortAllocator(store, config.workerHost, config.workerBasePort, config.workerPortRange);
  const health = new HealthChecker(HEALTH_TIMEOUT_MS);
  const entry = config.workerEntry ?? DEFAULT_WORKER_ENTRY;
  const managed = new Map<string, ManagedWorker>();
  /** Servers this supervisor told to wait for a slot (id → project), so that slots are given fairly. */
  const waiting = new Map<string, ProjectKey>();
  const startSlots = new Semaphore(config.startConcurrency);
  const queue = new KeyedSerialQueue(reconcileOne, (id, err) =>
    log.error({ event: 'reconcile.failed', server: id, err }, 'reconcile failed'),
  );

  let closed = false;
  let closing: Promise<void> | undefined;
  let resyncTimer: NodeJS.Timeout | undefined;
  let healthTimer: NodeJS.Timeout | undefined;
  let leaseTimer: NodeJS.Timeout | undefined;
  let healthRunning = false;
  let leasesDone = false;

  function fields(w: ManagedWorker) {
    return { server: w.id, pid: w.pid, port: w.port };
  }

  function record(w: ManagedWorker): RuntimeRecord {
    return {
      status: w.status,
      pid: hasProcess(w.status) ? w.pid : undefined,
      host: w.host,
      port: hasProcess(w.status) ? w.port : undefined,
      supervisor: supervisorId,
      instance: w.instance,
      workerToken: hasProcess(w.status) && w.token !== '' ? w.token : undefined,
      startedAt: w.startedAt,
      lastHeartbeat: w.lastHeartbeat,
      restarts: w.restarts,
      lastError: w.lastError,
      specRev: w.specRev,
      restartRequests: w.restartRequests,
      nextAttemptAt: w.nextAttemptAt === undefined ? undefined : new Date(w.nextAttemptAt).toISOString(),
      reason: w.reason,
    };
  }

  /** The one place a worker's status changes: checked against the table, logged, persisted, announced. */
  async function transition(w: ManagedWorker, event: LifecycleEvent, reason?: string): Promise<void> {
    const from = w.status;
    w.status = nextStatus(from, event);
    if (reason !== undefined) w.reason = reason;
    log.debug(
      { event: 'worker.transition', server: w.id, from, to: w.status, on: event, reason: w.reason },
      'worker state changed',
    );
    await persist(w);
  }

  async function persist(w: ManagedWorker): Promise<void> {
    const written = await store.writeRecord(w.id, record(w));
    if (!written && managed.get(w.id) === w) {
      // Another supervisor holds the lease now: it adopts this worker, we forget it.
      log.warn({ event: 'lease.lost', ...fields(w) }, 'lost the lease on a server; handing it over');
      forget(w);
    }
  }

  function forget(w: ManagedWorker): void {
    clearTimeout(w.timer);
    if (managed.get(w.id) !== w) return;
    managed.delete(w.id);
    slotFreed();
  }

  function schedule(w: ManagedWorker, atMs: number): void {
    clearTimeout(w.timer);
    w.timer = setTimeout(() => void queue.enqueue(w.id), Math.max(0, atMs - Date.now()));
    w.timer.unref();
  }

  /** The level-triggered step for one server: compare desired and actual, act once, persist. */
  async function reconcileOne(id: string): Promise<void> {
    if (closed) return;
    const [spec, runtime, restartRequests] = await Promise.all([
      registry.getServer(id),
      registry.getRuntime(id),
      registry.getRestartRequests(id),
    ]);
    const w = managed.get(id);
    const idleStopped =
      spec !== null &&
      runtime?.status === 'stopped' &&
      runtime.reason === 'idle' &&
      restartRequests <= (runtime.restartRequests ?? 0);

    if (!spec?.enabled || idleStopped) {
      forgetWaiting(id);
      const reason = !spec ? 'deleted' : !spec.enabled ? 'disabled' : 'idle';
      if (w) await stopWorker(w, reason, reason === 'idle');
      else if (runtime && !idleStopped) await cleanupOrphan(id, runtime, reason);
      return;
    }

    if (w) {
      w.project = spec.project ?? '';
      if (w.status === 'stopping') return;
      const wanted = w.wanted;
      w.wanted = undefined;
      if (wanted === 'idle_stop' && w.status === 'running') {
        w.restartRequests = restartRequests;
        return stopWorker(w, 'idle', true);
      }
      if (wanted === 'health_restart' && w.status === 'unhealthy') return restart(w, spec, restartRequests, 'health');
      if (spec.rev !== w.specRev) return restart(w, spec, restartRequests, 'spec_changed');
      if (restartRequests > w.restartRequests) return restart(w, spec, restartRequests, 'restart_requested');
      if (w.status === 'backoff' || w.status === 'restarting' || w.status === 'pending') {
        if (w.nextAttemptAt !== undefined && Date.now() < w.nextAttemptAt) return schedule(w, w.nextAttemptAt);
        return launch(w, spec, restartRequests, w.reason ?? 'restart');
      }
      return;
    }

    if (!(await store.acquireLease(id, config.leaseTtlMs))) {
      forgetWaiting(id); // another supervisor runs it
      return;
    }
    // Adopting comes before the capacity check: a live worker is kept, never replaced by a pending record.
    if (runtime?.pid !== undefined && runtime.port !== undefined && runtime.instance !== undefined) {
      if (await adopt(id, runtime, spec, restartRequests)) return;
      await killGhost(id, runtime);
    }
    // From here to managed.set nothing awaits: the decision and the slot it gives are one step.
    const project = spec.project ?? '';
    const admission = admitWorker({
      project,
      ...slotsInUse(id),
      workerMax: config.workerMax,
      perProjectMax: config.workerMaxPerProject,
    });
    if (!admission.admit) return waitForCapacity(id, project, runtime, admission.reason);
    forgetWaiting(id);
    const fresh: ManagedWorker = {
      id,
      project,
      status: 'pending',
      host: config.workerAdvertiseHost,
      instance: '',
      token: '',
      specRev: spec.rev,
      restartRequests,
      startedAtMs: 0,
      restarts: runtime?.restarts ?? 0,
      crashes: 0,
      healthFailures: 0,
      own: true,
    };
    managed.set(id, fresh);
    await launch(fresh, spec, restartRequests, runtime ? 'takeover' : 'start');
  }

  /** Workers in use per project and in all, and the servers other than `id` waiting for a slot, per project. */
  function slotsInUse(id: string) {
    const running = new Map<ProjectKey, number>();
    for (const w of managed.values()) running.set(w.project, (running.get(w.project) ?? 0) + 1);
    const others = new Map<ProjectKey, number>();
    for (const [serverId, project] of waiting) {
      if (serverId !== id) others.set(project, (others.get(project) ?? 0) + 1);
    }
    return { running, total: managed.size, waiting: others };
  }

  function forgetWaiting(id: string): void {
    waiting.delete(id);
  }

  /** A slot was freed: the waiting servers ask again now rather than at the next resync. */
  function slotFreed(): void {
    for (const id of waiting.keys()) void queue.enqueue(id);
  }

  /** Called holding the lease; frees it afterwards so that a supervisor with room can take the server. */
  async function waitForCapacity(
    id: string,
    project: ProjectKey,
    runtime: RuntimeRecord | null,
    reason: string,
  ): Promise<void> {
    waiting.set(id, project);
    if (runtime?.status === 'pending' && runtime.reason === reason) return store.releaseLease(id);
    await store.writeRecord(id, {
      status: 'pending',
      restarts: runtime?.restarts ?? 0,
      reason,
      supervisor: supervisorId,
    });
    await store.releaseLease(id);
    log.warn({ event: 'worker.pending', server: id, reason }, 'server waits for a free worker slot');
  }

  /**
   * Takes over a live worker from a previous supervisor. On this host its environment proves who it is
   * (so even a worker still starting is kept); elsewhere /healthz must answer with its server and instance.
   */
  async function adopt(
    id: string,
    runtime: RuntimeRecord,
    spec: ServerSpec,
    restartRequests: number,
  ): Promise<boolean> {
    const { pid, port, instance } = runtime as Required<Pick<RuntimeRecord, 'pid' | 'port' | 'instance'>>;
    const host = runtime.host ?? config.workerAdvertiseHost;
    // Without its credential nobody can reach the worker (a record written before workers had one): replace it.
    const token = runtime.workerToken;
    if (token === undefined || !isAlive(pid)) return false;
    const local = isWorkerInstance(pid, instance);
    if (local === false) return false;
    const healthy = await health.isSameWorker(host, port, id, instance, token);
    if (!healthy && local !== true) return false;
    forgetWaiting(id);
    const w: ManagedWorker = {
      id,
      project: spec.project ?? '',
      status: healthy ? 'running' : 'starting',
      host,
      port,
      pid,
      instance,
      token,
      specRev: runtime.specRev ?? spec.rev,
      restartRequests: runtime.restartRequests ?? restartRequests,
      startedAt: runtime.startedAt,
      startedAtMs: runtime.startedAt ? Date.parse(runtime.startedAt) : Date.now(),
      restarts: runtime.restarts,
      crashes: 0,
      healthFailures: 0,
      reason: 'adopted',
      own: false,
    };
    managed.set(id, w);
    await persist(w);
    log.info({ event: 'worker.adopted', ...fields(w), reason: 'adopted', status: w.status }, 'adopted a live worker');
    if (w.status === 'starting') {
      void watchStartup(w, instance).catch((err: unknown) =>
        log.error({ event: 'supervisor.watch_failed', server: id, what: 'startup', err }, 'watching a worker failed'),
      );
    }
    // A spec change or restart request made while no supervisor watched is acted on now.
    if (w.specRev !== spec.rev || restartRequests > w.restartRequests) void queue.enqueue(id);
    return true;
  }

  /** Kills a recorded worker that cannot be adopted (hung, or wrong identity), and frees its port. */
  async function killGhost(id: string, runtime: RuntimeRecord): Promise<void> {
    if (runtime.pid !== undefined && runtime.instance !== undefined && isAlive(runtime.pid)) {
      const mine = isWorkerInstance(runtime.pid, runtime.instance);
      if (mine) {
        await stopProcessGroup(runtime.pid, config.stopGraceMs);
        log.warn(
          { event: 'worker.ghost_killed', server: id, pid: runtime.pid, port: runtime.port },
          'killed a ghost worker',
        );
      }
    }
    if (runtime.port !== undefined) await ports.release(runtime.port);
  }

  /** A record with no local worker for a server that should not run: clean it if its owner is gone. */
  async function cleanupOrphan(id: string, runtime: RuntimeRecord, reason: string): Promise<void> {
    if (!(await store.acquireLease(id, config.leaseTtlMs))) return; // its owner is alive and will stop it
    await killGhost(id, runtime);
    await store.deleteRecord(id, runtime.port);
    log.info(
      { event: 'runtime.cleaned', server: id, pid: runtime.pid, port: runtime.port, reason },
      'removed a stale runtime record',
    );
  }

  /** Starts a process for `w` and watches it become healthy. */
  async function launch(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    const release = await startSlots.acquire();
    if (closed || managed.get(w.id) !== w) return release();
    let port: number;
    try {
      port = await ports.claim();
    } catch (err) {
      release();
      if (!(err instanceof NoFreePortError)) throw err;
      w.lastError = err.message;
      w.nextAttemptAt = Date.now() + config.backoffMaxMs;
      await transition(w, 'wait', 'no_free_port');
      schedule(w, w.nextAttemptAt);
      return;
    }
    const instance = randomBytes(8).toString('hex');
    const token = randomBytes(WORKER_TOKEN_BYTES).toString('base64url');
    let spawned: ReturnType<typeof spawnWorker>;
    try {
      spawned = spawnWorker(entry, {
        ...config.workerInheritedEnv,
        ...(config.secretKey === undefined ? {} : { HUB_SECRET_KEY: config.secretKey }),
        MCP_WORKER_TOKEN: token,
        MCP_SERVER_ID: w.id,
        MCP_WORKER_HOST: config.workerHost,
        MCP_WORKER_PORT: String(port),
        MCP_WORKER_INSTANCE: instance,
        REDIS_URL: config.redisUrl,
        KEY_PREFIX: config.keyPrefix,
        LOG_LEVEL: config.logLevel,
        MCP_UPSTREAM_MAX_MESSAGE_BYTES: String(config.upstreamMaxMessageBytes),
      });
    } catch (err) {
      release();
      await ports.release(port);
      throw err;
    }
    Object.assign(w, {
      port,
      pid: spawned.pid,
      instance,
      token,
      own: true,
      exited: spawned.exited,
      specRev: spec.rev,
      restartRequests,
      startedAt: new Date().toISOString(),
      startedAtMs: Date.now(),
      healthFailures: 0,
      nextAttemptAt: undefined,
    });
    // Watchers first: whatever happens to the record, the process is followed and the slot is freed.
    const report = (what: string) => (err: unknown) =>
      log.error({ event: 'supervisor.watch_failed', server: w.id, what, err }, 'watching a worker failed');
    void spawned.exited.then((info) => onExit(w, instance, info)).catch(report('exit'));
    log.info({ event: 'worker.spawned', ...fields(w), reason }, 'worker spawned');
    try {
      await transition(w, 'spawn', reason);
    } catch (err) {
      release();
      await stopProcessGroup(spawned.pid, config.stopGraceMs, spawned.exited);
      await ports.release(port).catch(() => {});
      throw err;
    }
    if (managed.get(w.id) !== w) {
      // The lease was lost while starting: the process was never recorded, so it must not live on.
      release();
      await stopProcessGroup(spawned.pid, config.stopGraceMs, spawned.exited);
      await ports.release(port).catch(() => {});
      return;
    }
    void watchStartup(w, instance).catch(report('startup')).finally(release);
  }

  /** Polls a starting worker's /healthz until it answers as itself, it goes away, or the start times out. */
  async function watchStartup(w: ManagedWorker, instance: string): Promise<void> {
    const deadline = Date.now() + config.startTimeoutMs;
    while (!closed && w.instance === instance && w.status === 'starting' && Date.now() < deadline) {
      if (!w.own && w.pid !== undefined && !isAlive(w.pid)) return onExit(w, instance, { code: null, signal: null });
      const result = await health.check(w.host, w.port as number, w.token);
      if (w.instance !== instance || w.status !== 'starting') return;
      if (result.ok && result.health?.instance === instance) {
        w.lastHeartbeat = new Date().toISOString();
        w.lastError = undefined;
        await transition(w, 'healthy', w.reason);
        log.info({ event: 'worker.ready', ...fields(w), startup_ms: Date.now() - w.startedAtMs }, 'worker healthy');
        return;
      }
      // Poll fast at first (a healthy start takes a few hundred ms), then back off to spare a busy host.
      const elapsed = Date.now() - w.startedAtMs;
      await new Promise((r) => setTimeout(r, elapsed < 2_000 ? STARTUP_POLL_MS : STARTUP_POLL_MS * 8));
    }
    if (closed || w.instance !== instance || w.status !== 'starting') return;
    w.lastError = `not healthy within ${config.startTimeoutMs} ms`;
    await stopProcess(w, 'start_timeout');
    // A restart may have launched a new run while the old one was being stopped: leave that one alone.
    if (managed.get(w.id) === w && w.instance === `${instance}:stopped`) await failedRun(w, 'start_failed');
  }

  /** A process of ours went away. Stale notices (an older instance) are ignored. */
  async function onExit(w: ManagedWorker, instance: string, info: ExitInfo): Promise<void> {
    if (closed || managed.get(w.id) !== w || w.instance !== instance || !hasProcess(w.status)) return;
    if (w.status === 'stopping') return;
    log.warn(
      { event: 'worker.terminated', ...fields(w), reason: 'exited', code: info.code, signal: info.signal },
      'worker exited',
    );
    // The worker is gone, but its stdio server may linger in its process group: end it.
    if (w.pid !== undefined) await stopProcessGroup(w.pid, 0);
    if (w.port !== undefined) await ports.release(w.port).catch(() => {});
    const note = await store.readLastError(w.id).catch(() => null);
    w.lastError = note ?? `exited with ${info.signal ?? `code ${info.code}`}`;
    if (managed.get(w.id) !== w || w.instance !== instance) return; // stopped or replaced meanwhile
    // Exit code 3: the spec itself is refused (missing, disabled, or against the stdio policy). Starting it
    // again cannot help, so it waits the longest backoff; a spec change or restart request starts it at once.
    await failedRun(w, 'exited', info.code === WORKER_EXIT_CODES.specUnavailable);
  }

  /** Counts a failed run and restarts at once (first failure) or after an exponential backoff; a refused spec waits the longest. */
  async function failedRun(w: ManagedWorker, event: 'exited' | 'start_failed', specRefused = false): Promise<void> {
    // Only a live run can fail; a stop that raced with the exit has already settled the state.
    if (w.status !== 'starting' && w.status !== 'running' && w.status !== 'unhealthy') return;
    const ranMs = Date.now() - w.startedAtMs;
    w.crashes = w.status === 'starting' || ranMs < config.stableAfterMs ? w.crashes + 1 : 1;
    w.restarts += 1;
    const delay = specRefused
      ? config.backoffMaxMs
      : backoffDelayMs(w.crashes, config.backoffBaseMs, config.backoffMaxMs);
    const reason = event === 'start_failed' ? 'start_failed' : 'exited';
    if (w.status === 'starting') {
      w.nextAttemptAt = Date.now() + Math.max(delay, config.backoffBaseMs);
      await transition(w, event, reason); // starting → backoff
    } else {
      await transition(w, 'exited', reason); // running/unhealthy → restarting
      if (delay > 0) {
        w.nextAttemptAt = Date.now() + delay;
        await transition(w, 'backoff', reason);
      }
    }
    log.info(
      {
        event: 'worker.restart',
        ...fields(w),
        reason,
        crashes: w.crashes,
        delay_ms: w.nextAttemptAt ? w.nextAttemptAt - Date.now() : 0,
      },
      'worker will be restarted',
    );
    if (w.nextAttemptAt !== undefined) schedule(w, w.nextAttemptAt);
    else void queue.enqueue(w.id);
  }

  async function restart(w: ManagedWorker, spec: ServerSpec, restartRequests: number, reason: string): Promise<void> {
    log.info({ event: 'worker.restart', ...fields(w), reason }, 'restarting worker');
    if (hasProcess(w.status)) {
      await transition(w, 'restart', reason);
      await stopProcess(w, reason);
    } else if (w.status === 'backoff' || w.status === 'pending' || w.status === 'stopped') {
      w.nextAttemptAt = undefined;
    }
    w.crashes = 0;
    await launch(w, spec, restartRequests, reason);
  }

  /** Ends the current process of `w` (group SIGTERM, then SIGKILL) and frees its port. */
  async function stopProcess(w: ManagedWorker, reason: string, redisDeadlineMs?: number): Promise<void> {
    const { pid, port, instance } = w;
    w.instance = `${w.instance}:stopped`; // makes pending exit and startup notices stale
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
  }

  /**
   * Stops a worker for good (deleted, disabled, idle, shutdown). With `redisDeadlineMs` (shutdown), each
   * Redis write waits at most that long, so the process is stopped even while Redis is unreachable.
   */
  async function stopWorker(
    w: ManagedWorker,
    reason: string,
    keepRecord: boolean,
    redisDeadlineMs?: number,
  ): Promise<void> {
    const redisStep = <T>(p: Promise<T>) => (redisDeadlineMs === undefined ? p : bounded(p, redisDeadlineMs));
    clearTimeout(w.timer);
    const port = w.port;
    if (hasProcess(w.status)) {
      await redisStep(transition(w, 'stop', reason));
      await stopProcess(w, reason, redisDeadlineMs);
      await redisStep(transition(w, 'stopped', reason));
    } else if (w.status !== 'stopped') {
      await redisStep(transition(w, 'stop', reason));
    }
    managed.delete(w.id);
    slotFreed();
    if (keepRecord) {
      await redisStep(store.releaseLease(w.id));
    } else {
      await redisStep(store.deleteRecord(w.id, port));
    }
  }

  async function checkHealth(w: ManagedWorker): Promise<void> {
    if (w.status !== 'running' && w.status !== 'unhealthy') return;
    const instance = w.instance;
    if (!w.own && w.pid !== undefined && (!isAlive(w.pid) || isWorkerInstance(w.pid, instance) === false)) {
      // An adopted worker is not our child, so no exit event comes: notice its death (or a reused pid) here.
      return onExit(w, instance, { code: null, signal: null });
    }
    const result = await health.check(w.host, w.port as number, w.token);
    if (w.instance !== instance || managed.get(w.id) !== w) return;
    if (result.ok && result.health?.instance === instance) {
      w.healthFailures = 0;
      w.lastHeartbeat = new Date().toISOString();
      if (w.status === 'unhealthy') await transition(w, 'healthy', 'recovered');
      else await store.mergeFields(w.id, { lastHeartbeat: w.lastHeartbeat });
      const { activeCalls, idleMs } = result.health;
      if (config.workerIdleTtlMs > 0 && activeCalls === 0 && idleMs >= config.workerIdleTtlMs) {
        log.info({ event: 'worker.idle', ...fields(w), idle_ms: idleMs }, 'stopping an idle worker');
        w.wanted = 'idle_stop';
        void queue.enqueue(w.id);
      }
      return;
    }
    w.healthFailures += 1;
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
    if (w.status === 'running') await transition(w, 'health_failed', 'health');
    if (w.healthFailures >= config.healthFailures) {
      w.lastError = `health check failed ${w.healthFailures} times (last status ${result.status || 'no answer'})`;
      w.wanted = 'health_restart';
      void queue.enqueue(w.id);
    }
  }

  async function healthRound(): Promise<void> {
    if (healthRunning || closed) return;
    healthRunning = true;
    try {
      await Promise.all(
        [...managed.values()].map((w) =>
          checkHealth(w).catch((err) => log.error({ event: 'health.error', server: w.id, err }, 'health round failed')),
        ),
      );
    } finally {
      healthRunning = false;
    }
  }

  async function renewLeases(): Promise<void> {
    const lost = await store.renewLeases([...managed.keys()], config.leaseTtlMs);
    for (const id of lost) {
      const w = managed.get(id);
      if (!w) continue;
      log.warn({ event: 'lease.lost', ...fields(w) }, 'lost the lease on a server; handing it over');
      forget(w);
    }
  }

  /** Enqueues every server the registry, the runtime records or this supervisor knows of. */
  async function resync(): Promise<void> {
    const [specs, runtimeIds] = await Promise.all([registry.listServers(), store.runtimeIds()]);
    const ids = new Set([...specs.map((s) => s.id), ...runtimeIds, ...managed.keys()]);
    await Promise.all([...ids].map((id) => queue.enqueue(id)));
    await releaseStalePorts(runtimeIds);
  }

  /** Frees ports held in Redis that no runtime record uses and nobody is claiming. */
  async function releaseStalePorts(runtimeIds: string[]): Promise<void> {
    const held = await store.heldPorts();
    if (held.size === 0) return;
    const used = new Set<number>();
    for (const w of managed.values()) if (w.port !== undefined) used.add(w.port);
    const records = await Promise.all(runtimeIds.map((id) => registry.getRuntime(id)));
    for (const r of records) if (r?.port !== undefined) used.add(r.port);
    for (const port of held) {
      if (used.has(port) || (await store.portLocked(port))) continue;
      await ports.release(port);
      log.info({ event: 'port.released', port, reason: 'stale' }, 'released a stale port');
    }
  }

  function loop(
    fn: () => Promise<void>,
    everyMs: number,
    name: string,
    keepGoing: () => boolean = () => !closed,
  ): () => NodeJS.Timeout {
    const tick = (): NodeJS.Timeout => {
      const timer = setTimeout(async () => {
        try {
          await fn();
        } catch (err) {
          log.error({ event: `${name}.failed`, err }, `${name} failed`);
        }
        if (keepGoing()) assign(name, tick());
      }, everyMs);
      return timer;
    };
    return tick;
  }

  function assign(name: string, timer: NodeJS.Timeout): void {
    if (name === 'resync') resyncTimer = timer;
    else if (name === 'health') healthTimer = timer;
    else leaseTimer = timer;
  }

  async function start(): Promise<void> {
    log.info({ event: 'supervisor.starting', worker_entry: entry }, 'supervisor starting');
    subscriber = createRedis(config.redisUrl, 'subscriber', log.child({ component: 'redis-subscriber' }));
    subscriber.on('message', (_channel: string, message: string) => {
      const event = parseEvent(message);
      if (!event || event.type === 'runtime.update' || event.type.startsWith('tool.')) return;
      void queue.enqueue(event.id);
    });
    // Subscribe before the full sync, so that nothing written in between is missed.
    await subscriber.subscribe(keys.events);
    // Leases are renewed from the start: the first sync may take longer than a lease lives.
    const leaseEveryMs = Math.max(100, Math.floor(config.leaseTtlMs / 3));
    assign('lease', loop(renewLeases, leaseEveryMs, 'lease', () => !leasesDone)());
    assign('health', loop(healthRound, config.healthIntervalMs, 'health')());
    await resync();
    assign('resync', loop(resync, config.resyncIntervalMs, 'resync')());
    log.info({ event: 'supervisor.started', workers: managed.size }, 'supervisor started');
  }

  async function closeOnce(): Promise<void> {
    closed = true;
    log.info({ event: 'supervisor.stopping', keep_workers: config.keepWorkersOnExit }, 'supervisor stopping');
    // Leases are renewed until the workers are stopped: stopping them may outlast a lease.
    for (const timer of [resyncTimer, healthTimer]) clearTimeout(timer);
    const steps: [string, () => Promise<unknown>][] = [
      ['unsubscribe', async () => subscriber && (await closeRedis(subscriber))],
      // A reconcile stuck on an unreachable Redis must not keep the workers running.
      ['drain', () => bounded(queue.idle(), SHUTDOWN_REDIS_MS)],
      [
        'workers',
        () =>
          Promise.all(
            [...managed.values()].map(async (w) => {
              clearTimeout(w.timer);
              if (config.keepWorkersOnExit) return bounded(store.releaseLease(w.id), SHUTDOWN_REDIS_MS);
              return stopWorker(w, 'shutdown', false, SHUTDOWN_REDIS_MS);
            }),
          ),
      ],
      [
        'leases',
        async () => {
          leasesDone = true;
          clearTimeout(leaseTimer);
        },
      ],
      ['health', () => health.close()],
      ['redis', async () => ownsRedis && (await closeRedis(redis))],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        log.error({ event: 'supervisor.stop_step_failed', step: name, err }, 'shutdown step failed');
      }
    }
    log.info({ event: 'supervisor.stopped' }, 'supervisor stopped');
  }

  return {
    id: supervisorId,
    start,
    reconcile: (id) => queue.enqueue(id),
    workers: () =>
      [...managed.values()].map((w) => ({
        id: w.id,
        status: w.status,
        pid: w.pid,
        port: w.port,
        instance: w.instance,
      })),
    close() {
      closing ??= Promise.race([
        closeOnce(),
        new Promise<void>((resolve) => setTimeout(resolve, CLOSE_DEADLINE_MS).unref()),
      ]);
      return closing;
    },
  };
}
