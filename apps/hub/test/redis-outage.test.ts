import type { ChildProcess } from 'node:child_process';
import { createKeys, loadHubConfig, Registry, type ServerSpecBody } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import getPort from 'get-port';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, startWatchedSupervisor, stopStack, waitFor, workerPids } from '../../../test/processes.js';
import { DurableRedis } from '../../../test/redis-server.js';
import { captureLogger, testPrefix } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

/**
 * Issue 13, item 4: Redis goes away and comes back while calls flow through a hub, a supervisor and a real
 * stdio worker. The hub's caches expire (1 s) and the key cache's trust (2 s) runs out well inside the outage,
 * and the supervisor's leases (2 s) expire in Redis meanwhile: every call must still succeed, the worker must
 * keep its pid, and the supervisor must hold the server again once Redis is back.
 */

const ADMIN = 'admin-token-0123456789abcdef';
const P = 'outage';
const SERVER = 'outage-echo';
const OUTAGE_MS = 6_000;
const CALLERS = 4;

const prefix = testPrefix();
const keys = createKeys(prefix);
const hubLogs = captureLogger('hub');
const supervisorLines: Record<string, unknown>[] = [];
let redis: DurableRedis;
let client: Redis;
let supervisor: ChildProcess;
let hub: FastifyInstance;
let base: string;

const spec: ServerSpecBody = {
  id: SERVER,
  name: SERVER,
  namespace: SERVER,
  project: P,
  transport: 'stdio',
  config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
  tags: [],
  enabled: true,
  timeoutMs: 10_000,
};

