/**
 * The worker's MCP endpoints, a smoke set through a whole worker (in-process, over HTTP, with the echo fixture
 * as its stdio server): each era and transport reaches the upstream once, a cancellation reaches it, its tool
 * changes reach every kind of client, and a restart ends the old sessions. The protocol details are tested in
 * milliseconds where they live: each era in packages/shared/test/mcp-front-eras.test.ts, the forwarding to the
 * upstream in mcp-bridge.test.ts.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectSlowCallCancelled, FIXTURE_STEP_MS, fixtureEventCounter } from '../../../test/echo-fixture.js';
import {
  callTool,
  callWithProgress,
  mcpClients,
  textOf,
  toolListChanges,
  toolNames,
} from '../../../test/mcp-clients.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { FIXTURES, registerServer, startTestWorker, WORKER_AUTH, waitFor } from './helpers.js';

const CLIENT_INFO = { name: 'mcp-endpoints-test', version: '1.0.0' };

const clients = mcpClients(CLIENT_INFO);
afterEach(() => clients.closeAll());

// Each carries the worker's credential, as the hub does.
const modernClient = (port: number, headers: Record<string, string> = {}) =>
  clients.modern(`http://127.0.0.1:${port}/mcp`, { ...WORKER_AUTH, ...headers });
const streamableClient = (port: number, headers: Record<string, string> = {}) =>
  clients.streamable(`http://127.0.0.1:${port}/mcp`, { ...WORKER_AUTH, ...headers });
const sseClient = (port: number) => clients.sse(`http://127.0.0.1:${port}/sse`, { ...WORKER_AUTH });

describe('MCP endpoints of a worker (echo fixture over stdio)', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  const eventsFile = join(tmpdir(), `mcp-endpoints-${process.pid}-${Date.now()}.jsonl`);
  let worker: Worker;
  let port: number;

  const count = fixtureEventCounter(eventsFile);

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

  it('serves a 2026-07-28 client (SDK v2): tools/list, echo, progress, logged under the request id; no session', async () => {
    const client = await modernClient(port, { 'x-request-id': 'req-mcp-modern' });
    expect(client.getProtocolEra()).toBe('modern');
    expect(await toolNames(client)).toEqual(expect.arrayContaining(['echo', 'progress']));
    expect(textOf(await callTool(client, 'echo', { message: 'modern' }))).toBe('modern');
    const run = await callWithProgress(client, 'progress', { steps: 3, intervalMs: FIXTURE_STEP_MS });
    expect(run.text).toBe('done in 3 steps');
    // The SDK may drop the last notification that races the result: at least the first ones arrive.
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
    // Tool calls log as on the REST path, under the request id the hub sends.
    expect(captured.lines.find((l) => l.event === 'tool.call.done' && l.request_id === 'req-mcp-modern')).toMatchObject(
      { tool: 'echo', status: 'ok' },
    );
    // Stateless: no session was opened.
    expect(captured.lines.filter((l) => l.event === 'mcp.session.open')).toHaveLength(0);
  });

  it('serves a 2025 Streamable HTTP client (SDK v1) with a session: tools/list, echo, logged under its request id', async () => {
    const { client, transport } = await streamableClient(port, { 'x-request-id': 'req-mcp-2025' });
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'v1' }))).toBe('v1');
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

  it('serves a legacy HTTP+SSE client (SDK v1): tools/list, echo', async () => {
    const client = await sseClient(port);
    expect(await toolNames(client)).toContain('echo');
    expect(textOf(await callTool(client, 'echo', { message: 'sse' }))).toBe('sse');
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
    expect(await res.json()).toMatchObject({ request_id: 'req-rest', content: [{ type: 'text', text: 'rest' }] });
  });

  it('cancels the upstream call when a 2026-07-28 client cancels', async () => {
    await expectSlowCallCancelled(await modernClient(port), 'slow', count);
    await waitFor('the call to end in the worker', () => worker.health().activeCalls === 0);
    expect(
      captured.lines.some((l) => l.event === 'tool.call.done' && l.tool === 'slow' && l.status === 'cancelled'),
    ).toBe(true);
  });

  it("tells a connected 2025 client, an SSE client and a modern listener that the upstream's tools changed", async () => {
    const { client, standaloneStream } = await streamableClient(port);
    const sse = await sseClient(port);
    const modern = await modernClient(port);
    const heard = { streamable: toolListChanges(client), sse: toolListChanges(sse), modern: toolListChanges(modern) };
    const subscription = await modern.listen({ toolsListChanged: true });
    // A 2025 client hears notifications outside a request on its standalone GET stream.
    await standaloneStream;
    await callTool(client, 'add-tool', { name: 'added-one' });
    await waitFor('the 2025 client to hear of the change', () => heard.streamable() > 0);
    await waitFor('the SSE client to hear of the change', () => heard.sse() > 0);
    await waitFor('the modern listener to hear of the change', () => heard.modern() > 0);
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
