// Finding 5 of issue 10, the per-server half, against a running hub, supervisor and worker: a key's
// `/mcp/<id>` and `/sse/<id>` sessions live in the server's worker, which cannot tell a revoked key from a
// live one, so they kept their slots of the worker's session caps and their streams until they idled out
// (30 minutes). Now the hub asks the worker to end them when the key dies: revoked or rotated through this
// hub, or dead later (the end of a rotation grace, expiry) for keys it proxied sessions for.
import type { ChildProcess } from 'node:child_process';
import { keyCaller, loadHubConfig, Registry, WORKER_CALLER_HEADER, WORKER_TOKEN_HEADER } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixture, startWatchedSupervisor, stopStack, waitFor } from '../../../test/processes.js';
import { type OpenStream, openSession, openStream, pingSession } from '../../../test/raw-mcp.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'per-server-sessions-admin-token-0123456789';
const SERVER = 'sessions-echo';
/** Short, so that a test sees a rotation grace or an expiry end without waiting the default 5 s. */
const SESSION_KEY_CHECK_INTERVAL_MS = 200;
const ENDED_WITHIN_MS = 15_000;

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const processLines: Record<string, unknown>[] = [];
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;
const streams: OpenStream[] = [];
afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.cancel()));
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...bearer(ADMIN), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> };
}

async function createKey(name: string, extra: Record<string, unknown> = {}): Promise<{ id: string; key: string }> {
  const res = await api('POST', '/api/projects/a/keys', { name, role: 'developer', ...extra });
  expect(res.status, res.text).toBe(201);
  return { id: res.json.id as string, key: res.json.key as string };
}

/** A key's sessions on the server through the hub: two 2025 sessions (one with its GET stream) and a legacy SSE one. */
async function openSessions(key: string) {
  const mcp = `${base}/mcp/${SERVER}`;
  const sessions = [await openSession(mcp, bearer(key)), await openSession(mcp, bearer(key))];
  const stream = await openStream(mcp, { ...bearer(key), 'mcp-session-id': sessions[0] as string });
  const sse = await openStream(`${base}/sse/${SERVER}`, bearer(key));
  streams.push(stream, sse);
  for (const session of sessions) expect(await pingSession(mcp, session, bearer(key))).toBe(200);
  return { sessions, stream, sse };
}

/** Pings a session on the worker itself, as the caller the hub names for the key: 404 once the worker ended it. */
async function pingOnWorker(keyId: string, session: string, token?: string): Promise<number> {
  const runtime = await registry.getRuntime(SERVER);
  if (runtime?.port === undefined) throw new Error('the server has no running worker');
  return pingSession(`http://${runtime.host ?? '127.0.0.1'}:${runtime.port}/mcp`, session, {
    [WORKER_TOKEN_HEADER]: token ?? runtime.workerToken ?? '',
    [WORKER_CALLER_HEADER]: keyCaller(keyId),
  });
}

async function expectEnded(what: string, stream: OpenStream): Promise<void> {
  await waitFor(what, () => stream.isEnded(), ENDED_WITHIN_MS);
}

/** The worker's lines for sessions it ended on the hub's request (its logs reach the supervisor's stdout). */
const workerCloses = (keyId: string) =>
  processLines.filter((l) => l.event === 'mcp.session.caller_closed' && l.caller === keyCaller(keyId));

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, {
    MCP_HEALTH_INTERVAL: '500ms',
    // A worker paused by a test must not be replaced meanwhile (a new worker would end the sessions itself).
    MCP_HEALTH_FAILURES: '1000',
  });
  hub = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_ADMIN_TOKEN: ADMIN }),
    log: hubLogs.log,
    sessionKeyCheckIntervalMs: SESSION_KEY_CHECK_INTERVAL_MS,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  expect((await api('POST', '/api/projects', { id: 'a', name: 'a' })).status).toBe(201);
  const created = await api('POST', '/api/servers', {
    id: SERVER,
    project: 'a',
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('echo-server.mjs')] },
  });
  expect(created.status, created.text).toBe(201);
  await waitFor(
    `${SERVER} running`,
    async () => (await registry.getRuntime(SERVER))?.status === 'running' && (await registry.listTools(SERVER)).length,
    30_000,
  );
}, 60_000);

afterAll(async () => {
  await stopStack(supervisor, hub, t.prefix);
  await t.cleanup();
});

