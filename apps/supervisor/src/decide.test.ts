import {
  PORT_TAKEN_RETRIES,
  type RuntimeRecord,
  type RuntimeStatus,
  type ServerSpec,
  WORKER_EXIT_CODES,
  workerSpecDigest,
} from '@mcp-hub/shared';
import { describe, expect, it } from 'vitest';
import {
  type Action,
  afterFailedReplacement,
  afterFailedRun,
  afterHealthCheck,
  type DecisionInput,
  decide,
  type FailedRunInput,
  type LocalWorkerView,
  placeNewWorker,
} from './decide.js';
import { nextStatus } from './lifecycle.js';
import { type ManagedWorker, portTakenAgain } from './worker-set.js';

/**
 * The supervisor's decisions as tables: each row is what the reconciler read and what it must do. These
 * replace the process-level tests that reached the same decisions by starting workers (spec change,
 * restart request, disable, idle stop, capacity, crash loop, failed start); `test/supervisor.test.ts`
 * keeps the ones that need real processes.
 */

const NOW = 1_000_000;

function spec(extra: Partial<ServerSpec> = {}): ServerSpec {
  return {
    id: 'alpha',
    name: 'alpha',
    namespace: 'alpha',
    transport: 'stdio',
    config: { command: 'node', args: [], env: {} },
    tags: [],
    enabled: true,
    timeoutMs: 10_000,
    rev: 3,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...extra,
  } as ServerSpec;
}

function record(extra: Partial<RuntimeRecord> = {}): RuntimeRecord {
  return { status: 'running', restarts: 0, ...extra };
}

const live = record({ pid: 4321, port: 20_001, instance: 'abcdef0123456789', restartRequests: 0, specRev: 3 });

function local(extra: Partial<LocalWorkerView> = {}): LocalWorkerView {
  return { status: 'running', specRev: 3, specDigest: workerSpecDigest(spec()), restartRequests: 0, ...extra };
}

