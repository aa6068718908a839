/**
 * What the MCP front does for each protocol era, in-process and in milliseconds: the front's handlers on an HTTP
 * server of this process, in front of the echo fixture server (test/fixtures/echo-server.mjs) served in-process,
 * driven by the SDK's clients of every era and by the MCP Inspector CLI. The worker's and the hub's process
 * tests (`mcp-endpoints.test.ts`) keep a smoke set that reaches real workers; the bridge and the aggregator
 * have tests of their own.
 */
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectClientsKeptApart, expectSlowCallCancelled, FIXTURE_STEP_MS } from '../../../test/echo-fixture.js';
import { createEchoServer, type FixtureEvent } from '../../../test/fixtures/echo-server.mjs';
import { runInspector } from '../../../test/inspector.js';
import {
  callTool,
  callWithProgress,
  mcpClients,
  textOf,
  toolListChanges,
  toolNames,
} from '../../../test/mcp-clients.js';
import { waitFor } from '../../../test/processes.js';
import { openSession, pingSession } from '../../../test/raw-mcp.js';
import { readSseUntil } from '../../../test/sse.js';
import { captureLogger } from '../../../test/support.js';
import { createMcpFront, type McpFront, type McpServerContext } from '../src/mcp-front/index.js';

const CLIENT_INFO = { name: 'mcp-front-eras-test', version: '1.0.0' };
const UUID = /^[0-9a-f-]{36}$/;
const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

const captured = captureLogger('worker');
/** The context of every server instance the front made, in order. */
const made: McpServerContext[] = [];
/** What the fixture servers reported (`slow` started, cancelled, finished; `progress` sent). */
const events: FixtureEvent[] = [];
const count = (tool: string, event: string) => events.filter((e) => e.tool === tool && e.event === event).length;

let front: McpFront;
let http: HttpServer;
let url: string;

const clients = mcpClients(CLIENT_INFO);
afterEach(() => clients.closeAll());

