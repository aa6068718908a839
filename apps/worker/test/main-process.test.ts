import { existsSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { WORKER_DRAIN_SIGNAL, WORKER_EXIT_CODES } from '@mcp-hub/shared';
import getPort from 'get-port';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { redisUrl, testRedis } from '../../../test/support.js';
import {
  FIXTURES,
  getHealth,
  isAlive,
  parseSse,
  registerServer,
  spawnChild,
  TEST_WORKER_TOKEN,
  type TestChild,
  testInstance,
  WORKER_AUTH,
  WORKER_MAIN,
  waitFor,
} from './helpers.js';

// The built worker, started the way the supervisor starts it (ADR 0001). `pnpm test` builds first.
const t = testRedis();
const children: TestChild[] = [];

beforeAll(() => {
  if (!existsSync(WORKER_MAIN)) throw new Error(`${WORKER_MAIN} is missing: run pnpm --filter @mcp-hub/worker build`);
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.stop()));
});
afterAll(async () => {
  await t.cleanup();
});

async function spawnWorker(serverId: string, env: Record<string, string> = {}) {
  const port = await getPort();
  const instance = testInstance();
  const child = await spawnChild(process.execPath, [WORKER_MAIN], {
    env: {
      MCP_SERVER_ID: serverId,
      MCP_WORKER_HOST: '127.0.0.1',
      MCP_WORKER_PORT: String(port),
      MCP_WORKER_INSTANCE: instance,
      MCP_WORKER_TOKEN: TEST_WORKER_TOKEN,
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      LOG_LEVEL: 'info',
      ...env,
    },
  });
  children.push(child);
  return { child, port, instance };
}

function logLines(child: TestChild): Record<string, unknown>[] {
  return child.stdout.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('the built worker process', () => {
  it('serves, then on SIGTERM ends open streams, stops its stdio child and exits 0', async () => {
    const specRev = await registerServer(t.redis, t.keys, {
      id: 'proc-echo',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.echo] },
    });
    const { child, port, instance } = await spawnWorker('proc-echo');
    await waitFor('healthz 200', async () => (await getHealth(port)).status === 200, 15_000);
    expect((await getHealth(port)).body).toMatchObject({
      serverId: 'proc-echo',
      instance,
      pid: child.child.pid,
      specRev,
      upstream: 'connected',
      tools: 7,
    });
    const connected = logLines(child).find((line) => line.event === 'upstream.connected');
    expect(connected).toMatchObject({ service: 'worker', server: 'proc-echo', instance, pid: expect.any(Number) });
    const upstreamPid = connected?.pid as number;
    expect(isAlive(upstreamPid)).toBe(true);

    const stream = await request(`http://127.0.0.1:${port}/tools/slow`, {
      method: 'POST',
      headers: { ...WORKER_AUTH, 'content-type': 'application/json', 'x-request-id': 'req-proc' },
      body: JSON.stringify({ ms: 10_000 }),
    });
    await waitFor('the call in flight', async () => (await getHealth(port)).body.activeCalls === 1);
    child.child.kill('SIGTERM');
    const text = await stream.body.text();
    // The upstream had the call: it is lost (the hub must not resend it unless the tool is safe to repeat).
    expect(parseSse(text).events).toEqual([
      {
        event: 'error',
        data: { request_id: 'req-proc', code: 'worker_unavailable', message: expect.any(String), lost: true },
      },
    ]);
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(isAlive(upstreamPid)).toBe(false);
    expect(logLines(child).some((line) => line.event === 'worker.stopped')).toBe(true);
  });

  it('on WORKER_DRAIN_SIGNAL finishes its calls in flight, still runs calls sent meanwhile, then exits 0', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'proc-drain',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.echo] },
    });
    const { child, port } = await spawnWorker('proc-drain');
    await waitFor('healthz 200', async () => (await getHealth(port)).status === 200, 15_000);
    const call = (tool: string, args: Record<string, unknown>) =>
      request(`http://127.0.0.1:${port}/tools/${tool}`, {
        method: 'POST',
        headers: { ...WORKER_AUTH, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(args),
      }).then(async (res) => ({ status: res.statusCode, body: (await res.body.json()) as { content: unknown[] } }));
    const slow = call('slow', { ms: 1_500 });
    await waitFor('the call in flight', async () => (await getHealth(port)).body.activeCalls === 1);
    child.child.kill(WORKER_DRAIN_SIGNAL);
    await waitFor('draining', () => logLines(child).some((line) => line.event === 'worker.draining'));
    // A call sent to this address after the signal (a hub that had not yet heard of the successor) is run.
    expect(await call('echo', { message: 'late' })).toEqual({
      status: 200,
      body: expect.objectContaining({ content: [{ type: 'text', text: 'late' }] }),
    });
    expect(await slow).toEqual({
      status: 200,
      body: expect.objectContaining({ content: [{ type: 'text', text: 'waited 1500 ms' }] }),
    });
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(logLines(child).find((line) => line.event === 'worker.drained')).toMatchObject({ drained: true });
  });

  it('exits 3 when its spec is missing', async () => {
    const { child } = await spawnWorker('proc-missing');
    expect((await child.exited).code).toBe(3);
  });

  it('exits 4 when something else took its port, so the supervisor starts it again elsewhere at once', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'proc-port',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.echo] },
    });
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    try {
      const taken = (squatter.address() as AddressInfo).port;
      const { child } = await spawnWorker('proc-port', { MCP_WORKER_PORT: String(taken) });
      expect((await child.exited).code).toBe(WORKER_EXIT_CODES.portTaken);
      expect(logLines(child)).toContainEqual(expect.objectContaining({ event: 'worker.port_taken', port: taken }));
    } finally {
      squatter.close();
    }
  });

  it('exits 1 and records last_error when its stdio server cannot start', async () => {
    await registerServer(t.redis, t.keys, {
      id: 'proc-crash',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.crash] },
    });
    await t.redis.hset(t.keys.runtime('proc-crash'), { status: 'starting', restarts: '0' });
    const { child } = await spawnWorker('proc-crash');
    expect((await child.exited).code).toBe(1);
    expect(await t.redis.hget(t.keys.runtime('proc-crash'), 'last_error')).toContain('missing API_KEY');
  });

  it('exits 2 on an invalid environment, naming the variable', async () => {
    const { child } = await spawnWorker('proc-bad', { MCP_WORKER_PORT: 'eighty' });
    expect((await child.exited).code).toBe(2);
    expect(child.stderr.join('\n')).toContain('MCP_WORKER_PORT');
  });
});