describe('decide', () => {
  const rows: [string, Partial<DecisionInput>, Action][] = [
    // Deleted and disabled servers.
    [
      'deleted, running here: stop and drop the record',
      { spec: null, runtime: live, local: local() },
      { do: 'stop', reason: 'deleted', keepRecord: false },
    ],
    [
      'deleted, recorded by another supervisor: clean the orphan',
      { spec: null, runtime: live },
      { do: 'clean_orphan', reason: 'deleted' },
    ],
    ['deleted, nothing left anywhere', { spec: null, runtime: null }, { do: 'stay_stopped', reason: 'deleted' }],
    [
      'disabled, running here: stop',
      { spec: spec({ enabled: false }), runtime: live, local: local() },
      { do: 'stop', reason: 'disabled', keepRecord: false },
    ],
    [
      'disabled, stopped and its record gone: stays stopped',
      { spec: spec({ enabled: false }), runtime: null },
      { do: 'stay_stopped', reason: 'disabled' },
    ],
    [
      're-enabled after a disable: claim it (nothing to adopt)',
      { spec: spec(), runtime: null },
      { do: 'claim', adopt: false },
    ],
    // Idle stops.
    [
      'health loop found it idle: stop it, keeping the record',
      { spec: spec(), runtime: live, local: local({ wanted: 'idle_stop' }) },
      { do: 'stop_idle' },
    ],
    [
      'idle request on a worker no longer running: ignored',
      { spec: spec(), runtime: live, local: local({ status: 'unhealthy', wanted: 'idle_stop' }) },
      { do: 'nothing' },
    ],
    [
      'stopped for idleness: a resync leaves it stopped',
      { spec: spec(), runtime: record({ status: 'stopped', reason: 'idle', restartRequests: 2 }), restartRequests: 2 },
      { do: 'stay_stopped', reason: 'idle' },
    ],
    [
      'stopped for idleness, then a restart request: claim it',
      { spec: spec(), runtime: record({ status: 'stopped', reason: 'idle', restartRequests: 2 }), restartRequests: 3 },
      { do: 'claim', adopt: false },
    ],
    [
      'stopped for idleness with the worker still local: stop for good',
      { spec: spec(), runtime: record({ status: 'stopped', reason: 'idle' }), local: local({ status: 'stopped' }) },
      { do: 'stop', reason: 'idle', keepRecord: true },
    ],
    // Restarts.
    [
      'spec changed in what the worker reads, running: replace it (successor first)',
      { spec: spec({ rev: 4, timeoutMs: 5_000 }), runtime: live, local: local() },
      { do: 'replace', reason: 'spec_changed' },
    ],
    [
      'config changed, running: replace it',
      {
        spec: spec({ rev: 4, config: { command: 'node', args: ['other.js'], env: {} } } as Partial<ServerSpec>),
        runtime: live,
        local: local(),
      },
      { do: 'replace', reason: 'spec_changed' },
    ],
    [
      'only metadata changed (name, description, tags, project, namespace, prefixMode): keep the process',
      {
        spec: spec({
          rev: 4,
          name: 'Alpha',
          description: 'new words',
          tags: ['t'],
          project: 'p',
          namespace: 'al',
          prefixMode: 'never',
        }),
        runtime: live,
        local: local(),
      },
      { do: 'note_spec', specRev: 4 },
    ],
    [
      'only metadata changed, worker between runs: note it, nothing to restart',
      { spec: spec({ rev: 4, tags: ['t'] }), runtime: live, local: local({ status: 'backoff', nextAttemptAt: NOW }) },
      { do: 'note_spec', specRev: 4 },
    ],
    [
      'metadata changed and a restart requested: replace for the request',
      { spec: spec({ rev: 4, tags: ['t'] }), runtime: live, local: local(), restartRequests: 1 },
      { do: 'replace', reason: 'restart_requested' },
    ],
    [
      'adopted at another rev (what it runs is unknown): replace it',
      { spec: spec({ rev: 4 }), runtime: live, local: local({ specDigest: '' }) },
      { do: 'replace', reason: 'spec_changed' },
    ],
    [
      'spec changed, worker unhealthy: restart in place (nothing worth keeping)',
      { spec: spec({ rev: 4, timeoutMs: 5_000 }), runtime: live, local: local({ status: 'unhealthy' }) },
      { do: 'restart', reason: 'spec_changed' },
    ],
    [
      'spec changed, worker in backoff: restart now',
      {
        spec: spec({ rev: 4, timeoutMs: 5_000 }),
        runtime: live,
        local: local({ status: 'backoff', nextAttemptAt: NOW + 500 }),
      },
      { do: 'restart', reason: 'spec_changed' },
    ],
    [
      'spec changed, worker starting: restart (it has no calls to keep)',
      { spec: spec({ rev: 4, timeoutMs: 5_000 }), runtime: live, local: local({ status: 'starting' }) },
      { do: 'restart', reason: 'spec_changed' },
    ],
    [
      'restart requested, running: replace it',
      { spec: spec(), runtime: live, local: local(), restartRequests: 1 },
      { do: 'replace', reason: 'restart_requested' },
    ],
    [
      'a successor is starting: nothing, whatever else changed',
      { spec: spec({ rev: 5, timeoutMs: 1 }), runtime: live, local: local({ replacing: true }), restartRequests: 2 },
      { do: 'nothing' },
    ],
    [
      'the last successor failed, before its retry: wait (the running worker serves)',
      { spec: spec({ rev: 4, timeoutMs: 5_000 }), runtime: live, local: local({ replaceRetryAt: NOW + 300 }) },
      { do: 'wait_backoff', untilMs: NOW + 300 },
    ],
    [
      'the last successor failed, its retry due: replace again',
      { spec: spec({ rev: 4, timeoutMs: 5_000 }), runtime: live, local: local({ replaceRetryAt: NOW }) },
      { do: 'replace', reason: 'spec_changed' },
    ],
    [
      'a restart request already served: nothing',
      { spec: spec(), runtime: live, local: local({ restartRequests: 1 }), restartRequests: 1 },
      { do: 'nothing' },
    ],
    [
      'too many failed health checks: restart',
      { spec: spec(), runtime: live, local: local({ status: 'unhealthy', wanted: 'health_restart' }) },
      { do: 'restart', reason: 'health' },
    ],
    [
      'health restart asked, but it recovered meanwhile: nothing',
      { spec: spec(), runtime: live, local: local({ status: 'running', wanted: 'health_restart' }) },
      { do: 'nothing' },
    ],
    [
      'being stopped: nothing, whatever else changed',
      { spec: spec({ rev: 9 }), runtime: live, local: local({ status: 'stopping' }), restartRequests: 5 },
      { do: 'nothing' },
    ],
    // Between runs.
    [
      'in backoff, before its time: wait',
      { spec: spec(), runtime: live, local: local({ status: 'backoff', nextAttemptAt: NOW + 500, reason: 'exited' }) },
      { do: 'wait_backoff', untilMs: NOW + 500 },
    ],
    [
      'in backoff, its time come: relaunch',
      { spec: spec(), runtime: live, local: local({ status: 'backoff', nextAttemptAt: NOW, reason: 'exited' }) },
      { do: 'relaunch', reason: 'exited' },
    ],
    [
      'restarting at once after a first crash: relaunch',
      { spec: spec(), runtime: live, local: local({ status: 'restarting', reason: 'exited' }) },
      { do: 'relaunch', reason: 'exited' },
    ],
    [
      'pending for lack of a port, no reason kept: relaunch as a restart',
      { spec: spec(), runtime: live, local: local({ status: 'pending' }) },
      { do: 'relaunch', reason: 'restart' },
    ],
    ['running and up to date: nothing', { spec: spec(), runtime: live, local: local() }, { do: 'nothing' }],
    [
      'starting: nothing (the startup watch decides)',
      { spec: spec(), runtime: live, local: local({ status: 'starting' }) },
      { do: 'nothing' },
    ],
    // No local worker.
    ['new server: claim it', { spec: spec(), runtime: null }, { do: 'claim', adopt: false }],
    [
      'a live worker recorded by a gone supervisor: claim and adopt',
      { spec: spec(), runtime: live },
      { do: 'claim', adopt: true },
    ],
    [
      'a record without a process (pending elsewhere): claim, nothing to adopt',
      { spec: spec(), runtime: record({ status: 'pending' }) },
      { do: 'claim', adopt: false },
    ],
  ];

  it.each(rows)('%s', (_name, input, expected) => {
    expect(decide({ spec: null, runtime: null, restartRequests: 0, nowMs: NOW, ...input })).toEqual(expected);
  });
});

