import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/server';
import { afterEach, describe, expect, it } from 'vitest';
import { mcpClients } from '../../../../test/mcp-clients.js';
import { waitFor } from '../../../../test/processes.js';
import { captureLogger } from '../../../../test/support.js';
import { BoundedEventStore } from './event-store.js';
import { createMcpFront, type McpFront, type McpServerContext } from './mcp-front.js';

function pingServer(made: McpServerContext[]) {
  return (ctx: McpServerContext) => {
    made.push(ctx);
    const server = new Server({ name: 'front-test', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler('tools/list', async () => ({ tools: [] }));
    return server;
  };
}

async function serve(front: McpFront): Promise<{ http: HttpServer; url: string }> {
  const http = createServer((req, res) => {
    if (req.url?.startsWith('/mcp')) void front.handleMcp(req, res);
    else if (req.url?.startsWith('/sse')) void front.handleSse(req, res, '/messages');
    else void front.handleMessages(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return { http, url: `http://127.0.0.1:${(http.address() as AddressInfo).port}` };
}

describe('createMcpFront', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });

  it('caps open sessions, per caller (429) and in all (503)', async () => {
    const front = createMcpFront({
      serverFactory: pingServer([]),
      log: captureLogger('worker').log,
      keepAliveMs: 1_000,
      maxSessions: 3,
      maxSessionsPerCaller: 2,
    });
    const http = createServer((req, res) => void front.handleMcp(req, res, undefined, req.headers['x-caller']));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () => new Promise((resolve) => http.close(resolve)),
      () => front.close(),
    );
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    const initialize = async (caller: string) => {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'x-caller': caller,
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: caller, version: '1' } },
        }),
      });
      await res.text();
      return res.status;
    };
    expect([await initialize('a'), await initialize('a'), await initialize('a')]).toEqual([200, 200, 429]);
    expect(await initialize('b')).toBe(200);
    expect(await initialize('c')).toBe(503);
    expect(front.sessionCount()).toBe(3);
  });

  it('drops a 2025 session idle past sessionIdleTtlMs (404 then), but not one holding a stream open', async () => {
    const captured = captureLogger('worker');
    const made: McpServerContext[] = [];
    const front = createMcpFront({
      serverFactory: pingServer(made),
      log: captured.log,
      keepAliveMs: 1_000,
      // Long enough that neither session can be idle before the counts below, on a loaded host too (a sweep runs
      // every second).
      sessionIdleTtlMs: 1_500,
    });
    const { http, url } = await serve(front);
    cleanups.push(
      () => new Promise((resolve) => http.close(resolve)),
      () => front.close(),
    );
    // A client whose standalone GET stream stays open is busy, however long it is quiet.
    const clients = mcpClients({ name: 't', version: '1' });
    const { client, standaloneStream } = await clients.streamable(`${url}/mcp`);
    cleanups.push(() => clients.closeAll());
    await standaloneStream;
    // A bare session that opened no stream.
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const init = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    });
    const idle = init.headers.get('mcp-session-id') as string;
    await init.text();
    expect(front.sessionCount()).toBe(2);
    expect(made).toEqual([{ era: 'legacy' }, { era: 'legacy' }]);
    await waitFor('the idle session to be dropped', () => front.sessionCount() === 1, 5_000);
    expect(captured.lines.find((l) => l.event === 'mcp.session.close')).toMatchObject({
      session_id: idle,
      reason: 'idle',
      era: 'legacy',
    });
    const res = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': idle, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(res.status).toBe(404);
    expect((await client.listTools()).tools).toEqual([]);
  });

  it('close() ends every session and answers 503 afterwards', async () => {
    const captured = captureLogger('worker');
    const front = createMcpFront({ serverFactory: pingServer([]), log: captured.log, keepAliveMs: 1_000 });
    const { http, url } = await serve(front);
    cleanups.push(() => new Promise((resolve) => http.close(resolve)));
    const client = new Client({ name: 't', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`)));
    cleanups.push(() => client.close());
    expect(front.sessionCount()).toBe(1);
    await front.close();
    expect(front.sessionCount()).toBe(0);
    expect(captured.lines.find((l) => l.event === 'mcp.session.close')).toMatchObject({ reason: 'shutdown' });
    const res = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(503);
  });
});

describe('BoundedEventStore', () => {
  it('keeps the newest events and replays only those after the given one, on its stream', async () => {
    const store = new BoundedEventStore(3);
    const message = (n: number) => ({ jsonrpc: '2.0' as const, method: 'notifications/message', params: { n } });
    const a1 = await store.storeEvent('a', message(1));
    await store.storeEvent('b', message(2));
    const a3 = await store.storeEvent('a', message(3));
    await store.storeEvent('a', message(4));
    expect(store.size).toBe(3);
    expect(await store.getStreamIdForEventId(a1)).toBeUndefined();
    const replayed: unknown[] = [];
    const stream = await store.replayEventsAfter(a3, { send: async (_id, m) => void replayed.push(m) });
    expect(stream).toBe('a');
    expect(replayed).toEqual([message(4)]);
  });
});
