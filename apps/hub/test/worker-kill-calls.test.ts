import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadHubConfig, parseToolCallFrame, Registry, type ServerSpecBody } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  childPids,
  fixture,
  runningRecord,
  startWatchedSupervisor,
  stopStack,
  waitFor,
  workerPids,
} from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

// Issue 13, item 3: a call never fails for a worker that is coming back. A call the upstream never saw goes to the
// worker that replaces a killed one; a call the upstream had fails cleanly, unless its tool says a second run is
// safe (idempotentHint, readOnlyHint): then it runs once more, with a warn line. And a closing hub answers in the
// one error shape. Real supervisor, real workers, real kill -9; the stdio server (test/fixtures/chaos-server.mjs)
// logs each call's start, so the test knows which calls reached it.
const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const supervisorLines: Record<string, unknown>[] = [];
const eventsDir = mkdtempSync(join(tmpdir(), 'mcp-hub-kill-'));
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;

function chaosServer(id: string): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('chaos-server.mjs'), id, eventsFile(id)], env: {} },
    tags: [],
    enabled: true,
    timeoutMs: 20_000,
  } as ServerSpecBody;
}

const eventsFile = (id: string) => join(eventsDir, `${id}.jsonl`);

/** How many times the stdio server of `id` (any of its runs) started the call with this message. */
function starts(id: string, message: string): number {
  if (!existsSync(eventsFile(id))) return 0;
  return readFileSync(eventsFile(id), 'utf8')
    .split('\n')
    .filter((line) => line.includes(`"id":${JSON.stringify(message)}`) && line.includes('"ev":"s"')).length;
}

async function call(id: string, tool: string, message: string, ms = 0) {
  const res = await request(`${base}/mcp/${id}/${tool}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-request-id': `req-${message}` },
    body: JSON.stringify({ message, ms }),
  });
  const body = (await res.body.json()) as { content?: { text: string }[]; error?: { code: string } };
  return { status: res.statusCode, body };
}

/** A call as an event-stream client makes it (the card's main path): the status, content type and events. */
async function streamCall(id: string, tool: string, message: string, ms = 0) {
  const res = await request(`${base}/mcp/${id}/${tool}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-request-id': `req-${message}` },
    body: JSON.stringify({ message, ms }),
  });
  const text = await res.body.text();
  const events = text
    .split('\n\n')
    .map((frame) => parseToolCallFrame(frame))
    .filter((e) => e !== null && e !== undefined);
  return { status: res.statusCode, type: String(res.headers['content-type']), events };
}

const running = (id: string, notInstance?: string) => runningRecord(registry, id, notInstance);

/**
 * The one server every test kills (each test meets the worker the previous one's kill left): its running record
 * once a call reaches it through the hub. One server, not one per test: a worker and a stdio server less to start
 * per test.
 */
const SERVER = 'victim';
let warmups = 0;
async function serving(id: string) {
  await running(id);
  const message = `warm-${++warmups}`;
  expect(await call(id, 'echo', message)).toMatchObject({
    status: 200,
    body: { content: [{ text: `${id}|${message}` }] },
  });
  // Read after the call: the record the hub found the live worker by (not one a kill left behind).
  return running(id);
}

function killWorker(id: string): void {
  for (const pid of workerPids(t.prefix, id)) process.kill(-pid, 'SIGKILL');
}

const logsOf = (requestId: string, event: string) =>
  hubLogs.lines.filter((l) => l.request_id === requestId && l.event === event);

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, supervisorLines, { MCP_WORKER_STABLE_AFTER: '1s' });
  const config = loadHubConfig({
    REDIS_URL: redisUrl(),
    KEY_PREFIX: t.prefix,
    HUB_AUTH: 'none',
    HUB_WORKER_WAIT: '15s',
  });
  hub = await buildHub({ config, log: hubLogs.log });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  await registry.upsertServer(chaosServer(SERVER), 'create');
}, 30_000);

afterAll(async () => {
  await stopStack(supervisor, hub, t.prefix);
  await t.cleanup();
  rmSync(eventsDir, { recursive: true, force: true });
});