describe('placeNewWorker', () => {
  const none = new Map<string, number>();
  const base = { project: '', runtime: null, workerMax: 1, perProjectMax: 1 };

  it('starts a new server when there is a slot; a server with a record is a takeover, one stopped idle a wake', () => {
    const slots = { running: none, total: 0, waiting: none };
    expect(placeNewWorker({ ...base, slots })).toEqual({ do: 'start', reason: 'start' });
    expect(placeNewWorker({ ...base, slots, runtime: record({ status: 'stopped' }) })).toEqual({
      do: 'start',
      reason: 'takeover',
    });
    // Counted as a wake-up from idle (mcp_supervisor_worker_spawns_total{reason="wake"}).
    expect(placeNewWorker({ ...base, slots, runtime: record({ status: 'stopped', reason: 'idle' }) })).toEqual({
      do: 'start',
      reason: 'wake',
    });
  });

  it('keeps a server past MCP_WORKER_MAX pending with the reason, written once', () => {
    const slots = { running: new Map([['', 1]]), total: 1, waiting: none };
    const first = placeNewWorker({ ...base, slots });
    expect(first).toEqual({ do: 'wait_pending', reason: expect.stringMatching(/MCP_WORKER_MAX=1/), writeRecord: true });
    const reason = (first as { reason: string }).reason;
    // Already recorded as pending for the same reason: nothing to write or announce again.
    expect(placeNewWorker({ ...base, slots, runtime: record({ status: 'pending', reason }) })).toEqual({
      do: 'wait_pending',
      reason,
      writeRecord: false,
    });
  });

  it("keeps a project past its quota pending while another project's server starts", () => {
    const slots = { running: new Map([['greedy', 2]]), total: 2, waiting: none };
    const quota = { ...base, workerMax: 3, perProjectMax: 2, slots };
    expect(placeNewWorker({ ...quota, project: 'greedy' })).toMatchObject({
      do: 'wait_pending',
      reason: expect.stringMatching(/MCP_WORKER_MAX_PER_PROJECT=2 workers of project "greedy"/),
    });
    expect(placeNewWorker({ ...quota, project: 'modest' })).toEqual({ do: 'start', reason: 'start' });
  });
});

