import { describe, expect, it } from 'vitest';
import { type AdmissionInput, admitWorker } from './admission.js';

const limits = { workerMax: 4, perProjectMax: 2 };

function input(project: string, running: Record<string, number>, waiting: Record<string, number> = {}): AdmissionInput {
  const counts = new Map(Object.entries(running));
  return {
    project,
    running: counts,
    total: [...counts.values()].reduce((a, b) => a + b, 0),
    waiting: new Map(Object.entries(waiting)),
    ...limits,
  };
}

describe('which server gets a worker slot', () => {
  it('admits while the project is under its quota and the supervisor under its cap', () => {
    expect(admitWorker(input('a', {}))).toEqual({ admit: true });
    expect(admitWorker(input('a', { a: 1, b: 2 }))).toEqual({ admit: true });
  });

  it('keeps a project at its quota waiting, with a reason naming the quota, while others still start', () => {
    const refused = admitWorker(input('a', { a: 2 }));
    expect(refused).toMatchObject({ admit: false, cause: 'quota' });
    expect(refused.admit === false && refused.reason).toMatch(/MCP_WORKER_MAX_PER_PROJECT=2 .*"a"/);
    expect(admitWorker(input('b', { a: 2 }, { a: 3 }))).toEqual({ admit: true });
  });

  it('servers of no project have no quota, only the cap', () => {
    expect(admitWorker(input('', { '': 3 }))).toEqual({ admit: true });
    expect(admitWorker(input('', { '': 4 }))).toMatchObject({ admit: false, cause: 'capacity' });
  });

  it('refuses everyone at the cap, with the cap as reason', () => {
    const refused = admitWorker(input('c', { a: 2, b: 2 }));
    expect(refused).toMatchObject({ admit: false, cause: 'capacity' });
    expect(refused.admit === false && refused.reason).toMatch(/MCP_WORKER_MAX=4/);
  });

  it('gives the last slots first to waiting projects that run fewer workers, whatever the order of asking', () => {
    // One slot left; b (1 worker) and c (0 workers) both wait: c is owed it first.
    const running = { a: 2, b: 1 };
    const waiting = { b: 1, c: 1 };
    expect(admitWorker(input('b', running, waiting))).toMatchObject({ admit: false, cause: 'fair_share' });
    expect(admitWorker(input('c', running, waiting))).toEqual({ admit: true });
    // With two slots left, both fit.
    expect(admitWorker({ ...input('b', running, waiting), workerMax: 5 })).toEqual({ admit: true });
  });

  it('owes nothing to a waiting project that is at its quota', () => {
    expect(admitWorker(input('b', { a: 2, b: 1 }, { a: 5 }))).toEqual({ admit: true });
  });
});