describe('calls when a worker or its stdio server is killed -9', () => {
  it('sends a call its worker received but never handed to the upstream to the replacement, which answers it', async () => {
    const before = await serving(SERVER);
    const [pid] = workerPids(t.prefix, SERVER);
    // A stopped worker takes the request into its socket and does nothing with it: then it is killed.
    process.kill(pid as number, 'SIGSTOP');
    const pending = call(SERVER, 'slow', 'undispatched', 10);
    await waitFor('the hub to send the call', () => logsOf('req-undispatched', 'tool.call.proxy.start').length > 0);
    killWorker(SERVER);
    const res = await pending;
    expect(res).toMatchObject({ status: 200, body: { content: [{ text: 'victim|undispatched' }] } });
    expect(starts(SERVER, 'undispatched')).toBe(1);
    const after = await registry.getRuntime(SERVER);
    expect(after?.instance).not.toBe(before.instance);
    expect(logsOf('req-undispatched', 'tool.call.redirected')).toEqual([
      expect.objectContaining({ server: SERVER, stale_port: before.port, port: after?.port }),
    ]);
    expect(logsOf('req-undispatched', 'tool.call.retried')).toEqual([]);
  });

  it('fails a call the upstream had when its worker died with a clean 503, and does not run it again', async () => {
    const before = await serving(SERVER);
    const pending = call(SERVER, 'slow', 'reached', 15_000);
    await waitFor('the call to reach the stdio server', () => starts(SERVER, 'reached') === 1);
    killWorker(SERVER);
    const res = await pending;
    expect(res).toMatchObject({ status: 503, body: { error: { code: 'worker_unavailable' } } });
    await running(SERVER, before.instance);
    expect(starts(SERVER, 'reached')).toBe(1);
    expect(logsOf('req-reached', 'tool.call.retried')).toEqual([]);
    expect(logsOf('req-reached', 'tool.call.redirected')).toEqual([]);
  });

  it('fails a call the stdio server had when it died with a clean 502, and does not run it again', async () => {
    const before = await serving(SERVER);
    const pending = call(SERVER, 'slow', 'in-child', 15_000);
    await waitFor('the call to reach the stdio server', () => starts(SERVER, 'in-child') === 1);
    const [worker] = workerPids(t.prefix, SERVER);
    for (const child of childPids(worker as number)) process.kill(child, 'SIGKILL');
    const res = await pending;
    expect(res).toMatchObject({ status: 502, body: { error: { code: 'upstream_error' } } });
    await running(SERVER, before.instance);
    expect(starts(SERVER, 'in-child')).toBe(1);
    expect(logsOf('req-in-child', 'tool.call.retried')).toEqual([]);
  });

  it('runs a call of an idempotent tool once more when its worker died under it, and says so', async () => {
    await serving(SERVER);
    const pending = call(SERVER, 'slow-idempotent', 'again', 3_000);
    await waitFor('the call to reach the stdio server', () => starts(SERVER, 'again') === 1);
    killWorker(SERVER);
    const res = await pending;
    expect(res).toMatchObject({ status: 200, body: { content: [{ text: 'victim|again' }] } });
    expect(starts(SERVER, 'again')).toBe(2);
    expect(logsOf('req-again', 'tool.call.retried')).toEqual([
      expect.objectContaining({ level: 'warn', server: SERVER, tool: 'slow-idempotent' }),
    ]);
  });

  it('runs a call of a read-only tool once more when its stdio server died under it, and says so', async () => {
    await serving(SERVER);
    const pending = call(SERVER, 'slow-read', 'reread', 3_000);
    await waitFor('the call to reach the stdio server', () => starts(SERVER, 'reread') === 1);
    const [worker] = workerPids(t.prefix, SERVER);
    for (const child of childPids(worker as number)) process.kill(child, 'SIGKILL');
    const res = await pending;
    expect(res).toMatchObject({ status: 200, body: { content: [{ text: 'victim|reread' }] } });
    expect(starts(SERVER, 'reread')).toBe(2);
    expect(logsOf('req-reread', 'tool.call.retried')).toEqual([
      expect.objectContaining({ level: 'warn', server: SERVER, tool: 'slow-read' }),
    ]);
  });

  it('gives an event-stream client one stream with the second run of an idempotent tool whose worker died', async () => {
    await serving(SERVER);
    const pending = streamCall(SERVER, 'slow-idempotent', 'again-sse', 3_000);
    await waitFor('the call to reach the stdio server', () => starts(SERVER, 'again-sse') === 1);
    killWorker(SERVER);
    const res = await pending;
    expect(res).toMatchObject({ status: 200, type: 'text/event-stream' });
    // The stream the first worker opened goes on: one result, no error, nothing of the hub's own hop.
    expect(res.events.map((e) => e?.event)).toEqual(['result']);
    expect(res.events[0]?.data).toMatchObject({ request_id: 'req-again-sse', content: [{ text: 'victim|again-sse' }] });
    expect(starts(SERVER, 'again-sse')).toBe(2);
    expect(logsOf('req-again-sse', 'tool.call.retried')).toHaveLength(1);
  });

  it("ends an event-stream client's stream with the failure when the upstream had the call and its worker died", async () => {
    const before = await serving(SERVER);
    const pending = streamCall(SERVER, 'slow', 'reached-sse', 15_000);
    await waitFor('the call to reach the stdio server', () => starts(SERVER, 'reached-sse') === 1);
    killWorker(SERVER);
    const res = await pending;
    expect(res).toMatchObject({ status: 200, type: 'text/event-stream' });
    expect(res.events).toEqual([
      { event: 'error', data: expect.objectContaining({ request_id: 'req-reached-sse', code: 'worker_unavailable' }) },
    ]);
    await running(SERVER, before.instance);
    expect(starts(SERVER, 'reached-sse')).toBe(1);
  });
});

describe('a closing hub', () => {
  it('answers new requests 503 hub_closing in the one error shape, with Retry-After and Connection: close', async () => {
    await serving(SERVER);
    const config = loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_AUTH: 'none' });
    // Drains longer than the long call takes: it must complete, not be cut at the drain deadline.
    const closing = await buildHub({ config, log: hubLogs.log, shutdownDrainMs: 30_000 });
    const origin = await closing.listen({ host: '127.0.0.1', port: 0 });
    const pool = new Pool(origin, { connections: 2, keepAliveTimeout: 60_000 });
    try {
      const long = request(`${origin}/mcp/${SERVER}/slow`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ message: 'long', ms: 3_000 }),
      }).then(async (res) => ({ status: res.statusCode, body: (await res.body.json()) as { content: unknown[] } }));
      await waitFor('the long call to reach the stdio server', () => starts(SERVER, 'long') === 1);
      const closed = closing.close();
      const refused = await waitFor('the hub to answer as closing', async () => {
        const res = await pool.request({ path: '/healthz', method: 'GET' });
        const body = (await res.body.json()) as Record<string, unknown>;
        return res.statusCode === 503 ? { headers: res.headers, body } : null;
      });
      expect(refused.body).toMatchObject({ error: { code: 'hub_closing' }, request_id: expect.any(String) });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      expect(refused.headers.connection).toBe('close');
      expect(await long).toMatchObject({ status: 200, body: { content: [{ text: 'victim|long' }] } });
      await closed;
    } finally {
      await pool.destroy();
    }
  });
});
