import { createKeys, type Env, loadSupervisorConfig, Registry, type RuntimeRecord } from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { Agent } from 'undici';
import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import { fixture, isAlive, killByKeyPrefix, killGroup, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testPrefix } from '../../../test/support.js';
import { createSupervisor, type Supervisor } from '../src/index.js';
import { callTool, echoServer, runningRecord, testSupervisorEnv } from './helpers.js';

/**
 * Planned restarts (a restart request, a spec change) start the successor first and drain the old worker, so
 * a steady stream of calls sent where the runtime record points (as a hub does) sees no failure; a change of
 * fields the worker does not read keeps the process.
 */

interface Harness {
  prefix: string;
  redis: Redis;
  registry: Registry;
  logs: ReturnType<typeof captureLogger>;
  supervisor: Supervisor;
  pids: Set<number>;
}

const harnesses: Harness[] = [];
// One keep-alive pool, like the hub's: connections to a worker outlive the switch to its successor.
const agent = new Agent({ keepAliveTimeout: 10_000, connections: 16 });

async function harness(extra: Env = {}): Promise<Harness> {
  const prefix = testPrefix();
  const redis = new Redis(redisUrl());
  const logs = captureLogger('supervisor');
  const supervisor = createSupervisor({
    config: loadSupervisorConfig(testSupervisorEnv(redisUrl(), prefix, extra)),
    log: logs.log,
  });
  const h: Harness = {
    prefix,
    redis,
    registry: new Registry(redis, createKeys(prefix)),
    logs,
    supervisor,
    pids: new Set(),
  };
  harnesses.push(h);
  // A failure under load says what the supervisor saw (replace_failed, health, backoff), not just "timed out".
  onTestFailed(() => {
    const seen = logs.lines.filter(
      (l) => ['warn', 'error', 'fatal'].includes(String(l.level)) || String(l.event).startsWith('worker.'),
    );
    console.error(`supervisor log of ${prefix}:\n${seen.map((l) => JSON.stringify(l)).join('\n')}`);
  });
  await supervisor.start();
  return h;
}

/** Loads still running: a test that fails mid-way leaves its load to afterEach, never to the next file. */
const loads = new Set<{ stop(): Promise<unknown> }>();

afterEach(async () => {
  await Promise.all([...loads].map((load) => load.stop()));
  for (const h of harnesses.splice(0)) {
    await h.supervisor.close();
    for (const pid of h.pids) killGroup(pid);
    killByKeyPrefix(h.prefix);
    const found = await h.redis.keys(`${h.prefix}*`);
    if (found.length > 0) await h.redis.del(...found);
    h.redis.disconnect();
  }
});

/** A successor's deadline is 30 s: on a loaded CI machine a worker start took more than the default 15 s. */
function running(h: Harness, id: string, notPid?: number): Promise<RuntimeRecord> {
  return runningRecord(h.registry, id, h.pids, notPid, 30_000);
}

function call(r: RuntimeRecord, tool: string, args: Record<string, unknown>): Promise<string> {
  return callTool(r, tool, args, agent);
}

/**
 * Calls `echo` back to back from `lanes` lanes, each call sent where the record points at that moment (read
 * from Redis, as a hub's cache after `runtime.update`), until `stop()`; every answer is checked.
 */
