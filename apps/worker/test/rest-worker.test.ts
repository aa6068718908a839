import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { callJson, callSse, getHealth, registerServer, startTestWorker } from './helpers.js';

const SECRET = 'sk-rest-secret-do-not-log-42';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

describe('rest worker', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  const seen: Seen[] = [];
  let api: Server;
  let worker: Worker;
  let port: number;

  beforeAll(async () => {
    api = createServer(async (req, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const url = new URL(req.url ?? '/', 'http://x');
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify(value));
      };
      if (url.pathname.startsWith('/api/users/') && req.method === 'GET') {
        return json(200, {
          id: decodeURIComponent(url.pathname.slice('/api/users/'.length)),
          verbose: url.searchParams.get('verbose'),
        });
      }
      if (url.pathname === '/api/users' && req.method === 'POST') return json(201, { created: JSON.parse(body) });
      if (url.pathname === '/api/list') return json(200, [1, 2, 3]);
      if (url.pathname === '/api/text') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('plain words');
      }
      if (url.pathname === '/api/slow') {
        setTimeout(() => json(200, { late: true }), 3_000).unref();
        return;
      }
      return json(404, { error: 'no such thing' });
    });
    api.listen(0, '127.0.0.1');
    await once(api, 'listening');
    const apiPort = (api.address() as AddressInfo).port;

    await registerServer(t.redis, t.keys, {
      id: 'api',
      transport: 'rest',
      timeoutMs: 500,
      config: {
        baseUrl: `http://127.0.0.1:${apiPort}/api/`,
        headers: { 'X-Api-Key': SECRET },
        tools: [
          {
            name: 'get_user',
            description: 'Reads a user',
            method: 'GET',
            path: '/users/{id}',
            inputSchema: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
            argLocations: { trace: 'header' },
          },
          { name: 'create_user', method: 'POST', path: '/users', argLocations: { dryRun: 'query' } },
          { name: 'list', method: 'GET', path: '/list' },
          { name: 'text', method: 'GET', path: '/text' },
          { name: 'missing', method: 'DELETE', path: '/missing/{id}' },
          { name: 'slow', method: 'GET', path: '/slow' },
        ],
      },
    });
    port = await getPort();
    worker = await startTestWorker({ serverId: 'api', prefix: t.prefix, port, log: captured.log });
    await worker.ready;
  });
  afterAll(async () => {
    await worker?.close();
    api?.closeAllConnections();
    api?.close();
    await t.cleanup();
  });

  it('serves the spec tools as MCP tools and is healthy at once', async () => {
    expect((await getHealth(port)).status).toBe(200);
    const stored = await t.redis.hgetall(t.keys.tools('api'));
    expect(Object.keys(stored).sort()).toEqual(['create_user', 'get_user', 'list', 'missing', 'slow', 'text']);
    expect(JSON.parse(stored.get_user as string)).toMatchObject({
      name: 'get_user',
      description: 'Reads a user',
      inputSchema: { type: 'object', required: ['id'] },
    });
  });

  it('fills path placeholders (encoded), sends headers and query, and answers structured JSON', async () => {
    const res = await callSse(
      port,
      'get_user',
      { id: 'a b/c', verbose: true, trace: 'trace-1' },
      { 'x-request-id': 'req-rest-1' },
    );
    const request = seen.at(-1) as Seen;
    expect(request.method).toBe('GET');
    expect(request.url).toBe('/api/users/a%20b%2Fc?verbose=true');
    expect(request.headers['x-api-key']).toBe(SECRET);
    expect(request.headers.trace).toBe('trace-1');
    expect(request.body).toBe('');
    expect(res.events).toEqual([
      {
        event: 'result',
        data: {
          request_id: 'req-rest-1',
          content: [{ type: 'text', text: JSON.stringify({ id: 'a b/c', verbose: 'true' }, null, 2) }],
          structuredContent: { id: 'a b/c', verbose: 'true' },
          isError: false,
        },
      },
    ]);
  });

  it('sends unlisted arguments of a POST as a JSON body and listed ones where they say', async () => {
    const res = await callJson(port, 'create_user', { name: 'Ann', tags: ['x', 'y'], dryRun: false });
    const request = seen.at(-1) as Seen;
    expect(request.method).toBe('POST');
    expect(request.url).toBe('/api/users?dryRun=false');
    expect(request.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request.body)).toEqual({ name: 'Ann', tags: ['x', 'y'] });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      structuredContent: { created: { name: 'Ann', tags: ['x', 'y'] } },
      isError: false,
    });
  });

  it('passes arrays and text bodies on as text without structuredContent', async () => {
    const list = await callJson(port, 'list', {});
    expect(list.body).toEqual({
      request_id: expect.any(String),
      content: [{ type: 'text', text: JSON.stringify([1, 2, 3], null, 2) }],
      isError: false,
    });
    const text = await callJson(port, 'text', {});
    expect(text.body).toMatchObject({ content: [{ type: 'text', text: 'plain words' }], isError: false });
    expect(text.body.structuredContent).toBeUndefined();
  });

  it('answers a non-2xx status as a result with isError', async () => {
    const res = await callSse(port, 'missing', { id: 7 });
    expect(seen.at(-1)).toMatchObject({ method: 'DELETE', url: '/api/missing/7' });
    expect(res.events).toHaveLength(1);
    expect(res.events[0]).toMatchObject({
      event: 'result',
      data: { isError: true, structuredContent: { error: 'no such thing' } },
    });
    const content = res.events[0]?.data.content as { text: string }[] | undefined;
    expect(content?.[0]?.text).toMatch(/^HTTP 404\n/);
  });

  it('enforces timeoutMs on REST calls', async () => {
    const res = await callJson(port, 'slow', {});
    expect(res.status).toBe(504);
    expect(res.body).toMatchObject({ error: { code: 'tool_timeout' } });
  });

  it('never lets a path value climb to another path of the API: no request leaves, the call fails', async () => {
    // The API resolves dot segments as most servers and proxies do (new URL above): `..` would reach /api/.
    for (const id of ['..', '.', '%2e%2e', '%252E%252e', '../../secret', 'a/../../secret', '..\\secret', '']) {
      const before = seen.length;
      const res = await callJson(port, 'get_user', { id });
      expect(res.status, id).toBe(400);
      expect(res.body, id).toMatchObject({ error: { code: 'invalid_arguments' } });
      expect((res.body as { error: { message: string } }).error.message).toMatch(
        /"id" of tool "get_user" goes in the path/,
      );
      expect(seen.length, `${id} reached the API`).toBe(before);
    }
    // Dots inside a segment are only characters: encoded as one segment, nothing climbs.
    await callJson(port, 'get_user', { id: '...v1.2' });
    expect(seen.at(-1)?.url).toBe('/api/users/...v1.2');
  });

  it('refuses a call missing a path argument', async () => {
    const res = await callSse(port, 'missing', {});
    expect(res.events).toEqual([
      {
        event: 'error',
        data: { request_id: expect.any(String), code: 'invalid_arguments', message: expect.any(String) },
      },
    ]);
  });

  it('logs tool.http.request and tool.http.response, and never a header value', async () => {
    const request = captured.lines.find((l) => l.event === 'tool.http.request' && l.request_id === 'req-rest-1');
    expect(request).toMatchObject({
      method: 'GET',
      url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/api\/users\/a%20b%2Fc\?verbose=true$/),
      tool: 'get_user',
    });
    const response = captured.lines.find((l) => l.event === 'tool.http.response' && l.request_id === 'req-rest-1');
    expect(response).toMatchObject({ method: 'GET', status: 200, latency: expect.any(Number), url: request?.url });
    expect(captured.text()).not.toContain(SECRET);
    expect(captured.text()).not.toContain('trace-1');
  });
});