describe("a dead key's per-server MCP sessions end in the worker (finding 5)", () => {
  it('revoking a key ends its /mcp/<id> and /sse/<id> sessions and streams; another key of the project keeps its own', async () => {
    const doomed = await createKey('doomed');
    const kept = await createKey('kept');
    const gone = await openSessions(doomed.key);
    const stays = await openSessions(kept.key);

    expect((await api('DELETE', `/api/projects/a/keys/${doomed.id}`)).status).toBe(200);

    // The client sees its streams end; the worker no longer knows the session ids, even for their own caller.
    await expectEnded('the revoked key’s session stream to end', gone.stream);
    await expectEnded('the revoked key’s SSE stream to end', gone.sse);
    for (const session of gone.sessions) expect(await pingOnWorker(doomed.id, session)).toBe(404);
    expect(workerCloses(doomed.id)).toEqual([expect.objectContaining({ sessions: 3 })]);
    expect(hubLogs.lines).toContainEqual(
      expect.objectContaining({ event: 'mcp.session.reaped', server: SERVER, key_id: doomed.id, sessions: 3 }),
    );

    // The project's other key is untouched.
    expect(stays.stream.isEnded() || stays.sse.isEnded()).toBe(false);
    for (const session of stays.sessions) {
      expect(await pingSession(`${base}/mcp/${SERVER}`, session, bearer(kept.key))).toBe(200);
    }
    expect(workerCloses(kept.id)).toEqual([]);
  });

  it("rotating with a grace ends the old key's sessions when the grace ends, not before", async () => {
    const old = await createKey('rotated');
    const opened = await openSessions(old.key);
    const rotated = await api('POST', `/api/projects/a/keys/${old.id}/rotate`, { graceMs: 3_000 });
    expect(rotated.status, rotated.text).toBe(201);

    // Within the grace the old key still works on its sessions.
    expect(opened.sse.isEnded()).toBe(false);
    expect(await pingSession(`${base}/mcp/${SERVER}`, opened.sessions[1] as string, bearer(old.key))).toBe(200);

    await expectEnded('the rotated key’s SSE stream to end after the grace', opened.sse);
    await expectEnded('the rotated key’s session stream to end after the grace', opened.stream);
    for (const session of opened.sessions) expect(await pingOnWorker(old.id, session)).toBe(404);
  });

  it('a key that expires ends the sessions this hub proxied for it (no revoke, no rotation)', async () => {
    const expiring = await createKey('expiring', { expiresAt: new Date(Date.now() + 3_000).toISOString() });
    const opened = await openSessions(expiring.key);

    await expectEnded('the expired key’s SSE stream to end', opened.sse);
    await expectEnded('the expired key’s session stream to end', opened.stream);
    for (const session of opened.sessions) expect(await pingOnWorker(expiring.id, session)).toBe(404);
    expect(hubLogs.lines).toContainEqual(
      expect.objectContaining({ event: 'mcp.session.reaped', server: SERVER, key_id: expiring.id, sessions: 3 }),
    );
  });

  it('a worker that does not answer in time fails no revoke; its sessions end once it answers', async () => {
    const stalled = await createKey('stalled');
    const opened = await openSessions(stalled.key);
    const pid = (await registry.getRuntime(SERVER))?.pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      expect((await api('DELETE', `/api/projects/a/keys/${stalled.id}`)).status).toBe(200);
      expect(hubLogs.lines).toContainEqual(
        expect.objectContaining({ event: 'mcp.session.reap_failed', server: SERVER, key_id: stalled.id }),
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await expectEnded('the revoked key’s SSE stream to end once the worker answers', opened.sse);
    await expectEnded('the revoked key’s session stream to end once the worker answers', opened.stream);
    expect((await registry.getRuntime(SERVER))?.pid).toBe(pid);
    // The supervisor's health checks failed while the worker was stopped: the next test needs it running again.
    await waitFor(
      'the resumed worker to be healthy again',
      async () => (await registry.getRuntime(SERVER))?.status === 'running',
    );
  });

  it('a worker that refuses the hub fails no revoke; the next sweep ends the sessions once it answers', async () => {
    const refused = await createKey('refused');
    const opened = await openSessions(refused.key);
    const runtimeKey = t.keys.runtime(SERVER);
    const token = (await t.redis.hget(runtimeKey, 'worker_token')) as string;
    // As if the hub held a stale token: the worker answers 401 to the hub's request.
    await t.redis.hset(runtimeKey, 'worker_token', 'a-stale-token');
    try {
      expect((await api('DELETE', `/api/projects/a/keys/${refused.id}`)).status).toBe(200);
      expect(hubLogs.lines).toContainEqual(
        expect.objectContaining({ event: 'mcp.session.reap_failed', server: SERVER, key_id: refused.id }),
      );
      // Nothing ended yet.
      expect(opened.sse.isEnded() || opened.stream.isEnded()).toBe(false);
      expect(await pingOnWorker(refused.id, opened.sessions[0] as string, token)).toBe(200);
    } finally {
      await t.redis.hset(runtimeKey, 'worker_token', token);
    }
    await expectEnded('the revoked key’s SSE stream to end at a later sweep', opened.sse);
    await expectEnded('the revoked key’s session stream to end at a later sweep', opened.stream);
    expect(hubLogs.lines).toContainEqual(
      expect.objectContaining({ event: 'mcp.session.reaped', server: SERVER, key_id: refused.id, sessions: 3 }),
    );
  });
});
