/**
 * Which server may take a worker slot, given the slots in use. The policy (docs/adr/0006-tenant-fair-sharing.md):
 * 1. a project runs at most `perProjectMax` workers (servers of no project, the admin's own, have no quota);
 * 2. the supervisor runs at most `workerMax` workers;
 * 3. when slots are scarce, they go first to the waiting projects that run the fewest workers: a server
 *    is admitted only if more slots are free than there are other waiting projects running fewer workers
 *    than its own (each of those is owed one slot before it).
 * Running workers are never stopped to make room: fairness is decided when a slot is given.
 */

/** The group a server counts in: its project, or '' for servers no project owns. */
export type ProjectKey = string;

export interface AdmissionInput {
  project: ProjectKey;
  /** Workers this supervisor runs (or is starting), per project. */
  running: ReadonlyMap<ProjectKey, number>;
  /** All workers this supervisor runs (or is starting). */
  total: number;
  /** Servers (other than this one) waiting for a slot, per project. */
  waiting: ReadonlyMap<ProjectKey, number>;
  workerMax: number;
  perProjectMax: number;
}

export type Admission = { admit: true } | { admit: false; cause: 'quota' | 'capacity' | 'fair_share'; reason: string };

function hasQuota(project: ProjectKey): boolean {
  return project !== '';
}

/** Decides whether one server may start a worker now; the reason, when not, is written to its runtime record. */
export function admitWorker(input: AdmissionInput): Admission {
  const { project, running, total, waiting, workerMax, perProjectMax } = input;
  const mine = running.get(project) ?? 0;
  if (hasQuota(project) && mine >= perProjectMax) {
    return {
      admit: false,
      cause: 'quota',
      reason: `quota: MCP_WORKER_MAX_PER_PROJECT=${perProjectMax} workers of project "${project}" are running`,
    };
  }
  if (total >= workerMax) {
    return { admit: false, cause: 'capacity', reason: `capacity: MCP_WORKER_MAX=${workerMax} workers are running` };
  }
  let ahead = 0;
  for (const [other, count] of waiting) {
    if (other === project || count === 0) continue;
    const theirs = running.get(other) ?? 0;
    // A project at its quota cannot take a slot, so it is owed none.
    if (hasQuota(other) && theirs >= perProjectMax) continue;
    if (theirs < mine) ahead++;
  }
  if (workerMax - total <= ahead) {
    return {
      admit: false,
      cause: 'fair_share',
      reason: `capacity: the last ${workerMax - total} of MCP_WORKER_MAX=${workerMax} slots go first to ${ahead} waiting project(s) running fewer workers`,
    };
  }
  return { admit: true };
}
