/**
 * Issue 6: one authorization layer for every route. The route table (ROUTE_POLICIES) is checked against the
 * routes the app really registers, then every row is walked with every kind of credential, and the status
 * each one gets is derived from the row itself, so a new row is covered without touching this file.
 */
import { createHash } from 'node:crypto';
import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import {
  type Policy,
  policyOf,
  ROUTE_POLICIES,
  type Role,
  registeredRoutes,
  requirePolicyRows,
  roleAtLeast,
  type Scope,
} from '../src/access/policy.js';
import { buildHub } from '../src/index.js';

/** Routes whose allowed answer is an event stream that stays open: read up to the headers, then hang up. */
const STREAMING_ROUTES = new Set(['GET /sse', 'GET /api/events']);

const ADMIN = 'admin-token-0123456789abcdef';
/** HUB_METRICS_TOKEN: opens `GET /metrics` and nothing else. */
const METRICS = 'metrics-token-0123456789abcdef';
const SECRET_KEY = 'f'.repeat(64);
const ENV_SECRET = 'env-secret-value-7f3a9c1e5b';
const HEADER_SECRET = 'header-secret-value-2d8e6b4a0c';
const A = 'proj-a';
const B = 'proj-b';

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const captured = captureLogger('hub');
let app: FastifyInstance;
/** The hub's clock for API keys: tests move it instead of sleeping until a key expires. */
let now = Date.now();

/** Every answer the tests got, for the secrets check at the end. `showsKey`: the one answer that shows a new key. */
const answers: { what: string; text: string; showsKey: boolean }[] = [];
/** Every API key secret created, for the secrets check. */
const rawKeys: string[] = [];

interface Key {
  id: string;
  key: string;
}
const keys: Record<
  'owner' | 'developer' | 'reporter' | 'readOnly' | 'callOnly' | 'expired' | 'revoked' | 'bOwner',
  Key
> = {} as never;

