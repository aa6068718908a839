import type { AddressInfo } from 'node:net';
import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';
import { RegistryCache } from '../src/registry-cache.js';
import { ToolValidatorFactory } from '../src/validation/tool-validator.js';

const ADMIN = 'admin-token-for-schema-budget-tests';
const t = testRedis();
const logs = captureLogger('hub');
let app: FastifyInstance;
let base: string;
let reporterKey: string;
let developerKey: string;

/** The schema of the security review: 5,000 plain properties (199 KB) took 23 s to compile. */
const WIDE = {
  type: 'object' as const,
  properties: Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`field_${i}`, { type: 'string' }])),
};

async function call(path: string, key: string, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  return {
    status: res.statusCode,
    json: (await res.body.json()) as { key?: string; error: { code: string; message: string; details: unknown } },
  };
}

async function healthy(): Promise<number> {
  const res = await request(`${base}/healthz`);
  await res.body.dump();
  return res.statusCode;
}

beforeAll(async () => {
  app = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_ADMIN_TOKEN: ADMIN,
      // Room for an array that quadratic uniqueItems could not check within the test's timeout by far.
      HUB_BODY_LIMIT_BYTES: String(8 * 1024 * 1024),
      // No server here has a worker: a call that passes validation answers 503 after this short wait.
      HUB_WORKER_WAIT: '50ms',
    }),
    log: logs.log,
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
  // What a hostile upstream's tools/list says, as its worker stores it. No worker runs: a call that passes the
  // hub's validation is answered 503 worker_unavailable, one that does not 400 invalid_arguments.
  await new Registry(t.redis, t.keys).replaceTools('hostile', [
    { name: 'unique', inputSchema: { type: 'object', properties: { a: { type: 'array', uniqueItems: true } } } },
    { name: 'wide', inputSchema: WIDE },
  ]);
  reporterKey = String((await call('/api/projects/p/keys', ADMIN, { name: 'r', role: 'reporter' })).json.key);
  developerKey = String((await call('/api/projects/p/keys', ADMIN, { name: 'd', role: 'developer' })).json.key);
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

describe('uniqueItems is checked in linear time', () => {
  // 500,000 items (3.4 MB): Ajv's pairwise check would compare 1.25e11 pairs (the review measured 19 s for
  // 100,000), hours here; the test finishes within its timeout only because the check is linear.
  const items = Array.from({ length: 500_000 }, (_, i) => i);

  it('answers a huge array with a duplicate at its end with 400, and the hub stays responsive', async () => {
    const res = await call('/mcp/hostile/unique', reporterKey, { a: [...items, { x: 1 }, { x: 1 }] });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_arguments');
    expect(res.json.error.message).toContain('duplicate items (items ## 500000 and 500001 are identical)');
    expect(await healthy()).toBe(200);
  });

  it('passes a huge array of distinct items on (no worker: 503)', async () => {
    expect((await call('/mcp/hostile/unique', reporterKey, { a: items })).status).toBe(503);
  });

  it('compares items as JSON values: key order does not matter, and 1 equals 1.0', async () => {
    const objects = await call('/mcp/hostile/unique', reporterKey, {
      a: [
        { x: 1, y: 2 },
        { y: 2, x: 1.0 },
      ],
    });
    expect(objects.status).toBe(400);
    expect((await call('/mcp/hostile/unique', reporterKey, { a: [[1, 2], [2, 1], '1', 1] })).status).toBe(503);
  });
});

describe('a schema over the compile budget is not compiled', () => {
  it('passes arguments of a 5,000-property tool on unchecked, logged once per tool revision', async () => {
    for (let i = 0; i < 3; i++) {
      // field_0 should be a string: the hub does not check, the upstream will.
      expect((await call('/mcp/hostile/wide', reporterKey, { field_0: 42 })).status).toBe(503);
    }
    expect(await healthy()).toBe(200);
    const notEnforced = logs.lines.filter((l) => l.event === 'tool.schema.not_enforced');
    expect(notEnforced).toEqual([
      expect.objectContaining({ server: 'hostile', tool: 'wide', reason: 'schema_too_large', limit: 65_536 }),
    ]);
  });

  it('refuses a REST tool whose inputSchema is over the size budget with 400, naming the field', async () => {
    const res = await call('/api/servers', developerKey, {
      id: 'wide-rest',
      transport: 'rest',
      config: {
        baseUrl: 'https://api.example.com',
        tools: [{ name: 'wide', method: 'POST', path: '/x', inputSchema: WIDE }],
      },
    });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_request');
    expect(JSON.stringify(res.json.error.details)).toContain('config.tools[0].inputSchema');
  });
});

describe('the compiled validators are bounded', () => {
  it('keeps one validator per tool after 100 schema changes, and the latest one applies', async () => {
    const registry = new Registry(t.redis, t.keys);
    const validators = new ToolValidatorFactory(captureLogger('hub').log);
    // maxAgeMs 0: every read sees the registry's current tools, as after a tool.upsert event.
    const cache = new RegistryCache(registry, validators, 0);
    for (let max = 1; max <= 100; max++) {
      const schema = { type: 'object' as const, properties: { n: { type: 'integer', maximum: max } } };
      await registry.replaceTools('hostile', [{ name: 'changing', inputSchema: schema }]);
      const tool = await cache.tool('hostile', 'changing');
      expect(tool?.validate({ n: max })).toBeNull();
      expect(tool?.validate({ n: max + 1 })).not.toBeNull();
    }
    expect(validators.size).toBe(1);
  });

  it('drops the least recently used validator past its cap', () => {
    const validators = new ToolValidatorFactory(captureLogger('hub').log, 10);
    for (let i = 0; i < 50; i++) validators.compile('s', `tool-${i}`, 'd', { type: 'object' });
    expect(validators.size).toBe(10);
  });
});
