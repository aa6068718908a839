import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { drained } from '@mcp-hub/shared';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { callJson, registerServer, startTestWorker, WORKER_AUTH, waitFor } from './helpers.js';

// A hostile remote MCP server (Streamable HTTP, 2025 era, written by hand so it can misbehave at the byte level):
// answers that never end, a gzip bomb, an SSE event that never ends, and a stream that goes on after a cancel.
const LIMIT = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'a');
const BOMB_BYTES = 100 * 1024 * 1024;
const FLOOD_EVENTS = 8_000;

interface Stream {
  tool: string;
  written: number;
  closed: Promise<void>;
}

const t = testRedis();
const workers: Worker[] = [];
const streams: Stream[] = [];
let upstream: Server;
let upstreamUrl: string;
let bomb: Buffer;

const TOOLS = ['endless-json', 'gzip-bomb', 'endless-sse-event', 'endless-progress', 'progress-flood', 'small'].map(
  (name) => ({
    name,
    inputSchema: { type: 'object' },
  }),
);

/** Writes `chunk` until the client hangs up, honouring backpressure; counts what it wrote. */
async function writeForever(res: ServerResponse, stream: Stream, chunk: Buffer): Promise<void> {
  while (!res.destroyed && !res.writableEnded) {
    stream.written += chunk.length;
    if (!res.write(chunk)) await drained(res);
  }
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST') {
    res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
    return;
  }
  let text = '';
  for await (const part of req) text += part;
  const msg = JSON.parse(text) as {
    id?: number;
    method: string;
    params?: { name?: string; protocolVersion?: string; _meta?: { progressToken?: string | number } };
  };
  if (msg.id === undefined) {
    res.writeHead(202).end();
    return;
  }
  const answer = (result: unknown): void => {
    res
      .writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'hostile' })
      .end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
  };
  if (msg.method === 'initialize') {
    return answer({
      protocolVersion: msg.params?.protocolVersion ?? '2025-06-18',
      capabilities: { tools: {} },
      serverInfo: { name: 'hostile', version: '1' },
    });
  }
  if (msg.method === 'tools/list') return answer({ tools: TOOLS });
  if (msg.method === 'ping') return answer({});
  if (msg.method !== 'tools/call') {
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'no such method' } }));
    return;
  }
  const tool = String(msg.params?.name);
  if (tool === 'small') return answer({ content: [{ type: 'text', text: 'fine' }] });
  const stream: Stream = { tool, written: 0, closed: once(res, 'close').then(() => {}) };
  streams.push(stream);
  if (tool === 'endless-json') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`{"jsonrpc":"2.0","id":${msg.id},"result":{"content":[{"type":"text","text":"`);
    return writeForever(res, stream, CHUNK);
  }
  if (tool === 'gzip-bomb') {
    stream.written = bomb.length;
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(bomb);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  if (tool === 'endless-sse-event') {
    res.write(`event: message\ndata: {"jsonrpc":"2.0","id":${msg.id},"result":{"content":[{"type":"text","text":"`);
    return writeForever(res, stream, CHUNK);
  }
  if (tool === 'progress-flood') {
    // Progress faster than anyone reads: a few huge messages, then many ordinary ones, then the answer.
    const token = msg.params?._meta?.progressToken;
    const note = (i: number, message: string) =>
      `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: i, message } })}\n\n`;
    for (let i = 1; i <= 3; i++) {
      stream.written += 1;
      if (!res.write(note(i, 'x'.repeat(LIMIT - 1024)))) await drained(res);
    }
    for (let i = 4; i <= FLOOD_EVENTS; i++) {
      stream.written += 1;
      if (!res.write(note(i, 'y'.repeat(4_000)))) await drained(res);
    }
    const result = { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'done' }] } };
    res.end(`event: message\ndata: ${JSON.stringify(result)}\n\n`);
    return;
  }
  // endless-progress: a long call that keeps streaming progress and never answers.
  const token = msg.params?._meta?.progressToken;
  let progress = 0;
  while (!res.destroyed) {
    const note = {
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { progressToken: token, progress: ++progress },
    };
    stream.written += 1;
    res.write(`event: message\ndata: ${JSON.stringify(note)}\n\n`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  // 100 MiB of the same character inside a JSON string: ~100 KB gzipped.
  const head = Buffer.from('{"jsonrpc":"2.0","id":0,"result":{"content":[{"type":"text","text":"');
  bomb = gzipSync(Buffer.concat([head, Buffer.alloc(BOMB_BYTES, 'a'), Buffer.from('"}]}}')]));
  upstream = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`;
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()));
  streams.splice(0);
});
afterAll(async () => {
  upstream.closeAllConnections();
  upstream.close();
  await t.cleanup();
});

async function startHostileWorker(id: string) {
  await registerServer(t.redis, t.keys, { id, transport: 'streamable-http', config: { url: upstreamUrl } });
  const port = await getPort();
  const logs = captureLogger('worker');
  const worker = await startTestWorker({
    serverId: id,
    prefix: t.prefix,
    port,
    log: logs.log,
    env: { MCP_UPSTREAM_MAX_MESSAGE_BYTES: String(LIMIT) },
  });
  workers.push(worker);
  await waitFor('the worker to list the hostile tools', async () => (await callJson(port, 'small', {})).status === 200);
  return { port, logs };
}

// Finding 7 of issue 10: one 200 MB result pushed the worker to 1.1 GB, a 102 KB gzip answer became 100 MB, and a
// cancelled call left the upstream streaming into the worker. Each answer below is unbounded or endless, so without
// the limit the call would never end (or the worker would hold the whole thing); the test can only pass if the worker
// stops reading at the limit and fails the call at once.
describe('a remote upstream cannot make the worker hold more than MCP_UPSTREAM_MAX_MESSAGE_BYTES', () => {
  it.each([
    ['endless-json', 'a JSON answer that never ends'],
    ['endless-sse-event', 'an SSE event that never ends'],
  ])('%s (%s): the call fails naming the limit, and the worker hangs up', async (tool) => {
    const { port, logs } = await startHostileWorker(`hostile-${tool}`);
    const res = await callJson(port, tool, {});
    expect(res.status).toBe(502);
    expect(JSON.stringify(res.body)).toMatch(/larger than 1048576 bytes/);
    const stream = streams.find((s) => s.tool === tool);
    await stream?.closed;
    // What the upstream managed to write before the worker hung up: the limit plus what sockets buffer.
    expect(stream?.written).toBeLessThan(LIMIT + 8 * 1024 * 1024);
    expect(logs.lines.some((l) => l.event === 'upstream.message_too_large')).toBe(true);
    // The session survives: the next call works.
    expect((await callJson(port, 'small', {})).status).toBe(200);
  });

  it('gzip-bomb: a 100 KB gzip answer is cut at the limit after decompression', async () => {
    expect(bomb.length).toBeLessThan(LIMIT);
    const { port } = await startHostileWorker('hostile-gzip');
    const res = await callJson(port, 'gzip-bomb', {});
    expect(res.status).toBe(502);
    expect(JSON.stringify(res.body)).toMatch(/larger than 1048576 bytes/);
  });

  it('progress an upstream sends faster than the client reads is cut short and dropped, never the result', async () => {
    const { port, logs } = await startHostileWorker('hostile-flood');
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`http://127.0.0.1:${port}/tools/progress-flood`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...WORKER_AUTH },
      });
      req.once('response', resolve);
      req.once('error', reject);
      req.end('{}');
    });
    // Read nothing until the upstream has sent everything: ~32 MB of progress would otherwise wait in the worker.
    res.pause();
    await waitFor('the upstream to finish', () => streams[0]?.written === FLOOD_EVENTS, 50_000);
    await streams[0]?.closed;
    let text = '';
    res.setEncoding('utf8');
    for await (const chunk of res) text += chunk;
    const events = text.split('\n\n').filter((block) => block.startsWith('event: '));
    const progress = events.filter((e) => e.startsWith('event: progress'));
    const last = events.at(-1) ?? '';
    expect(last).toMatch(/^event: result/);
    expect(last).toContain('done');
    expect(progress.length).toBeLessThan(FLOOD_EVENTS);
    for (const event of progress) expect(event.length).toBeLessThan(4_096 + 200);
    expect(logs.lines.some((l) => l.event === 'tool.call.progress_dropped')).toBe(true);
  }, 60_000);

  it('a cancelled call closes the upstream stream that was still answering it', async () => {
    const { port } = await startHostileWorker('hostile-cancel');
    const controller = new AbortController();
    const call = fetch(`http://127.0.0.1:${port}/tools/endless-progress`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...WORKER_AUTH },
      body: '{}',
      signal: controller.signal,
    }).then((res) => res.body?.getReader().read());
    await waitFor('the upstream to stream progress', () => (streams[0]?.written ?? 0) > 3);
    controller.abort();
    await call.catch(() => {});
    // Without the fix this never resolves: the upstream goes on streaming into a call nobody waits for.
    await streams[0]?.closed;
    expect((await callJson(port, 'small', {})).status).toBe(200);
  });
});
