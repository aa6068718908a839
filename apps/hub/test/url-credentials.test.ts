import { loadHubConfig, Registry, SecretBox, sealSpecSecrets } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'admin-token-for-url-credentials';
const SECRET_KEY = 'a-passphrase-of-at-least-thirty-two-characters';
const PASSWORD = 'pa55-in-the-url';
const t = testRedis();
const logs = captureLogger('hub');
let app: FastifyInstance;
let reporter: string;

async function api(method: 'GET' | 'POST' | 'PUT', url: string, key: string, body?: unknown) {
  const res = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { payload: body as object } : {}),
  });
  return {
    status: res.statusCode,
    text: res.body,
    json: res.json() as { key: string; config: { url?: string }; error: { details: unknown } },
  };
}

beforeAll(async () => {
  const config = loadHubConfig({
    REDIS_URL: redisUrl(),
    KEY_PREFIX: t.prefix,
    HUB_ADMIN_TOKEN: ADMIN,
    HUB_SECRET_KEY: SECRET_KEY,
  });
  app = await buildHub({ config, log: logs.log });
  expect((await api('POST', '/api/projects', ADMIN, { id: 'acme', name: 'Acme' })).status).toBe(201);
  reporter = (await api('POST', '/api/projects/acme/keys', ADMIN, { name: 'r', role: 'reporter' })).json.key;
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

// Issue 10, finding 8: credentials inside a server URL were shown to reporters and logged.
describe('credentials in a remote server URL are a secret', () => {
  it('become a sealed Authorization header: never stored in clear, never answered, never logged', async () => {
    const created = await api('POST', '/api/servers', ADMIN, {
      id: 'remote',
      project: 'acme',
      transport: 'streamable-http',
      config: { url: `https://ana:${PASSWORD}@mcp.example.com/mcp` },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json.config).toEqual({
      url: 'https://mcp.example.com/mcp',
      headers: { Authorization: '***' },
    });
    const seen = await api('GET', '/api/servers/remote', reporter);
    expect(seen.status).toBe(200);
    expect(seen.text).not.toContain(PASSWORD);

    const stored = (await t.redis.hget(t.keys.servers, 'remote')) ?? '';
    expect(stored).not.toContain(PASSWORD);
    expect(stored).not.toContain('ana');
    const spec = await new Registry(t.redis, t.keys).requireServer('remote');
    const auth = (spec.config as { headers: Record<string, string> }).headers.Authorization ?? '';
    expect(new SecretBox(SECRET_KEY).open(auth)).toBe(`Basic ${Buffer.from(`ana:${PASSWORD}`).toString('base64')}`);
    expect(logs.text()).not.toContain(PASSWORD);

    // The answer can be sent back as it is: the sealed header is kept.
    const again = await api('PUT', '/api/servers/remote', ADMIN, seen.json);
    expect(again.status, again.text).toBe(200);
    expect(await t.redis.hget(t.keys.servers, 'remote')).toBe(stored);
  });

  it('refuses a URL with credentials beside an Authorization header (400, nothing stored)', async () => {
    const res = await api('POST', '/api/servers', ADMIN, {
      id: 'both',
      project: 'acme',
      transport: 'rest',
      config: {
        baseUrl: `https://ana:${PASSWORD}@api.example.com`,
        headers: { authorization: 'Bearer x' },
        tools: [{ name: 'get', method: 'GET', path: '/x', inputSchema: { type: 'object' } }],
      },
    });
    expect(res.status).toBe(400);
    expect(res.json.error.details).toEqual([expect.objectContaining({ path: 'config.baseUrl' })]);
    expect(await t.redis.hget(t.keys.servers, 'both')).toBeNull();
  });

  it('masks the credentials of a URL stored before this rule', async () => {
    await new Registry(t.redis, t.keys).upsertServer(
      sealSpecSecrets(
        {
          id: 'legacy',
          name: 'legacy',
          namespace: 'legacy',
          project: 'acme',
          transport: 'sse',
          enabled: true,
          tags: [],
          timeoutMs: 60_000,
          config: { url: `https://ana:${PASSWORD}@old.example.com/sse`, headers: {} },
        } as never,
        new SecretBox(SECRET_KEY),
      ),
      'create',
    );
    const res = await api('GET', '/api/servers/legacy', reporter);
    expect(res.status).toBe(200);
    expect(res.json.config.url).toBe('https://***:***@old.example.com/sse');
    expect(res.text).not.toContain(PASSWORD);
  });
});
