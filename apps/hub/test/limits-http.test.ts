import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadHubConfig, type RedisKeys, Registry, runtimeToHash, toolCallFrame } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import getPort from 'get-port';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { DurableRedis } from '../../../test/redis-server.js';
import { captureLogger, redisUrl, testPrefix, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'admin-token-0123456789abcdef';
const P = 'limits';
const SERVER = 'lim-srv';

// ---- a fake worker ----------------------------------------------------------------------------------------

interface FakeWorker {
  server: Server;
  port: number;
  calls: string[];
  /** Calls of the `slow` tool held until `release()`, with their request ids. */
  held: [ServerResponse, string][];
  release(): void;
}

async function startFakeWorker(): Promise<FakeWorker> {
  const worker: FakeWorker = {
    server: createServer(),
    port: 0,
    calls: [],
    held: [],
    release() {
      for (const [res, id] of worker.held.splice(0)) answer(res, id);
    },
  };
  // The tool-call contract: an event stream, `dispatched` (the hub asks for it), then the result.
  const answer = (res: ServerResponse, id: string) =>
    res
      .writeHead(200, { 'content-type': 'text/event-stream' })
      .end(
        toolCallFrame('dispatched', { request_id: id }) +
          toolCallFrame('result', { request_id: id, content: [], isError: false }),
      );
  worker.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      worker.calls.push(req.url ?? '');
      const id = String(req.headers['x-request-id']);
      if (req.url === '/tools/slow') worker.held.push([res, id]);
      else if (req.url === '/mcp') {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [], isError: false } }));
      } else answer(res, id);
    });
  });
  await new Promise<void>((r) => worker.server.listen(0, '127.0.0.1', r));
  worker.port = (worker.server.address() as AddressInfo).port;
  return worker;
}

async function stopFakeWorker(worker: FakeWorker | undefined): Promise<void> {
  if (!worker) return;
  worker.release();
  worker.server.closeAllConnections();
  await new Promise<void>((r) => worker.server.close(() => r()));
}

// ---- a hub with one project, one server and its worker ----------------------------------------------------

interface Hub {
  app: FastifyInstance;
  base: string;
  logs: ReturnType<typeof captureLogger>;
}

/**
 * The hub's clock (API keys, rate-limit windows): real time shifted to the middle of an hour, so that no counting
 * test meets the end of a fixed hourly window, and movable ahead (past the key cache's 2 s, say) without waiting.
 */
function midHourClock(): { now: () => number; advance(ms: number): void } {
  const HOUR_MS = 3_600_000;
  let offset = HOUR_MS / 2 - (Date.now() % HOUR_MS);
  return {
    now: () => Date.now() + offset,
    advance(ms) {
      offset += ms;
    },
  };
}

async function startHub(url: string, prefix: string, clock: () => number): Promise<Hub> {
  const logs = captureLogger('hub');
  const config = loadHubConfig({ REDIS_URL: url, KEY_PREFIX: prefix, HUB_ADMIN_TOKEN: ADMIN });
  const app = await buildHub({ config, log: logs.log, clock });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, logs };
}