async function api(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, key = ADMIN) {
  const res = await request(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

interface CallResult {
  at: number;
  ms: number;
  ok: boolean;
  detail: string;
}

/** One echo call with `key`, checked: the answer must be the message sent. */
async function echo(key: string, message: string): Promise<CallResult> {
  const at = Date.now();
  try {
    const res = await request(`${base}/mcp/${SERVER}/echo`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ message }),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    const text = await res.body.text();
    const ok =
      res.statusCode === 200 && (JSON.parse(text) as { content?: { text?: string }[] }).content?.[0]?.text === message;
    return { at, ms: Date.now() - at, ok, detail: `${res.statusCode} ${text.slice(0, 200)}` };
  } catch (err) {
    return { at, ms: Date.now() - at, ok: false, detail: String(err) };
  }
}

beforeAll(async () => {
  redis = new DurableRedis(await getPort({ host: '127.0.0.1' }));
  await redis.start();
  client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  supervisor = startWatchedSupervisor(redis.url, prefix, supervisorLines, { MCP_LEASE_TTL: '2s' });
  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redis.url,
      KEY_PREFIX: prefix,
      HUB_ADMIN_TOKEN: ADMIN,
      HUB_CACHE_MAX_AGE: '1s',
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  expect((await api('POST', '/api/projects', { id: P, name: P })).status).toBe(201);
  await new Registry(client, keys).upsertServer(spec, 'create');
}, 30_000);

afterAll(async () => {
  await stopStack(supervisor, hub, prefix);
  client?.disconnect();
  await redis?.destroy();
});

describe('a Redis outage while calls flow', () => {
  it('fails no call for a running worker, keeps the worker and its supervisor, and recovers the lease', async () => {
    const created = await api('POST', `/api/projects/${P}/keys`, {
      name: 'caller',
      role: 'reporter',
      limits: { perHour: 100_000, concurrent: 50 },
    });
    expect(created.status, created.text).toBe(201);
    const key = (created.json as { key: string }).key;
    await waitFor('the echo worker answers', async () => (await echo(key, 'warm-up')).ok, 30_000);
    // A key verified good, then revoked and seen revoked by this hub: it must not come back during the outage.
    const doomed = await api('POST', `/api/projects/${P}/keys`, { name: 'doomed', role: 'reporter' });
    const doomedKey = (doomed.json as { key: string }).key;
    expect((await echo(doomedKey, 'before')).ok).toBe(true);
    const revoked = await api('DELETE', `/api/projects/${P}/keys/${(doomed.json as { id: string }).id}`);
    expect(revoked.status, revoked.text).toBeLessThan(300);
    expect((await echo(doomedKey, 'revoked')).detail).toMatch(/^401 /);
    const [pid] = workerPids(prefix, SERVER);
    expect(pid).toBeGreaterThan(0);

    const results: CallResult[] = [];
    let running = true;
    let n = 0;
    const callers = Array.from({ length: CALLERS }, async () => {
      while (running) results.push(await echo(key, `m-${n++}`));
    });

    let downAt = 0;
    let upAt = 0;
    let duringOutage = 0;
    let ready: Awaited<ReturnType<typeof api>> | undefined;
    let doomedDuring: CallResult | undefined;
    // A failed step must not leave the callers calling a closed hub: the finally ends them on every path.
    try {
      await waitFor('calls flowing', () => results.length >= 20);
      downAt = Date.now();
      await redis.kill();
      // The outage outlasts the hub's cache age, the key cache's trust and the supervisor's lease TTL.
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      ready = await api('GET', '/readyz');
      doomedDuring = await echo(doomedKey, 'outage');
      duringOutage = results.filter((r) => r.at > downAt).length;
      await redis.start();
      upAt = Date.now();
      await waitFor('hub reads Redis again', () => hubLogs.lines.some((l) => l.event === 'registry.fresh'), 15_000);
      const afterUp = results.length;
      await waitFor('calls after the outage', () => results.length >= afterUp + 50, 15_000);
    } finally {
      running = false;
      await Promise.all(callers);
    }

    const failed = results.filter((r) => !r.ok);
    expect(failed.map((r) => r.detail)).toEqual([]);
    expect(duringOutage).toBeGreaterThan(50);
    // The revoked key is not served stale: it cannot be checked, so 503 (never 200).
    expect(doomedDuring?.detail).toMatch(/^503 .*redis_unavailable/);
    // Serving stale was said once each way, and /readyz said it while it lasted.
    expect(ready?.status).toBe(200);
    expect(ready?.json).toMatchObject({ status: 'stale', details: { registry: { mode: 'stale' } } });
    expect(hubLogs.lines.filter((l) => l.event === 'registry.stale')).toHaveLength(1);
    expect(hubLogs.lines.filter((l) => l.event === 'registry.fresh')).toHaveLength(1);
    const after = await api('GET', '/readyz');
    expect(after.json).toMatchObject({ status: 'ready', details: { registry: { mode: 'fresh' } } });

    // The worker and the supervisor lived through it: same pid, no stop, no spawn, no exit.
    expect(workerPids(prefix, SERVER)).toEqual([pid]);
    expect(supervisor.exitCode).toBeNull();
    const since = supervisorLines.filter((l) => typeof l.time === 'number' && l.time >= downAt);
    expect(
      since.filter((l) => ['worker.terminated', 'worker.spawned', 'worker.restart'].includes(String(l.event))),
    ).toEqual([]);
    // The lease expired in Redis during the outage; the supervisor holds it again, and its record is current.
    const holder = await waitFor('lease held again', () => client.get(keys.lease(SERVER)), 10_000);
    const record = await client.hgetall(keys.runtime(SERVER));
    expect(record.supervisor).toBe(holder);
    expect(record.status).toBe('running');
    expect(Number(record.pid)).toBe(pid);

    const outage = results.filter((r) => r.at > downAt && r.at < upAt);
    const slowest = Math.max(...outage.map((r) => r.ms));
    const sorted = outage.map((r) => r.ms).sort((a, b) => a - b);
    console.info(
      `[redis outage ${OUTAGE_MS} ms] calls: ${results.length}, during the outage: ${outage.length}, failed: ${failed.length}; ` +
        `latency during the outage p50 ${sorted[Math.floor(sorted.length / 2)]} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)]} ms, max ${slowest} ms`,
    );
  }, 90_000);
});
