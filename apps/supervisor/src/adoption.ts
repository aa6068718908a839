import { type RuntimeRecord, type ServerSpec, workerSpecDigest } from '@mcp-hub/shared';
import type { SupervisorContext } from './context.js';
import { isAlive, isWorkerInstance, stopProcessGroup } from './process-manager.js';
import type { WorkerRuns } from './worker-runs.js';
import { logFields, type ManagedWorker } from './worker-set.js';

/**
 * Workers recorded by another (gone) supervisor: kept when they are alive and provably the recorded
 * worker, killed as ghosts when they are not, their records cleaned when the server should not run.
 * Callers hold the server's lease.
 */
export class Adoption {
  constructor(
    private readonly ctx: SupervisorContext,
    private readonly runs: WorkerRuns,
  ) {}

  /**
   * Takes over a live worker from a previous supervisor. On this host its environment proves who it is
   * (so even a worker still starting is kept); elsewhere /healthz must answer with its server and instance.
   * False when there is nothing to adopt.
   */
  async adopt(id: string, runtime: RuntimeRecord, spec: ServerSpec, restartRequests: number): Promise<boolean> {
    const { config, health, workers, log } = this.ctx;
    const { pid, port, instance } = runtime as Required<Pick<RuntimeRecord, 'pid' | 'port' | 'instance'>>;
    const host = runtime.host ?? config.workerAdvertiseHost;
    // Without its credential nobody can reach the worker (a record written before workers had one): replace it.
    const token = runtime.workerToken;
    if (token === undefined || !isAlive(pid)) return false;
    const local = isWorkerInstance(pid, instance);
    if (local === false) return false;
    const healthy = await health.isSameWorker(host, port, id, instance, token);
    if (!healthy && local !== true) return false;
    workers.forgetWaiting(id);
    const specRev = runtime.specRev ?? spec.rev;
    const w: ManagedWorker = {
      id,
      project: spec.project ?? '',
      status: healthy ? 'running' : 'starting',
      host,
      port,
      pid,
      instance,
      run: 0,
      token,
      specRev,
      // What an older rev held is not kept: a worker of another rev counts as changed (a planned restart).
      specDigest: specRev === spec.rev ? workerSpecDigest(spec) : '',
      replaceFailures: 0,
      restartRequests: runtime.restartRequests ?? restartRequests,
      startedAt: runtime.startedAt,
      startedAtMs: runtime.startedAt ? Date.parse(runtime.startedAt) : Date.now(),
      restarts: runtime.restarts,
      crashes: 0,
      healthFailures: 0,
      reason: 'adopted',
      own: false,
    };
    workers.add(w);
    await workers.persist(w);
    log.info(
      { event: 'worker.adopted', ...logFields(w), reason: 'adopted', status: w.status },
      'adopted a live worker',
    );
    if (w.status === 'starting') {
      void this.runs
        .watchStartup(w, w.run)
        .catch((err: unknown) =>
          log.error({ event: 'supervisor.watch_failed', server: id, what: 'startup', err }, 'watching a worker failed'),
        );
    }
    // A spec change or restart request made while no supervisor watched is acted on now.
    if (w.specRev !== spec.rev || restartRequests > w.restartRequests) void this.ctx.enqueue(id);
    return true;
  }

  /** Kills a recorded worker that cannot be adopted (hung, or wrong identity), and frees its port. */
  async killGhost(id: string, runtime: RuntimeRecord): Promise<void> {
    const { config, ports, log } = this.ctx;
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
  async cleanupOrphan(id: string, runtime: RuntimeRecord, reason: string): Promise<void> {
    const { config, store, log } = this.ctx;
    if (!(await store.acquireLease(id, config.leaseTtlMs))) return; // its owner is alive and will stop it
    await this.killGhost(id, runtime);
    await store.deleteRecord(id, runtime.port);
    log.info(
      { event: 'runtime.cleaned', server: id, pid: runtime.pid, port: runtime.port, reason },
      'removed a stale runtime record',
    );
  }
}
