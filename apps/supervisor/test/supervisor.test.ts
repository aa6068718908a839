import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import {
  createKeys,
  type Env,
  loadSupervisorConfig,
  Registry,
  type RuntimeRecord,
  type ServerSpecBody,
  WORKER_TOKEN_HEADER,
} from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import {
  childPids,
  EVERYTHING_ENTRY,
  fixture,
  isAlive,
  killByKeyPrefix,
  killGroup,
  startSupervisorProcess,
  waitFor,
  workerPids,
} from '../../../test/processes.js';
import { captureLogger, redisUrl, testPrefix } from '../../../test/support.js';
import { createSupervisor, type Supervisor } from '../src/index.js';

interface Harness {
  prefix: string;
  redis: Redis;
  registry: Registry;
  env: Env;
  logs: ReturnType<typeof captureLogger>[];
  supervisors: Supervisor[];
  children: ChildProcess[];
  pids: Set<number>;
}

const harnesses: Harness[] = [];

function harness(extra: Env = {}): Harness {
  const prefix = testPrefix();
  const redis = new Redis(redisUrl());
  const base = 20_000 + Math.floor(Math.random() * 400) * 100;
  const env: Env = {
    REDIS_URL: redisUrl(),
    KEY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    MCP_WORKER_BASE_PORT: String(base),
    MCP_WORKER_PORT_RANGE: '100',
    MCP_RESYNC_INTERVAL: '300ms',
    MCP_HEALTH_INTERVAL: '150ms',
    MCP_HEALTH_FAILURES: '2',
    MCP_LEASE_TTL: '1500ms',
    MCP_WORKER_STOP_GRACE: '1s',
    MCP_BACKOFF_BASE: '200ms',
    MCP_BACKOFF_MAX: '2s',
    MCP_WORKER_START_TIMEOUT: '10s',
    ...extra,
  };
  const h: Harness = {
    prefix,
    redis,
    registry: new Registry(redis, createKeys(prefix)),
    env,
    logs: [],
    supervisors: [],
    children: [],
    pids: new Set(),
  };
  harnesses.push(h);
  return h;
}

async function startSupervisor(h: Harness, extra: Env = {}): Promise<Supervisor> {
  const capture = captureLogger('supervisor');
  h.logs.push(capture);
  const supervisor = createSupervisor({ config: loadSupervisorConfig({ ...h.env, ...extra }), log: capture.log });
  h.supervisors.push(supervisor);
  await supervisor.start();
  return supervisor;
}

afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await Promise.all(h.supervisors.map((s) => s.close()));
    for (const child of h.children) if (child.pid) killGroup(child.pid);
    const keys = createKeys(h.prefix);
    for (const id of await h.registry.listServers().then((s) => s.map((x) => x.id))) {
      const pid = Number(await h.redis.hget(keys.runtime(id), 'pid'));
      if (pid) h.pids.add(pid);
    }
    for (const pid of h.pids) killGroup(pid);
    killByKeyPrefix(h.prefix);
    const found = await h.redis.keys(`${h.prefix}*`);
    if (found.length > 0) await h.redis.del(...found);
    h.redis.disconnect();
  }
});

function echoServer(id: string, extra: Partial<ServerSpecBody> = {}): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
    tags: [],
    enabled: true,
    timeoutMs: 10_000,
    ...extra,
  } as ServerSpecBody;
}

async function runtime(h: Harness, id: string): Promise<RuntimeRecord | null> {
  return h.registry.getRuntime(id);
}

async function running(h: Harness, id: string, notPid?: number, timeoutMs = 15_000): Promise<RuntimeRecord> {
  return waitFor(
    `${id} running`,
    async () => {
      const r = await runtime(h, id);
      if (r?.status === 'running' && r.pid !== undefined && r.pid !== notPid) {
        h.pids.add(r.pid);
        return r;
      }
      return null;
    },
    timeoutMs,
  );
}

async function callEcho(r: RuntimeRecord, message: string): Promise<string> {
  const res = await request(`http://${r.host}:${r.port}/tools/echo`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      [WORKER_TOKEN_HEADER]: r.workerToken ?? '',
    },
    body: JSON.stringify({ message }),
  });
  const body = (await res.body.json()) as { content?: { text?: string }[] };
  return body.content?.[0]?.text ?? `status ${res.statusCode}`;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

function spawnSupervisorProcess(h: Harness, extra: Env = {}): ChildProcess {
  const child = startSupervisorProcess(redisUrl(), h.prefix, { ...h.env, ...extra } as Record<string, string>);
  h.children.push(child);
  return child;
}

