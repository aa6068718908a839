import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WORKER_TOKEN_HEADER } from '@mcp-hub/shared';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runInspector } from '../../../test/inspector.js';
import {
  type AnyClient,
  allProgress,
  callTool,
  callWithProgress,
  mcpClients,
  textOf,
  toolNames,
} from '../../../test/mcp-clients.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import {
  EVERYTHING,
  FIXTURES,
  registerServer,
  startTestWorker,
  TEST_WORKER_TOKEN,
  WORKER_AUTH,
  waitFor,
} from './helpers.js';

const MEMORY = fileURLToPath(
  new URL('../../../node_modules/@modelcontextprotocol/server-memory/dist/index.js', import.meta.url),
);
const CLIENT_INFO = { name: 'mcp-endpoints-test', version: '1.0.0' };

const clients = mcpClients(CLIENT_INFO);
afterEach(() => clients.closeAll());

// Each carries the worker's credential, as the hub does.
const modernClient = (port: number, headers: Record<string, string> = {}) =>
  clients.modern(`http://127.0.0.1:${port}/mcp`, { ...WORKER_AUTH, ...headers });
const streamableClient = (port: number, headers: Record<string, string> = {}) =>
  clients.streamable(`http://127.0.0.1:${port}/mcp`, { ...WORKER_AUTH, ...headers });
const sseClient = (port: number) => clients.sse(`http://127.0.0.1:${port}/sse`, { ...WORKER_AUTH });
const INSPECTOR_AUTH = ['--header', `${WORKER_TOKEN_HEADER}: ${TEST_WORKER_TOKEN}`];

/** Reads SSE events from a response until one matches, then stops reading (the stream may stay open). */
async function readSseUntil(
  res: Response,
  done: (event: { id?: string; data: string }) => boolean,
): Promise<{ id?: string; data: string }[]> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const events: { id?: string; data: string }[] = [];
  let buffer = '';
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) return events;
    buffer += decoder.decode(value, { stream: true });
    let cut = buffer.indexOf('\n\n');
    while (cut >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      cut = buffer.indexOf('\n\n');
      const event: { id?: string; data: string } = { data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('id:')) event.id = line.slice(3).trim();
        else if (line.startsWith('data:')) event.data += line.slice(5).trim();
      }
      if (event.id === undefined && event.data === '') continue;
      events.push(event);
      if (done(event)) {
        await reader.cancel().catch(() => {});
        return events;
      }
    }
  }
}

