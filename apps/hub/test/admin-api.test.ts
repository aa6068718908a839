import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const t = testRedis();
const captured = captureLogger('hub');
let app: FastifyInstance;

const SECRET = 'sk-live-do-not-log-0123456789';

beforeAll(async () => {
  const config = loadHubConfig({
    REDIS_URL: redisUrl(),
    KEY_PREFIX: t.prefix,
    HUB_BODY_LIMIT_BYTES: '65536',
    HUB_AUTH: 'none',
  });
  app = await buildHub({ config, log: captured.log });
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});
beforeEach(async () => {
  const keys = await t.redis.keys(`${t.prefix}*`);
  if (keys.length > 0) await t.redis.del(...keys);
});

const everything = {
  id: 'everything',
  transport: 'stdio',
  config: { command: 'npx', args: ['@modelcontextprotocol/server-everything'], env: { API_TOKEN: SECRET } },
};

async function snapshot(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const key of (await t.redis.keys(`${t.prefix}*`)).sort()) {
    const type = await t.redis.type(key);
    if (type === 'hash') out[key] = JSON.stringify(await t.redis.hgetall(key));
    else if (type === 'stream') out[key] = JSON.stringify(await t.redis.xrange(key, '-', '+'));
    else if (type === 'set') out[key] = JSON.stringify((await t.redis.smembers(key)).sort());
    else out[key] = String(await t.redis.get(key));
  }
  return out;
}

function expectErrorShape(body: unknown, code: string): void {
  expect(body).toMatchObject({ error: { code, message: expect.any(String) }, request_id: expect.any(String) });
}

describe('server admin API', () => {
  it('creates a server (201) with defaults and a Location, then refuses the same id (409)', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    expect(res.statusCode).toBe(201);
    expect(res.headers.location).toBe('/api/servers/everything');
    expect(res.json()).toMatchObject({
      id: 'everything',
      name: 'everything',
      namespace: 'everything',
      enabled: true,
      tags: [],
      timeoutMs: 60_000,
      rev: 1,
      createdAt: expect.any(String),
    });
    const before = await snapshot();
    const again = await app.inject({ method: 'POST', url: '/api/servers', payload: { ...everything, tags: ['x'] } });
    expect(again.statusCode).toBe(409);
    expectErrorShape(again.json(), 'server_exists');
    expect(await snapshot()).toEqual(before);
  });

  it('reads one server with its runtime record, lists all, and 404s an unknown id', async () => {
    await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    await app.inject({
      method: 'POST',
      url: '/api/servers',
      payload: { id: 'remote', transport: 'streamable-http', config: { url: 'https://example.com/mcp' } },
    });
    const bare = await app.inject({ method: 'GET', url: '/api/servers/everything' });
    expect(bare.statusCode).toBe(200);
    expect(bare.json().runtime).toBeUndefined();

    const workerToken = 'worker-token-never-shown-0123456789abcdef';
    await t.redis.hset(t.keys.runtime('everything'), {
      status: 'running',
      pid: '1234',
      port: '41001',
      restarts: '0',
      worker_token: workerToken,
    });
    const withRuntime = await app.inject({ method: 'GET', url: '/api/servers/everything' });
    // The worker's credential stays between hub and supervisor.
    expect(withRuntime.json().runtime).toEqual({ status: 'running', pid: 1234, port: 41001, restarts: 0 });
    expect(withRuntime.body).not.toContain(workerToken);

    const list = await app.inject({ method: 'GET', url: '/api/servers' });
    expect(list.json().servers.map((s: { id: string }) => s.id)).toEqual(['everything', 'remote']);
    expect(list.body).not.toContain(workerToken);

    const missing = await app.inject({ method: 'GET', url: '/api/servers/nope' });
    expect(missing.statusCode).toBe(404);
    expectErrorShape(missing.json(), 'server_not_found');
  });

  it('PUT creates (201), replaces (200), takes the id from the path, and guards revisions', async () => {
    const { id: _id, ...withoutId } = everything;
    const created = await app.inject({ method: 'PUT', url: '/api/servers/everything', payload: withoutId });
    expect(created.statusCode).toBe(201);
    const replaced = await app.inject({
      method: 'PUT',
      url: '/api/servers/everything',
      payload: { ...everything, tags: ['demo'], rev: created.json().rev },
    });
    expect(replaced.statusCode).toBe(200);
    expect(replaced.json()).toMatchObject({ tags: ['demo'], rev: 2, createdAt: created.json().createdAt });

    const before = await snapshot();
    const stale = await app.inject({
      method: 'PUT',
      url: '/api/servers/everything',
      payload: { ...everything, tags: ['other'], rev: 1 },
    });
    expect(stale.statusCode).toBe(409);
    expectErrorShape(stale.json(), 'revision_conflict');

    const mismatch = await app.inject({
      method: 'PUT',
      url: '/api/servers/everything',
      payload: { ...everything, id: 'other' },
    });
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.json().error.message).toMatch(/does not match the path id/);
    expect(await snapshot()).toEqual(before);
  });

  it('accepts a GET body back as a PUT (read-only fields are ignored)', async () => {
    await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    await t.redis.hset(t.keys.runtime('everything'), { status: 'running' });
    const got = (await app.inject({ method: 'GET', url: '/api/servers/everything' })).json();
    const put = await app.inject({
      method: 'PUT',
      url: '/api/servers/everything',
      payload: { ...got, enabled: false },
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ enabled: false, rev: 2 });
  });

  it('deletes (204), then 404s, and removes the tools with the server', async () => {
    await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    await t.redis.hset(
      t.keys.tools('everything'),
      'echo',
      JSON.stringify({ name: 'echo', inputSchema: { type: 'object' }, rev: 2, digest: 'x' }),
    );
    const tools = await app.inject({ method: 'GET', url: '/api/servers/everything/tools' });
    expect(tools.statusCode).toBe(200);
    expect(tools.json().tools.map((x: { name: string }) => x.name)).toEqual(['echo']);

    const del = await app.inject({ method: 'DELETE', url: '/api/servers/everything' });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    expect(await t.redis.exists(t.keys.tools('everything'))).toBe(0);
    const again = await app.inject({ method: 'DELETE', url: '/api/servers/everything' });
    expect(again.statusCode).toBe(404);
    expectErrorShape(again.json(), 'server_not_found');
    const noTools = await app.inject({ method: 'GET', url: '/api/servers/everything/tools' });
    expect(noTools.statusCode).toBe(404);
  });

  it('records restart requests as a counter (202) and 404s an unknown server', async () => {
    await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    const first = await app.inject({ method: 'POST', url: '/api/servers/everything/restart' });
    expect(first.statusCode).toBe(202);
    expect(first.json()).toMatchObject({ id: 'everything', restartRequests: 1 });
    const second = await app.inject({ method: 'POST', url: '/api/servers/everything/restart' });
    expect(second.json().restartRequests).toBe(2);
    expect(await t.redis.hget(t.keys.restarts, 'everything')).toBe('2');
    const missing = await app.inject({ method: 'POST', url: '/api/servers/ghost/restart' });
    expect(missing.statusCode).toBe(404);
    expectErrorShape(missing.json(), 'server_not_found');
  });
});

