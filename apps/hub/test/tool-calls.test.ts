import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadHubConfig, Registry, type ServerSpecBody } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureEventCounter } from '../../../test/echo-fixture.js';
import { EVERYTHING_ENTRY, fixture, startWatchedSupervisor, stopStack, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const processLines: Record<string, unknown>[] = [];
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;
let restApi: Server;
let restRequests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
const eventsFile = join(tmpdir(), `mcp-hub-calls-${process.pid}-${Date.now()}.jsonl`);
const fixtureEvents = fixtureEventCounter(eventsFile);

function stdio(id: string, args: string[], extra: Partial<ServerSpecBody> = {}): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: process.execPath, args, env: { FIXTURE_EVENTS_FILE: eventsFile } },
    tags: [],
    enabled: true,
    timeoutMs: 10_000,
    ...extra,
  } as ServerSpecBody;
}

async function running(id: string): Promise<number> {
  return waitFor(
    `${id} running`,
    async () => {
      const r = await registry.getRuntime(id);
      return r?.status === 'running' && (await registry.listTools(id)).length > 0 ? r.pid : null;
    },
    20_000,
  );
}

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

function parseSse(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.includes('data:'))
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? '{}') as Record<string, unknown>;
      return { event, data };
    });
}

async function call(server: string, tool: string, args: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${base}/mcp/${server}/${tool}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(args),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, {
    MCP_WORKER_IDLE_TTL: '0',
  });

  restApi = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      restRequests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (req.url?.startsWith('/missing')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no such thing"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  await new Promise<void>((r) => restApi.listen(0, '127.0.0.1', r));
  const restBase = `http://127.0.0.1:${(restApi.address() as AddressInfo).port}`;

  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_PORT: '0',
      HUB_WAKE_TIMEOUT: '15s',
      HUB_AUTH: 'none',
      // Calls to a server whose worker does not run: 503 after a short wait (its length is worker-comeback's).
      HUB_WORKER_WAIT: '200ms',
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });

  await registry.upsertServer(stdio('everything', [EVERYTHING_ENTRY, 'stdio']), 'create');
  await registry.upsertServer(stdio('fixture', [fixture('echo-server.mjs')], { timeoutMs: 1_500 }), 'create');
  await registry.upsertServer(
    {
      id: 'api',
      name: 'api',
      namespace: 'api',
      transport: 'rest',
      tags: [],
      enabled: true,
      timeoutMs: 5_000,
      config: {
        baseUrl: restBase,
        headers: { 'x-api-key': 'rest-secret-value-123' },
        tools: [
          {
            name: 'get_item',
            description: 'Reads an item',
            method: 'GET',
            path: '/items/{itemId}',
            inputSchema: {
              type: 'object',
              properties: { itemId: { type: 'string' }, verbose: { type: 'boolean' } },
              required: ['itemId'],
            },
            argLocations: {},
          },
          {
            name: 'missing',
            description: 'Always 404',
            method: 'GET',
            path: '/missing',
            inputSchema: { type: 'object' },
            argLocations: {},
          },
        ],
      },
    },
    'create',
  );
  await Promise.all([running('everything'), running('fixture'), running('api')]);
}, 60_000);

afterAll(async () => {
  await stopStack(supervisor, hub, t.prefix);
  restApi?.close();
  rmSync(eventsFile, { force: true });
  await t.cleanup();
});

