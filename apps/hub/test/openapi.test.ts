import { existsSync } from 'node:fs';
import { loadHubConfig } from '@mcp-hub/shared';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { FastifyInstance } from 'fastify';
import { chromium } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { ROUTE_POLICIES } from '../src/access/policy.js';
import { DOCS_PREFIX } from '../src/http/openapi.js';
import { buildHub } from '../src/index.js';

// Issue 15, item 3: the OpenAPI 3.1 document, generated from the route schemas, covers every route of the policy
// table and validates; Swagger UI at /docs renders it in a real headless Chromium (Debian's `chromium`; .ci/run
// installs it; CHROMIUM_PATH names another).
const ADMIN = 'admin-token-openapi-0123456789';
const t = testRedis();
const logs = captureLogger('hub');
let hub: FastifyInstance;
let base: string;

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (p): p is string => p !== undefined && p !== '' && existsSync(p),
);

/** `GET /api/servers/:id` → `/api/servers/{id}`, as OpenAPI writes paths. */
const openApiPath = (route: string) => route.replace(/:([A-Za-z]+)/g, '{$1}');

beforeAll(async () => {
  hub = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_PORT: '0', HUB_ADMIN_TOKEN: ADMIN }),
    log: logs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await hub?.close();
  await t.cleanup();
});

describe('OpenAPI', () => {
  it('serves a valid OpenAPI 3.1 document that covers every route of the policy table', async () => {
    const res = await request(`${base}/openapi.json`);
    expect(res.statusCode).toBe(200);
    const doc = (await res.body.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toBe('3.1.0');
    const result = await new Validator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);

    const missing: string[] = [];
    for (const row of Object.keys(ROUTE_POLICIES)) {
      const [method, route] = row.split(' ') as [string, string];
      // CORS preflight rows are wildcards answered for browsers, not operations of the API.
      if (method === 'OPTIONS' || route.startsWith(DOCS_PREFIX) || route === '/openapi.json') continue;
      const operation = doc.paths[openApiPath(route)]?.[method.toLowerCase()];
      if (!operation) missing.push(row);
    }
    expect(missing).toEqual([]);
    // A route with a zod schema carries it: the server registration body, for one.
    const post = doc.paths['/api/servers']?.post as { requestBody?: { content?: Record<string, unknown> } };
    expect(Object.keys(post?.requestBody?.content ?? {})).toContain('application/json');
  });

  it('renders the reference at /docs in a real browser', async () => {
    expect(CHROMIUM, 'no Chromium: apt-get install chromium, or set CHROMIUM_PATH').toBeDefined();
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const response = await page.goto(`${base}${DOCS_PREFIX}`);
      expect(response?.status()).toBe(200);
      await page.locator('.swagger-ui .info .title').waitFor({ timeout: 20_000 });
      expect(await page.locator('.swagger-ui .info .title').textContent()).toContain('MCP Hub API');
      // Every operation of the document is listed (one block each).
      const doc = (await (await request(`${base}/openapi.json`)).body.json()) as {
        paths: Record<string, Record<string, unknown>>;
      };
      const operations = Object.values(doc.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
      await page.locator('.opblock').first().waitFor({ timeout: 20_000 });
      expect(await page.locator('.opblock').count()).toBe(operations);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
