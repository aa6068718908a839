// Issue 13, item 3: calls wait for a worker that is coming back, but only HUB_WORKER_WAITERS_MAX of them per
// server at once: a dead server must not pile up calls. In-process hub, real Redis; the "worker" is a local HTTP
// server speaking the worker contract (an event stream with a `result` event), and the runtime record is written
// by hand, as a supervisor would.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadHubConfig, Registry, runtimeToHash } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const SERVER = 'comeback';
const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
let hub: FastifyInstance;
let base: string;
let worker: Server;

/** A stand-in worker answering every call with `text`; resolves with its port. */
async function startWorker(text: string): Promise<number> {
  worker = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      const result = { request_id: 'x', content: [{ type: 'text', text }], isError: false };
      res
        .writeHead(200, { 'content-type': 'text/event-stream' })
        .end(`event: result\ndata: ${JSON.stringify(result)}\n\n`);
    });
  });
  await new Promise<void>((resolve) => worker.listen(0, '127.0.0.1', resolve));
  return (worker.address() as AddressInfo).port;
}

async function stopWorker(): Promise<void> {
  worker.closeAllConnections();
  await new Promise((resolve) => worker.close(resolve));
}

beforeAll(async () => {
  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_AUTH: 'none',
      HUB_WORKER_WAIT: '60s',
      HUB_WORKER_WAITERS_MAX: '1',
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  await registry.upsertServer(
    {
      id: SERVER,
      name: SERVER,
      namespace: SERVER,
      transport: 'streamable-http',
      config: { url: 'http://127.0.0.1:9/mcp', headers: {} },
      tags: [],
      enabled: true,
      timeoutMs: 60_000,
    },
    'create',
  );
  await registry.replaceTools(SERVER, [{ name: 'echo', inputSchema: { type: 'object' } }]);
});

afterAll(async () => {
  await hub?.close();
  if (worker?.listening) await stopWorker();
  await t.cleanup();
});

/** Writes the runtime record and tells the hub, as a supervisor does. */
async function setRuntime(fields: Parameters<typeof runtimeToHash>[0]) {
  await t.redis.del(t.keys.runtime(SERVER));
  await t.redis.hset(t.keys.runtime(SERVER), runtimeToHash(fields));
  const event = { type: 'runtime.update', id: SERVER, status: fields.status, ts: new Date().toISOString() };
  await t.redis.publish(t.keys.events, JSON.stringify(event));
}

const waited = (requestId: string, event: string) =>
  hubLogs.lines.some((l) => l.request_id === requestId && l.event === event);

async function call(requestId: string) {
  const res = await request(`${base}/mcp/${SERVER}/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-request-id': requestId },
    body: '{}',
  });
  const body = (await res.body.json()) as { content?: { text: string }[]; error?: { code: string } };
  return { status: res.statusCode, body, retryAfter: res.headers['retry-after'] };
}

describe('calls waiting for a worker that is starting', () => {
  it('lets HUB_WORKER_WAITERS_MAX calls wait per server, answers the next 503 at once, and frees the slot after', async () => {
    await setRuntime({ status: 'starting', restarts: 0 });
    let firstSettled = false;
    const first = call('req-waiter-1').finally(() => {
      firstSettled = true;
    });
    await waitFor('the first call to wait', () => waited('req-waiter-1', 'worker.wait'));
    // It waits (HUB_WORKER_WAIT is 60 s): the second call finds the one waiting slot taken.
    const second = await call('req-waiter-2');
    expect(firstSettled).toBe(false);
    expect(waited('req-waiter-2', 'worker.wait')).toBe(false);
    expect(second.status).toBe(503);
    expect(second.body.error?.code).toBe('worker_unavailable');
    expect(Number(second.retryAfter)).toBeGreaterThan(0);

    // The worker comes up: the waiting call is served by it.
    const port = await startWorker('served');
    await setRuntime({ status: 'running', host: '127.0.0.1', port, pid: process.pid, restarts: 0 });
    expect(await first).toMatchObject({ status: 200, body: { content: [{ text: 'served' }] } });

    expect(waited('req-waiter-1', 'worker.waited')).toBe(true);

    // The slot is free again. The worker goes away and another is starting: a call waits for it instead of a 503
    // (whether the hub already read `starting`, or still sent the call to the old port and found it closed).
    await stopWorker();
    await setRuntime({ status: 'starting', restarts: 1 });
    const third = call('req-waiter-3');
    await waitFor('the third call to wait', () => waited('req-waiter-3', 'worker.wait'));
    const next = await startWorker('served again');
    await setRuntime({ status: 'running', host: '127.0.0.1', port: next, pid: process.pid, restarts: 1 });
    expect(await third).toMatchObject({ status: 200, body: { content: [{ text: 'served again' }] } });
  });
});