describe('afterFailedRun', () => {
  const base: FailedRunInput = {
    status: 'running',
    event: 'exited',
    crashes: 0,
    ranMs: 100,
    nowMs: NOW,
    stableAfterMs: 10_000,
    backoffBaseMs: 300,
    backoffMaxMs: 5_000,
  };

  it('restarts at once after a first crash (kill -9 of a running worker)', () => {
    const outcome = afterFailedRun(base);
    expect(outcome).toEqual({ crashes: 1, reason: 'exited', steps: [{ event: 'exited' }] });
    expect(nextStatus('running', 'exited')).toBe('restarting');
  });

  it('backs off a crash loop exponentially up to the maximum, saying when the next attempt is', () => {
    let crashes = 0;
    const delays: (number | undefined)[] = [];
    for (let i = 0; i < 7; i++) {
      const outcome = afterFailedRun({ ...base, crashes });
      crashes = outcome.crashes;
      const last = outcome.steps.at(-1);
      delays.push(last?.nextAttemptAt === undefined ? undefined : last.nextAttemptAt - NOW);
      // The steps are legal transitions from a running worker, ending in restarting or backoff.
      const end = outcome.steps.reduce<RuntimeStatus>((s, step) => nextStatus(s, step.event), 'running');
      expect(end).toBe(i === 0 ? 'restarting' : 'backoff');
    }
    expect(delays).toEqual([undefined, 300, 600, 1_200, 2_400, 4_800, 5_000]);
  });

  it('counts a crash after a stable run as a first crash again', () => {
    expect(afterFailedRun({ ...base, crashes: 5, ranMs: 10_000 })).toMatchObject({
      crashes: 1,
      steps: [{ event: 'exited' }],
    });
  });

  it('backs off a failed start (never healthy, or exited while starting) by at least the base delay', () => {
    for (const event of ['start_failed', 'exited'] as const) {
      const outcome = afterFailedRun({ ...base, status: 'starting', event, ranMs: 50_000 });
      expect(outcome).toEqual({ crashes: 1, reason: event, steps: [{ event, nextAttemptAt: NOW + 300 }] });
      expect(nextStatus('starting', event)).toBe('backoff');
    }
    const third = afterFailedRun({ ...base, status: 'starting', event: 'start_failed', crashes: 2 });
    expect(third.steps).toEqual([{ event: 'start_failed', nextAttemptAt: NOW + 600 }]);
  });

  it('waits the longest backoff at once for a spec the worker refused (exit 3): retrying cannot help', () => {
    for (const status of ['starting', 'running'] as const) {
      const outcome = afterFailedRun({ ...base, status, specRefused: true });
      expect(outcome.steps.at(-1)).toMatchObject({ nextAttemptAt: NOW + 5_000 });
    }
  });

  it('starts again at once, counting no crash, a start whose port was taken (exit 4)', () => {
    const outcome = afterFailedRun({ ...base, status: 'starting', crashes: 2, portTaken: true });
    expect(outcome).toEqual({ crashes: 2, reason: 'exited', steps: [{ event: 'exited', nextAttemptAt: NOW }] });
    expect(nextStatus('starting', 'exited')).toBe('backoff');
  });
});

