import type { ChildProcess } from 'node:child_process';
import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  echoServer,
  killByKeyPrefix,
  runningRecord as runningAs,
  startWatchedSupervisor,
  stopProcess,
  waitFor,
  workerPids,
} from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

// Issue 13, item 3: a call that finds its server's worker starting, restarting or replaced waits for it
// instead of failing; item 6: that routine costs no error-level log line.
const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const supervisorLines: Record<string, unknown>[] = [];
let hub: FastifyInstance;
let base: string;
/** A second hub that waits only briefly: what a caller hears when the worker does not come back in time. */
let impatient: FastifyInstance;
let impatientBase: string;
let supervisor: ChildProcess;

async function callEcho(at: string, id: string, message: string, requestId?: string) {
  const res = await request(`${at}/mcp/${id}/echo`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(requestId ? { 'x-request-id': requestId } : {}),
    },
    body: JSON.stringify({ message }),
  });
  const body = (await res.body.json()) as { content?: { text: string }[]; error?: { code: string } };
  return { status: res.statusCode, body, retryAfter: res.headers['retry-after'] };
}

/** The same call as an event stream (the default answer of the call route): status and the result event's text. */
async function callEchoStream(at: string, id: string, message: string, requestId: string) {
  const res = await request(`${at}/mcp/${id}/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-request-id': requestId },
    body: JSON.stringify({ message }),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    events: text
      .split('\n')
      .filter((line) => line.startsWith('event: '))
      .map((line) => line.slice('event: '.length)),
    text,
  };
}

const runningRecord = (id: string, notInstance?: string) => runningAs(registry, id, notInstance);

/** Every line at error level or worse, of the hub and of the supervisor and its workers. */
function errorLines(): Record<string, unknown>[] {
  return [...hubLogs.lines, ...supervisorLines].filter((l) => l.level === 'error' || l.level === 'fatal');
}

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, supervisorLines);
  const env = { REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_AUTH: 'none' };
  hub = await buildHub({ config: loadHubConfig({ ...env, HUB_WORKER_WAIT: '15s' }), log: hubLogs.log });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  impatient = await buildHub({ config: loadHubConfig({ ...env, HUB_WORKER_WAIT: '300ms' }), log: hubLogs.log });
  impatientBase = await impatient.listen({ host: '127.0.0.1', port: 0 });
}, 30_000);

afterAll(async () => {
  await stopProcess(supervisor);
  await Promise.race([Promise.all([hub?.close(), impatient?.close()]), new Promise((r) => setTimeout(r, 5_000))]);
  killByKeyPrefix(t.prefix);
  await t.cleanup();
});

describe('a call to a worker on its way', () => {
  it('waits for the first worker of a server registered a moment ago, then succeeds', async () => {
    await registry.upsertServer(echoServer('fresh', { timeoutMs: 20_000 }), 'create');
    const res = await callEcho(base, 'fresh', 'first', 'req-fresh');
    expect(res).toMatchObject({ status: 200, body: { content: [{ text: 'first' }] } });
    const waited = hubLogs.lines.find((l) => l.event === 'worker.waited' && l.request_id === 'req-fresh');
    expect(waited).toMatchObject({ server: 'fresh', level: 'info' });
  });

  it('sends a call that found the old address (worker killed -9) to the worker that replaced it', async () => {
    await registry.upsertServer(echoServer('crashy', { timeoutMs: 20_000 }), 'create');
    const before = await runningRecord('crashy');
    expect((await callEcho(base, 'crashy', 'warm')).status).toBe(200);
    // Freeze the supervisor so that the runtime record keeps the dead worker's address while the call comes.
    process.kill(supervisor.pid as number, 'SIGSTOP');
    try {
      for (const pid of workerPids(t.prefix, 'crashy')) process.kill(-pid, 'SIGKILL');
      // An event stream: its headers leave the worker before it calls the upstream, so a connection lost
      // before them (the pooled one to the killed worker) is known never to have run.
      const call = callEchoStream(base, 'crashy', 'after the crash', 'req-stale');
      await waitFor('the hub to find the address stale', () =>
        hubLogs.lines.some((l) => l.event === 'worker.stale_address' && l.request_id === 'req-stale'),
      );
      process.kill(supervisor.pid as number, 'SIGCONT');
      const res = await call;
      expect(res).toMatchObject({ status: 200, events: ['result'] });
      expect(res.text).toContain('after the crash');
    } finally {
      process.kill(supervisor.pid as number, 'SIGCONT');
    }
    const after = await registry.getRuntime('crashy');
    expect(after?.instance).not.toBe(before.instance);
    expect(hubLogs.lines.find((l) => l.event === 'tool.call.redirected' && l.request_id === 'req-stale')).toMatchObject(
      { server: 'crashy', stale_port: before.port, port: after?.port },
    );
  });

  it('answers 503 with Retry-After once HUB_WORKER_WAIT passes, in one warn line and no error line', async () => {
    await registry.upsertServer(echoServer('frozen', { timeoutMs: 20_000 }), 'create');
    await runningRecord('frozen');
    process.kill(supervisor.pid as number, 'SIGSTOP');
    try {
      // The supervisor is frozen: a worker it was restarting stays `restarting`.
      await t.redis.hset(t.keys.runtime('frozen'), 'status', 'restarting');
      const event = { type: 'runtime.update', id: 'frozen', status: 'restarting', ts: new Date().toISOString() };
      await t.redis.publish(t.keys.events, JSON.stringify(event));
      await waitFor(
        'the hub to see the restart',
        async () => (await callEcho(impatientBase, 'frozen', 'x')).status === 503,
      );
      const res = await callEcho(impatientBase, 'frozen', 'late', 'req-frozen');
      expect(res).toMatchObject({ status: 503, body: { error: { code: 'worker_unavailable' } } });
      expect(Number(res.retryAfter)).toBeGreaterThan(0);
    } finally {
      process.kill(supervisor.pid as number, 'SIGCONT');
    }
    const lines = hubLogs.lines.filter(
      (l) => l.request_id === 'req-frozen' && (l.level === 'warn' || l.level === 'error'),
    );
    expect(lines).toEqual([
      expect.objectContaining({ event: 'tool.call.failed', level: 'warn', code: 'worker_unavailable' }),
    ]);
    expect(lines[0]).not.toHaveProperty('traceback');
    expect(lines[0]).not.toHaveProperty('err');
  });

  it('loses no call across a restart, and a routine restart writes no error-level line', async () => {
    await registry.upsertServer(echoServer('restarted', { timeoutMs: 20_000 }), 'create');
    const before = await runningRecord('restarted');
    const restart = await request(`${base}/api/servers/restarted/restart`, { method: 'POST' });
    expect(restart.statusCode).toBeLessThan(300);
    await restart.body.dump();
    // Calls one after another from the request on until the new worker runs, and a few more.
    const statuses: number[] = [];
    let replaced = false;
    for (let extra = 0; extra < 5; replaced && extra++) {
      statuses.push((await callEcho(base, 'restarted', `n${statuses.length}`)).status);
      replaced ||= (await registry.getRuntime('restarted'))?.instance !== before.instance;
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    await runningRecord('restarted', before.instance);
    expect(errorLines()).toEqual([]);
  });
});
