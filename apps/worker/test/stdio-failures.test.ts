import getPort from 'get-port';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { captureLogger, testRedis } from '../../../test/support.js';
import { type Worker, WorkerExitError } from '../src/index.js';
import { FIXTURES, getHealth, isAlive, registerServer, startTestWorker, WORKER_AUTH, waitFor } from './helpers.js';

const t = testRedis();
const started: Worker[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((worker) => worker.close()));
});
afterAll(async () => {
  await t.cleanup();
});

/** The runtime record the supervisor writes before it spawns a worker. */
async function seedRuntime(id: string): Promise<void> {
  await t.redis.hset(t.keys.runtime(id), { status: 'starting', restarts: '0' });
}

async function start(id: string, log = captureLogger('worker').log, options = {}) {
  const fatal: WorkerExitError[] = [];
  const port = await getPort();
  const worker = await startTestWorker({
    serverId: id,
    prefix: t.prefix,
    port,
    log,
    onFatal: (error) => fatal.push(error),
    options,
  });
  started.push(worker);
  return { worker, port, fatal };
}

describe('stdio upstream failures', () => {
  it('reports a server that exits at start as fatal (exit code 1), with its stderr in last_error', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'crashing',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.crash] },
    });
    await seedRuntime('crashing');
    const captured = captureLogger('worker');
    const { worker, fatal } = await start('crashing', captured.log);
    await expect(worker.ready).rejects.toBeInstanceOf(WorkerExitError);
    await waitFor('the fatal callback', () => fatal.length === 1);
    expect(fatal[0]?.exitCode).toBe(1);
    expect(fatal[0]?.message).toContain('missing API_KEY');
    expect(await t.redis.hget(t.keys.runtime('crashing'), 'last_error')).toContain('missing API_KEY');
    // Only last_error was written; the supervisor's fields are untouched.
    expect(await t.redis.hget(t.keys.runtime('crashing'), 'status')).toBe('starting');
    expect(captured.lines.some((l) => l.event === 'upstream.stderr' && String(l.line).includes('API_KEY'))).toBe(true);
    expect((await getHealth(worker.port)).status).toBe(503);
  });

  it('does not create a runtime record just to hold last_error', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'crashing-unrecorded',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.crash] },
    });
    const { fatal } = await start('crashing-unrecorded');
    await waitFor('the fatal callback', () => fatal.length === 1);
    expect(await t.redis.exists(t.keys.runtime('crashing-unrecorded'))).toBe(0);
  });

  it('reports a command that cannot be spawned as fatal', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'no-command',
      transport: 'stdio',
      config: { command: '/nonexistent/mcp-server-binary' },
    });
    const { fatal } = await start('no-command');
    await waitFor('the fatal callback', () => fatal.length === 1);
    expect(fatal[0]?.message).toMatch(/ENOENT/);
  });

  it('gives up on a server that never answers initialize, answering 503 connecting meanwhile, and kills it', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'hanging',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.hang] },
    });
    const { worker, port, fatal } = await start('hanging', undefined, { connectTimeoutMs: 1_000 });
    const pid = await waitFor('the child to run', () => worker.upstreamPid);
    const health = await getHealth(port);
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ upstream: 'connecting', tools: 0 });
    await waitFor('the fatal callback', () => fatal.length === 1, 15_000);
    expect(fatal[0]?.message).toContain('did not answer initialize within 1000 ms');
    expect(isAlive(pid)).toBe(false);
  });

  it('reports a stdio server that dies later as fatal, with /healthz 503 down', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'dying',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.echo] },
    });
    await seedRuntime('dying');
    const { worker, port, fatal } = await start('dying');
    await worker.ready;
    expect((await getHealth(port)).status).toBe(200);
    const pid = worker.upstreamPid as number;
    process.kill(pid, 'SIGKILL');
    await waitFor('the fatal callback', () => fatal.length === 1);
    expect(fatal[0]?.exitCode).toBe(1);
    expect(fatal[0]?.message).toContain('the stdio server exited');
    const health = await getHealth(port);
    expect(health.status).toBe(503);
    expect(health.body.upstream).toBe('down');
    expect(await t.redis.hget(t.keys.runtime('dying'), 'last_error')).toContain('exited');
    const call = await fetch(`http://127.0.0.1:${port}/tools/echo`, {
      method: 'POST',
      headers: { ...WORKER_AUTH, 'content-type': 'application/json', accept: 'application/json' },
      body: '{"message":"x"}',
    });
    expect(call.status).toBe(503);
    expect(call.headers.get('retry-after')).toBe('1');
    expect(await call.json()).toMatchObject({ error: { code: 'worker_unavailable' } });
  });

  it('closes without leaving the child behind, even one that ignores SIGTERM and end of stdin', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'stubborn',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.stubborn] },
    });
    const { worker, fatal } = await start('stubborn');
    await worker.ready;
    const pid = worker.upstreamPid as number;
    expect(isAlive(pid)).toBe(true);
    await worker.close();
    expect(isAlive(pid)).toBe(false);
    expect(fatal).toHaveLength(0);
  });
});

describe('spec checks at start', () => {
  it('refuses to start (exit code 3) when the spec is missing', async () => {
    const port = await getPort();
    const failure = startTestWorker({ serverId: 'ghost', prefix: t.prefix, port, log: captureLogger('worker').log });
    await expect(failure).rejects.toMatchObject({ name: 'WorkerExitError', exitCode: 3 });
    // Nothing listens.
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it('refuses to start (exit code 3) when the server is disabled', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'disabled',
      transport: 'stdio',
      enabled: false,
      config: { command: process.execPath, args: [FIXTURES.echo] },
    });
    const port = await getPort();
    const failure = startTestWorker({ serverId: 'disabled', prefix: t.prefix, port, log: captureLogger('worker').log });
    await expect(failure).rejects.toMatchObject({ exitCode: 3, message: expect.stringContaining('disabled') });
  });
});
