import {
  type Logger,
  PORT_TAKEN_RETRIES,
  type RuntimeRecord,
  type RuntimeStatus,
  WORKER_EXIT_CODES,
} from '@mcp-hub/shared';
import type { ProjectKey } from './admission.js';
import { hasProcess, type LifecycleEvent, nextStatus } from './lifecycle.js';
import type { ExitInfo } from './process-manager.js';
import type { RuntimeStore } from './runtime-store.js';

/** One worker this supervisor runs; the object lives across restarts, its process does not. */
export interface ManagedWorker {
  id: string;
  /** The server's project ('' for none): what its slot counts against. */
  project: ProjectKey;
  status: RuntimeStatus;
  host: string;
  port?: number;
  pid?: number;
  instance: string;
  /**
   * The run generation: bumped when a run is launched and when its process is stopped. Exit and startup
   * notices carry the generation they were made for, so a notice about an earlier run is recognized as stale.
   */
  run: number;
  /** The credential of the current run (random per spawn); the hub reads it from the runtime record. */
  token: string;
  specRev: number;
  /** `workerSpecDigest` of the spec the current run was started with ('' when unknown). */
  specDigest: string;
  restartRequests: number;
  /** The successor of the current run while a planned restart starts it; the record names the current run until the switch. */
  next?: NextRun;
  /** Consecutive planned restarts whose successor failed; the next attempt waits until `replaceRetryAt`. */
  replaceFailures: number;
  replaceRetryAt?: number;
  startedAt?: string;
  startedAtMs: number;
  restarts: number;
  /** Consecutive failed runs (exits before stableAfterMs, or failed starts). */
  crashes: number;
  /** Starts in a row (runs or successors) that ended with the port taken (exit code 4); 0 once one is healthy. */
  portsTaken?: number;
  healthFailures: number;
  lastError?: string;
  nextAttemptAt?: number;
  reason?: string;
  exited?: Promise<ExitInfo>;
  /** Started by this supervisor (a child process), as opposed to adopted from a previous one. */
  own: boolean;
  timer?: NodeJS.Timeout;
  lastHeartbeat?: string;
  /** An action the health loop asks of the reconciler, which alone changes a worker. */
  wanted?: 'idle_stop' | 'health_restart';
}

/** A process started to take over from a running worker (a planned restart), before the switch. */
export interface NextRun {
  pid: number;
  port: number;
  instance: string;
  token: string;
  exited: Promise<ExitInfo>;
  specRev: number;
  specDigest: string;
  /** The server's call deadline: how long the worker it replaces may take to drain. */
  timeoutMs: number;
  restartRequests: number;
  reason: string;
  startedAtMs: number;
}

export interface WorkerSnapshot {
  id: string;
  status: RuntimeStatus;
  pid?: number;
  port?: number;
  instance: string;
}

export function logFields(w: ManagedWorker) {
  return { server: w.id, pid: w.pid, port: w.port };
}

export interface WorkerSetDeps {
  store: RuntimeStore;
  log: Logger;
  supervisorId: string;
  /** Asks the reconciler to look at a server again. */
  enqueue(id: string): Promise<void>;
}

/**
 * The workers this supervisor runs and the servers it told to wait for a slot, with the one place a
 * worker's status changes (`transition`) and the lease check on every record written.
 */
export class WorkerSet {
  private readonly byId = new Map<string, ManagedWorker>();
  /** Servers this supervisor told to wait for a slot (id → project), so that slots are given fairly. */
  private readonly waiting = new Map<string, ProjectKey>();

  constructor(private readonly deps: WorkerSetDeps) {}

  get(id: string): ManagedWorker | undefined {
    return this.byId.get(id);
  }

  /** False once the worker was forgotten or replaced: whatever was under way for it must stop. */
  isCurrent(w: ManagedWorker): boolean {
    return this.byId.get(w.id) === w;
  }