describe('POST /mcp/:id/:tool through hub, supervisor and worker', () => {
  it('calls echo on server-everything over stdio and answers SSE carrying the request id', async () => {
    const res = await call('everything', 'echo', { message: 'hello hub' }, { 'x-request-id': 'e2e-echo-1' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(res.headers['x-request-id']).toBe('e2e-echo-1');
    const events = parseSse(res.text);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: 'result', data: { request_id: 'e2e-echo-1', isError: false } });
    expect(JSON.stringify(events[0]?.data.content)).toContain('hello hub');
  });

  it('answers one JSON body to a client that accepts only JSON', async () => {
    const res = await call('everything', 'echo', { message: 'as json' }, { accept: 'application/json' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(res.text);
    expect(body.request_id).toBe(res.headers['x-request-id']);
    expect(JSON.stringify(body.content)).toContain('as json');
  });

  it('streams progress before the result of trigger-long-running-operation', async () => {
    const res = await call('everything', 'trigger-long-running-operation', { duration: 1, steps: 4 });
    const events = parseSse(res.text);
    const kinds = events.map((e) => e.event);
    // Every progress event, the last one included, then the result.
    expect(kinds).toEqual(['progress', 'progress', 'progress', 'progress', 'result']);
    expect(events.filter((e) => e.event === 'progress').map((e) => e.data)).toEqual(
      [1, 2, 3, 4].map((step) => ({ request_id: res.headers['x-request-id'], progress: step, total: 4 })),
    );
  });

  it('with tracing off, passes the client traceparent on to the upstream as it came, and logs no trace ids', async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const res = await call('fixture', 'meta', {}, { traceparent, 'x-request-id': 'e2e-trace-off' });
    const events = parseSse(res.text);
    expect(events[0]?.event).toBe('result');
    const content = (events[0]?.data.content ?? []) as { text: string }[];
    const meta = JSON.parse(String(content[0]?.text)) as Record<string, unknown>;
    expect(meta.traceparent).toBe(traceparent);
    const accepted = hubLogs.lines.find((l) => l.event === 'tool.call.accepted' && l.request_id === 'e2e-trace-off');
    expect(accepted).toBeDefined();
    expect(accepted?.trace_id).toBeUndefined();
  });

  it('calls a REST-backed tool against a local HTTP server, and the worker logs tool.http.*', async () => {
    restRequests = [];
    const res = await call('api', 'get_item', { itemId: 'a/b', verbose: true }, { 'x-request-id': 'e2e-rest-1' });
    const events = parseSse(res.text);
    expect(events[0]?.event).toBe('result');
    expect(events[0]?.data.structuredContent).toEqual({ ok: true, path: '/items/a%2Fb?verbose=true' });
    expect(restRequests[0]).toMatchObject({ method: 'GET', url: '/items/a%2Fb?verbose=true' });
    expect(restRequests[0]?.headers['x-api-key']).toBe('rest-secret-value-123');

    const missing = parseSse((await call('api', 'missing', {})).text);
    expect(missing[0]).toMatchObject({ event: 'result', data: { isError: true } });

    await waitFor('tool.http.response logged', () =>
      processLines.some((l) => l.event === 'tool.http.response' && l.request_id === 'e2e-rest-1'),
    );
    const requestLine = processLines.find((l) => l.event === 'tool.http.request' && l.request_id === 'e2e-rest-1');
    expect(requestLine).toMatchObject({ service: 'worker', server: 'api', method: 'GET' });
    const responseLine = processLines.find((l) => l.event === 'tool.http.response' && l.request_id === 'e2e-rest-1');
    expect(responseLine).toMatchObject({
      status: 200,
      latency: expect.any(Number),
      url: expect.stringContaining('/items/'),
    });
    expect(JSON.stringify(processLines)).not.toContain('rest-secret-value-123');
  });

  it('puts one request id on the SSE events and on the hub and worker log lines of the call', async () => {
    const id = 'e2e-trace-42';
    await call('fixture', 'echo', { message: 'trace me' }, { 'x-request-id': id });
    await waitFor('worker line', () => processLines.some((l) => l.request_id === id && l.service === 'worker'));
    const hubEvents = hubLogs.lines.filter((l) => l.request_id === id).map((l) => l.event);
    expect(hubEvents).toEqual(['tool.call.accepted', 'tool.call.proxy.start', 'tool.call.proxy.done']);
    const accepted = hubLogs.lines.find((l) => l.request_id === id && l.event === 'tool.call.accepted');
    expect(accepted).toMatchObject({ service: 'hub', server: 'fixture', tool: 'echo', args_size: expect.any(Number) });
    const done = hubLogs.lines.find((l) => l.request_id === id && l.event === 'tool.call.proxy.done');
    expect(done).toMatchObject({
      status: 200,
      target_url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/tools\/echo$/),
      latency: expect.any(Number),
    });
    expect(processLines.filter((l) => l.request_id === id).every((l) => l.server === 'fixture')).toBe(true);
  });

  it('404s an unknown server and an unknown tool', async () => {
    const server = await call('nope', 'echo', {});
    expect(server.status).toBe(404);
    expect(JSON.parse(server.text)).toMatchObject({ error: { code: 'server_not_found' } });
    const tool = await call('everything', 'nope', {});
    expect(tool.status).toBe(404);
    expect(JSON.parse(tool.text)).toMatchObject({ error: { code: 'tool_not_found' }, request_id: expect.any(String) });
  });

  it('400s arguments that do not match the schema, listing every problem', async () => {
    const res = await call('api', 'get_item', { verbose: 'yes' });
    expect(res.status).toBe(400);
    const body = JSON.parse(res.text);
    expect(body.error.code).toBe('invalid_arguments');
    expect(body.error.details.map((d: { path: string }) => d.path).sort()).toEqual(['itemId', 'verbose']);
    const notObject = await call('api', 'get_item', [1, 2]);
    expect(notObject.status).toBe(400);
  });

  it('503s with Retry-After when the server has no running worker', async () => {
    await registry.upsertServer(stdio('off', [fixture('echo-server.mjs')], { enabled: false }), 'create');
    const res = await call('off', 'echo', { message: 'x' });
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(JSON.parse(res.text)).toMatchObject({ error: { code: 'worker_unavailable' } });
    expect(hubLogs.lines.some((l) => l.event === 'tool.call.failed' && l.code === 'worker_unavailable')).toBe(true);
  });

  it('reports a tool timeout as an error event tool_timeout', async () => {
    const res = await call('fixture', 'slow', { ms: 5_000 });
    const events = parseSse(res.text);
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { code: 'tool_timeout' } });
  });

  it('cancels the upstream call when the client goes away', async () => {
    const startedBefore = fixtureEvents('started');
    const cancelledBefore = fixtureEvents('cancelled');
    const controller = new AbortController();
    const pending = request(`${base}/mcp/fixture/slow`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'e2e-cancel-1' },
      body: JSON.stringify({ ms: 1_200 }),
      signal: controller.signal,
    }).then((res) => res.body.text());
    // Counted from before this call: earlier tests (the timeout) started and cancelled calls of their own.
    await waitFor('slow started', () => fixtureEvents('started') > startedBefore);
    controller.abort();
    await pending.catch(() => undefined);
    await waitFor('upstream cancellation', () => fixtureEvents('cancelled') > cancelledBefore, 5_000);
  });

  it('sends an error event worker_unavailable when the worker dies mid-call', async () => {
    const runtime = await registry.getRuntime('fixture');
    const startedBefore = fixtureEvents('started');
    const pending = call('fixture', 'slow', { ms: 1_000 });
    await waitFor('the call to start upstream', () => fixtureEvents('started') > startedBefore);
    process.kill(runtime?.pid as number, 'SIGKILL');
    const events = parseSse((await pending).text);
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { code: 'worker_unavailable' } });
    await waitFor(
      'fixture back',
      async () => {
        const r = await registry.getRuntime('fixture');
        return r?.status === 'running' && r.pid !== runtime?.pid;
      },
      15_000,
    );
  });
});
