import { WORKER_CALLER_HEADER, WORKER_ROUTES } from '@mcp-hub/shared';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type OpenStream, openSession, openStream, pingSession } from '../../../test/raw-mcp.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { FIXTURES, registerServer, startTestWorker, WORKER_AUTH } from './helpers.js';

/**
 * `POST /sessions/close`: the hub ends a dead key's MCP sessions in the worker with it (finding 5 of issue 10).
 * A real worker over the echo fixture; sessions opened by hand, as the hub opens them for two callers.
 */

const t = testRedis();
const captured = captureLogger('worker');
let worker: Worker;
let base: string;
const streams: OpenStream[] = [];
afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.cancel()));
});

const as = (caller: string) => ({ ...WORKER_AUTH, [WORKER_CALLER_HEADER]: caller });

async function closeSessions(body: unknown, headers: Record<string, string> = WORKER_AUTH) {
  const res = await fetch(`${base}${WORKER_ROUTES.sessionsClose}`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as { closed?: number; error?: { code: string } } };
}

beforeAll(async () => {
  await registerServer(t.redis, t.keys, {
    id: 'fixture',
    transport: 'stdio',
    config: { command: process.execPath, args: [FIXTURES.echo] },
  });
  const port = await getPort();
  base = `http://127.0.0.1:${port}`;
  worker = await startTestWorker({ serverId: 'fixture', prefix: t.prefix, port, log: captured.log });
  await worker.ready;
});
afterAll(async () => {
  await worker?.close();
  await t.cleanup();
});

describe('POST /sessions/close on a worker', () => {
  it('answers 401 without the worker token and 400 to a body that is not one caller', async () => {
    const noToken = await closeSessions({ caller: 'key:abc' }, {});
    expect(noToken.status).toBe(401);
    expect(noToken.json.error?.code).toBe('unauthorized');
    const wrongToken = await closeSessions({ caller: 'key:abc' }, { 'x-mcp-worker-token': 'nope' });
    expect(wrongToken.status).toBe(401);

    for (const body of [{}, { caller: 'key:ABC' }, { caller: 'key:' }, { caller: 'anyone' }, { caller: 7 }]) {
      const res = await closeSessions(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.error?.code).toBe('invalid_request');
    }
    expect((await closeSessions({ caller: 'key:abc', also: 'x' })).status).toBe(400);
    expect((await closeSessions({ caller: `key:${'a'.repeat(65)}` })).status).toBe(400);
    expect((await closeSessions('not json')).status).toBe(400);
  });

  it("ends only that caller's sessions, Streamable HTTP and legacy SSE, and their streams", async () => {
    const mcp = `${base}/mcp`;
    const doomed = [await openSession(mcp, as('key:doomed')), await openSession(mcp, as('key:doomed'))];
    const kept = await openSession(mcp, as('key:kept'));
    const doomedStream = await openStream(mcp, { ...as('key:doomed'), 'mcp-session-id': doomed[0] as string });
    const doomedSse = await openStream(`${base}/sse`, as('key:doomed'));
    const keptSse = await openStream(`${base}/sse`, as('key:kept'));
    streams.push(doomedStream, doomedSse, keptSse);
    for (const session of doomed) expect(await pingSession(mcp, session, as('key:doomed'))).toBe(200);

    const res = await closeSessions({ caller: 'key:doomed' });
    expect(res).toEqual({ status: 200, json: { closed: 3 } });

    // The streams end, the session ids are gone (for their own caller too).
    await doomedStream.ended;
    await doomedSse.ended;
    for (const session of doomed) expect(await pingSession(mcp, session, as('key:doomed'))).toBe(404);
    const legacyPost = await fetch(`${base}${doomedSse.endpoint}`, {
      method: 'POST',
      headers: { ...as('key:doomed'), 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'ping' }),
    });
    expect(legacyPost.status).toBe(404);

    // The other caller's sessions go on.
    expect(keptSse.isEnded()).toBe(false);
    expect(await pingSession(mcp, kept, as('key:kept'))).toBe(200);
    const closes = captured.lines.filter((l) => l.event === 'mcp.session.close' && l.reason === 'caller_closed');
    expect(closes).toHaveLength(3);
    expect(captured.lines).toContainEqual(
      expect.objectContaining({ event: 'mcp.session.caller_closed', caller: 'key:doomed', sessions: 3 }),
    );

    // Nothing left: closing again ends nothing.
    expect(await closeSessions({ caller: 'key:doomed' })).toEqual({ status: 200, json: { closed: 0 } });
  });
});