beforeAll(async () => {
  front = createMcpFront({
    serverFactory: (ctx) => {
      made.push(ctx);
      return createEchoServer({ onEvent: (event) => events.push(event) });
    },
    log: captured.log,
    keepAliveMs: 1_000,
  });
  // The caller (`auth`) is whatever `x-caller` says, so a test can present a session as someone else.
  http = createServer((req, res) => {
    const auth = req.headers['x-caller'];
    if (req.url?.startsWith('/mcp')) void front.handleMcp(req, res, undefined, auth);
    else if (req.url?.startsWith('/sse')) void front.handleSse(req, res, '/messages', auth);
    else void front.handleMessages(req, res, undefined, auth);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await clients.closeAll();
  await front.close();
  // The clients' idle keep-alive connections would hold close() for seconds.
  http.closeAllConnections();
  await new Promise((resolve) => http.close(resolve));
});

describe('each era, served from one server factory', () => {
  it('serves a 2026-07-28 client (SDK v2) statelessly: tools/list, echo, progress; each instance knows its request', async () => {
    const client = await clients.modern(`${url}/mcp`, { 'x-request-id': 'req-front-modern', 'x-caller': 'alice' });
    expect(client.getProtocolEra()).toBe('modern');
    expect(await toolNames(client)).toEqual(expect.arrayContaining(['echo', 'progress', 'slow']));
    expect(textOf(await callTool(client, 'echo', { message: 'modern' }))).toBe('modern');
    const run = await callWithProgress(client, 'progress', { steps: 3, intervalMs: FIXTURE_STEP_MS });
    expect(run.text).toBe('done in 3 steps');
    // The SDK may drop the last notification that races the result: at least the first ones arrive.
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
    // Stateless: no session was opened, and every request had an instance of its own, told its id and caller.
    expect(front.sessionCount()).toBe(0);
    expect(captured.lines.filter((l) => l.event === 'mcp.session.open')).toHaveLength(0);
    const mine = made.filter((ctx) => ctx.requestId === 'req-front-modern');
    expect(mine.length).toBeGreaterThanOrEqual(3);
    expect(new Set(mine.map((ctx) => `${ctx.era}:${String(ctx.auth)}`))).toEqual(new Set(['modern:alice']));
  });

  it('serves a 2025 Streamable HTTP client (SDK v1) with a session: one instance for it, open and close logged', async () => {
    const before = made.length;
    const { client, transport } = await clients.streamable(`${url}/mcp`, { 'x-request-id': 'req-front-2025' });
    expect(transport.sessionId).toMatch(UUID);
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'v1' }))).toBe('v1');
    const run = await callWithProgress(client, 'progress', { steps: 3, intervalMs: FIXTURE_STEP_MS });
    expect(run.text).toBe('done in 3 steps');
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
    // The session's instance was made once, for its `initialize`, with that request's id.
    expect(made.slice(before)).toEqual([{ era: 'legacy', requestId: 'req-front-2025', auth: undefined }]);
    const sessionId = transport.sessionId;
    expect(captured.lines.find((l) => l.event === 'mcp.session.open' && l.session_id === sessionId)).toMatchObject({
      era: 'legacy',
      transport: 'streamable-http',
    });
    expect(front.sessionCount()).toBe(1);
    await transport.terminateSession();
    await waitFor('the session close to be logged', () =>
      captured.lines.some((l) => l.event === 'mcp.session.close' && l.session_id === sessionId),
    );
    expect(front.sessionCount()).toBe(0);
  });

  it('serves a legacy HTTP+SSE client (SDK v1): tools/list, echo, progress', async () => {
    const client = await clients.sse(`${url}/sse`);
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'sse' }))).toBe('sse');
    const run = await callWithProgress(client, 'progress', { steps: 3, intervalMs: FIXTURE_STEP_MS });
    expect(run.text).toBe('done in 3 steps');
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(captured.lines.some((l) => l.event === 'mcp.session.open' && l.transport === 'sse')).toBe(true);
  });

  it('points the SSE endpoint event at the messages path it was given, unbuffered', async () => {
    const controller = new AbortController();
    const res = await fetch(`${url}/sse`, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    expect(text).toMatch(/^event: endpoint\ndata: \/messages\?sessionId=[0-9a-f-]{36}\n\n/);
  });

  it('keeps two concurrent clients apart: each gets its own results and progress', async () => {
    const [a, b] = await Promise.all([clients.streamable(`${url}/mcp`), clients.modern(`${url}/mcp`)]);
    await expectClientsKeptApart(a.client, b, FIXTURE_STEP_MS);
  });

  it('works with the MCP Inspector CLI over Streamable HTTP and SSE', async () => {
    const [list, call, sse] = await Promise.all([
      runInspector(`${url}/mcp`, 'http', 'tools/list'),
      runInspector(`${url}/mcp`, 'http', 'tools/call', ['--tool-name', 'echo', '--tool-arg', 'message=inspector']),
      runInspector(`${url}/sse`, 'sse', 'tools/list'),
    ]);
    expect(list.code, list.stderr).toBe(0);
    expect((list.json as { tools: { name: string }[] }).tools.map((tool) => tool.name)).toContain('echo');
    expect(call.code, call.stderr).toBe(0);
    expect(textOf(call.json)).toBe('inspector');
    expect(sse.code, sse.stderr).toBe(0);
    expect((sse.json as { tools: { name: string }[] }).tools.map((tool) => tool.name)).toContain('echo');
  });
});

