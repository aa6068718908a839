import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { SseStream } from './sse-stream.js';

const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A real HTTP server whose one route opens an SseStream and hands it to the test. */
async function serve(): Promise<{ url: string; streams: Promise<SseStream> }> {
  let opened: (stream: SseStream) => void = () => {};
  const streams = new Promise<SseStream>((resolve) => {
    opened = resolve;
  });
  const server = createServer((_req, res: ServerResponse) => opened(new SseStream(res, { 'x-test': '1' }, 60_000)));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, streams };
}

describe('SseStream', () => {
  it('sends its headers alone when no event comes soon, so a long call is seen to have started', async () => {
    const { url, streams } = await serve();
    const res = await request(url);
    // Headers arrived although no event was sent: the stream is still open.
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['x-test']).toBe('1');
    const stream = await streams;
    expect(stream.open).toBe(true);
    stream.finish('result', { request_id: 'r-1', content: [], isError: false });
    expect(await res.body.text()).toBe('event: result\ndata: {"request_id":"r-1","content":[],"isError":false}\n\n');
  });

  it('sends events in order, the last with the end of the stream', async () => {
    const { url, streams } = await serve();
    const answer = request(url);
    const stream = await streams;
    stream.send('dispatched', { request_id: 'r-2' });
    stream.send('progress', { request_id: 'r-2', progress: 1 });
    stream.finish('error', { request_id: 'r-2', code: 'tool_timeout', message: 'late' });
    expect(stream.open).toBe(false);
    const text = await (await answer).body.text();
    expect(text.split('\n\n').map((frame) => frame.split('\n')[0])).toEqual([
      'event: dispatched',
      'event: progress',
      'event: error',
      '',
    ]);
  });
});
