import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadHubConfig } from '@mcp-hub/shared';
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as StreamableV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runInspector } from '../../../test/inspector.js';
import {
  type AnyClient,
  callTool,
  callWithProgress,
  mcpClients,
  textOf,
  toolNames,
} from '../../../test/mcp-clients.js';
import { EVERYTHING_ENTRY, startWatchedSupervisor, stopStack, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

/**
 * The standard MCP endpoints through the whole stack, a smoke set: the hub (in this process) in front of a real
 * supervisor process, which runs one real worker process per server, each holding a real stdio MCP server
 * (server-everything and server-memory), over the test Redis. Each era and transport reaches a real worker once;
 * what the hub adds (credentials, origins, body limits, discovery, restarts, server deletion) is checked here.
 * HUB_ADMIN_TOKEN is set throughout, so every client here authenticates with `Authorization: Bearer <token>`
 * like a deployed client would. The protocol details are tested in-process: each era in
 * packages/shared/test/mcp-front-eras.test.ts, the worker's forwarding in apps/worker/test/mcp-bridge.test.ts,
 * the aggregated server in aggregator.test.ts.
 */

const MEMORY_ENTRY = fileURLToPath(
  new URL('../../../node_modules/@modelcontextprotocol/server-memory/dist/index.js', import.meta.url),
);
const TOKEN = 'mcp-endpoints-admin-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const BODY_LIMIT = 256 * 1024;
const CLIENT_INFO = { name: 'hub-mcp-endpoints-test', version: '1.0.0' };
const LONG_OP = 'trigger-long-running-operation';

const t = testRedis();
const hubLogs = captureLogger('hub');
/** The JSON log lines of the supervisor and its workers (their stdout). */
const processLines: Record<string, unknown>[] = [];
const memoryFile = join(tmpdir(), `hub-mcp-endpoints-memory-${process.pid}-${Date.now()}.jsonl`);
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;

const clients = mcpClients(CLIENT_INFO);
afterEach(() => clients.closeAll());

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) };
}

interface Runtime {
  status: string;
  pid?: number;
}

async function runtimeOf(id: string): Promise<Runtime | undefined> {
  const { status, json } = await api('GET', `/api/servers/${id}`);
  return status === 200 ? (json as { runtime?: Runtime }).runtime : undefined;
}

/** Waits until a server's worker runs and its tools are in the registry; answers the worker's pid. */
async function running(id: string, notPid?: number): Promise<number> {
  return waitFor(
    `${id} running${notPid ? ` with a pid other than ${notPid}` : ''}`,
    async () => {
      const runtime = await runtimeOf(id);
      if (runtime?.status !== 'running' || runtime.pid === undefined || runtime.pid === notPid) return null;
      const tools = await api('GET', `/api/servers/${id}/tools`);
      return (tools.json as { tools: unknown[] }).tools.length > 0 ? runtime.pid : null;
    },
    30_000,
    100,
  );
}

const modernClient = (path: string, headers: Record<string, string> = {}) =>
  clients.modern(`${base}${path}`, { ...AUTH, ...headers });
const streamableClient = (path: string, headers: Record<string, string> = {}) =>
  clients.streamable(`${base}${path}`, { ...AUTH, ...headers });
const sseClient = (path: string, headers: Record<string, string> = {}) =>
  clients.sse(`${base}${path}`, { ...AUTH, ...headers });

/**
 * Starts a long call, aborts it with the request options' signal once the first progress arrived, and checks
 * that the call ended early and that the worker saw it cancelled (its `tool.call.done` line for the request id).
 */
async function expectCancelled(client: AnyClient, requestId: string): Promise<void> {
  const controller = new AbortController();
  let firstProgress: () => void = () => {};
  const progressed = new Promise<void>((resolve) => {
    firstProgress = resolve;
  });
  // A step every 100 ms, so the first progress comes soon.
  const args = { name: LONG_OP, arguments: { duration: 30, steps: 300 } };
  const options = { signal: controller.signal, onprogress: () => firstProgress() };
  const call = client instanceof ClientV2 ? client.callTool(args, options) : client.callTool(args, undefined, options);
  call.catch(() => {});
  await progressed;
  controller.abort();
  // The operation would take 30 s, as long as the test may: the call can only end in time by being cancelled.
  await expect(call).rejects.toThrow();
  await waitFor(
    'the worker to log the call cancelled',
    () =>
      processLines.some(
        (l) =>
          l.event === 'tool.call.done' && l.tool === LONG_OP && l.request_id === requestId && l.status === 'cancelled',
      ),
    15_000,
  );
}