describe('MCP endpoints: server-everything behind the worker', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  let worker: Worker;
  let port: number;

  beforeAll(async () => {
    await registerServer(t.redis, t.keys, {
      id: 'everything',
      transport: 'stdio',
      config: { command: process.execPath, args: [EVERYTHING, 'stdio'] },
    });
    port = await getPort();
    worker = await startTestWorker({ serverId: 'everything', prefix: t.prefix, port, log: captured.log });
    await worker.ready;
  });
  afterAll(async () => {
    await worker?.close();
    await t.cleanup();
  });

  it('serves a 2026-07-28 client (SDK v2): tools/list, echo, progress', async () => {
    const client = await modernClient(port, { 'x-request-id': 'req-mcp-modern' });
    expect(client.getProtocolEra()).toBe('modern');
    expect(await toolNames(client)).toEqual(expect.arrayContaining(['echo', 'trigger-long-running-operation']));
    expect(textOf(await callTool(client, 'echo', { message: 'modern' }))).toBe('Echo: modern');
    const run = await callWithProgress(client, 'trigger-long-running-operation', { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    // Every progress event arrives, the last one (which shares a read with the result) included.
    expect(run.progress).toEqual(allProgress(3));
    // Tool calls log as on the REST path, under the request id the hub sends.
    expect(captured.lines.find((l) => l.event === 'tool.call.done' && l.request_id === 'req-mcp-modern')).toMatchObject(
      { tool: 'echo', status: 'ok' },
    );
    // Stateless: no session was opened.
    expect(captured.lines.filter((l) => l.event === 'mcp.session.open')).toHaveLength(0);
  });

  it('serves a 2025 Streamable HTTP client (SDK v1) with a session: tools/list, echo, progress', async () => {
    const { client, transport } = await streamableClient(port, { 'x-request-id': 'req-mcp-2025' });
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'v1' }))).toBe('Echo: v1');
    const run = await callWithProgress(client, 'trigger-long-running-operation', { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    expect(run.progress).toEqual(allProgress(3));
    expect(captured.lines.find((l) => l.event === 'tool.call.done' && l.request_id === 'req-mcp-2025')).toMatchObject({
      tool: 'echo',
    });
    const sessionId = transport.sessionId;
    expect(captured.lines.find((l) => l.event === 'mcp.session.open' && l.session_id === sessionId)).toMatchObject({
      era: 'legacy',
      transport: 'streamable-http',
    });
    await transport.terminateSession();
    await waitFor('the session close to be logged', () =>
      captured.lines.some((l) => l.event === 'mcp.session.close' && l.session_id === sessionId),
    );
  });

  it('serves a legacy HTTP+SSE client (SDK v1): tools/list, echo, progress', async () => {
    const client = await sseClient(port);
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'sse' }))).toBe('Echo: sse');
    const run = await callWithProgress(client, 'trigger-long-running-operation', { duration: 0.6, steps: 3 });
    expect(run.text).toContain('Long running operation completed');
    expect(run.progress).toEqual(allProgress(3));
  });

  it('points the SSE endpoint event at x-mcp-messages-path, unbuffered', async () => {
    const controller = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/sse`, {
      headers: { ...WORKER_AUTH, accept: 'text/event-stream', 'x-mcp-messages-path': '/messages/everything' },
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    expect(text).toMatch(/^event: endpoint\ndata: \/messages\/everything\?sessionId=[0-9a-f-]{36}\n\n/);
  });

  it('keeps two concurrent clients apart: each gets its own result and progress', async () => {
    const [a, b] = await Promise.all([streamableClient(port), modernClient(port)]);
    const [runA, runB, echoA, echoB] = await Promise.all([
      callWithProgress(a.client, 'trigger-long-running-operation', { duration: 0.8, steps: 4 }),
      callWithProgress(b, 'trigger-long-running-operation', { duration: 0.6, steps: 2 }),
      callTool(a.client, 'echo', { message: 'from a' }),
      callTool(b, 'echo', { message: 'from b' }),
    ]);
    expect(runA.text).toContain('Steps: 4');
    expect(runB.text).toContain('Steps: 2');
    expect(runA.progress).toEqual(allProgress(4));
    expect(runB.progress).toEqual(allProgress(2));
    expect(textOf(echoA)).toBe('Echo: from a');
    expect(textOf(echoB)).toBe('Echo: from b');
  });

  it('answers 404 to an unknown session and 400 to a request without one', async () => {
    const headers = {
      ...WORKER_AUTH,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    const unknown = await fetch(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': 'no-such-session' },
      body,
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32_001 } });
    const missing = await fetch(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers, body });
    expect(missing.status).toBe(400);
    const messages = await fetch(`http://127.0.0.1:${port}/messages?sessionId=nope`, {
      method: 'POST',
      headers,
      body,
    });
    expect(messages.status).toBe(404);
  });

  it('keeps the REST call path unchanged next to the MCP endpoints', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/tools/echo`, {
      method: 'POST',
      headers: {
        ...WORKER_AUTH,
        'content-type': 'application/json',
        accept: 'application/json',
        'x-request-id': 'req-rest',
      },
      body: JSON.stringify({ message: 'rest' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ request_id: 'req-rest', content: [{ type: 'text', text: 'Echo: rest' }] });
  });

  it('works with the MCP Inspector CLI over Streamable HTTP and SSE', async () => {
    const list = await runInspector(`http://127.0.0.1:${port}/mcp`, 'http', 'tools/list', INSPECTOR_AUTH);
    expect(list.code, list.stderr).toBe(0);
    expect((list.json as { tools: { name: string }[] }).tools.map((tool) => tool.name)).toContain('echo');
    const call = await runInspector(`http://127.0.0.1:${port}/mcp`, 'http', 'tools/call', [
      ...INSPECTOR_AUTH,
      '--tool-name',
      'echo',
      '--tool-arg',
      'message=inspector',
    ]);
    expect(call.code, call.stderr).toBe(0);
    expect(textOf(call.json)).toBe('Echo: inspector');
    const sse = await runInspector(`http://127.0.0.1:${port}/sse`, 'sse', 'tools/list', INSPECTOR_AUTH);
    expect(sse.code, sse.stderr).toBe(0);
    expect((sse.json as { tools: { name: string }[] }).tools.map((tool) => tool.name)).toContain('echo');
  });

  it('forwards resources and prompts of an upstream that has them', async () => {
    const client = await modernClient(port);
    expect(client.getServerCapabilities()).toMatchObject({ tools: {}, resources: {}, prompts: {} });
    const { prompts } = await client.listPrompts();
    expect(prompts.length).toBeGreaterThan(0);
    const { resources } = await client.listResources();
    expect(resources.length).toBeGreaterThan(0);
    const first = resources[0] as { uri: string };
    const read = await client.readResource({ uri: first.uri });
    expect(read.contents[0]).toMatchObject({ uri: first.uri });
  });
});