  add(w: ManagedWorker): void {
    this.byId.set(w.id, w);
  }

  /** Removes a worker that was stopped; its slot goes to the servers waiting. */
  remove(w: ManagedWorker): void {
    this.byId.delete(w.id);
    this.slotFreed();
  }

  /** Drops a worker without stopping it (its lease went to another supervisor, which adopts it). */
  forget(w: ManagedWorker): void {
    clearTimeout(w.timer);
    if (!this.isCurrent(w)) return;
    this.byId.delete(w.id);
    this.slotFreed();
  }

  all(): ManagedWorker[] {
    return [...this.byId.values()];
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  get size(): number {
    return this.byId.size;
  }

  snapshot(): WorkerSnapshot[] {
    return this.all().map((w) => ({ id: w.id, status: w.status, pid: w.pid, port: w.port, instance: w.instance }));
  }

  /** Reconciles `w` again at `atMs` (epoch ms). */
  schedule(w: ManagedWorker, atMs: number): void {
    clearTimeout(w.timer);
    w.timer = setTimeout(() => void this.deps.enqueue(w.id), Math.max(0, atMs - Date.now()));
    w.timer.unref();
  }

  /** The one place a worker's status changes: checked against the table, logged, persisted, announced. */
  async transition(w: ManagedWorker, event: LifecycleEvent, reason?: string): Promise<void> {
    const from = w.status;
    w.status = nextStatus(from, event);
    if (reason !== undefined) w.reason = reason;
    this.deps.log.debug(
      { event: 'worker.transition', server: w.id, from, to: w.status, on: event, reason: w.reason },
      'worker state changed',
    );
    await this.persist(w);
  }

  /** Writes the worker's record; if the lease is no longer ours, the worker is forgotten (its new owner adopts it). */
  async persist(w: ManagedWorker): Promise<void> {
    const written = await this.deps.store.writeRecord(w.id, this.record(w));
    if (!written && this.isCurrent(w)) {
      this.deps.log.warn({ event: 'lease.lost', ...logFields(w) }, 'lost the lease on a server; handing it over');
      this.forget(w);
    }
  }

  record(w: ManagedWorker): RuntimeRecord {
    const live = hasProcess(w.status);
    return {
      status: w.status,
      pid: live ? w.pid : undefined,
      host: w.host,
      port: live ? w.port : undefined,
      supervisor: this.deps.supervisorId,
      instance: w.instance,
      workerToken: live && w.token !== '' ? w.token : undefined,
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

  /** Workers in use per project and in all, and the servers other than `id` waiting for a slot, per project. */
  slotsInUse(id: string) {
    const running = new Map<ProjectKey, number>();
    for (const w of this.byId.values()) running.set(w.project, (running.get(w.project) ?? 0) + 1);
    const others = new Map<ProjectKey, number>();
    for (const [serverId, project] of this.waiting) {
      if (serverId !== id) others.set(project, (others.get(project) ?? 0) + 1);
    }
    return { running, total: this.byId.size, waiting: others };
  }

  setWaiting(id: string, project: ProjectKey): void {
    this.waiting.set(id, project);
  }

  forgetWaiting(id: string): void {
    this.waiting.delete(id);
  }

  /** A slot was freed: the waiting servers ask again now rather than at the next resync. */
  private slotFreed(): void {
    for (const id of this.waiting.keys()) void this.deps.enqueue(id);
  }
}

/**
 * Whether a run or successor that exited with `code` found its port taken and may start again at once: counted
 * on `w`, at most PORT_TAKEN_RETRIES in a row (a host where every listen fails must not spin).
 */
export function portTakenAgain(w: ManagedWorker, code: number | null): boolean {
  const again = code === WORKER_EXIT_CODES.portTaken && (w.portsTaken ?? 0) < PORT_TAKEN_RETRIES;
  w.portsTaken = again ? (w.portsTaken ?? 0) + 1 : 0;
  return again;
}