async function call(
  method: InjectOptions['method'],
  url: string,
  headers: Record<string, string> = {},
  payload?: unknown,
): Promise<LightMyRequestResponse> {
  const streaming = STREAMING_ROUTES.has(`${method} ${url.split('?')[0]}`);
  const res = await app.inject({
    method,
    url,
    headers,
    ...(payload === undefined ? {} : { payload: payload as object }),
    ...(streaming ? { payloadAsStream: true } : {}),
  });
  if (streaming) {
    // An allowed stream never ends: its status and headers are what the matrix checks.
    const stream = res.stream();
    const body = res.statusCode === 200 ? '' : await new Response(stream as unknown as ReadableStream).text();
    stream.destroy();
    Object.defineProperty(res, 'body', { value: body });
    Object.defineProperty(res, 'payload', { value: body });
    Object.defineProperty(res, 'json', { value: () => JSON.parse(body) });
  }
  const showsKey =
    method === 'POST' && /\/keys(\/[^/]+\/rotate)?$/.test(url.split('?')[0] ?? '') && res.statusCode === 201;
  answers.push({
    what: `${method} ${url} → ${res.statusCode}`,
    text: `${JSON.stringify(res.headers)}\n${res.body}`,
    showsKey,
  });
  return res;
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const admin = bearer(ADMIN);

async function createKey(project: string, body: Record<string, unknown>): Promise<Key> {
  const res = await call('POST', `/api/projects/${project}/keys`, admin, body);
  expect(res.statusCode, res.body).toBe(201);
  const { id, key } = res.json() as Key;
  rawKeys.push(key);
  return { id, key };
}

/** An alert webhook (admin); answers its id. */
async function createWebhook(): Promise<string> {
  const res = await call('POST', '/api/alerts/webhooks', admin, { url: 'http://alerts.example.com/hook' });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

/** A connection endpoint of project A (any key of A may use it): its id and token. */
async function endpointOfA(): Promise<{ id: string; token: string }> {
  const res = await call('POST', `/api/projects/${A}/endpoints`, admin, { name: 'matrix' });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as { id: string; token: string };
}

/** A server group of project A holding `server`. */
async function groupOfA(id: string, server: string): Promise<void> {
  const res = await call('POST', `/api/projects/${A}/groups`, admin, { id, name: id, serverIds: [server] });
  expect(res.statusCode, res.body).toBe(201);
}

/** A server of project A that nothing runs (no supervisor in this test), with one tool. */
async function serverOfA(id: string): Promise<void> {
  const res = await call('PUT', `/api/servers/${id}`, admin, {
    transport: 'streamable-http',
    project: A,
    config: { url: 'http://127.0.0.1:9/mcp' },
  });
  expect(res.statusCode, res.body).toBe(201);
  await registry.replaceTools(id, [{ name: 'echo', inputSchema: { type: 'object' } }]);
}

function errorCode(res: LightMyRequestResponse): string | undefined {
  try {
    return (res.json() as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  const config = loadHubConfig({
    REDIS_URL: redisUrl(),
    KEY_PREFIX: t.prefix,
    HUB_ADMIN_TOKEN: ADMIN,
    HUB_METRICS_TOKEN: METRICS,
    HUB_SECRET_KEY: SECRET_KEY,
    // The routes' servers have no worker: a call's wait for one (HUB_WORKER_WAIT) is not what this tests.
    HUB_WORKER_WAIT: '50ms',
  });
  app = await buildHub({ config, log: captured.log, clock: () => now });
  await app.ready();

  for (const id of [A, B]) expect((await call('POST', '/api/projects', admin, { id, name: id })).statusCode).toBe(201);
  const expiresAt = now + 1_500;
  keys.expired = await createKey(A, { name: 'expired', role: 'owner', expiresAt: new Date(expiresAt).toISOString() });
  keys.owner = await createKey(A, { name: 'owner', role: 'owner' });
  keys.developer = await createKey(A, { name: 'developer', role: 'developer' });
  keys.reporter = await createKey(A, { name: 'reporter', role: 'reporter' });
  keys.readOnly = await createKey(A, { name: 'read-only', role: 'owner', scopes: ['servers:read'] });
  keys.callOnly = await createKey(A, { name: 'call-only', role: 'owner', scopes: ['tools:call'] });
  keys.revoked = await createKey(A, { name: 'revoked', role: 'owner' });
  // Used once before it is revoked, so a cached verdict would show.
  expect((await call('GET', '/api/servers', bearer(keys.revoked.key))).statusCode).toBe(200);
  expect((await call('DELETE', `/api/projects/${A}/keys/${keys.revoked.id}`, admin)).statusCode).toBe(200);
  keys.bOwner = await createKey(B, { name: 'b-owner', role: 'owner' });
  now = expiresAt + 50; // the hub's clock: the expired key is now past its expiry
});

afterAll(async () => {
  await app?.close();
  await t.cleanup();
});

// ---- the table covers the app ----------------------------------------------------------------------------

describe('ROUTE_POLICIES covers the app', () => {
  it('has a row for every route the app registers (HEAD follows GET)', () => {
    const registered = registeredRoutes(app);
    expect(registered.length).toBeGreaterThan(20);
    expect(registered).toContain('HEAD /healthz');
    const missing = registered.filter((row) => {
      const [method, url] = row.split(' ') as [string, string];
      return policyOf(method, url) === undefined;
    });
    expect(missing).toEqual([]);
  });

  it('refuses to register a route without a row: building the app fails instead of serving it', async () => {
    const { default: Fastify } = await import('fastify');
    const scratch = Fastify();
    requirePolicyRows(scratch);
    scratch.get('/healthz', async () => ({ ok: true }));
    expect(() => scratch.get('/not-in-the-table', async () => ({ leaked: true }))).toThrow(/no row in ROUTE_POLICIES/);
    expect(registeredRoutes(scratch)).toEqual(['GET /healthz', 'HEAD /healthz']);
    await scratch.close();
  });

  it('has no row for a route the app does not register', () => {
    const stale = Object.keys(ROUTE_POLICIES).filter((row) => {
      const [method, url] = row.split(' ') as [string, string];
      return !app.hasRoute({ method: method as 'GET', url });
    });
    // Pending rows are tolerated only while missing; once registered they are checked like any other.
    expect(stale).toEqual([]);
  });

  it('answers 403 (not the route) when a request reaches a route without a row', async () => {
    // The auth hook refuses what the table does not name; shown with a route added to a scratch instance.
    const { default: Fastify } = await import('fastify');
    const { registerAuth } = await import('../src/http/auth.js');
    const { registerErrorHandling } = await import('@mcp-hub/shared');
    const scratch = Fastify();
    registerErrorHandling(scratch, captured.log);
    registerAuth(scratch, {
      open: false,
      adminToken: ADMIN,
      checkKey: async () => ({ ok: false, reason: 'unknown' }),
      serverProject: async () => null,
      log: captured.log,
    });
    scratch.get('/not-in-the-table', async () => ({ leaked: true }));
    const res = await scratch.inject({ method: 'GET', url: '/not-in-the-table', headers: admin });
    expect(res.statusCode).toBe(403);
    expect(res.body).not.toContain('leaked');
    await scratch.close();
  });
});

// ---- every row × every credential ------------------------------------------------------------------------

type Expect =
  | { status: 401 }
  | { status: 403 }
  | { status: 404; code: string }
  /** Past the authorization layer: whatever the route answers, but no 401/403/404 and no failure but a missing worker. */
  | { status: 'allowed' }
  /** A public route: never 401/403, whatever credentials come with it. */
  | { status: 'public' };

interface Case {
  name: string;
  headers: Record<string, string>;
  method?: string;
  expect: Expect;
}

const ROLE_KEYS: Record<Role, 'owner' | 'developer' | 'reporter'> = {
  owner: 'owner',
  developer: 'developer',
  reporter: 'reporter',
};

/** The 404 code another project's key gets for a route, from the route's own params: the first one checked wins. */
function foreignResource(url: string): string | undefined {
  if (url.includes(':pid')) return 'project_not_found';
  if (url.includes(':token')) return 'endpoint_not_found';
  if (url.includes(':id')) return 'server_not_found';
  if (url.includes(':keyId')) return 'key_not_found';
  return undefined;
}

function casesFor(method: string, url: string, policy: Policy): Case[] {
  const unauthenticated: Case[] = (
    [
      { name: 'no key', headers: {} },
      { name: 'unknown key', headers: bearer(`mcp_${'z'.repeat(16)}_${'A'.repeat(43)}`) },
      { name: 'malformed key (X-API-Key)', headers: { 'x-api-key': 'not-a-key' } },
      { name: 'right id, wrong secret', headers: { 'x-api-key': `${keys.owner.key.slice(0, -4)}AAAA` } },
      { name: 'not a Bearer header', headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } },
      { name: 'expired key', headers: { 'x-api-key': keys.expired.key } },
      { name: 'revoked key', headers: bearer(keys.revoked.key) },
    ] as { name: string; headers: Record<string, string> }[]
  ).map((c) => ({ ...c, expect: { status: 401 } as Expect }));
  if (method === 'GET')
    unauthenticated.push({ name: 'no key (HEAD)', method: 'HEAD', headers: {}, expect: { status: 401 } });

  if (policy.access === 'public') {
    return [
      ...unauthenticated,
      { name: 'owner key', headers: bearer(keys.owner.key), expect: { status: 401 } },
      { name: "other project's key", headers: bearer(keys.bOwner.key), expect: { status: 401 } },
      { name: 'admin token', headers: admin, expect: { status: 401 } },
    ].map((c) => ({ ...c, expect: { status: 'public' } }));
  }

  // The metrics token is no key: every route but the metrics one refuses it as unknown.
  const metricsToken: Case = {
    name: 'metrics token',
    headers: bearer(METRICS),
    expect: policy.access === 'metrics' ? { status: 'allowed' } : { status: 401 },
  };
  if (policy.access === 'admin' || policy.access === 'metrics') {
    return [
      ...unauthenticated,
      metricsToken,
      ...(['owner', 'developer', 'reporter', 'bOwner'] as const).map(
        (k): Case => ({ name: `${k} key (admin route)`, headers: bearer(keys[k].key), expect: { status: 403 } }),
      ),
      { name: 'admin token', headers: admin, expect: { status: 'allowed' } },
    ];
  }

  const cases: Case[] = [...unauthenticated, metricsToken];
  const foreign = foreignResource(url);
  cases.push({
    name: "other project's owner key",
    headers: bearer(keys.bOwner.key),
    expect: foreign ? { status: 404, code: foreign } : { status: 'allowed' },
  });
  for (const role of ['owner', 'developer', 'reporter'] as const) {
    if (!roleAtLeast(role, policy.role)) {
      cases.push({
        name: `${role} key (needs ${policy.role})`,
        headers: bearer(keys[ROLE_KEYS[role]].key),
        expect: { status: 403 },
      });
    }
  }
  const lacking: 'readOnly' | 'callOnly' = policy.scope === ('servers:read' satisfies Scope) ? 'callOnly' : 'readOnly';
  cases.push({
    name: `owner key without ${policy.scope}`,
    headers: bearer(keys[lacking].key),
    expect: { status: 403 },
  });
  // Last: the right key may change what the row's resources are (DELETE, rotate).
  cases.push({
    name: `${policy.role} key (the least role that may)`,
    headers: bearer(keys[ROLE_KEYS[policy.role]].key),
    expect: { status: 'allowed' },
  });
  return cases;
}

/** Bodies that make the right key's request succeed where the route needs one; others send none (or `{}`). */
const SAMPLE_BODIES: Record<string, (n: number) => unknown> = {
  'POST /api/projects': (n) => ({ id: `made-${n}`, name: 'made by the matrix' }),
  'POST /api/projects/:pid/members': () => ({ id: 'someone@example.com', role: 'reporter' }),
  'POST /api/projects/:pid/keys': () => ({ name: 'made by the matrix', role: 'reporter' }),
  'POST /api/projects/:pid/keys/:keyId/rotate': () => ({ graceMs: 0 }),
  'POST /api/projects/:pid/groups': (n) => ({ id: `made-${n}`, name: 'made by the matrix' }),
  'PUT /api/projects/:pid/groups/:gid': () => ({ name: 'replaced by the matrix', serverIds: [] }),
  'POST /api/projects/:pid/groups/:gid/route': () => ({ tool: 'echo' }),
  'POST /api/projects/:pid/groups/:gid/tools/:tool': () => ({}),
  'POST /api/projects/:pid/endpoints': () => ({ name: 'made by the matrix' }),
  'POST /e/:token/tools/:tool': () => ({}),
  'POST /api/servers': (n) => ({
    id: `made-${n}`,
    transport: 'streamable-http',
    config: { url: 'http://127.0.0.1:9/mcp' },
  }),
  'PUT /api/servers/:id': () => ({
    transport: 'streamable-http',
    config: { url: 'http://127.0.0.1:9/mcp' },
    tags: ['x'],
  }),
  'POST /mcp/:id/:tool': () => ({}),
  'POST /mcp/:id': () => ({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  'POST /messages/:id': () => ({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  'POST /mcp': () => ({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  'POST /messages': () => ({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
};
const SAMPLE_QUERIES: Record<string, string> = { 'GET /api/client-config': '?client=cursor' };

/**
 * Redis state that a refused request must not change: key → digest of its content (sorted). Usage counters,
 * `lastUsedAt` and the alert retry queue are left out: an earlier admitted request writes them a moment later.
 */
async function state(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const digest = (value: unknown) => createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
  for (const key of (await t.redis.keys(`${t.prefix}*`)).sort()) {
    if (key.startsWith(`${t.prefix}usage:`)) continue;
    // The alert retry queue moves on its own timer (a test alert to an unreachable webhook, sent earlier).
    if (key === t.keys.alertRetries) continue;
    const type = await t.redis.type(key);
    if (type === 'hash') {
      const hash = await t.redis.hgetall(key);
      const fields = Object.keys(hash).sort();
      const norm = (f: string) => {
        if (key !== t.keys.apiKeys) return hash[f];
        const { lastUsedAt: _, ...record } = JSON.parse(hash[f] ?? '{}') as Record<string, unknown>;
        return record;
      };
      out[key] = digest(fields.map((f) => [f, norm(f)]));
    } else if (type === 'stream') out[key] = `xlen ${await t.redis.xlen(key)}`;
    else if (type === 'set') out[key] = digest((await t.redis.smembers(key)).sort());
    else if (type === 'zset') out[key] = digest(await t.redis.zrange(key, '0', '-1'));
    else out[key] = digest(await t.redis.get(key));
  }
  return out;
}

function changedKeys(before: Record<string, string>, after: Record<string, string>): string[] {
  const all = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...all].filter((k) => before[k] !== after[k]).map((k) => k.slice(t.prefix.length));
}

function check(res: LightMyRequestResponse, method: string, expected: Expect, what: string): void {
  const code = errorCode(res);
  const detail = `${what}: ${res.statusCode} ${res.body.slice(0, 300)}`;
  switch (expected.status) {
    case 401:
      expect(res.statusCode, detail).toBe(401);
      expect(res.headers['www-authenticate'], detail).toMatch(/^Bearer /);
      // A HEAD answer has no body; every other names the error.
      if (method === 'HEAD') expect(res.body, detail).toBe('');
      else expect(code, detail).toBe('unauthorized');
      break;
    case 403:
      expect(res.statusCode, detail).toBe(403);
      expect(code, detail).toBe('forbidden');
      break;
    case 404:
      expect(res.statusCode, detail).toBe(404);
      expect(code, detail).toBe(expected.code);
      break;
    case 'allowed':
      expect([401, 403, 404], detail).not.toContain(res.statusCode);
      // Past the door: any answer but a server error, save the worker being away (none runs in this test).
      expect(res.statusCode < 500 ? 'answered' : `${res.statusCode} ${code}`, detail).toMatch(
        /^(answered|503 worker_unavailable)$/,
      );
      break;
    case 'public':
      expect([401, 403], detail).not.toContain(res.statusCode);
      expect(res.headers['www-authenticate'], detail).toBeUndefined();
      break;
  }
}

describe('every route × every credential', () => {
  let n = 0;
  it.each(Object.entries(ROUTE_POLICIES))('%s', async (row, policy) => {
    const [method, pattern] = row.split(' ') as [string, string];
    expect(app.hasRoute({ method: method as 'GET', url: pattern }), `${row} is not a route of the app`).toBe(true);
    n += 1;
    // Fresh resources of project A for this row: the right key may delete or rotate them.
    const serverId = `row-${n}`;
    await serverOfA(serverId);
    const victim = await createKey(A, { name: `victim-${n}`, role: 'reporter' });
    const webhook = pattern.includes(':webhookId') ? await createWebhook() : '';
    const group = `group-${n}`;
    if (pattern.includes(':gid')) await groupOfA(group, serverId);
    const endpoint = pattern.includes(':eid') || pattern.includes(':token') ? await endpointOfA() : undefined;
    const url =
      pattern
        .replace(/:(\w+)/g, (_, param: string) => {
          const fill: Record<string, string> = {
            pid: A,
            id: serverId,
            keyId: victim.id,
            tool: 'echo',
            webhookId: webhook,
            gid: group,
            eid: endpoint?.id ?? '',
            token: endpoint?.token ?? '',
          };
          const value = fill[param];
          if (value === undefined) throw new Error(`no sample value for :${param} (${row}): add one to the matrix`);
          return value;
        })
        .replace(/\*$/, 'anything') + (SAMPLE_QUERIES[row] ?? '');
    let k = 0;
    for (const c of casesFor(method, pattern, policy)) {
      // A body of its own per credential: a server id another caller already created (the admin's own, say)
      // answers 404 to a key, as any server it may not see.
      k += 1;
      const body = SAMPLE_BODIES[row]?.(n * 100 + k) ?? (method === 'POST' || method === 'PUT' ? {} : undefined);
      const refused = c.expect.status !== 'allowed' && c.expect.status !== 'public';
      const before = refused ? await state() : undefined;
      const res = await call((c.method ?? method) as InjectOptions['method'], url, c.headers, body);
      check(res, c.method ?? method, c.expect, `${row} with ${c.name}`);
      // A refused request changes nothing.
      if (before) expect(changedKeys(before, await state()), `${row} with ${c.name} changed Redis`).toEqual([]);
    }
  });
});

describe('another project looks like nothing', () => {
  it("answers another project's resources exactly like missing ones", async () => {
    await serverOfA('hidden');
    const victim = await createKey(A, { name: 'hidden-key', role: 'reporter' });
    const b = bearer(keys.bOwner.key);
    const pairs: [string, string][] = [
      ['/api/servers/hidden', '/api/servers/nothing-here'],
      ['/api/servers/hidden/tools', '/api/servers/nothing-here/tools'],
      [`/api/projects/${A}/keys`, '/api/projects/nothing-here/keys'],
      [`/api/projects/${A}/members`, '/api/projects/nothing-here/members'],
      [`/api/usage/${victim.id}`, `/api/usage/${'q'.repeat(16)}`],
      ['/mcp/hidden', '/mcp/nothing-here'],
      ['/sse/hidden', '/sse/nothing-here'],
    ];
    for (const [theirs, missing] of pairs) {
      const [x, y] = [await call('GET', theirs, b), await call('GET', missing, b)];
      const id = (u: string) => /\/(hidden|proj-a|nothing-here|q{16}|[a-z0-9]{16})(\/|$)/.exec(u)?.[1] ?? '';
      const normal = (res: LightMyRequestResponse, u: string) => {
        const { error } = res.json() as { error: { code: string; message: string } };
        return { status: res.statusCode, code: error.code, message: error.message.replace(id(u), '<id>') };
      };
      expect(normal(x, theirs), theirs).toEqual(normal(y, missing));
    }
    const post = await call('POST', '/mcp/hidden/echo', b, {});
    expect(post.statusCode).toBe(404);
    expect(errorCode(post)).toBe('server_not_found');
  });

  it('lists only the own project in listings and discovery', async () => {
    const b = bearer(keys.bOwner.key);
    expect((await call('GET', '/api/projects', b)).json()).toMatchObject({ projects: [{ id: B }] });
    expect((await call('GET', '/api/projects', b)).json().projects).toHaveLength(1);
    const servers = (await call('GET', '/api/servers', b)).json() as { servers: { project?: string }[] };
    expect(servers.servers.every((s) => s.project === B)).toBe(true);
    const discovery = await call('GET', '/.well-known/mcp-servers', b);
    expect(discovery.body).not.toContain('row-');
    const anonymous = await call('GET', '/.well-known/mcp-servers');
    expect(anonymous.json().servers).toEqual([]);
    const config = await call('GET', '/api/client-config?client=cursor', b);
    expect(config.body).not.toContain('row-');
    const ownConfig = await call('GET', '/api/client-config?client=cursor', bearer(keys.reporter.key));
    expect(ownConfig.body).toContain('row-');
  });
});

// ---- focused behaviours ----------------------------------------------------------------------------------

describe('key rotation', () => {
  it('keeps the old key working for its grace time only; the new one keeps working', async () => {
    const old = await createKey(A, { name: 'rotating', role: 'reporter' });
    expect((await call('GET', '/api/servers', bearer(old.key))).statusCode).toBe(200);
    const graceMs = 800;
    const rotated = await call('POST', `/api/projects/${A}/keys/${old.id}/rotate`, admin, { graceMs });
    const rotatedAt = now;
    expect(rotated.statusCode).toBe(201);
    expect(rotated.headers['cache-control']).toBe('no-store');
    const fresh = rotated.json() as Key & { previous: { rotatedTo: string; expiresAt: string } };
    rawKeys.push(fresh.key);
    expect(fresh.previous.rotatedTo).toBe(fresh.id);

    const during = await call('GET', '/api/servers', bearer(old.key));
    expect(during.statusCode).toBe(200);
    expect((await call('GET', '/api/servers', bearer(fresh.key))).statusCode).toBe(200);

    now = rotatedAt + graceMs + 100; // past the old key's grace on the hub's clock
    // Within the key cache's 2 s trust, but past the key's own expiry: refused.
    const after = await call('GET', '/api/servers', bearer(old.key));
    expect(after.statusCode).toBe(401);
    expect(after.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(after.json().error.message).toMatch(/expired/);
    expect((await call('GET', '/api/servers', bearer(fresh.key))).statusCode).toBe(200);

    const again = await call('POST', `/api/projects/${A}/keys/${old.id}/rotate`, admin, { graceMs });
    expect(again.statusCode).toBe(409);
  });

  it('with graceMs 0 the old key stops at once, even though it was just cached', async () => {
    const old = await createKey(A, { name: 'rotating-now', role: 'reporter' });
    expect((await call('GET', '/api/servers', bearer(old.key))).statusCode).toBe(200);
    const rotated = await call('POST', `/api/projects/${A}/keys/${old.id}/rotate`, bearer(keys.owner.key), {
      graceMs: 0,
    });
    expect(rotated.statusCode).toBe(201);
    rawKeys.push((rotated.json() as Key).key);
    expect((await call('GET', '/api/servers', bearer(old.key))).statusCode).toBe(401);
  });

  it('revoking a key that was just used refuses it on the next request', async () => {
    const k = await createKey(A, { name: 'to-revoke', role: 'reporter' });
    expect((await call('GET', '/api/servers', bearer(k.key))).statusCode).toBe(200);
    expect((await call('DELETE', `/api/projects/${A}/keys/${k.id}`, bearer(keys.owner.key))).statusCode).toBe(200);
    const res = await call('GET', '/api/servers', bearer(k.key));
    expect(res.statusCode).toBe(401);
    expect(res.json().error.message).toMatch(/revoked/);
  });
});

const stdio = (id: string) => ({
  id,
  transport: 'stdio',
  config: { command: 'npx', args: ['@modelcontextprotocol/server-everything'], env: { TOKEN: ENV_SECRET } },
});

describe('server writes', () => {
  it('a reporter and a developer cannot register a stdio server; an owner can', async () => {
    const reporter = await call('POST', '/api/servers', bearer(keys.reporter.key), stdio('stdio-r'));
    expect(reporter.statusCode).toBe(403);
    const developer = await call('POST', '/api/servers', bearer(keys.developer.key), stdio('stdio-d'));
    expect(developer.statusCode).toBe(403);
    expect(developer.json().error.message).toMatch(/stdio/);
    const viaPut = await call('PUT', '/api/servers/stdio-d', bearer(keys.developer.key), stdio('stdio-d'));
    expect(viaPut.statusCode).toBe(403);
    expect(await registry.getServer('stdio-r')).toBeNull();
    expect(await registry.getServer('stdio-d')).toBeNull();

    const owner = await call('POST', '/api/servers', bearer(keys.owner.key), stdio('stdio-o'));
    expect(owner.statusCode).toBe(201);
    expect(owner.json()).toMatchObject({ id: 'stdio-o', project: A, config: { env: { TOKEN: '***' } } });
    // A developer may not turn an http server into a stdio one either.
    await call('POST', '/api/servers', bearer(keys.developer.key), {
      id: 'http-d',
      transport: 'streamable-http',
      config: { url: 'http://127.0.0.1:9/mcp' },
    });
    const turn = await call('PUT', '/api/servers/http-d', bearer(keys.developer.key), stdio('http-d'));
    expect(turn.statusCode).toBe(403);
    expect((await registry.getServer('http-d'))?.transport).toBe('streamable-http');
  });

  it("a developer registers into its own project: listed for A's keys, 404 for B's", async () => {
    const res = await call('POST', '/api/servers', bearer(keys.developer.key), {
      id: 'dev-http',
      transport: 'streamable-http',
      config: { url: 'http://127.0.0.1:9/mcp' },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json().project).toBe(A);
    const ids = (r: LightMyRequestResponse) => (r.json() as { servers: { id: string }[] }).servers.map((s) => s.id);
    expect(ids(await call('GET', '/api/servers', bearer(keys.reporter.key)))).toContain('dev-http');
    expect((await call('GET', '/api/servers/dev-http', bearer(keys.reporter.key))).statusCode).toBe(200);
    expect(ids(await call('GET', '/api/servers', bearer(keys.bOwner.key)))).not.toContain('dev-http');
    expect((await call('GET', '/api/servers/dev-http', bearer(keys.bOwner.key))).statusCode).toBe(404);
    expect((await call('DELETE', '/api/servers/dev-http', bearer(keys.bOwner.key))).statusCode).toBe(404);
    expect(await registry.getServer('dev-http')).not.toBeNull();

    // Naming another project in the body does not move a key's server there.
    const elsewhere = await call('POST', '/api/servers', bearer(keys.developer.key), {
      id: 'dev-elsewhere',
      project: B,
      transport: 'streamable-http',
      config: { url: 'http://127.0.0.1:9/mcp' },
    });
    expect(elsewhere.statusCode).toBe(403);
    // Nor does B's key take over A's server id by PUT.
    const takeover = await call('PUT', '/api/servers/dev-http', bearer(keys.bOwner.key), {
      transport: 'streamable-http',
      config: { url: 'http://127.0.0.1:9/evil' },
    });
    expect(takeover.statusCode).toBe(404);
    expect((await registry.getServer('dev-http'))?.project).toBe(A);
  });

  it('seals secrets at rest, masks them in every answer, and an unchanged PUT makes no revision', async () => {
    const created = await call('POST', '/api/servers', bearer(keys.developer.key), {
      id: 'with-headers',
      transport: 'streamable-http',
      config: { url: 'http://127.0.0.1:9/mcp', headers: { Authorization: `Bearer ${HEADER_SECRET}` } },
    });
    expect(created.statusCode).toBe(201);
    await call('POST', '/api/servers', bearer(keys.owner.key), stdio('with-env'));

    const stored = JSON.parse((await t.redis.hget(t.keys.servers, 'with-headers')) ?? '{}');
    expect(stored.config.headers.Authorization).toMatch(/^enc:v1:/);
    const storedEnv = JSON.parse((await t.redis.hget(t.keys.servers, 'with-env')) ?? '{}');
    expect(storedEnv.config.env.TOKEN).toMatch(/^enc:v1:/);

    const one = await call('GET', '/api/servers/with-headers', bearer(keys.reporter.key));
    expect(one.json().config.headers).toEqual({ Authorization: '***' });
    const list = await call('GET', '/api/servers', admin);
    expect(list.body).toContain('***');

    const auditBefore = await t.redis.xlen(t.keys.audit);
    const put = await call('PUT', '/api/servers/with-headers', bearer(keys.developer.key), one.json());
    expect(put.statusCode).toBe(200);
    expect(put.json().rev).toBe(one.json().rev);
    expect(put.json().config.headers).toEqual({ Authorization: '***' });
    expect(await t.redis.hget(t.keys.servers, 'with-headers')).toBe(JSON.stringify(stored));
    expect(await t.redis.xlen(t.keys.audit)).toBe(auditBefore);

    // A changed PUT keeps the masked secret as it was (not "***"), sealed.
    const changed = await call('PUT', '/api/servers/with-headers', bearer(keys.developer.key), {
      ...(one.json() as Record<string, unknown>),
      tags: ['changed'],
    });
    expect(changed.json().rev).toBeGreaterThan(one.json().rev);
    const restored = JSON.parse((await t.redis.hget(t.keys.servers, 'with-headers')) ?? '{}');
    expect(restored.config.headers.Authorization).toMatch(/^enc:v1:/);
  });
});

describe('audit stream', () => {
  it('records each admin change with its actor and request id; B cannot read it', async () => {
    const P = 'audited';
    const done: { action: string; requestId: string; actor: Record<string, unknown> }[] = [];
    const step = async (
      action: string,
      method: InjectOptions['method'],
      url: string,
      headers: Record<string, string>,
      payload?: unknown,
    ) => {
      const res = await call(method, url, headers, payload);
      expect(res.statusCode, `${action}: ${res.body}`).toBeLessThan(300);
      done.push({
        action,
        requestId: String(res.headers['x-request-id']),
        actor: headers === admin ? { admin: true } : {},
      });
      return res;
    };
    await step('project.create', 'POST', '/api/projects', admin, { id: P, name: 'audited' });
    const owner = (
      await step('key.create', 'POST', `/api/projects/${P}/keys`, admin, { name: 'o', role: 'owner' })
    ).json() as Key;
    rawKeys.push(owner.key);
    const o = bearer(owner.key);
    const ownerActor = { keyId: owner.id };
    const track = async (...args: Parameters<typeof step>) => {
      const res = await step(...args);
      (done.at(-1) as { actor: Record<string, unknown> }).actor = ownerActor;
      return res;
    };
    const k = (
      await track('key.create', 'POST', `/api/projects/${P}/keys`, o, { name: 'k', role: 'reporter' })
    ).json() as Key;
    rawKeys.push(k.key);
    const rotated = await track('key.rotate', 'POST', `/api/projects/${P}/keys/${k.id}/rotate`, o, { graceMs: 0 });
    rawKeys.push((rotated.json() as Key).key);
    await track('key.revoke', 'DELETE', `/api/projects/${P}/keys/${(rotated.json() as Key).id}`, o);
    await track('member.add', 'POST', `/api/projects/${P}/members`, o, { id: 'dev@example.com', role: 'developer' });
    await track('server.create', 'POST', '/api/servers', o, stdio('audited-srv'));
    await track('server.update', 'PUT', '/api/servers/audited-srv', o, { ...stdio('audited-srv'), tags: ['v2'] });
    await track('server.restart', 'POST', '/api/servers/audited-srv/restart', o);
    await track('server.delete', 'DELETE', '/api/servers/audited-srv', o);

    const res = await call('GET', `/api/audit?project=${P}&limit=1000`, o);
    expect(res.statusCode).toBe(200);
    const entries = res.json().entries as {
      action: string;
      requestId: string;
      actor: Record<string, unknown>;
      project?: string;
    }[];
    for (const expected of done) {
      const entry = entries.find((e) => e.requestId === expected.requestId);
      expect(entry, `${expected.action} is in the audit log`).toBeDefined();
      expect(entry?.action).toBe(expected.action);
      expect(entry?.actor).toMatchObject(expected.actor);
      expect(entry?.project).toBe(P);
    }
    // The sealed and the plain secret of the server stay out of the log.
    expect(res.body).not.toContain(ENV_SECRET);
    expect(res.body).not.toContain('enc:v1:');

    const b = bearer(keys.bOwner.key);
    const named = await call('GET', `/api/audit?project=${P}`, b);
    expect(named.statusCode).toBe(404);
    expect(errorCode(named)).toBe('project_not_found');
    const own = await call('GET', '/api/audit?limit=1000', b);
    expect(own.statusCode).toBe(200);
    const ownEntries = own.json().entries as { project?: string }[];
    expect(ownEntries.length).toBeGreaterThan(0);
    expect(ownEntries.every((e) => e.project === B)).toBe(true);
  });
});

// ---- last: nothing secret was ever answered or logged ----------------------------------------------------

describe('secrets', () => {
  it('never appear in an API answer or a log line', () => {
    expect(answers.length).toBeGreaterThan(300);
    const logs = captured.text();
    expect(logs.length).toBeGreaterThan(0);
    // `mcp_<id>_<secret>`: the id has no `_`, the secret may.
    const secretParts = rawKeys.map((key) => key.slice(key.indexOf('_', 'mcp_'.length) + 1));
    const neverShown = [ENV_SECRET, HEADER_SECRET, ADMIN, SECRET_KEY];
    for (const s of [...neverShown, ...rawKeys, ...secretParts])
      expect(logs.includes(s), 'a secret was logged').toBe(false);
    expect(logs).not.toContain('enc:v1:');
    for (const answer of answers) {
      for (const s of neverShown) expect(answer.text.includes(s), `${answer.what} shows a secret`).toBe(false);
      expect(answer.text.includes('enc:v1:'), `${answer.what} shows a sealed value`).toBe(false);
      if (answer.showsKey) continue;
      for (const s of secretParts) expect(answer.text.includes(s), `${answer.what} shows an API key`).toBe(false);
    }
  });
});
