import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WORKER_DISPATCH_HEADER } from '@mcp-hub/shared';
import getPort from 'get-port';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import {
  callJson,
  callSse,
  EVERYTHING,
  FIXTURES,
  getHealth,
  isAlive,
  parseSse,
  registerServer,
  startTestWorker,
  TEST_WORKER_TOKEN,
  WORKER_AUTH,
  waitFor,
} from './helpers.js';

describe('stdio worker: server-everything', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  let worker: Worker;
  let port: number;
  let specRev: number;
  const instance = 'inst-everything';

  beforeAll(async () => {
    specRev = await registerServer(t.redis, t.keys, {
      id: 'everything',
      transport: 'stdio',
      config: { command: process.execPath, args: [EVERYTHING, 'stdio'] },
    });
    port = await getPort();
    worker = await startTestWorker({ serverId: 'everything', prefix: t.prefix, port, log: captured.log, instance });
    await worker.ready;
  });
  afterAll(async () => {
    await worker?.close();
    await t.cleanup();
  });

  it('answers 401 on every route to a request without its token, or with another one, and runs nothing', async () => {
    const before = captured.lines.filter((l) => l.event === 'tool.call.start').length;
    const wrong = { 'x-mcp-worker-token': 'another-workers-token-0123456789abcdef' };
    for (const headers of [{}, wrong]) {
      for (const [method, path] of [
        ['GET', '/healthz'],
        ['GET', '/tools'],
        ['POST', '/tools/echo'],
        ['POST', '/mcp'],
        ['GET', '/mcp'],
        ['DELETE', '/mcp'],
        ['GET', '/sse'],
        ['POST', '/messages?sessionId=x'],
      ] as const) {
        const res = await fetch(`http://127.0.0.1:${port}${path}`, {
          method,
          headers: { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: method === 'POST' ? '{"message":"x"}' : undefined,
        });
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      }
    }
    expect(captured.lines.filter((l) => l.event === 'tool.call.start').length).toBe(before);
    expect(captured.text()).not.toContain(TEST_WORKER_TOKEN);
  });

  it('answers /healthz 200 with its identity once connected', async () => {
    const { status, body } = await getHealth(port);
    expect(status).toBe(200);
    expect(body).toEqual({
      serverId: 'everything',
      instance,
      pid: process.pid,
      specRev,
      upstream: 'connected',
      tools: expect.any(Number),
      activeCalls: 0,
      idleMs: expect.any(Number),
      // The process's own figures (here the test's process, which runs the worker in-process).
      rssBytes: expect.any(Number),
      cpuSeconds: expect.any(Number),
      mcpSessions: 0,
    });
    expect(body.tools).toBeGreaterThan(5);
    expect(body.rssBytes).toBeGreaterThan(10 * 2 ** 20);
  });

  it('writes its tools to the registry and lists them on GET /tools', async () => {
    const stored = await t.redis.hgetall(t.keys.tools('everything'));
    expect(Object.keys(stored)).toContain('echo');
    expect(JSON.parse(stored.echo as string)).toMatchObject({
      name: 'echo',
      inputSchema: { type: 'object', properties: { message: { type: 'string' } } },
    });
    const res = await fetch(`http://127.0.0.1:${port}/tools`, { headers: WORKER_AUTH });
    const { tools } = (await res.json()) as { tools: { name: string }[] };
    expect(tools.map((tool) => tool.name)).toContain('trigger-long-running-operation');
    expect(captured.lines.some((line) => line.event === 'tools.synced' && (line.count as number) > 5)).toBe(true);
    expect(captured.lines.some((line) => line.event === 'upstream.stderr' && typeof line.line === 'string')).toBe(true);
  });

  it('streams the result of POST /tools/echo as SSE with the request id of x-request-id', async () => {
    const res = await callSse(port, 'echo', { message: 'hello' }, { 'x-request-id': 'req-echo-1' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    expect(res.headers.get('x-request-id')).toBe('req-echo-1');
    expect(res.events).toEqual([
      {
        event: 'result',
        data: { request_id: 'req-echo-1', content: [{ type: 'text', text: 'Echo: hello' }], isError: false },
      },
    ]);
    const done = captured.lines.find((line) => line.event === 'tool.call.done' && line.request_id === 'req-echo-1');
    expect(done).toMatchObject({ tool: 'echo', status: 'ok', latency: expect.any(Number) });
    expect(captured.lines.some((l) => l.event === 'tool.call.start' && l.request_id === 'req-echo-1')).toBe(true);
  });

  it('answers one JSON body when the client accepts only application/json', async () => {
    const res = await callJson(port, 'echo', { message: 'json' }, { 'x-request-id': 'req-json-1' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      request_id: 'req-json-1',
      content: [{ type: 'text', text: 'Echo: json' }],
      isError: false,
    });
  });

  it('streams progress events before the result of a long-running operation', async () => {
    const res = await callSse(
      port,
      'trigger-long-running-operation',
      { duration: 1, steps: 4 },
      { 'x-request-id': 'req-long' },
    );
    const names = res.events.map((e) => e.event);
    expect(names.at(-1)).toBe('result');
    // Every progress event, the last one (which shares a read with the result) included, before the result.
    const progress = res.events.filter((e) => e.event === 'progress');
    expect(progress.map((e) => e.data)).toEqual(
      [1, 2, 3, 4].map((step) => ({ request_id: 'req-long', progress: step, total: 4 })),
    );
    expect(names).toEqual(['progress', 'progress', 'progress', 'progress', 'result']);
  });

  it('answers 404 tool_not_found in the error shape for an unknown tool', async () => {
    const res = await callSse(port, 'no-such-tool', {}, { 'x-request-id': 'req-404' });
    expect(res.status).toBe(404);
    expect(res.events[0]?.data).toEqual({
      error: { code: 'tool_not_found', message: expect.stringContaining('no-such-tool') },
      request_id: 'req-404',
    });
  });

  it('passes a tool-level failure on as a normal result with isError', async () => {
    const res = await callSse(port, 'get-sum', { a: 'x' });
    expect(res.events).toHaveLength(1);
    expect(res.events[0]).toMatchObject({ event: 'result', data: { isError: true } });
  });
});

describe('stdio worker: echo fixture', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  const eventsFile = join(tmpdir(), `worker-fixture-${process.pid}-${Date.now()}.jsonl`);
  let worker: Worker;
  let port: number;

  const fixtureEvents = (): Record<string, unknown>[] => {
    try {
      return readFileSync(eventsFile, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    } catch {
      return [];
    }
  };

  beforeAll(async () => {
    await registerServer(t.redis, t.keys, {
      id: 'echo',
      transport: 'stdio',
      timeoutMs: 1_500,
      config: { command: process.execPath, args: [FIXTURES.echo], env: { FIXTURE_EVENTS_FILE: eventsFile } },
    });
    port = await getPort();
    worker = await startTestWorker({
      serverId: 'echo',
      prefix: t.prefix,
      port,
      log: captured.log,
      options: { keepAliveIntervalMs: 100 },
    });
    await worker.ready;
  });
  afterAll(async () => {
    await worker?.close();
    await t.cleanup();
    rmSync(eventsFile, { force: true });
  });

  it('treats an empty body as no arguments and refuses a body that is not an object', async () => {
    const empty = await fetch(`http://127.0.0.1:${port}/tools/progress`, {
      method: 'POST',
      headers: { ...WORKER_AUTH, 'content-type': 'application/json', accept: 'application/json' },
    });
    expect(empty.status).toBe(200);
    expect(await empty.json()).toMatchObject({ content: [{ type: 'text', text: 'done in 3 steps' }] });

    const array = await callJson(port, 'echo', [1, 2]);
    expect(array.status).toBe(400);
    expect(array.body).toMatchObject({ error: { code: 'invalid_arguments' } });

    const broken = await fetch(`http://127.0.0.1:${port}/tools/echo`, {
      method: 'POST',
      headers: { ...WORKER_AUTH, 'content-type': 'application/json' },
      body: '{"message":',
    });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ error: { code: 'invalid_json' } });
  });

  it('streams progress with its message, and keep-alive comments while a call runs', async () => {
    const res = await callSse(port, 'progress', { steps: 3, intervalMs: 120 }, { 'x-request-id': 'req-progress' });
    const progress = res.events.filter((e) => e.event === 'progress');
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress[0]?.data).toEqual({ request_id: 'req-progress', progress: 1, total: 3, message: 'step 1' });
    expect(res.events.at(-1)?.event).toBe('result');
    expect(res.comments).toContain('keep-alive');
  });

  it('enforces timeoutMs with an error event tool_timeout, and cancels the upstream call', async () => {
    const res = await callSse(port, 'slow', { ms: 10_000 }, { 'x-request-id': 'req-timeout' });
    expect(res.status).toBe(200);
    expect(res.events).toEqual([
      { event: 'error', data: { request_id: 'req-timeout', code: 'tool_timeout', message: expect.any(String) } },
    ]);
    await waitFor('the fixture to see the cancellation', () => fixtureEvents().some((e) => e.event === 'cancelled'));
    const failed = captured.lines.find((l) => l.event === 'tool.call.failed' && l.request_id === 'req-timeout');
    // An expected failure: one warn line, no stack (issue 13: error level is for faults of ours).
    expect(failed).toMatchObject({ level: 'warn', tool: 'slow', code: 'tool_timeout', error: expect.any(String) });
    expect(failed).not.toHaveProperty('traceback');
  });

  it('answers 504 tool_timeout in JSON mode', async () => {
    const res = await callJson(port, 'slow', { ms: 10_000 }, { 'x-request-id': 'req-timeout-json' });
    expect(res.status).toBe(504);
    expect(res.body).toEqual({
      error: { code: 'tool_timeout', message: expect.any(String) },
      request_id: 'req-timeout-json',
    });
  });

  it('cancels the upstream call when the client disconnects', async () => {
    const before = fixtureEvents().filter((e) => e.event === 'cancelled').length;
    const controller = new AbortController();
    const res = await request(`http://127.0.0.1:${port}/tools/slow`, {
      method: 'POST',
      headers: { ...WORKER_AUTH, 'content-type': 'application/json', 'x-request-id': 'req-gone' },
      body: JSON.stringify({ ms: 1_200 }),
      signal: controller.signal,
    });
    expect(res.statusCode).toBe(200);
    await waitFor('the call to start upstream', () => worker.health().activeCalls === 1);
    controller.abort();
    await res.body.text().catch(() => {});
    await waitFor(
      'the fixture to see the cancellation',
      () => fixtureEvents().filter((e) => e.event === 'cancelled').length > before,
    );
    await waitFor('the call to end', () => worker.health().activeCalls === 0);
    expect(captured.lines.find((l) => l.event === 'tool.call.done' && l.request_id === 'req-gone')).toMatchObject({
      status: 'cancelled',
    });
    // The call never ran to its end upstream: the fixture clears its timer when it records the cancellation, so
    // nothing needs waiting out for a 'finished' that could still come.
    expect(fixtureEvents().filter((e) => e.event === 'finished')).toHaveLength(0);
  });

  it('sends a dispatched event before the result when the hub asks for it, and none otherwise', async () => {
    const asked = await callSse(port, 'echo', { message: 'marked' }, { [WORKER_DISPATCH_HEADER]: '1' });
    expect(asked.events.map((e) => e.event)).toEqual(['dispatched', 'result']);
    const plain = await callSse(port, 'echo', { message: 'plain' });
    expect(plain.events.map((e) => e.event)).toEqual(['result']);
  });

  it('answers a JSON-RPC error as an error event upstream_error (502 in JSON mode)', async () => {
    const sse = await callSse(port, 'rpc-error', { message: 'boom' }, { 'x-request-id': 'req-rpc' });
    expect(sse.events).toEqual([
      {
        event: 'error',
        data: { request_id: 'req-rpc', code: 'upstream_error', message: 'boom', details: { rpcCode: -32_603 } },
      },
    ]);
    const json = await callJson(port, 'rpc-error', { message: 'boom' });
    expect(json.status).toBe(502);
    expect(json.body).toMatchObject({ error: { code: 'upstream_error', message: 'boom' } });
  });

  it('passes isError results on as result events', async () => {
    const res = await callSse(port, 'tool-error', { message: 'bad input' });
    expect(res.events).toEqual([
      {
        event: 'result',
        data: { request_id: expect.any(String), content: [{ type: 'text', text: 'bad input' }], isError: true },
      },
    ]);
  });

  it('resyncs its tools when the upstream announces tools/list_changed', async () => {
    const res = await callJson(port, 'add-tool', { name: 'fresh-tool' });
    expect(res.status).toBe(200);
    await waitFor('the new tool in the registry', async () =>
      Object.keys(await t.redis.hgetall(t.keys.tools('echo'))).includes('fresh-tool'),
    );
    const called = await callJson(port, 'fresh-tool', {});
    expect(called.body).toMatchObject({ content: [{ type: 'text', text: 'fresh-tool' }] });
    expect(worker.health().tools).toBe(8);
  });

  it('reports activeCalls and idleMs', async () => {
    const idle = worker.health().idleMs;
    const pending = callSse(port, 'slow', { ms: 300 });
    await waitFor('a call in flight', async () => (await getHealth(port)).body.activeCalls === 1);
    await pending;
    const after = await getHealth(port);
    expect(after.body.activeCalls).toBe(0);
    expect(after.body.idleMs as number).toBeLessThan(idle + 1_000);
  });

  it('ends open SSE streams with worker_unavailable on close and leaves no child behind', async () => {
    const pid = worker.upstreamPid as number;
    expect(isAlive(pid)).toBe(true);
    const res = await request(`http://127.0.0.1:${port}/tools/slow`, {
      method: 'POST',
      headers: { ...WORKER_AUTH, 'content-type': 'application/json', 'x-request-id': 'req-shutdown' },
      body: JSON.stringify({ ms: 5_000 }),
    });
    await waitFor('the call to start', () => worker.health().activeCalls === 1);
    const closed = worker.close();
    const text = await res.body.text();
    await closed;
    expect(parseSse(text).events).toEqual([
      {
        event: 'error',
        // The upstream had the call: whether it ran is unknown, which the hub must know before it sends it again.
        data: { request_id: 'req-shutdown', code: 'worker_unavailable', message: expect.any(String), lost: true },
      },
    ]);
    expect(isAlive(pid)).toBe(false);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});
