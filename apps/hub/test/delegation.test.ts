import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'admin-token-for-delegation-0123';
const t = testRedis();
let app: FastifyInstance;

beforeAll(async () => {
  app = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_ADMIN_TOKEN: ADMIN }),
    log: captureLogger('hub').log,
  });
  expect((await send('POST', '/api/projects', ADMIN, { id: 'p', name: 'P' })).status).toBe(201);
  expect((await send('POST', '/api/projects', ADMIN, { id: 'q', name: 'Q' })).status).toBe(201);
  expect((await send('POST', '/api/projects/p/members', ADMIN, { id: 'alice@p.dev', role: 'owner' })).status).toBe(201);
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

async function send(method: 'GET' | 'POST' | 'PUT', url: string, token: string, body?: unknown) {
  const res = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { payload: body as object }),
  });
  return { status: res.statusCode, json: res.json() as Record<string, unknown> & { error?: { code: string } } };
}

const inAnHour = (): string => new Date(Date.now() + 3_600_000).toISOString();
const inADay = () => new Date(Date.now() + 86_400_000).toISOString();

describe('a key hands on no more than it has', () => {
  it('keeps role, scopes, expiry, limits and member binding within the creating key', async () => {
    const expiry = inAnHour();
    const narrow = await send('POST', '/api/projects/p/keys', ADMIN, {
      name: 'narrow',
      role: 'owner',
      scopes: ['keys:manage'],
      member: 'alice@p.dev',
      expiresAt: expiry,
      limits: { perHour: 10 },
    });
    expect(narrow.status).toBe(201);
    const key = narrow.json.key as string;
    const within = {
      name: 'child',
      role: 'owner',
      scopes: ['keys:manage'],
      member: 'alice@p.dev',
      limits: { perHour: 5 },
    };

    expect((await send('POST', '/api/projects/p/keys', key, { ...within, expiresAt: expiry })).status).toBe(201);
    for (const [what, body] of [
      ['a full owner key', { name: 'x', role: 'owner' }],
      ['more scopes', { ...within, expiresAt: expiry, scopes: ['keys:manage', 'servers:write'] }],
      ['no expiry', within],
      ['a later expiry', { ...within, expiresAt: inADay() }],
      ['looser limits', { ...within, expiresAt: expiry, limits: { perHour: 20 } }],
      ['no limits', { ...within, expiresAt: expiry, limits: undefined }],
      ['no member', { ...within, expiresAt: expiry, member: undefined }],
    ] as const) {
      const res = await send('POST', '/api/projects/p/keys', key, body);
      expect(res.status, what).toBe(403);
      expect(res.json.error?.code, what).toBe('forbidden');
    }
  });

  it('lets a key rotate only keys it could have made', async () => {
    const full = await send('POST', '/api/projects/p/keys', ADMIN, { name: 'full', role: 'owner' });
    const narrow = await send('POST', '/api/projects/p/keys', ADMIN, {
      name: 'narrow-rotator',
      role: 'owner',
      scopes: ['keys:manage', 'servers:read'],
    });
    const reporter = await send('POST', '/api/projects/p/keys', ADMIN, {
      name: 'r',
      role: 'reporter',
      scopes: ['servers:read'],
    });
    const key = narrow.json.key as string;
    // Rotating the full key would hand its new secret to a narrower one.
    expect((await send('POST', `/api/projects/p/keys/${full.json.id}/rotate`, key, {})).status).toBe(403);
    const rotated = await send('POST', `/api/projects/p/keys/${reporter.json.id}/rotate`, key, {});
    expect(rotated.status).toBe(201);
    expect(rotated.json.key).toMatch(/^mcp_/);
  });
});

describe('server writes check the registry, not only the cache', () => {
  it("answers 404 to a PUT on a server that another project now owns, even when this hub's cache is stale", async () => {
    const q = (await send('POST', '/api/projects/q/keys', ADMIN, { name: 'q-dev', role: 'developer' })).json
      .key as string;
    const spec = {
      transport: 'streamable-http',
      config: { url: 'https://93.184.215.14/mcp', headers: { authorization: 'secret-of-p' } },
    };
    expect((await send('PUT', '/api/servers/contested', q, spec)).status).toBe(201);
    expect((await send('GET', '/api/servers/contested', q)).status).toBe(200); // now in the hub's cache
    // Another hub moves it to project p, and this hub misses the event.
    const stored = JSON.parse((await t.redis.hget(t.keys.servers, 'contested')) as string);
    await t.redis.hset(t.keys.servers, 'contested', JSON.stringify({ ...stored, project: 'p' }));
    const takeover = await send('PUT', '/api/servers/contested', q, {
      ...spec,
      config: { ...spec.config, headers: { authorization: '***' } },
    });
    expect(takeover.status).toBe(404);
    expect(JSON.parse((await t.redis.hget(t.keys.servers, 'contested')) as string).project).toBe('p');
  });

  it('does not let "***" carry a stored secret to a new URL', async () => {
    const spec = {
      project: 'p',
      transport: 'streamable-http',
      config: { url: 'https://93.184.215.14/mcp', headers: { authorization: 'tok-123' } },
    };
    expect((await send('PUT', '/api/servers/redirect', ADMIN, spec)).status).toBe(201);
    const moved = await send('PUT', '/api/servers/redirect', ADMIN, {
      ...spec,
      config: { url: 'https://203.0.113.9/collect', headers: { authorization: '***' } },
    });
    expect(moved.status).toBe(400);
    expect(moved.json.error?.code).toBe('invalid_request');
    // Unchanged destination: "***" keeps the stored value (GET → PUT round trip).
    const same = await send('PUT', '/api/servers/redirect', ADMIN, {
      ...spec,
      description: 'edited',
      config: { ...spec.config, headers: { authorization: '***' } },
    });
    expect(same.status).toBe(200);
    expect(await t.redis.hget(t.keys.servers, 'redirect')).toContain('tok-123');
  });
});