async function http(
  hub: Hub,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  key: string | undefined,
  body?: unknown,
) {
  const res = await request(`${hub.base}${path}`, {
    method,
    headers: {
      accept: 'application/json',
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

/** Project P, its server SERVER (tools `echo` and `slow`) with a running runtime record at the fake worker. */
async function seed(hub: Hub, redis: Redis, keys: RedisKeys, worker: FakeWorker): Promise<void> {
  expect((await http(hub, 'POST', '/api/projects', ADMIN, { id: P, name: P })).status).toBe(201);
  const created = await http(hub, 'POST', '/api/servers', ADMIN, {
    id: SERVER,
    project: P,
    transport: 'streamable-http',
    config: { url: 'http://127.0.0.1:9/mcp' },
  });
  expect(created.status, created.text).toBe(201);
  const registry = new Registry(redis, keys);
  await registry.replaceTools(SERVER, [
    { name: 'echo', inputSchema: { type: 'object' } },
    { name: 'slow', inputSchema: { type: 'object' } },
  ]);
  await redis.hset(
    keys.runtime(SERVER),
    runtimeToHash({ status: 'running', host: '127.0.0.1', port: worker.port, pid: process.pid, restarts: 0 }),
  );
}

async function createKey(hub: Hub, body: Record<string, unknown>): Promise<{ id: string; key: string }> {
  const res = await http(hub, 'POST', `/api/projects/${P}/keys`, ADMIN, { name: 'k', role: 'reporter', ...body });
  expect(res.status, res.text).toBe(201);
  return res.json as { id: string; key: string };
}

const callTool = (hub: Hub, key: string, tool = 'echo') => http(hub, 'POST', `/mcp/${SERVER}/${tool}`, key, {});

// ---- against the shared test Redis ------------------------------------------------------------------------

describe('rate limits and usage through HTTP', () => {
  const t = testRedis();
  let hub: Hub;
  let worker: FakeWorker;

  beforeAll(async () => {
    worker = await startFakeWorker();
    hub = await startHub(redisUrl(), t.prefix, midHourClock().now);
    await seed(hub, t.redis, t.keys, worker);
  });
  afterAll(async () => {
    await stopFakeWorker(worker);
    await hub?.app.close();
    await t.cleanup();
  });

  it('200 concurrent calls with perHour 50: exactly 50 pass and 150 get a complete 429', async () => {
    const k = await createKey(hub, { limits: { perHour: 50 } });
    worker.calls.length = 0;
    const results = await Promise.all(Array.from({ length: 200 }, () => callTool(hub, k.key)));
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(50);
    expect(limited).toHaveLength(150);
    expect(worker.calls.filter((c) => c === '/tools/echo')).toHaveLength(50);

    // Every admitted call was counted once: the remaining quotas it was told are 49…0, each exactly once.
    const remaining = ok.map((r) => Number(r.headers['ratelimit-remaining'])).sort((a, b) => a - b);
    expect(remaining).toEqual(Array.from({ length: 50 }, (_, i) => i));
    for (const r of ok) {
      expect(r.headers['ratelimit-limit']).toBe('50');
      expect(r.headers['x-ratelimit-limit']).toBe('50');
      expect(r.headers['x-ratelimit-remaining']).toBe(r.headers['ratelimit-remaining']);
      expect(Number(r.headers['ratelimit-reset'])).toBeGreaterThan(0);
      expect(Number(r.headers['ratelimit-reset'])).toBeLessThanOrEqual(3600);
      expect(r.json).toMatchObject({ isError: false });
    }

    const denied = limited[0];
    if (!denied) throw new Error('no 429');
    const resetS = Number(denied.headers['ratelimit-reset']);
    expect(denied.headers['retry-after']).toBe(String(resetS));
    expect(resetS).toBeGreaterThan(0);
    expect(resetS).toBeLessThanOrEqual(3600);
    expect(denied.headers['ratelimit-limit']).toBe('50');
    expect(denied.headers['ratelimit-remaining']).toBe('0');
    expect(denied.headers['x-ratelimit-limit']).toBe('50');
    expect(denied.headers['x-ratelimit-remaining']).toBe('0');
    expect(denied.headers['x-ratelimit-reset']).toBe(String(resetS));
    expect(denied.json).toMatchObject({
      error: {
        code: 'rate_limited',
        message: expect.stringMatching(/50 calls per hour/),
        details: { limit: 50, remaining: 0, retryAfterS: resetS, rule: { scope: 'key', window: 'hour', limit: 50 } },
      },
      request_id: expect.any(String),
    });
    for (const r of limited)
      expect(r.json).toMatchObject({ error: { code: 'rate_limited', details: { remaining: 0 } } });

    // Usage: every call counted per server and tool, the refused ones as errors.
    const usage = await waitFor('usage flushed', async () => {
      const res = await http(hub, 'GET', `/api/usage/${k.id}`, ADMIN);
      const total = (res.json as { total?: { calls: number } }).total;
      return total?.calls === 200 ? res : undefined;
    });
    expect(usage.json).toMatchObject({
      keyId: k.id,
      project: P,
      limits: { perHour: 50 },
      total: { calls: 200, errors: 150, servers: { [SERVER]: 200 }, tools: { [`${SERVER}/echo`]: 200 } },
      lastRequestAt: expect.any(String),
    });

    // Resetting takes the admin token; then the key calls again with a fresh window.
    const owner = await createKey(hub, { name: 'owner', role: 'owner' });
    expect((await http(hub, 'POST', `/api/usage/${k.id}/reset`, owner.key)).status).toBe(403);
    expect((await callTool(hub, k.key)).status).toBe(429);
    const reset = await http(hub, 'POST', `/api/usage/${k.id}/reset`, ADMIN);
    expect(reset.status).toBe(200);
    expect(reset.json).toEqual({ keyId: k.id, reset: true });
    const again = await callTool(hub, k.key);
    expect(again.status).toBe(200);
    expect(again.headers['ratelimit-remaining']).toBe('49');
    // The owner of the key's project reads its usage too.
    expect((await http(hub, 'GET', `/api/usage/${k.id}`, owner.key)).status).toBe(200);
  });

  it('caps concurrent calls: the third parallel call is refused while two run', async () => {
    const k = await createKey(hub, { limits: { concurrent: 2 } });
    worker.calls.length = 0;
    const first = [callTool(hub, k.key, 'slow'), callTool(hub, k.key, 'slow')];
    await waitFor('two calls at the worker', async () => worker.held.length === 2);
    const third = await callTool(hub, k.key, 'echo');
    expect(third.status).toBe(429);
    expect(third.json).toMatchObject({
      error: { code: 'rate_limited', details: { rule: { scope: 'concurrent', limit: 2 }, remaining: 0 } },
    });
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    expect(worker.calls).toEqual(['/tools/slow', '/tools/slow']);
    worker.release();
    expect((await Promise.all(first)).map((r) => r.status)).toEqual([200, 200]);
    // The slots are free again.
    const after = await Promise.all([callTool(hub, k.key), callTool(hub, k.key)]);
    expect(after.map((r) => r.status)).toEqual([200, 200]);
  });

  it('limits tools/call on the per-server MCP endpoint like the REST call route', async () => {
    const k = await createKey(hub, { limits: { perHour: 2 } });
    const rpc = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } };
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await http(hub, 'POST', `/mcp/${SERVER}`, k.key, rpc)).status);
    expect(statuses).toEqual([200, 200, 429]);
    // Both paths share the key's budget.
    expect((await callTool(hub, k.key)).status).toBe(429);
    // Other messages (tools/list…) are not tool calls: not limited.
    const list = await http(hub, 'POST', `/mcp/${SERVER}`, k.key, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
    expect(list.status).toBe(200);
  });

  it('counts every tools/call of a batch, reads a body with a byte-order mark, and refuses what it cannot read', async () => {
    const k = await createKey(hub, { limits: { perHour: 3 } });
    const call = (id: number) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'echo', arguments: {} },
    });
    const raw = async (text: string) => {
      const res = await request(`${hub.base}/mcp/${SERVER}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
        body: text,
      });
      return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
    };
    const forwarded = worker.calls.length;
    // A ping first and four calls after it: all four count, so the batch is over a limit of 3.
    const batch = await raw(
      JSON.stringify([{ jsonrpc: '2.0', id: 0, method: 'ping' }, call(1), call(2), call(3), call(4)]),
    );
    expect(batch.status, batch.text).toBe(429);
    // The three calls admitted before the fourth was refused were counted: nothing is left.
    const bom = await raw(`\uFEFF${JSON.stringify(call(5))}`);
    expect(bom.status, bom.text).toBe(429);
    // A body the hub cannot read is refused, not passed on for the worker to read its own way.
    const broken = await raw('{"jsonrpc":"2.0","method":"tools/call",');
    expect(broken.status).toBe(400);
    expect(JSON.parse(broken.text)).toMatchObject({ error: { code: 'invalid_json' } });
    // None of the three reached the worker.
    expect(worker.calls.length).toBe(forwarded);
  });

  it('does not limit or count the admin token', async () => {
    const res = await callTool(hub, ADMIN);
    expect(res.status).toBe(200);
    expect(res.headers['ratelimit-limit']).toBeUndefined();
  });
});

// ---- a Redis that goes away -------------------------------------------------------------------------------

/** A durable redis-server of this test (test/redis-server.ts), started. */
async function ownRedis(): Promise<DurableRedis> {
  const redis = new DurableRedis(await getPort({ host: '127.0.0.1' }));
  await redis.start();
  return redis;
}

describe('while Redis is down', () => {
  let redis: DurableRedis;
  let client: Redis;
  let hub: Hub;
  let worker: FakeWorker;
  const prefix = testPrefix();
  const clock = midHourClock();

  beforeAll(async () => {
    redis = await ownRedis();
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    worker = await startFakeWorker();
    hub = await startHub(redis.url, prefix, clock.now);
    const keys = (await import('@mcp-hub/shared')).createKeys(prefix);
    await seed(hub, client, keys, worker);
  });
  afterAll(async () => {
    await stopFakeWorker(worker);
    await hub?.app.close();
    client?.disconnect();
    await redis?.destroy();
  });

  it('keeps serving verified keys on in-memory limits while Redis is down, and loses nothing stored', async () => {
    const k = await createKey(hub, { limits: { perHour: 100 } });
    const owner = await createKey(hub, { name: 'owner', role: 'owner' });
    for (let i = 0; i < 3; i++) expect((await callTool(hub, k.key)).status).toBe(200);
    const ready = await http(hub, 'GET', '/readyz', undefined);
    expect(ready.json).toMatchObject({ status: 'ready', details: { rateLimiter: { mode: 'redis' } } });

    // Crash Redis right after the key was verified (the hub trusts a verified key for 2 s).
    const crashedAt = Date.now();
    await redis.kill();
    const during = await callTool(hub, k.key);
    const duringAt = Date.now() - crashedAt;
    const readyDown = await http(hub, 'GET', '/readyz', undefined);
    // A hub that read Redis before serves from its caches: still ready for calls, and says it serves stale data.
    expect(readyDown.status).toBe(200);
    expect(readyDown.json).toMatchObject({ status: 'stale', details: { registry: { mode: 'stale' } } });
    // A key verified before the outage stays good (stale-if-error), and the in-memory limiter (which starts
    // empty) counts the call: however long the crash took to notice, this holds.
    expect(during.status, during.text).toBe(200);
    expect(during.headers['ratelimit-remaining']).toBe('99');
    expect((readyDown.json as { details: { rateLimiter: { mode: string } } }).details).toMatchObject({
      rateLimiter: { mode: 'memory', fallbacks: 1 },
    });

    // Past the key cache's 2 s (on the hub's clock) its record cannot be read, but a key verified before the
    // outage stays good (stale-if-error) and the in-memory limiter keeps counting.
    clock.advance(2_200);
    const later = await callTool(hub, k.key);
    expect(later.status, later.text).toBe(200);
    expect(Number(later.headers['ratelimit-remaining'])).toBeLessThan(100);
    // A key never seen by this hub cannot be checked: 503 redis_unavailable (not 401: it may be good).
    const unseen = await callTool(hub, owner.key);
    expect(unseen.status, unseen.text).toBe(503);
    expect(unseen.json).toMatchObject({ error: { code: 'redis_unavailable' } });
    expect(unseen.headers['www-authenticate']).toBeUndefined();
    const adminCall = await callTool(hub, ADMIN);
    const adminList = await http(hub, 'GET', '/api/servers', ADMIN);

    // Back up: everything written before the crash is still there.
    await redis.start();
    await waitFor(
      'hub reads Redis again',
      async () => {
        const res = await http(hub, 'GET', '/readyz', undefined);
        return res.status === 200 && (res.json as { status?: string }).status === 'ready';
      },
      10_000,
    );
    const projects = await http(hub, 'GET', '/api/projects', ADMIN);
    expect(projects.json).toMatchObject({ projects: [{ id: P }] });
    const keyList = await http(hub, 'GET', `/api/projects/${P}/keys`, owner.key);
    expect(keyList.status).toBe(200);
    expect((keyList.json as { keys: { id: string }[] }).keys.map((x) => x.id)).toEqual(
      expect.arrayContaining([k.id, owner.id]),
    );
    await waitFor(
      'limiter back on Redis',
      async () => {
        const res = await http(hub, 'GET', '/readyz', undefined);
        return (res.json as { details?: { rateLimiter?: { mode?: string } } }).details?.rateLimiter?.mode === 'redis';
      },
      10_000,
    );

    const after = await waitFor('a call passes again', async () => {
      const res = await callTool(hub, k.key);
      return res.status === 200 ? res : undefined;
    });
    // The Redis counters survived too: 3 calls before the crash, then this one (calls admitted in memory
    // during the outage are not added to Redis).
    expect(Number(after.headers['ratelimit-remaining'])).toBe(100 - 4);
    // For the report: what the admin token got while Redis was down.
    console.info(
      `[redis down] cached key after ${duringAt} ms: ${during.status}; key after 2.2 s: ${later.status} ${later.json && JSON.stringify((later.json as { error?: unknown }).error)}; admin call: ${adminCall.status} ${adminCall.text.slice(0, 120)}; admin GET /api/servers: ${adminList.status}`,
    );
  });
});