describe('afterFailedReplacement', () => {
  const base = { failures: 0, nowMs: NOW, backoffBaseMs: 300, backoffMaxMs: 5_000 };

  it('retries a failed successor after an exponential backoff, up to the maximum', () => {
    let failures = 0;
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const outcome = afterFailedReplacement({ ...base, failures });
      failures = outcome.failures;
      delays.push(outcome.retryAt - NOW);
    }
    expect(failures).toBe(6);
    expect(delays).toEqual([300, 600, 1_200, 2_400, 4_800, 5_000]);
  });

  it('waits the longest backoff for a spec the successor refused (exit 3)', () => {
    expect(afterFailedReplacement({ ...base, specRefused: true })).toEqual({ failures: 1, retryAt: NOW + 5_000 });
  });

  it('tries a successor whose port was taken (exit 4) again at once, counting no failure', () => {
    expect(afterFailedReplacement({ ...base, failures: 2, portTaken: true })).toEqual({ failures: 2, retryAt: NOW });
  });
});

describe('portTakenAgain', () => {
  it('allows PORT_TAKEN_RETRIES immediate starts in a row for exit 4, then counts them as crashes', () => {
    const w = { portsTaken: 0 } as ManagedWorker;
    const answers = Array.from({ length: PORT_TAKEN_RETRIES + 1 }, () =>
      portTakenAgain(w, WORKER_EXIT_CODES.portTaken),
    );
    expect(answers).toEqual([...Array.from({ length: PORT_TAKEN_RETRIES }, () => true), false]);
    expect(w.portsTaken).toBe(0);
    expect(portTakenAgain(w, WORKER_EXIT_CODES.portTaken)).toBe(true);
    // Any other exit starts the count over.
    expect(portTakenAgain(w, WORKER_EXIT_CODES.upstreamFailed)).toBe(false);
    expect(w.portsTaken).toBe(0);
  });
});

describe('afterHealthCheck', () => {
  const base = {
    status: 'running' as const,
    ok: true,
    failures: 0,
    failureLimit: 2,
    activeCalls: 0,
    idleMs: 10,
    idleTtlMs: 0,
  };

  it('a healthy answer clears the failures; an unhealthy worker recovers', () => {
    expect(afterHealthCheck(base)).toEqual({ healthy: true, recovered: false, idle: false });
    expect(afterHealthCheck({ ...base, status: 'unhealthy', failures: 1 })).toEqual({
      healthy: true,
      recovered: true,
      idle: false,
    });
  });

  it('asks for an idle stop once no call ran for the idle TTL (never when the TTL is 0 or a call is active)', () => {
    expect(afterHealthCheck({ ...base, idleTtlMs: 600, idleMs: 600 })).toMatchObject({ idle: true });
    expect(afterHealthCheck({ ...base, idleTtlMs: 600, idleMs: 599 })).toMatchObject({ idle: false });
    expect(afterHealthCheck({ ...base, idleTtlMs: 600, idleMs: 5_000, activeCalls: 1 })).toMatchObject({ idle: false });
    expect(afterHealthCheck({ ...base, idleTtlMs: 0, idleMs: 5_000 })).toMatchObject({ idle: false });
  });

  it('marks a worker unhealthy on the first failure and asks for a restart at the limit', () => {
    expect(afterHealthCheck({ ...base, ok: false })).toEqual({
      healthy: false,
      failures: 1,
      markUnhealthy: true,
      restart: false,
    });
    expect(afterHealthCheck({ ...base, ok: false, status: 'unhealthy', failures: 1 })).toEqual({
      healthy: false,
      failures: 2,
      markUnhealthy: false,
      restart: true,
    });
    // A stop began while the check was in flight: no transition asked of a stopping worker.
    expect(afterHealthCheck({ ...base, ok: false, status: 'stopping' })).toMatchObject({ markUnhealthy: false });
  });
});
