import { type Registry, type RuntimeRecord, type ServerSpec, workerSpecDigest } from '@mcp-hub/shared';
import type { Adoption } from './adoption.js';
import type { SupervisorContext } from './context.js';
import { decide, placeNewWorker } from './decide.js';
import type { WorkerRuns } from './worker-runs.js';
import type { ManagedWorker } from './worker-set.js';

/**
 * The level-triggered step for one server: read desired and actual state, decide (`decide.ts`), act once.
 * Runs serialized per server (KeyedSerialQueue), so one server's steps never interleave.
 */
export function createReconciler(
  ctx: SupervisorContext,
  registry: Registry,
  runs: WorkerRuns,
  adoption: Adoption,
): (id: string) => Promise<void> {
  const { config, store, workers, log } = ctx;

  /** Called holding the lease; frees it afterwards so that a supervisor with room can take the server. */
  async function waitForSlot(
    id: string,
    project: string,
    runtime: RuntimeRecord | null,
    reason: string,
    writeRecord: boolean,
  ): Promise<void> {
    workers.setWaiting(id, project);
    if (!writeRecord) return store.releaseLease(id);
    await store.writeRecord(id, {
      status: 'pending',
      restarts: runtime?.restarts ?? 0,
      reason,
      supervisor: store.supervisorId,
    });
    await store.releaseLease(id);
    log.warn({ event: 'worker.pending', server: id, reason }, 'server waits for a free worker slot');
  }

  /** No local worker: take the lease, adopt what is recorded, or start a new worker if there is a slot. */
  async function claim(
    id: string,
    spec: ServerSpec,
    runtime: RuntimeRecord | null,
    restartRequests: number,
    adopt: boolean,
  ): Promise<void> {
    const lease = await store.claimLease(id, config.leaseTtlMs);
    if (lease === false) {
      workers.forgetWaiting(id); // another supervisor runs it
      return;
    }
    if (lease === 'taken_over') {
      log.warn(
        { event: 'lease.taken_over', server: id, from: runtime?.supervisor ?? null },
        'took over a server whose supervisor went silent',
      );
    }
    // Adopting comes before the capacity check: a live worker is kept, never replaced by a pending record.
    if (adopt && runtime) {
      if (await adoption.adopt(id, runtime, spec, restartRequests)) return;
      await adoption.killGhost(id, runtime);
    }
    // From here to workers.add nothing awaits: the decision and the slot it gives are one step.
    const project = spec.project ?? '';
    const placement = placeNewWorker({
      project,
      runtime,
      slots: workers.slotsInUse(id),
      workerMax: config.workerMax,
      perProjectMax: config.workerMaxPerProject,
    });
    if (placement.do === 'wait_pending') {
      return waitForSlot(id, project, runtime, placement.reason, placement.writeRecord);
    }
    workers.forgetWaiting(id);
    const fresh: ManagedWorker = {
      id,
      project,
      status: 'pending',
      host: config.workerAdvertiseHost,
      instance: '',
      run: 0,
      token: '',
      specRev: spec.rev,
      specDigest: workerSpecDigest(spec),
      replaceFailures: 0,
      restartRequests,
      startedAtMs: 0,
      restarts: runtime?.restarts ?? 0,
      crashes: 0,
      healthFailures: 0,
      own: true,
    };
    workers.add(fresh);
    await runs.launch(fresh, spec, restartRequests, placement.reason);
  }

  return async function reconcileOne(id: string): Promise<void> {
    if (ctx.isClosed()) return;
    const [spec, runtime, restartRequests] = await Promise.all([
      registry.getServer(id),
      registry.getRuntime(id),
      registry.getRestartRequests(id),
    ]);
    const w = workers.get(id);
    const local = w && { ...w, replacing: w.next !== undefined };
    const action = decide({ spec, runtime, restartRequests, local, nowMs: Date.now() });
    if (w && spec && action.do !== 'stop') {
      w.project = spec.project ?? '';
      // The health loop's request is answered by this decision (unless a stop is already under way).
      if (w.status !== 'stopping') w.wanted = undefined;
    }

    switch (action.do) {
      case 'nothing':
        return;
      case 'stay_stopped':
        workers.forgetWaiting(id);
        return;
      case 'stop':
        workers.forgetWaiting(id);
        if (w) await runs.stopWorker(w, action.reason, action.keepRecord);
        return;
      case 'clean_orphan':
        workers.forgetWaiting(id);
        return runtime ? adoption.cleanupOrphan(id, runtime, action.reason) : undefined;
      case 'stop_idle':
        if (!w) return;
        w.restartRequests = restartRequests;
        return runs.stopWorker(w, 'idle', true);
      case 'restart':
        return w && spec ? runs.restart(w, spec, restartRequests, action.reason) : undefined;
      case 'replace':
        return w && spec ? runs.replace(w, spec, restartRequests, action.reason) : undefined;
      case 'note_spec':
        return w ? runs.noteSpec(w, action.specRev) : undefined;
      case 'wait_backoff':
        return w ? workers.schedule(w, action.untilMs) : undefined;
      case 'relaunch':
        return w && spec ? runs.launch(w, spec, restartRequests, action.reason) : undefined;
      case 'claim':
        return spec ? claim(id, spec, runtime, restartRequests, action.adopt) : undefined;
    }
  };
}