/** A raw JSON-RPC POST (undici, so any header, Origin included, goes as given). */
async function rawPost(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await request(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: CLIENT_INFO },
});

function expectHubError(text: string, code: string): void {
  expect(JSON.parse(text)).toEqual({
    error: {
      code,
      message: expect.any(String),
      ...(code === 'origin_not_allowed' ? { details: expect.anything() } : {}),
    },
    request_id: expect.any(String),
  });
}

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, {
    MCP_HEALTH_INTERVAL: '500ms',
    MCP_WORKER_IDLE_TTL: '0',
  });

  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_PORT: '0',
      HUB_ADMIN_TOKEN: TOKEN,
      HUB_BODY_LIMIT_BYTES: String(BODY_LIMIT),
      HUB_WAKE_TIMEOUT: '20s',
      // A local tool (say the Inspector on :3000) is let in by name, never for being on localhost.
      HUB_ALLOWED_ORIGINS: 'http://localhost:3000',
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });

  // Registered through the admin API, as an operator would.
  const everything = await api('POST', '/api/servers', {
    id: 'everything',
    transport: 'stdio',
    config: { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'] },
  });
  expect(everything.status).toBe(201);
  const memory = await api('POST', '/api/servers', {
    id: 'memory',
    transport: 'stdio',
    config: { command: process.execPath, args: [MEMORY_ENTRY], env: { MEMORY_FILE_PATH: memoryFile } },
  });
  expect(memory.status).toBe(201);
  await Promise.all([running('everything'), running('memory')]);
}, 90_000);

afterAll(async () => {
  await clients.closeAll();
  await stopStack(supervisor, hub, t.prefix);
  rmSync(memoryFile, { force: true });
  await t.cleanup();
});