describe('MCP endpoints: cancellation, list_changed and restarts (fixture server)', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  const eventsFile = join(tmpdir(), `mcp-endpoints-${process.pid}-${Date.now()}.jsonl`);
  let worker: Worker;
  let port: number;

  const fixtureEvents = (): { event: string; tool: string }[] => {
    try {
      return readFileSync(eventsFile, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as { event: string; tool: string });
    } catch {
      return [];
    }
  };
  const count = (event: string) => fixtureEvents().filter((e) => e.event === event).length;

  const start = async () => {
    worker = await startTestWorker({ serverId: 'fixture', prefix: t.prefix, port, log: captured.log });
    await worker.ready;
  };

  beforeAll(async () => {
    await registerServer(t.redis, t.keys, {
      id: 'fixture',
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.echo], env: { FIXTURE_EVENTS_FILE: eventsFile } },
    });
    port = await getPort();
    await start();
  });
  afterAll(async () => {
    await worker?.close();
    await t.cleanup();
    rmSync(eventsFile, { force: true });
  });

  async function expectCancelled(client: AnyClient): Promise<void> {
    const cancelledBefore = count('cancelled');
    const startedBefore = count('started');
    const controller = new AbortController();
    const call = callTool(client, 'slow', { ms: 5_000 }, controller.signal);
    await waitFor('the call to start upstream', () => count('started') > startedBefore);
    controller.abort();
    await expect(call).rejects.toThrow();
    // The fixture records a cancellation only when notifications/cancelled reaches it before the 5 s are up.
    await waitFor('the fixture to see the cancellation', () => count('cancelled') > cancelledBefore);
    await waitFor('the call to end in the worker', () => worker.health().activeCalls === 0);
  }

  it('cancels the upstream call when a 2026-07-28 client cancels', async () => {
    await expectCancelled(await modernClient(port));
    expect(
      captured.lines.some((l) => l.event === 'tool.call.done' && l.tool === 'slow' && l.status === 'cancelled'),
    ).toBe(true);
  });

  it('cancels the upstream call when a 2025 Streamable HTTP client cancels', async () => {
    await expectCancelled((await streamableClient(port)).client);
  });

  it('cancels the upstream call when a legacy SSE client cancels', async () => {
    await expectCancelled(await sseClient(port));
  });

  it('cancels the upstream call when a 2026-07-28 client goes away mid-call', async () => {
    const cancelledBefore = count('cancelled');
    const startedBefore = count('started');
    const controller = new AbortController();
    const body = {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: {
        name: 'slow',
        arguments: { ms: 5_000 },
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    };
    const pending = fetch(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: {
        ...WORKER_AUTH,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'slow',
      },
      body: JSON.stringify(body),
      signal: controller.signal,
    }).catch(() => undefined);
    await waitFor('the call to start upstream', () => count('started') > startedBefore);
    controller.abort();
    await pending;
    await waitFor('the fixture to see the cancellation', () => count('cancelled') > cancelledBefore);
  });

  it('lets a 2025 client resume a broken stream with Last-Event-ID, and answers 202 to notifications', async () => {
    const url = `http://127.0.0.1:${port}/mcp`;
    const json = { ...WORKER_AUTH, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const init = await fetch(url, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: CLIENT_INFO },
      }),
    });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') as string;
    await init.text();
    const session = { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' };
    const initialized = await fetch(url, {
      method: 'POST',
      headers: { ...json, ...session },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    expect(initialized.status).toBe(202);

    const broken = new AbortController();
    const call = await fetch(url, {
      method: 'POST',
      headers: { ...json, ...session },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'progress', arguments: { steps: 4, intervalMs: 150 }, _meta: { progressToken: 'tok' } },
      }),
      signal: broken.signal,
    });
    expect(call.headers.get('content-type')).toContain('text/event-stream');
    expect(call.headers.get('x-accel-buffering')).toBe('no');
    const first = await readSseUntil(call, (e) => e.data.includes('notifications/progress'));
    broken.abort();
    const lastEventId = first.at(-1)?.id as string;
    expect(lastEventId).toBeTruthy();
    expect(JSON.parse(first.at(-1)?.data as string)).toMatchObject({ params: { progressToken: 'tok', progress: 1 } });

    await new Promise((resolve) => setTimeout(resolve, 900));
    const resumed = await fetch(url, {
      headers: { ...WORKER_AUTH, accept: 'text/event-stream', ...session, 'last-event-id': lastEventId },
      signal: AbortSignal.timeout(5_000),
    });
    expect(resumed.status).toBe(200);
    const replayed = await readSseUntil(resumed, (e) => e.data.includes('"id":2'));
    const messages = replayed.filter((e) => e.data !== '').map((e) => JSON.parse(e.data) as Record<string, unknown>);
    const progress = messages.filter((m) => m.method === 'notifications/progress');
    // Exactly what came after the last event seen, the last progress included.
    const steps = progress.map((m) => (m.params as { progress: number }).progress);
    expect(steps).toEqual([2, 3, 4]);
    expect(textOf(messages.at(-1)?.result)).toBe('done in 4 steps');
    await fetch(url, { method: 'DELETE', headers: { ...WORKER_AUTH, ...session } });
  });

  it('tells a connected 2025 client, an SSE client and a modern listener that the tools changed', async () => {
    const { client } = await streamableClient(port);
    const sse = await sseClient(port);
    const modern = await modernClient(port);
    let streamableSaw = 0;
    let sseSaw = 0;
    let modernSaw = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      streamableSaw++;
    });
    sse.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      sseSaw++;
    });
    modern.setNotificationHandler('notifications/tools/list_changed', () => {
      modernSaw++;
    });
    const subscription = await modern.listen({ toolsListChanged: true });
    // Give the 2025 client's standalone GET stream a moment to open.
    await waitFor('the standalone stream', () => worker.health().upstream === 'connected');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await callTool(client, 'add-tool', { name: 'added-one' });
    await waitFor('the 2025 client to hear of the change', () => streamableSaw > 0);
    await waitFor('the SSE client to hear of the change', () => sseSaw > 0);
    await waitFor('the modern listener to hear of the change', () => modernSaw > 0);
    expect(await toolNames(client)).toContain('added-one');
    await subscription.close();
  });

  it('answers 404 to a 2025 session of a previous worker; a fresh client connects cleanly', async () => {
    const { client, transport } = await streamableClient(port);
    expect(await toolNames(client)).toContain('echo');
    const oldSession = transport.sessionId as string;
    await worker.close();
    await start();
    const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: {
        ...WORKER_AUTH,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': oldSession,
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
    });
    expect(res.status).toBe(404);
    await expect(client.listTools()).rejects.toThrow(/404|not found/i);
    const fresh = await streamableClient(port);
    expect(fresh.transport.sessionId).not.toBe(oldSession);
    expect(textOf(await callTool(fresh.client, 'echo', { message: 'again' }))).toBe('again');
  });
});