describe('supervisor', () => {
  it('starts a worker for a registered server; its /tools/echo answers; the runtime record is complete', async () => {
    const h = harness();
    await startSupervisor(h);
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const r = await running(h, 'alpha');
    expect(r).toMatchObject({ host: '127.0.0.1', specRev: 1, restarts: 0 });
    expect(r.instance).toMatch(/^[0-9a-f]{16}$/);
    expect(r.startedAt).toBeDefined();
    expect(await h.redis.sismember(createKeys(h.prefix).runtimePorts, String(r.port))).toBe(1);
    expect(await callEcho(r, 'hello')).toBe('hello');
    const logged = h.logs[0]?.lines.find((l) => l.event === 'worker.spawned');
    expect(logged).toMatchObject({ service: 'supervisor', server: 'alpha', pid: r.pid, port: r.port, reason: 'start' });
  });

  it('runs server-everything over stdio and sees its tools', async () => {
    const h = harness();
    await startSupervisor(h);
    await h.registry.upsertServer(
      echoServer('everything', { config: { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], env: {} } }),
      'create',
    );
    await running(h, 'everything');
    const tools = await h.registry.listTools('everything');
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'trigger-long-running-operation']));
  });

  it('brings a worker back after kill -9, with a new pid and a restart counted', async () => {
    const h = harness();
    await startSupervisor(h);
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const before = await running(h, 'alpha');
    process.kill(before.pid as number, 'SIGKILL');
    const after = await running(h, 'alpha', before.pid);
    expect(after.restarts).toBe(1);
    expect(await callEcho(after, 'again')).toBe('again');
  });

  it('restarts the worker on a spec change and on a restart request', async () => {
    const h = harness();
    await startSupervisor(h);
    const { spec } = await h.registry.upsertServer(echoServer('alpha'), 'create');
    const first = await running(h, 'alpha');
    const changed = await h.registry.upsertServer(echoServer('alpha', { tags: ['changed'] }), 'replace');
    const second = await running(h, 'alpha', first.pid);
    expect(second.specRev).toBe(changed.spec.rev);
    expect(second.specRev).toBeGreaterThan(spec.rev);
    await waitFor('old worker gone', () => !isAlive(first.pid as number));

    await h.registry.requestRestart('alpha');
    const third = await running(h, 'alpha', second.pid);
    expect(third.restartRequests).toBe(1);
    await waitFor('second worker gone', () => !isAlive(second.pid as number));
  });

  it('stops a deleted server: process gone, port free, record and port claim gone', async () => {
    const h = harness();
    await startSupervisor(h);
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const r = await running(h, 'alpha');
    await h.registry.deleteServer('alpha');
    await waitFor('record removed', async () => (await runtime(h, 'alpha')) === null);
    expect(isAlive(r.pid as number)).toBe(false);
    expect(await portFree(r.port as number)).toBe(true);
    expect(await h.redis.sismember(createKeys(h.prefix).runtimePorts, String(r.port))).toBe(0);
    const terminated = h.logs[0]?.lines.find((l) => l.event === 'worker.terminated');
    expect(terminated).toMatchObject({ server: 'alpha', pid: r.pid, port: r.port, reason: 'deleted' });
  });

  it('stops a disabled server and starts it again when re-enabled', async () => {
    const h = harness();
    await startSupervisor(h);
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    const r = await running(h, 'alpha');
    await h.registry.upsertServer(echoServer('alpha', { enabled: false }), 'replace');
    await waitFor('record removed', async () => (await runtime(h, 'alpha')) === null);
    expect(isAlive(r.pid as number)).toBe(false);
    await h.registry.upsertServer(echoServer('alpha', { enabled: true }), 'replace');
    await running(h, 'alpha', r.pid);
  });

  it('kills a stdio server that ignores SIGTERM, after the grace period, leaving nothing behind', async () => {
    const h = harness({ MCP_WORKER_STOP_GRACE: '500ms' });
    await startSupervisor(h);
    await h.registry.upsertServer(
      echoServer('stubborn', {
        config: { command: process.execPath, args: [fixture('stubborn-server.mjs')], env: {} },
      }),
      'create',
    );
    const r = await running(h, 'stubborn');
    const [upstream] = await waitFor('the stdio child', () => {
      const children = childPids(r.pid as number);
      return children.length > 0 ? children : null;
    });
    await h.registry.deleteServer('stubborn');
    await waitFor('record removed', async () => (await runtime(h, 'stubborn')) === null, 10_000);
    expect(isAlive(r.pid as number)).toBe(false);
    await waitFor('stubborn upstream gone', () => !isAlive(upstream as number), 3_000);
  });

  it('backs off a crash loop, saying so in the status with the last error', async () => {
    const h = harness({ MCP_BACKOFF_BASE: '300ms', MCP_BACKOFF_MAX: '5s' });
    await startSupervisor(h);
    await h.registry.upsertServer(
      echoServer('crashy', { config: { command: process.execPath, args: [fixture('crash-server.mjs')], env: {} } }),
      'create',
    );
    const r = await waitFor(
      'backoff after several crashes',
      async () => {
        const rec = await runtime(h, 'crashy');
        return rec?.status === 'backoff' && rec.restarts >= 3 ? rec : null;
      },
      15_000,
    );
    expect(r.nextAttemptAt).toBeDefined();
    expect(Date.parse(r.nextAttemptAt as string)).toBeGreaterThan(Date.now() - 5_000);
    expect(r.lastError).toMatch(/.+/);
    expect(h.logs[0]?.lines.some((l) => l.event === 'worker.restart' && l.server === 'crashy')).toBe(true);
  });

  it('fails a start that never becomes healthy (hanging server), and backs off', async () => {
    const h = harness({ MCP_WORKER_START_TIMEOUT: '1500ms' });
    await startSupervisor(h);
    await h.registry.upsertServer(
      echoServer('hang', { config: { command: process.execPath, args: [fixture('hang-server.mjs')], env: {} } }),
      'create',
    );
    const r = await waitFor(
      'backoff',
      async () => {
        const rec = await runtime(h, 'hang');
        return rec?.status === 'backoff' ? rec : null;
      },
      15_000,
    );
    expect(r.restarts).toBeGreaterThanOrEqual(1);
  });

  it('keeps servers past MCP_WORKER_MAX pending, with the reason', async () => {
    const h = harness({ MCP_WORKER_MAX: '1' });
    await startSupervisor(h);
    await h.registry.upsertServer(echoServer('one'), 'create');
    await running(h, 'one');
    await h.registry.upsertServer(echoServer('two'), 'create');
    const r = await waitFor('pending', async () => {
      const rec = await runtime(h, 'two');
      return rec?.status === 'pending' ? rec : null;
    });
    expect(r.reason).toMatch(/MCP_WORKER_MAX=1/);
    await h.registry.deleteServer('one');
    await running(h, 'two');
  });

  it('stops an idle worker and starts it again on a restart request', async () => {
    const h = harness({ MCP_WORKER_IDLE_TTL: '600ms' });
    await startSupervisor(h);
    await h.registry.upsertServer(echoServer('sleepy'), 'create');
    const r = await running(h, 'sleepy');
    const stopped = await waitFor('stopped for idleness', async () => {
      const rec = await runtime(h, 'sleepy');
      return rec?.status === 'stopped' ? rec : null;
    });
    expect(stopped.reason).toBe('idle');
    expect(isAlive(r.pid as number)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 700)); // a resync passes: it stays stopped
    expect((await runtime(h, 'sleepy'))?.status).toBe('stopped');
    await h.registry.requestRestart('sleepy');
    await running(h, 'sleepy', r.pid);
  });

  it('stops its workers on close, leaving no process and no record', async () => {
    const h = harness();
    const supervisor = await startSupervisor(h);
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    await h.registry.upsertServer(echoServer('beta'), 'create');
    const a = await running(h, 'alpha');
    const b = await running(h, 'beta');
    await supervisor.close();
    expect(isAlive(a.pid as number)).toBe(false);
    expect(isAlive(b.pid as number)).toBe(false);
    expect(await runtime(h, 'alpha')).toBeNull();
    expect(await runtime(h, 'beta')).toBeNull();
  });

  it('survives kill -9 of the supervisor process: workers keep answering and the next supervisor adopts the same pids', async () => {
    const h = harness();
    const first = spawnSupervisorProcess(h);
    await h.registry.upsertServer(echoServer('alpha'), 'create');
    await h.registry.upsertServer(echoServer('beta'), 'create');
    const a = await running(h, 'alpha');
    const b = await running(h, 'beta');
    first.kill('SIGKILL');
    await once(first, 'exit');
    expect(await callEcho(a, 'still here')).toBe('still here');

    const second = await startSupervisor(h);
    await waitFor('adopted both', () => second.workers().length === 2, 10_000);
    const adopted = Object.fromEntries(second.workers().map((w) => [w.id, w.pid]));
    expect(adopted).toEqual({ alpha: a.pid, beta: b.pid });
    expect((await runtime(h, 'alpha'))?.supervisor).toBe(second.id);
    expect(await callEcho(a, 'adopted')).toBe('adopted');
    expect(h.logs.at(-1)?.lines.some((l) => l.event === 'worker.spawned')).toBe(false);
  });

  it('does not adopt a worker whose record holds no token (nobody could reach it): it is replaced', async () => {
    const h = harness();
    const first = spawnSupervisorProcess(h);
    await h.registry.upsertServer(echoServer('tokenless'), 'create');
    const old = await running(h, 'tokenless');
    first.kill('SIGKILL');
    await once(first, 'exit');
    // A record written before workers had a credential.
    await h.redis.hdel(createKeys(h.prefix).runtime('tokenless'), 'worker_token');

    await startSupervisor(h);
    const fresh = await running(h, 'tokenless', old.pid);
    expect(fresh.workerToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await callEcho(fresh, 'replaced')).toBe('replaced');
    await waitFor('the old worker gone', () => !isAlive(old.pid as number), 10_000);
  });

  it('hands workers only the environment they need: no HUB_ADMIN_TOKEN in a worker or its stdio server', async () => {
    const h = harness();
    const adminToken = 'admin-token-that-must-not-reach-workers-0123';
    spawnSupervisorProcess(h, {
      HUB_ADMIN_TOKEN: adminToken,
      AWS_SECRET_ACCESS_KEY: 'cloud-secret',
      NODE_OPTIONS: '--max-old-space-size=512',
      MCP_STDIO_TEST_SETTING: 'kept',
    });
    await h.registry.upsertServer(
      echoServer('envy', {
        config: { command: process.execPath, args: [fixture('env-server.mjs')], env: { GIVEN_BY_SPEC: 'yes' } },
      }),
      'create',
    );
    const r = await running(h, 'envy');
    const workerEnv = Object.fromEntries(
      readFileSync(`/proc/${r.pid}/environ`, 'utf8')
        .split('\0')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(workerEnv.HUB_ADMIN_TOKEN).toBeUndefined();
    expect(workerEnv.AWS_SECRET_ACCESS_KEY).toBeUndefined();
    expect(workerEnv.NODE_OPTIONS).toBeUndefined();
    expect(workerEnv).toMatchObject({ MCP_SERVER_ID: 'envy', KEY_PREFIX: h.prefix, MCP_STDIO_TEST_SETTING: 'kept' });
    expect(workerEnv.PATH).toBe(process.env.PATH);
    expect(workerEnv.MCP_WORKER_TOKEN).toBe(r.workerToken);

    // The stdio server gets the SDK's short list plus its spec's env: none of the worker's own settings.
    const res = await request(`http://${r.host}:${r.port}/tools/env`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        [WORKER_TOKEN_HEADER]: r.workerToken ?? '',
      },
      body: '{}',
    });
    const body = (await res.body.json()) as { content: { text: string }[] };
    const serverEnv = JSON.parse(body.content[0]?.text ?? '{}') as Record<string, string>;
    expect(serverEnv.GIVEN_BY_SPEC).toBe('yes');
    for (const name of [
      'HUB_ADMIN_TOKEN',
      'MCP_WORKER_TOKEN',
      'REDIS_URL',
      'HUB_SECRET_KEY',
      'AWS_SECRET_ACCESS_KEY',
    ]) {
      expect(serverEnv[name], name).toBeUndefined();
    }
    expect(JSON.stringify(serverEnv)).not.toContain(adminToken);
  });

  it('with two supervisors and twenty servers, runs each exactly once on distinct ports; the survivor takes over', async () => {
    const h = harness({ MCP_LEASE_TTL: '3s' });
    const one = await startSupervisor(h);
    const twoProcess = spawnSupervisorProcess(h);
    for (let i = 0; i < 20; i++) await h.registry.upsertServer(echoServer(`s${i}`), 'create');
    const records = await Promise.all(Array.from({ length: 20 }, (_, i) => running(h, `s${i}`, undefined, 60_000)));
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // a few resyncs: nothing doubles
    const settled = await Promise.all(Array.from({ length: 20 }, (_, i) => runtime(h, `s${i}`)));
    expect(settled.map((r) => r?.pid)).toEqual(records.map((r) => r.pid));
    expect(new Set(settled.map((r) => r?.port)).size).toBe(20);
    const bySupervisor = new Set(settled.map((r) => r?.supervisor));
    expect(bySupervisor.size).toBeGreaterThanOrEqual(1);

    // Exactly one worker process per server exists on the host.
    for (let i = 0; i < 20; i++) expect(workerPids(h.prefix, `s${i}`)).toEqual([settled[i]?.pid]);
    const ownedByOne = one.workers().map((w) => w.id);
    twoProcess.kill('SIGKILL');
    await once(twoProcess, 'exit');
    // The survivor ends up running all twenty (adopting the other's live workers).
    await waitFor('survivor runs all', () => one.workers().length === 20, 30_000);
    const after = await Promise.all(Array.from({ length: 20 }, (_, i) => runtime(h, `s${i}`)));
    expect(after.every((r) => r?.status === 'running' && r.supervisor === one.id)).toBe(true);
    expect(new Set(after.map((r) => r?.port)).size).toBe(20);
    expect(ownedByOne.length).toBeLessThanOrEqual(20);
  }, 150_000);
});