function steadyCalls(h: Harness, id: string, lanes = 4) {
  let stopped = false;
  let ok = 0;
  const failures: string[] = [];
  const ports = new Set<number>();
  const lane = async (n: number) => {
    for (let i = 0; !stopped; i++) {
      const message = `lane ${n} call ${i}`;
      try {
        const r = await h.registry.getRuntime(id);
        if (r?.status !== 'running') throw new Error(`record says ${r?.status ?? 'nothing'}`);
        ports.add(r.port as number);
        const answer = await call(r, 'echo', { message });
        if (answer === message) ok++;
        else failures.push(answer);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const done = Promise.all(Array.from({ length: lanes }, (_, n) => lane(n)));
  const load = {
    get ok() {
      return ok;
    },
    async stop() {
      stopped = true;
      loads.delete(load);
      await done;
      return { ok, failures, ports };
    },
  };
  loads.add(load);
  return load;
}

describe('planned restarts', () => {
  it('a restart request starts the successor first: 0 failed calls, the slow call on the old worker completes, then the old one drains away', async () => {
    const h = await harness();
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const before = await running(h, 'alpha');
    const load = steadyCalls(h, 'alpha');
    await waitFor('calls flowing', () => load.ok > 20);
    const slow = call(before, 'slow', { ms: 1_500 });

    await h.registry.requestRestart('alpha');
    const after = await running(h, 'alpha', before.pid);
    // Calls keep flowing to the successor for a while after the switch.
    const atSwitch = load.ok;
    await waitFor('calls on the successor', () => load.ok > atSwitch + 50);
    expect(await slow).toBe('waited 1500 ms');
    const { ok, failures, ports } = await load.stop();

    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(70);
    expect(ports).toEqual(new Set([before.port, after.port]));
    expect(after.port).not.toBe(before.port);
    expect(after.workerToken).not.toBe(before.workerToken);
    expect(after).toMatchObject({ restartRequests: 1, restarts: 0, specRev: before.specRev });
    await waitFor('the old worker gone', () => !isAlive(before.pid as number));
    await waitFor(
      'the old port freed',
      async () => (await h.redis.sismember(createKeys(h.prefix).runtimePorts, String(before.port))) === 0,
    );
    const replaced = h.logs.lines.find((l) => l.event === 'worker.replaced');
    expect(replaced).toMatchObject({
      server: 'alpha',
      pid: after.pid,
      port: after.port,
      previous_pid: before.pid,
      previous_port: before.port,
      reason: 'restart_requested',
    });
    expect(h.logs.lines.find((l) => l.event === 'worker.terminated' && l.pid === before.pid)).toMatchObject({
      reason: 'replaced',
      how: 'terminated',
    });
  });

  it('a spec change the worker reads (timeoutMs) replaces it with 0 failed calls', async () => {
    const h = await harness();
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const before = await running(h, 'alpha');
    const load = steadyCalls(h, 'alpha');
    await waitFor('calls flowing', () => load.ok > 20);
    await h.registry.upsertServer(echoServer('alpha', { timeoutMs: 20_000 }), 'replace');
    const after = await running(h, 'alpha', before.pid);
    const atSwitch = load.ok;
    await waitFor('calls on the successor', () => load.ok > atSwitch + 50);
    const { failures } = await load.stop();
    expect(failures).toEqual([]);
    expect(after.specRev).toBe((await h.registry.getServer('alpha'))?.rev);
    await waitFor('the old worker gone', () => !isAlive(before.pid as number));
  });

  it('a metadata-only change (name, description, tags, prefixMode) keeps the pid; a config change does not', async () => {
    const h = await harness();
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const before = await running(h, 'alpha');
    await h.registry.upsertServer(
      echoServer('alpha', { name: 'Alpha', description: 'renamed', tags: ['x'], prefixMode: 'never' }),
      'replace',
    );
    const rev = (await h.registry.getServer('alpha'))?.rev;
    expect(rev).toBeGreaterThan(before.specRev as number);
    const noted = await waitFor('the new rev noted', async () => {
      const r = await h.registry.getRuntime('alpha');
      return r?.specRev === rev ? r : null;
    });
    expect(noted).toMatchObject({ status: 'running', pid: before.pid, port: before.port, instance: before.instance });
    expect(h.logs.lines.find((l) => l.event === 'worker.kept')).toMatchObject({ server: 'alpha', spec_rev: rev });
    expect(h.logs.lines.filter((l) => l.event === 'worker.spawned')).toHaveLength(1);
    expect(await call(noted, 'echo', { message: 'same worker' })).toBe('same worker');

    await h.registry.upsertServer(
      echoServer('alpha', {
        name: 'Alpha',
        config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: { EXTRA: '1' } },
      }),
      'replace',
    );
    const after = await running(h, 'alpha', before.pid);
    expect(after.specRev).toBe((await h.registry.getServer('alpha'))?.rev);
    expect(await call(after, 'echo', { message: 'new worker' })).toBe('new worker');
  });

  it('a bad spec change leaves the working worker serving: the failure is in last_error, and retried', async () => {
    const h = await harness();
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const before = await running(h, 'alpha');
    const load = steadyCalls(h, 'alpha', 2);
    await h.registry.upsertServer(
      echoServer('alpha', { config: { command: process.execPath, args: [fixture('crash-server.mjs')], env: {} } }),
      'replace',
    );
    const failed = await waitFor('the failed successor recorded', async () => {
      const r = await h.registry.getRuntime('alpha');
      return r?.lastError ? r : null;
    });
    expect(failed).toMatchObject({ status: 'running', pid: before.pid, port: before.port, specRev: before.specRev });
    expect(failed.lastError).toMatch(/exit|crash|closed|code 1/i);
    // Tried again after a backoff, still without harm.
    await waitFor('a second attempt', () =>
      h.logs.lines.filter((l) => l.event === 'worker.replace_failed').length >= 2 ? true : null,
    );
    const { ok, failures } = await load.stop();
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    expect(isAlive(before.pid as number)).toBe(true);
    expect(h.logs.lines.find((l) => l.event === 'worker.replace_failed')).toMatchObject({
      server: 'alpha',
      pid: before.pid,
      reason: 'spec_changed',
    });

    // Fixing the spec replaces the worker.
    await h.registry.upsertServer(echoServer('alpha', { timeoutMs: 9_000 }), 'replace');
    const rev = (await h.registry.getServer('alpha'))?.rev;
    // A retry of the bad change that was already under way may start first and be replaced in turn: wait for the
    // worker of the fixed spec.
    const after = await waitFor('the fixed spec running', async () => {
      const r = await h.registry.getRuntime('alpha');
      return r?.status === 'running' && r.pid !== before.pid && r.specRev === rev ? r : null;
    });
    if (after.pid !== undefined) h.pids.add(after.pid);
    expect(after.lastError).toBeUndefined();
  });
});