describe('sessions', () => {
  it('answers 404 to an unknown session and 400 to a request without one (Streamable HTTP and SSE messages)', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    const unknown = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, 'mcp-session-id': 'no-such-session', 'mcp-protocol-version': '2025-11-25' },
      body,
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32_001 } });
    const missing = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, 'mcp-protocol-version': '2025-11-25' },
      body,
    });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32_000 } });
    const messages = await fetch(`${url}/messages?sessionId=nope`, { method: 'POST', headers: JSON_HEADERS, body });
    expect(messages.status).toBe(404);
    const noId = await fetch(`${url}/messages`, { method: 'POST', headers: JSON_HEADERS, body });
    expect(noId.status).toBe(400);
  });

  it('answers 404 to a session presented by another caller, as if it did not exist', async () => {
    const session = await openSession(`${url}/mcp`, { 'x-caller': 'alice' });
    expect(await pingSession(`${url}/mcp`, session, { 'x-caller': 'mallory' })).toBe(404);
    expect(await pingSession(`${url}/mcp`, session, { 'x-caller': 'alice' })).toBe(200);
    await fetch(`${url}/mcp`, { method: 'DELETE', headers: { 'x-caller': 'alice', 'mcp-session-id': session } });
  });

  it('lets a 2025 client resume a broken stream with Last-Event-ID, and answers 202 to notifications', async () => {
    const init = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: JSON_HEADERS,
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
    const initialized = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...session },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    expect(initialized.status).toBe(202);

    const sentBefore = count('progress', 'sent');
    const broken = new AbortController();
    const call = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...session },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: {
          name: 'progress',
          arguments: { steps: 4, intervalMs: FIXTURE_STEP_MS },
          _meta: { progressToken: 'tok' },
        },
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

    // The rest of the call happens while the client is away; the session's event store keeps it.
    await waitFor('the tool to send all its progress', () => count('progress', 'sent') > sentBefore);
    const resumed = await fetch(`${url}/mcp`, {
      headers: { accept: 'text/event-stream', ...session, 'last-event-id': lastEventId },
      signal: AbortSignal.timeout(5_000),
    });
    expect(resumed.status).toBe(200);
    const replayed = await readSseUntil(resumed, (e) => e.data.includes('"id":2'));
    const messages = replayed.filter((e) => e.data !== '').map((e) => JSON.parse(e.data) as Record<string, unknown>);
    const progress = messages.filter((m) => m.method === 'notifications/progress');
    // Only what came after the last event seen; the SDK may drop the last progress that races the result.
    const steps = progress.map((m) => (m.params as { progress: number }).progress);
    expect(steps.slice(0, 2)).toEqual([2, 3]);
    expect(textOf(messages.at(-1)?.result)).toBe('done in 4 steps');
    await fetch(`${url}/mcp`, { method: 'DELETE', headers: session });
  });
});

describe('cancellation', () => {
  const slowEvents = (event: string) => count('slow', event);

  it('cancels the call when a 2026-07-28 client cancels', async () => {
    await expectSlowCallCancelled(await clients.modern(`${url}/mcp`), 'slow', slowEvents);
  });

  it('cancels the call when a 2025 Streamable HTTP client cancels', async () => {
    await expectSlowCallCancelled((await clients.streamable(`${url}/mcp`)).client, 'slow', slowEvents);
  });

  it('cancels the call when a legacy SSE client cancels', async () => {
    await expectSlowCallCancelled(await clients.sse(`${url}/sse`), 'slow', slowEvents);
  });

  it('cancels the call when a 2026-07-28 client goes away mid-call', async () => {
    const startedBefore = count('slow', 'started');
    const cancelledBefore = count('slow', 'cancelled');
    const controller = new AbortController();
    const pending = fetch(`${url}/mcp`, {
      method: 'POST',
      headers: {
        ...JSON_HEADERS,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'slow',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: {
          name: 'slow',
          arguments: { ms: 20_000 },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
            'io.modelcontextprotocol/clientCapabilities': {},
          },
        },
      }),
      signal: controller.signal,
    }).catch(() => undefined);
    await waitFor('the call to start', () => count('slow', 'started') > startedBefore);
    controller.abort();
    await pending;
    await waitFor('the server to see the cancellation', () => count('slow', 'cancelled') > cancelledBefore);
  });
});

describe('list changes', () => {
  it('tells a connected 2025 client, an SSE client and a modern listener that the tools changed', async () => {
    const { client, standaloneStream } = await clients.streamable(`${url}/mcp`);
    const sse = await clients.sse(`${url}/sse`);
    const modern = await clients.modern(`${url}/mcp`);
    const heard = { streamable: toolListChanges(client), sse: toolListChanges(sse), modern: toolListChanges(modern) };
    const subscription = await modern.listen({ toolsListChanged: true });
    // A 2025 client hears notifications outside a request on its standalone GET stream.
    await standaloneStream;
    front.toolsChanged();
    await waitFor('the 2025 client to hear of the change', () => heard.streamable() > 0);
    await waitFor('the SSE client to hear of the change', () => heard.sse() > 0);
    await waitFor('the modern listener to hear of the change', () => heard.modern() > 0);
    await subscription.close();
  });
});