describe('per-server /mcp/<id> and /sse/<id> through the hub', () => {
  it('serves a 2026-07-28 client (SDK v2): tools/list, echo, progress, cancellation', async () => {
    const client = await modernClient('/mcp/everything', { 'x-request-id': 'hub-mcp-modern' });
    expect(client.getProtocolEra()).toBe('modern');
    expect(await toolNames(client)).toEqual(expect.arrayContaining(['echo', LONG_OP]));
    expect(textOf(await callTool(client, 'echo', { message: 'modern' }))).toBe('Echo: modern');
    const run = await callWithProgress(client, LONG_OP, { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    // The SDK may drop the last notification that races the result: at least the first ones arrive.
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
    await expectCancelled(client, 'hub-mcp-modern');
    // The same client goes on after a cancelled call.
    expect(textOf(await callTool(client, 'echo', { message: 'after' }))).toBe('Echo: after');
  });

  it('serves a 2025 Streamable HTTP client (SDK v1) with a session: tools/list, echo, progress, cancellation', async () => {
    const { client, transport } = await streamableClient('/mcp/everything', { 'x-request-id': 'hub-mcp-2025' });
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await toolNames(client)).toEqual(expect.arrayContaining(['echo', LONG_OP]));
    expect(textOf(await callTool(client, 'echo', { message: 'v1' }))).toBe('Echo: v1');
    const run = await callWithProgress(client, LONG_OP, { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
    await expectCancelled(client, 'hub-mcp-2025');
    expect(textOf(await callTool(client, 'echo', { message: 'after' }))).toBe('Echo: after');
    await transport.terminateSession();
  });

  it('serves a legacy HTTP+SSE client (SDK v1) on /sse/<id> with messages to /messages/<id>', async () => {
    const client = await sseClient('/sse/everything');
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'sse' }))).toBe('Echo: sse');
    const run = await callWithProgress(client, LONG_OP, { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    // Its messages went through the hub's per-server messages route.
    expect(
      hubLogs.lines.some((l) => l.event === 'mcp.proxy.done' && l.path === '/messages' && l.server === 'everything'),
    ).toBe(true);
  });
});

// Over SSE too, and on the front alone: packages/shared/test/mcp-front-eras.test.ts.
describe('MCP Inspector CLI through the hub', () => {
  it('lists tools and calls echo over Streamable HTTP /mcp/everything', async () => {
    const header = ['--header', `Authorization: Bearer ${TOKEN}`];
    const list = await runInspector(`${base}/mcp/everything`, 'http', 'tools/list', header);
    expect(list.code, list.stderr).toBe(0);
    expect((list.json as { tools: { name: string }[] }).tools.map((tool) => tool.name)).toContain('echo');
    const call = await runInspector(`${base}/mcp/everything`, 'http', 'tools/call', [
      ...header,
      '--tool-name',
      'echo',
      '--tool-arg',
      'message=inspector',
    ]);
    expect(call.code, call.stderr).toBe(0);
    expect(textOf(call.json)).toBe('Echo: inspector');
  });
});

describe('aggregated /mcp', () => {
  it('lists the prefixed tools of both servers and routes calls by prefixed name and namespace.tool', async () => {
    const client = await modernClient('/mcp');
    const names = await toolNames(client);
    expect(names).toEqual(
      expect.arrayContaining([
        'everything__echo',
        `everything__${LONG_OP}`,
        'memory__read_graph',
        'memory__create_entities',
        'memory__search_nodes',
      ]),
    );
    expect(names.every((name) => name.startsWith('everything__') || name.startsWith('memory__'))).toBe(true);
    expect(textOf(await callTool(client, 'everything__echo', { message: 'prefixed' }))).toBe('Echo: prefixed');
    expect(textOf(await callTool(client, 'everything.echo', { message: 'dotted' }))).toBe('Echo: dotted');
    // The other worker is reached as well, and its state is the one /mcp/memory sees.
    await callTool(client, 'memory__create_entities', {
      entities: [{ name: 'hub', entityType: 'project', observations: ['aggregates MCP servers'] }],
    });
    const direct = await modernClient('/mcp/memory');
    expect(textOf(await callTool(direct, 'read_graph', {}))).toContain('aggregates MCP servers');
  });

  it('serves a 2025 client on the aggregated endpoint with progress', async () => {
    const { client, transport } = await streamableClient('/mcp');
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await toolNames(client)).toContain('memory__read_graph');
    const run = await callWithProgress(client, `everything.${LONG_OP}`, { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(textOf(await callTool(client, 'memory__read_graph', {}))).toContain('aggregates MCP servers');
  });
});

describe('transport hygiene through the hub', () => {
  it('refuses a foreign Origin with 403 in the hub error shape, on /mcp/<id> and /mcp', async () => {
    for (const path of ['/mcp/everything', '/mcp']) {
      const res = await rawPost(path, INITIALIZE, { ...AUTH, origin: 'http://evil.example' });
      expect(res.status, path).toBe(403);
      expectHubError(res.text, 'origin_not_allowed');
    }
    // Another local port is another origin; a listed origin passes and is answered with CORS headers.
    const otherPort = await rawPost('/mcp/everything', INITIALIZE, { ...AUTH, origin: 'http://localhost:3001' });
    expect(otherPort.status).toBe(403);
    expectHubError(otherPort.text, 'origin_not_allowed');
    const ok = await rawPost('/mcp/everything', INITIALIZE, { ...AUTH, origin: 'http://localhost:3000' });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('http://localhost:3000');
    expect(String(ok.headers['access-control-expose-headers'])).toContain('mcp-session-id');
    const sessionId = ok.headers['mcp-session-id'] as string;
    await request(`${base}/mcp/everything`, { method: 'DELETE', headers: { ...AUTH, 'mcp-session-id': sessionId } });
  });

  it('answers an OPTIONS preflight from an allowed origin with 204 and Access-Control-Allow-*', async () => {
    for (const path of ['/mcp/everything', '/mcp', '/sse/everything', '/messages/everything']) {
      const res = await request(`${base}${path}`, {
        method: 'OPTIONS',
        headers: {
          origin: 'http://localhost:3000',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type, mcp-session-id',
        },
      });
      await res.body.dump();
      expect(res.statusCode, path).toBe(204);
      expect(res.headers['access-control-allow-origin']).toBe('http://localhost:3000');
      expect(String(res.headers['access-control-allow-methods'])).toMatch(/POST/);
      expect(String(res.headers['access-control-allow-methods'])).toMatch(/DELETE/);
      const allowed = String(res.headers['access-control-allow-headers']);
      for (const name of ['authorization', 'content-type', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id']) {
        expect(allowed).toContain(name);
      }
    }
    const evil = await request(`${base}/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(evil.statusCode).toBe(403);
    expectHubError(await evil.body.text(), 'origin_not_allowed');
  });

  it('marks SSE answers X-Accel-Buffering: no (per-server and aggregated, GET and POST streams)', async () => {
    for (const [path, messages] of [
      ['/sse/everything', '/messages/everything'],
      ['/sse', '/messages'],
    ] as const) {
      const controller = new AbortController();
      const res = await fetch(`${base}${path}`, {
        headers: { ...AUTH, accept: 'text/event-stream' },
        signal: controller.signal,
      });
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      expect(res.headers.get('x-accel-buffering'), path).toBe('no');
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let text = '';
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
      controller.abort();
      // The endpoint event points back at the hub's messages route of the same endpoint.
      expect(text).toMatch(new RegExp(`^event: endpoint\\ndata: ${messages}\\?sessionId=[0-9a-f-]{36}\\n\\n`));
    }
    // A 2025 session's tool call answered as a stream, per server and aggregated.
    for (const [path, tool] of [
      ['/mcp/everything', 'echo'],
      ['/mcp', 'everything__echo'],
    ] as const) {
      const init = await rawPost(path, INITIALIZE, AUTH);
      const session = {
        ...AUTH,
        'mcp-session-id': init.headers['mcp-session-id'] as string,
        'mcp-protocol-version': '2025-11-25',
      };
      await rawPost(path, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), session);
      const call = await rawPost(
        path,
        JSON.stringify({
          jsonrpc: '2.0',
          id: 2,
          method: 'tools/call',
          params: { name: tool, arguments: { message: 'sse' } },
        }),
        session,
      );
      expect(call.status, path).toBe(200);
      expect(String(call.headers['content-type'])).toContain('text/event-stream');
      expect(call.headers['x-accel-buffering'], path).toBe('no');
      expect(call.text).toContain('Echo: sse');
      await request(`${base}${path}`, { method: 'DELETE', headers: session });
    }
  });

  it('answers 413 in the hub error shape to a body over HUB_BODY_LIMIT_BYTES', async () => {
    const big = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'x'.repeat(BODY_LIMIT + 1) } },
    });
    for (const path of ['/mcp/everything', '/mcp', '/messages/everything?sessionId=x']) {
      const res = await rawPost(path, big, AUTH);
      expect(res.status, path).toBe(413);
      expectHubError(res.text, 'payload_too_large');
    }
  });

  it('lists the per-server and aggregated URLs in /.well-known/mcp-servers and every client config', async () => {
    // Public, but it lists only the servers the caller may see: none without credentials.
    const anonymous = await fetch(`${base}/.well-known/mcp-servers`);
    expect(anonymous.status).toBe(200);
    expect(await anonymous.json()).toMatchObject({ aggregated: { streamableHttp: `${base}/mcp` }, servers: [] });
    const wellKnown = await fetch(`${base}/.well-known/mcp-servers`, { headers: AUTH });
    expect(wellKnown.status).toBe(200);
    const doc = (await wellKnown.json()) as {
      aggregated: { streamableHttp: string; sse: string };
      servers: { id: string; streamableHttp: string; sse: string }[];
    };
    expect(doc.aggregated).toEqual({ streamableHttp: `${base}/mcp`, sse: `${base}/sse` });
    expect(doc.servers.map((s) => s.id).sort()).toEqual(['everything', 'memory']);
    for (const s of doc.servers) {
      expect(s).toMatchObject({ streamableHttp: `${base}/mcp/${s.id}`, sse: `${base}/sse/${s.id}` });
    }
    for (const client of ['cursor', 'vscode', 'cline', 'claude-desktop', 'claude-code']) {
      const res = await api('GET', `/api/client-config?client=${client}`);
      expect(res.status, client).toBe(200);
      const body = res.json as Record<string, Record<string, unknown>>;
      const entries = (client === 'vscode' ? body.servers : body.mcpServers) as Record<string, unknown>;
      expect(Object.keys(entries).sort(), client).toEqual(['everything', 'mcp-hub', 'memory']);
      const urlOf = (name: string) => JSON.stringify(entries[name]);
      expect(urlOf('mcp-hub'), client).toContain(`"${base}/mcp"`);
      expect(urlOf('everything'), client).toContain(`"${base}/mcp/everything"`);
      expect(urlOf('memory'), client).toContain(`"${base}/mcp/memory"`);
    }
  });
});

describe('HUB_ADMIN_TOKEN on the MCP endpoints', () => {
  it('answers 401 without the bearer token (or with a wrong one), on /mcp/<id>, /sse/<id> and /mcp', async () => {
    for (const path of ['/mcp/everything', '/mcp']) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }] as Record<
        string,
        string
      >[]) {
        const res = await rawPost(path, INITIALIZE, headers);
        expect(res.status, path).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expectHubError(res.text, 'unauthorized');
      }
    }
    const sse = await request(`${base}/sse/everything`, { headers: { accept: 'text/event-stream' } });
    await sse.body.dump();
    expect(sse.statusCode).toBe(401);
  });

  it('lets no SDK client connect without it, and every one connect with it', async () => {
    const bare = new ClientV2(CLIENT_INFO, { versionNegotiation: { mode: 'auto' } });
    await expect(bare.connect(new StreamableV2(new URL(`${base}/mcp/everything`)))).rejects.toThrow();
    await bare.close().catch(() => {});
    const bareV1 = new ClientV1(CLIENT_INFO);
    await expect(bareV1.connect(new StreamableV1(new URL(`${base}/mcp`)))).rejects.toThrow(/401|unauthori/i);
    await bareV1.close().catch(() => {});
    // With `Authorization: Bearer <token>` in requestInit headers (what every other test here does).
    const modern = await modernClient('/mcp');
    expect(await toolNames(modern)).toContain('everything__echo');
    const { client } = await streamableClient('/mcp/everything');
    expect(textOf(await callTool(client, 'echo', { message: 'authorized' }))).toBe('Echo: authorized');
  });
});

describe('worker restart mid-session', () => {
  it('a modern client simply makes its next call; a 2025 session ends with 404 and a fresh client re-initializes', async () => {
    const pid = await running('everything');
    const modern = await modernClient('/mcp/everything');
    expect(textOf(await callTool(modern, 'echo', { message: 'before' }))).toBe('Echo: before');
    const { client: legacy, transport } = await streamableClient('/mcp/everything');
    expect(textOf(await callTool(legacy, 'echo', { message: 'before' }))).toBe('Echo: before');
    const oldSession = transport.sessionId as string;
    // A 2025 session on the aggregated endpoint lives in the hub, not in the worker.
    const aggregated = await streamableClient('/mcp');
    expect(textOf(await callTool(aggregated.client, 'everything__echo', { message: 'before' }))).toBe('Echo: before');

    const restart = await api('POST', '/api/servers/everything/restart');
    expect(restart.status).toBe(202);
    const newPid = await running('everything', pid);
    expect(newPid).not.toBe(pid);

    // Stateless: the same modern client makes its next call, nothing to re-establish.
    expect(textOf(await callTool(modern, 'echo', { message: 'after' }))).toBe('Echo: after');

    // The 2025 session lived in the old worker: the hub passes on its 404.
    const stale = await rawPost(
      '/mcp/everything',
      JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
      { ...AUTH, 'mcp-session-id': oldSession, 'mcp-protocol-version': '2025-11-25' },
    );
    expect(stale.status).toBe(404);
    expect(JSON.parse(stale.text)).toMatchObject({ jsonrpc: '2.0', error: { code: -32_001 } });
    await expect(legacy.listTools()).rejects.toThrow(/404|not found/i);

    const fresh = await streamableClient('/mcp/everything');
    expect(fresh.transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(fresh.transport.sessionId).not.toBe(oldSession);
    expect(textOf(await callTool(fresh.client, 'echo', { message: 'again' }))).toBe('Echo: again');
    // The aggregated session outlives the worker: its next call reaches the new one.
    expect(textOf(await callTool(aggregated.client, 'everything__echo', { message: 'after' }))).toBe('Echo: after');
  });
});

describe('aggregated /mcp when a server goes away', () => {
  it('drops the deleted server’s tools and tells a connected 2025 client tools/list_changed', async () => {
    const { client, standaloneStream } = await streamableClient('/mcp');
    let notified = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      notified++;
    });
    const before = await toolNames(client);
    expect(before).toContain('memory__read_graph');
    expect(before).toContain('everything__echo');
    // The client hears notifications outside a request on its standalone GET stream.
    await standaloneStream;

    const deleted = await api('DELETE', '/api/servers/memory');
    expect(deleted.status).toBe(204);
    await waitFor('the 2025 client to hear tools/list_changed', () => notified > 0, 15_000);
    const after = await toolNames(client);
    expect(after.some((name) => name.startsWith('memory__'))).toBe(false);
    expect(after).toContain('everything__echo');
    const modern = await modernClient('/mcp');
    expect((await toolNames(modern)).some((name) => name.startsWith('memory__'))).toBe(false);
    // The per-server endpoint of the deleted server is gone as well.
    const gone = await rawPost('/mcp/memory', INITIALIZE, AUTH);
    expect(gone.status).toBe(404);
    expectHubError(gone.text, 'server_not_found');
  });
});
