// Finding 3 of issue 10, reproduced against a running hub, supervisor and workers: workers listen on local,
// sequential ports; a developer key of one project pointed a REST server at another project's worker and
// called its tools. Now a worker answers only requests carrying its own token, which only the supervisor and
// the hub hold, and the hub refuses upstream URLs aimed at worker ports.
import type { ChildProcess } from 'node:child_process';
import { loadHubConfig, Registry, type RuntimeRecord, type ServerSpecBody } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { callTool, mcpClients, textOf } from '../../../test/mcp-clients.js';
import { fixture, startWatchedSupervisor, stopStack, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'admin-token-for-worker-isolation-0123';
const ADMIN_AUTH = { authorization: `Bearer ${ADMIN}` };
const WORKER_BASE_PORT = 32_000 + Math.floor(Math.random() * 200) * 50;
const WORKER_PORT_RANGE = 50;

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const processLines: Record<string, unknown>[] = [];
const clients = mcpClients({ name: 'worker-isolation-test', version: '1.0.0' });
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;
let developerKeyA: string;
let victim: RuntimeRecord;

async function api(method: 'GET' | 'POST', path: string, credential: string, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${credential}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: JSON.parse(text) as ApiAnswer };
}

/** The fields of the admin API's answers these tests read. */
interface ApiAnswer {
  key?: string;
  runtime?: Record<string, unknown>;
  error?: { code: string; message: string; details?: unknown };
}

async function running(id: string): Promise<RuntimeRecord> {
  return waitFor(
    `${id} running`,
    async () => {
      const r = await registry.getRuntime(id);
      return r?.status === 'running' && (await registry.listTools(id)).length > 0 ? r : null;
    },
    20_000,
  );
}

/** A REST server of project A whose tool posts to `path` on `baseUrl`. */
function thief(id: string, baseUrl: string): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    project: 'a',
    transport: 'rest',
    tags: [],
    enabled: true,
    timeoutMs: 5_000,
    config: {
      baseUrl,
      headers: {},
      tools: [
        {
          name: 'steal',
          description: "Posts to another server's worker",
          method: 'POST',
          path: '/tools/echo',
          inputSchema: { type: 'object', properties: { message: { type: 'string' } } },
          argLocations: {},
        },
      ],
    },
  } as ServerSpecBody;
}

beforeAll(async () => {
  const ports = { MCP_WORKER_BASE_PORT: String(WORKER_BASE_PORT), MCP_WORKER_PORT_RANGE: String(WORKER_PORT_RANGE) };
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, {
    ...ports,
  });
  hub = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_ADMIN_TOKEN: ADMIN, ...ports }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });

  for (const id of ['a', 'b']) expect((await api('POST', '/api/projects', ADMIN, { id, name: id })).status).toBe(201);
  const key = await api('POST', '/api/projects/a/keys', ADMIN, { name: 'dev', role: 'developer' });
  expect(key.status, key.text).toBe(201);
  developerKeyA = key.json.key as string;
  const created = await api('POST', '/api/servers', ADMIN, {
    id: 'b-echo',
    project: 'b',
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('echo-server.mjs')] },
  });
  expect(created.status, created.text).toBe(201);
  victim = await running('b-echo');
}, 60_000);

afterEach(() => clients.closeAll());

afterAll(async () => {
  await stopStack(supervisor, hub, t.prefix);
  await t.cleanup();
});

/** Tool calls project B's worker started (its log lines reach the supervisor's stdout). */
const victimCalls = () => processLines.filter((l) => l.server === 'b-echo' && l.event === 'tool.call.start').length;

describe('workers answer only their hub', () => {
  it('records a token in the runtime record, and shows it in no answer', async () => {
    expect(victim.workerToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const one = await api('GET', '/api/servers/b-echo', ADMIN);
    const all = await api('GET', '/api/servers', ADMIN);
    expect(one.json.runtime).toMatchObject({ status: 'running', port: victim.port });
    expect(one.json.runtime?.workerToken).toBeUndefined();
    for (const answer of [one.text, all.text]) expect(answer).not.toContain(victim.workerToken);
  });

  it('answers 401 to a plain request without the token on every route, and runs nothing', async () => {
    const before = victimCalls();
    const origin = `http://${victim.host}:${victim.port}`;
    for (const [method, path, body] of [
      ['POST', '/tools/echo', '{"message":"pwned"}'],
      ['GET', '/tools', undefined],
      ['POST', '/mcp', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}'],
      ['GET', '/mcp', undefined],
      ['GET', '/sse', undefined],
      ['POST', '/messages?sessionId=x', '{}'],
      ['GET', '/healthz', undefined],
    ] as const) {
      const res = await fetch(`${origin}${path}`, {
        method,
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body,
      });
      expect(res.status, `${method} ${path}`).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    }
    expect(victimCalls()).toBe(before);
  });

  it("refuses at registration a REST server aimed at another project's worker port", async () => {
    for (const baseUrl of [
      `http://127.0.0.1:${victim.port}`,
      `http://localhost:${victim.port}/`,
      `http://[::ffff:127.0.0.1]:${victim.port}`,
    ]) {
      const res = await api('POST', '/api/servers', developerKeyA, thief('a-thief', baseUrl));
      expect(res.status, baseUrl).toBe(403);
      expect(res.json.error).toMatchObject({ code: 'forbidden', details: { path: 'config.baseUrl' } });
    }
    expect(await registry.getServer('a-thief')).toBeNull();
  });

  it('even written straight into the registry, such a server reaches nothing: the worker answers 401', async () => {
    const before = victimCalls();
    await registry.upsertServer(thief('a-sneak', `http://${victim.host}:${victim.port}`), 'create');
    await running('a-sneak');
    const res = await request(`${base}/mcp/a-sneak/steal`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${developerKeyA}`,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify({ message: 'pwned' }),
    });
    const answer = (await res.body.json()) as { isError?: boolean; content?: { text?: string }[] };
    expect(answer.isError).toBe(true);
    const text = answer.content?.map((c) => c.text).join('') ?? '';
    expect(text).toMatch(/^HTTP 401/);
    expect(text).not.toContain('pwned');
    expect(victimCalls()).toBe(before);
  });

  it('still serves its own project through every hub path: the REST call route, /mcp/<id> and the aggregated /mcp', async () => {
    const before = victimCalls();
    const rest = await request(`${base}/mcp/b-echo/echo`, {
      method: 'POST',
      headers: { ...ADMIN_AUTH, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ message: 'via rest' }),
    });
    expect(rest.statusCode).toBe(200);
    expect(JSON.stringify(await rest.body.json())).toContain('via rest');

    const perServer = await clients.modern(`${base}/mcp/b-echo`, ADMIN_AUTH);
    expect(textOf(await callTool(perServer, 'echo', { message: 'via mcp' }))).toBe('via mcp');
    const legacy = await clients.sse(`${base}/sse/b-echo`, ADMIN_AUTH);
    expect(textOf(await callTool(legacy, 'echo', { message: 'via sse' }))).toBe('via sse');
    const aggregated = await clients.modern(`${base}/mcp`, ADMIN_AUTH);
    expect(textOf(await callTool(aggregated, 'b-echo__echo', { message: 'via aggregate' }))).toBe('via aggregate');
    await waitFor('the worker to log its calls', () => victimCalls() >= before + 4);
    expect(hubLogs.text()).not.toContain(victim.workerToken);
  });
});
