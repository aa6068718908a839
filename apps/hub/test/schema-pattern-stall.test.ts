import type { AddressInfo } from 'node:net';
import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'admin-token-for-pattern-tests';
const t = testRedis();
let app: FastifyInstance;
let base: string;
let reporterKey: string;

async function call(path: string, key: string, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  return {
    status: res.statusCode,
    json: (await res.body.json()) as { key?: string; error: { code: string; details: unknown } },
  };
}

beforeAll(async () => {
  app = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_ADMIN_TOKEN: ADMIN }),
    log: captureLogger('hub').log,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  expect((await call('/api/projects', ADMIN, { id: 'p', name: 'p' })).status).toBe(201);
  const created = await call('/api/servers', ADMIN, {
    id: 'hostile',
    project: 'p',
    transport: 'streamable-http',
    config: { url: 'http://127.0.0.1:9/mcp' },
  });
  expect(created.status).toBe(201);
  // What a hostile upstream server's tools/list says, as its worker would store it.
  await new Registry(t.redis, t.keys).replaceTools('hostile', [
    {
      name: 'letters',
      inputSchema: { type: 'object', properties: { s: { type: 'string', pattern: '^(\\p{L}|a)*$' } } },
    },
    {
      name: 'lookahead',
      inputSchema: { type: 'object', properties: { s: { type: 'string', pattern: '^(?=(a+)+b)' } } },
    },
  ]);
  const key = await call('/api/projects/p/keys', ADMIN, { name: 'r', role: 'reporter' });
  reporterKey = String(key.json.key);
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

// Finding 2 of issue 10: a 30-character argument against `^(\p{L}|a)*$` held the event loop ~10 s (and each
// further character doubled it). With 10,000 characters a backtracking engine would never answer; this test
// finishes only because the hub matches in linear time.
describe('a hostile tool schema pattern cannot stall the hub', () => {
  it('answers a reporter key with 400 at once, and the hub serves the next request', async () => {
    const res = await call('/mcp/hostile/letters', reporterKey, { s: `${'a'.repeat(10_000)}1` });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_arguments');
    expect(res.json.error.details).toEqual([expect.objectContaining({ path: 's' })]);
    const health = await request(`${base}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
  });

  it('does not run a lookahead pattern at all: the argument goes on to the server (here: no worker, 503)', async () => {
    const res = await call('/mcp/hostile/lookahead', reporterKey, { s: 'a'.repeat(10_000) });
    expect(res.status).toBe(503);
  });
});