describe('bad input: a 4xx in the one error shape, and the registry unchanged', () => {
  const cases: { name: string; status: number; code: string; message?: RegExp; request: InjectOptions }[] = [
    {
      name: 'malformed JSON',
      status: 400,
      code: 'invalid_json',
      request: {
        method: 'POST',
        url: '/api/servers',
        headers: { 'content-type': 'application/json' },
        payload: '{"id": "x",',
      },
    },
    {
      name: 'empty JSON body',
      status: 400,
      code: 'invalid_json',
      request: { method: 'POST', url: '/api/servers', headers: { 'content-type': 'application/json' }, payload: '' },
    },
    {
      name: 'a body that is not an object',
      status: 400,
      code: 'invalid_request',
      request: { method: 'POST', url: '/api/servers', payload: [1, 2] },
    },
    {
      name: 'text/plain',
      status: 415,
      code: 'unsupported_media_type',
      request: { method: 'POST', url: '/api/servers', headers: { 'content-type': 'text/plain' }, payload: 'hello' },
    },
    {
      name: 'form data',
      status: 415,
      code: 'unsupported_media_type',
      request: {
        method: 'POST',
        url: '/api/servers',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'id=x',
      },
    },
    {
      name: 'an unknown field',
      status: 400,
      code: 'invalid_request',
      message: /colour: unknown field "colour"/,
      request: { method: 'POST', url: '/api/servers', payload: { ...everything, colour: 'red' } },
    },
    {
      name: 'a missing transport',
      status: 400,
      code: 'invalid_request',
      message: /transport/,
      request: { method: 'POST', url: '/api/servers', payload: { id: 'x', config: {} } },
    },
    {
      name: 'a non-http url',
      status: 400,
      code: 'invalid_request',
      message: /config\.url/,
      request: {
        method: 'POST',
        url: '/api/servers',
        payload: { id: 'x', transport: 'sse', config: { url: 'file:///etc/passwd' } },
      },
    },
    {
      name: 'a bad id',
      status: 400,
      code: 'invalid_request',
      message: /^invalid body: id: /,
      request: { method: 'POST', url: '/api/servers', payload: { ...everything, id: '../etc' } },
    },
    {
      name: 'a 10 MB body',
      status: 413,
      code: 'payload_too_large',
      request: {
        method: 'POST',
        url: '/api/servers',
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ ...everything, description: 'x'.repeat(10 * 1024 * 1024) }),
      },
    },
    {
      name: 'PUT with an invalid spec',
      status: 400,
      code: 'invalid_request',
      message: /config\.command/,
      request: {
        method: 'PUT',
        url: '/api/servers/everything',
        payload: { transport: 'stdio', config: { command: 7 } },
      },
    },
    { name: 'an unknown route', status: 404, code: 'route_not_found', request: { method: 'GET', url: '/api/nothing' } },
    {
      name: 'a wrong method',
      status: 404,
      code: 'route_not_found',
      request: { method: 'PATCH', url: '/api/servers/everything' },
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status} ${c.code}`, async () => {
      await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
      const before = await snapshot();
      const res = await app.inject(c.request);
      expect(res.statusCode).toBe(c.status);
      expectErrorShape(res.json(), c.code);
      if (c.message) expect(res.json().error.message).toMatch(c.message);
      expect(await snapshot()).toEqual(before);
    });
  }

  it('lists every bad field in details', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/servers',
      payload: { id: 'x', transport: 'stdio', enabled: 'yes', timeoutMs: -1, config: { command: 'a', args: 'b' } },
    });
    expect(res.statusCode).toBe(400);
    const paths = res
      .json()
      .error.details.map((d: { path: string }) => d.path)
      .sort();
    expect(paths).toEqual(['config.args', 'enabled', 'timeoutMs']);
  });
});

describe('request ids, health, auth and secrets', () => {
  it('echoes a given x-request-id in the header and the error body, and makes one otherwise', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/servers/nope', headers: { 'x-request-id': 'trace-123' } });
    expect(res.headers['x-request-id']).toBe('trace-123');
    expect(res.json().request_id).toBe('trace-123');
    const made = await app.inject({ method: 'GET', url: '/api/servers/nope', headers: { 'x-request-id': 'bad id\n' } });
    expect(made.json().request_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers /healthz and /readyz', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toMatchObject({
      status: 'ready',
      details: { rateLimiter: { mode: 'redis' } },
    });
  });

  it('never writes spec secrets to the log', async () => {
    const logged = () => captured.lines.filter((l) => l.event === 'api.request').length;
    const before = logged();
    await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    await app.inject({ method: 'POST', url: '/api/servers', payload: everything });
    await app.inject({ method: 'PUT', url: '/api/servers/everything', payload: { ...everything, extra: SECRET } });
    await app.inject({ method: 'GET', url: '/api/servers/everything' });
    // Each request's line is written when it is done, which may come after inject() answered.
    await waitFor('the four requests logged', () => logged() >= before + 4);
    expect(captured.text()).not.toContain(SECRET);
  });

  it('logs JSON lines with the common fields', async () => {
    await app.inject({ method: 'GET', url: '/api/servers', headers: { 'x-request-id': 'fields-1' } });
    const line = await waitFor('the request logged', () => captured.lines.find((l) => l.request_id === 'fields-1'));
    expect(line).toMatchObject({
      service: 'hub',
      event: 'api.request',
      level: 'info',
      status: 200,
      url: '/api/servers',
    });
    expect(String(line?.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
});

describe('admin token', () => {
  let guarded: FastifyInstance;
  const token = 'a-long-admin-token-for-tests';
  beforeAll(async () => {
    const config = loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_ADMIN_TOKEN: token });
    guarded = await buildHub({ config, log: captureLogger().log });
  });
  afterAll(() => guarded.close());

  it('401s /api/* without or with a wrong bearer token, with WWW-Authenticate', async () => {
    const none = await guarded.inject({ method: 'GET', url: '/api/servers' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expectErrorShape(none.json(), 'unauthorized');
    const wrong = await guarded.inject({
      method: 'GET',
      url: '/api/servers',
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.statusCode).toBe(401);
    const escaped = await guarded.inject({ method: 'GET', url: '/%61pi/servers' });
    expect(escaped.statusCode).toBe(401);
    const write = await guarded.inject({ method: 'POST', url: '/api/servers', payload: everything });
    expect(write.statusCode).toBe(401);
    expect(await t.redis.hexists(t.keys.servers, 'everything')).toBe(0);
  });

  it('lets the right token in and leaves health probes open', async () => {
    const ok = await guarded.inject({
      method: 'GET',
      url: '/api/servers',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(ok.statusCode).toBe(200);
    expect((await guarded.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });
});

describe('Redis unreachable', () => {
  let offline: FastifyInstance;
  beforeAll(async () => {
    const config = loadHubConfig({ REDIS_URL: 'redis://127.0.0.1:1', KEY_PREFIX: t.prefix, HUB_AUTH: 'none' });
    offline = await buildHub({ config, log: captureLogger().log });
  });
  afterAll(() => offline.close());

  it('keeps /healthz at 200, answers /readyz and registry routes with 503 redis_unavailable', async () => {
    expect((await offline.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const ready = await offline.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expectErrorShape(ready.json(), 'redis_unavailable');
    const list = await offline.inject({ method: 'GET', url: '/api/servers' });
    expect(list.statusCode).toBe(503);
    expect(list.headers['retry-after']).toBe('1');
    expectErrorShape(list.json(), 'redis_unavailable');
  });
});
