import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import getPort from 'get-port';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import {
  callJson,
  callSse,
  EVERYTHING,
  getHealth,
  registerServer,
  spawnChild,
  startTestWorker,
  type TestChild,
  waitFor,
} from './helpers.js';

const t = testRedis();
const children: TestChild[] = [];
const workers: Worker[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.close()));
  await Promise.all(children.splice(0).map((child) => child.stop()));
});
afterAll(async () => {
  await t.cleanup();
});

const READY = {
  streamableHttp: /listening on port/i,
  sse: /running on port/i,
};

async function startEverything(mode: 'streamableHttp' | 'sse', port: number): Promise<TestChild> {
  const child = await spawnChild(process.execPath, [EVERYTHING, mode], {
    env: { PORT: String(port) },
    ready: READY[mode],
  });
  children.push(child);
  return child;
}

async function startRemoteWorker(id: string, transport: 'sse' | 'streamable-http', url: string, headers = {}) {
  await registerServer(t.redis, t.keys, { id, transport, config: { url, headers } });
  const port = await getPort();
  const captured = captureLogger('worker');
  const worker = await startTestWorker({ serverId: id, prefix: t.prefix, port, log: captured.log });
  workers.push(worker);
  return { worker, port, captured };
}

describe('remote upstreams (server-everything as a child process)', () => {
  it('streamable-http: connects, syncs tools, streams progress and results', async () => {
    const upstreamPort = await getPort();
    await startEverything('streamableHttp', upstreamPort);
    const { worker, port } = await startRemoteWorker(
      'everything-http',
      'streamable-http',
      `http://127.0.0.1:${upstreamPort}/mcp`,
    );
    await worker.ready;
    expect((await getHealth(port)).body).toMatchObject({ upstream: 'connected', serverId: 'everything-http' });
    expect(Object.keys(await t.redis.hgetall(t.keys.tools('everything-http')))).toContain('echo');
    const echo = await callJson(port, 'echo', { message: 'over http' });
    expect(echo.body).toMatchObject({ content: [{ type: 'text', text: 'Echo: over http' }], isError: false });
    const long = await callSse(port, 'trigger-long-running-operation', { duration: 0.6, steps: 3 });
    expect(long.events.map((e) => e.event)).toEqual(['progress', 'progress', 'progress', 'result']);
    expect(long.events.filter((e) => e.event === 'progress').map((e) => e.data)).toEqual(
      [1, 2, 3].map((step) => ({ request_id: expect.any(String), progress: step, total: 3 })),
    );
  });

  it('sse: connects, syncs tools and calls', async () => {
    const upstreamPort = await getPort();
    await startEverything('sse', upstreamPort);
    const { worker, port } = await startRemoteWorker('everything-sse', 'sse', `http://127.0.0.1:${upstreamPort}/sse`);
    await worker.ready;
    expect((await getHealth(port)).status).toBe(200);
    const echo = await callSse(port, 'echo', { message: 'over sse' }, { 'x-request-id': 'req-sse' });
    expect(echo.events).toEqual([
      {
        event: 'result',
        data: { request_id: 'req-sse', content: [{ type: 'text', text: 'Echo: over sse' }], isError: false },
      },
    ]);
  });

  it('streamable-http: answers 503 down while the server is gone and reconnects when it is back', async () => {
    const upstreamPort = await getPort();
    const first = await startEverything('streamableHttp', upstreamPort);
    const { worker, port, captured } = await startRemoteWorker(
      'everything-flaky',
      'streamable-http',
      `http://127.0.0.1:${upstreamPort}/mcp`,
    );
    await worker.ready;
    await first.stop();
    await waitFor('healthz 503 down', async () => {
      const health = await getHealth(port);
      return health.status === 503 && health.body.upstream !== 'connected';
    });
    const refused = await callJson(port, 'echo', { message: 'x' });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: { code: 'worker_unavailable' } });

    await startEverything('streamableHttp', upstreamPort);
    await waitFor('healthz 200 again', async () => (await getHealth(port)).status === 200, 15_000);
    const echo = await callJson(port, 'echo', { message: 'back' });
    expect(echo.body).toMatchObject({ content: [{ type: 'text', text: 'Echo: back' }] });
    expect(captured.lines.some((l) => l.event === 'upstream.reconnect_scheduled')).toBe(true);
  });

  it('sse: reconnects after the server restarts', async () => {
    const upstreamPort = await getPort();
    const first = await startEverything('sse', upstreamPort);
    const { worker, port } = await startRemoteWorker(
      'everything-sse-flaky',
      'sse',
      `http://127.0.0.1:${upstreamPort}/sse`,
    );
    await worker.ready;
    await first.stop();
    await waitFor('healthz 503', async () => (await getHealth(port)).status === 503);
    await startEverything('sse', upstreamPort);
    await waitFor('healthz 200 again', async () => (await getHealth(port)).status === 200, 15_000);
    const echo = await callJson(port, 'echo', { message: 'again' });
    expect(echo.body).toMatchObject({ content: [{ type: 'text', text: 'Echo: again' }] });
  });

  it('sends the spec headers, and keeps answering 503 while the server refuses', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const refusing: Server = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('nope');
    });
    refusing.listen(0, '127.0.0.1');
    await once(refusing, 'listening');
    try {
      const url = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}/mcp`;
      const { port, captured } = await startRemoteWorker('refused', 'streamable-http', url, {
        Authorization: 'Bearer t0ken-secret',
      });
      await waitFor('two connection attempts', () => seen.length >= 2);
      expect(seen[0]?.authorization).toBe('Bearer t0ken-secret');
      const health = await getHealth(port);
      expect(health.status).toBe(503);
      expect(['connecting', 'down']).toContain(health.body.upstream);
      expect(captured.text()).not.toContain('t0ken-secret');
    } finally {
      refusing.closeAllConnections();
      refusing.close();
    }
  });
});
