import type { ChildProcess } from 'node:child_process';
import { Registry, type ServerSpecBody } from '@mcp-hub/shared';
import { Agent, request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { runMain } from '../../../test/main-process.js';
import { fixture, killByKeyPrefix, startSupervisorProcess, stopProcess, waitFor } from '../../../test/processes.js';
import { openStream } from '../../../test/raw-mcp.js';
import { redisUrl, testPrefix, testRedis } from '../../../test/support.js';

describe('hub main', () => {
  it('refuses a bad variable at start, naming it, with exit code 2', async () => {
    const run = runMain('hub', { HUB_PORT: 'eighty', LOG_LEVEL: 'loud' });
    expect(await run.exited).toBe(2);
    expect(run.stderr).toMatch(/HUB_PORT: must be a port number/);
    expect(run.stderr).toMatch(/LOG_LEVEL/);
  });

  it('listens, logs JSON lines, and exits 0 on SIGTERM', async () => {
    const run = runMain('hub', { REDIS_URL: redisUrl(), KEY_PREFIX: testPrefix(), HUB_PORT: '0', HUB_AUTH: 'none' });
    const listening = await run.waitForEvent('hub.listening');
    expect(listening).toMatchObject({ service: 'hub', level: 'info', host: '127.0.0.1' });
    expect(await run.stop('SIGTERM')).toBe(0);
    expect(run.lines.map((l) => l.event)).toContain('hub.stopped');
  });

  // Issue 14: logging at info is the product; no line of a burst may be lost to a SIGTERM right after it.
  it('writes every info line of a burst of calls when SIGTERM follows at once', async () => {
    const run = runMain('hub', {
      REDIS_URL: redisUrl(),
      KEY_PREFIX: testPrefix(),
      HUB_PORT: '0',
      HUB_AUTH: 'none',
      LOG_LEVEL: 'info',
    });
    const { address } = await run.waitForEvent('hub.listening');
    const agent = new Agent({ connections: 16 });
    const BURST = 400;
    const statuses = await Promise.all(
      Array.from({ length: BURST }, async (_, i) => {
        const res = await request(`${String(address)}/mcp/nobody/echo`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-request-id': `burst-${i}` },
          body: '{}',
          dispatcher: agent,
        });
        await res.body.dump();
        return res.statusCode;
      }),
    );
    expect(new Set(statuses)).toEqual(new Set([404]));
    // A reader that lags: the hub's stdout pipe is full when it exits, with lines still buffered in the hub.
    run.holdOutput(500);
    expect(await run.stop('SIGTERM')).toBe(0);
    await agent.close();
    const ids = (event: string) => new Set(run.lines.filter((l) => l.event === event).map((l) => String(l.request_id)));
    expect(ids('tool.call.accepted').size).toBe(BURST);
    expect(ids('tool.call.failed').size).toBe(BURST);
    // The last line of the shutdown is there too (a line a closing client logs may follow it).
    expect(run.lines.map((l) => l.event)).toContain('hub.stopped');
  });
});

// Issue 11: with a proxied `/sse/<id>` stream open, or a keep-alive connection that had a call in flight,
// `app.close()` did not finish, and the hub exited 1 at its 10 s deadline. Now it ends the stream, lets the
// call finish, closes the idle connections and exits 0.
describe('hub main, stopping with a worker', () => {
  const t = testRedis();
  let supervisor: ChildProcess | undefined;
  const clients: Agent[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.destroy()));
    await stopProcess(supervisor);
    killByKeyPrefix(t.prefix);
    await t.cleanup();
  });

  it('ends a proxied stream, finishes the call in flight, and exits 0 before its deadline', async () => {
    supervisor = startSupervisorProcess(redisUrl(), t.prefix, { MCP_WORKER_IDLE_TTL: '0' });
    const registry = new Registry(t.redis, t.keys);
    const spec = {
      id: 'drain',
      name: 'drain',
      namespace: 'drain',
      transport: 'stdio',
      config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
      tags: [],
      enabled: true,
      timeoutMs: 30_000,
    } as ServerSpecBody;
    await registry.upsertServer(spec, 'create');
    await waitFor(
      'the worker running',
      async () =>
        (await registry.getRuntime('drain'))?.status === 'running' && (await registry.listTools('drain')).length > 0,
      20_000,
    );

    const run = runMain('hub', { REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_PORT: '0', HUB_AUTH: 'none' });
    const base = String((await run.waitForEvent('hub.listening')).address);
    const call = (client: Agent, tool: string, args: unknown) =>
      request(`${base}/mcp/drain/${tool}`, {
        dispatcher: client,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(args),
      });

    // A keep-alive connection that made a call and stays open (the client keeps it for a minute).
    const keepAlive = new Agent({ keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
    // A connection whose call is in flight at SIGTERM: the worker's stream answers at once, the result later.
    const busy = new Agent({ keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
    clients.push(keepAlive, busy);
    const done = await call(keepAlive, 'echo', { message: 'hi' });
    expect(done.statusCode).toBe(200);
    expect(await done.body.text()).toContain('event: result');
    const inFlight = await call(busy, 'slow', { ms: 1_500 });
    expect(inFlight.statusCode).toBe(200);
    // A proxied legacy SSE stream: it lasts until someone ends it.
    const stream = await openStream(`${base}/sse/drain`, {});

    run.stop('SIGTERM');
    await stream.ended;
    const answer = await inFlight.body.text();
    expect(answer).toContain('event: result');
    expect(answer).not.toContain('event: error');
    expect(await run.exited).toBe(0);
    const events = run.lines.map((l) => l.event);
    expect(events).toContain('hub.stopped');
    expect(events).not.toContain('hub.stop_timeout');
    expect(events).not.toContain('hub.drain_timeout');
  });
});