describe('MCP endpoints: server-memory', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  const memoryFile = join(tmpdir(), `mcp-endpoints-memory-${process.pid}-${Date.now()}.jsonl`);
  let worker: Worker;
  let port: number;

  beforeAll(async () => {
    await registerServer(t.redis, t.keys, {
      id: 'memory',
      transport: 'stdio',
      config: { command: process.execPath, args: [MEMORY], env: { MEMORY_FILE_PATH: memoryFile } },
    });
    port = await getPort();
    worker = await startTestWorker({ serverId: 'memory', prefix: t.prefix, port, log: captured.log });
    await worker.ready;
  });
  afterAll(async () => {
    await worker?.close();
    await t.cleanup();
    rmSync(memoryFile, { force: true });
  });

  it('mirrors the upstream capabilities (resources, no prompts) and shares its state across eras', async () => {
    const modern = await modernClient(port);
    expect(modern.getServerCapabilities()?.resources).toBeDefined();
    expect(modern.getServerCapabilities()?.prompts).toBeUndefined();
    await callTool(modern, 'create_entities', {
      entities: [{ name: 'hub', entityType: 'project', observations: ['fronts MCP servers'] }],
    });
    const { client } = await streamableClient(port);
    const graph = await callTool(client, 'read_graph', {});
    expect(textOf(graph)).toContain('fronts MCP servers');
    const read = await client.readResource({ uri: 'memory://knowledge-graph' });
    expect(JSON.stringify(read.contents)).toContain('fronts MCP servers');
  });
});
