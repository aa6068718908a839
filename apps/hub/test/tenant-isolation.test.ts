import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { callTool, mcpClients, textOf, toolNames } from '../../../test/mcp-clients.js';
import { waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

/**
 * Tenants against each other on a running hub (real HTTP, real SDK clients, real Redis; no workers: what is
 * checked here is decided before any worker is asked). Findings 5 (session starvation), 6 (tool shadowing)
 * and the 409 that told a key another project's server id.
 */

const ADMIN = 'tenant-isolation-admin-token-0123456789';
const PER_KEY = 2;
const PER_PROJECT = 3;
const A = 'tenant-a';
const B = 'tenant-b';
const CLIENT_INFO = { name: 'tenant-isolation-test', version: '1.0.0' };

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const clients = mcpClients(CLIENT_INFO);
afterEach(() => clients.closeAll());
let hub: FastifyInstance;
let base: string;

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const admin = bearer(ADMIN);

/** The fields of the answers read here (a created key, or an error). */
interface Answer {
  id: string;
  key: string;
  error: { code: string; message: string; details?: unknown };
}

async function api(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: (text === '' ? undefined : JSON.parse(text)) as Answer };
}

async function createKey(project: string, name: string, role = 'developer'): Promise<{ id: string; key: string }> {
  const res = await api('POST', `/api/projects/${project}/keys`, admin, { name, role });
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return { id: res.json.id, key: res.json.key };
}

/** A 2025-era `initialize` on the aggregated endpoint: opens a session when admitted. */
async function initialize(
  headers: Record<string, string>,
): Promise<{ status: number; session?: string; text: string }> {
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: CLIENT_INFO },
    }),
  });
  return { status: res.status, session: res.headers.get('mcp-session-id') ?? undefined, text: await res.text() };
}

/** A rest server (nothing runs it here) with one `echo` tool in the registry, as a worker would have listed it. */
function restServer(id: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    transport: 'rest',
    config: { baseUrl: 'http://127.0.0.1:9', tools: [{ name: 'echo', method: 'POST', path: '/echo' }] },
    ...extra,
  };
}

async function withEchoTool(id: string): Promise<void> {
  await registry.replaceTools(id, [
    { name: 'echo', inputSchema: { type: 'object', properties: { message: { type: 'string' } } } },
  ]);
}

beforeAll(async () => {
  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_ADMIN_TOKEN: ADMIN,
      HUB_MCP_SESSIONS_PER_KEY: String(PER_KEY),
      HUB_MCP_SESSIONS_PER_PROJECT: String(PER_PROJECT),
      HUB_WAKE_TIMEOUT: '200ms',
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  for (const id of [A, B]) expect((await api('POST', '/api/projects', admin, { id, name: id })).status).toBe(201);
});

afterAll(async () => {
  await clients.closeAll();
  await hub?.close();
  await t.cleanup();
});

describe('aggregated MCP sessions are shared fairly between projects (finding 5)', () => {
  it('caps one project, not the others, and a revoked or rotated key frees its slots at once', async () => {
    const a1 = await createKey(A, 'a1');
    const a2 = await createKey(A, 'a2');
    const b1 = await createKey(B, 'b1');

    const a1Sessions: string[] = [];
    for (let i = 0; i < PER_KEY; i++) {
      const opened = await initialize(bearer(a1.key));
      expect(opened.status, opened.text).toBe(200);
      a1Sessions.push(opened.session as string);
    }
    // Past the key's own cap.
    const overKey = await initialize(bearer(a1.key));
    expect(overKey.status).toBe(429);
    expect(overKey.text).toMatch(/this caller/);

    // The project's second key fills the project's cap (an SSE session counts like a Streamable HTTP one)...
    await clients.sse(`${base}/sse`, bearer(a2.key));
    const overProject = await initialize(bearer(a2.key));
    expect(overProject.status).toBe(429);
    expect(overProject.text).toMatch(/this project/);
    expect(await initialize(bearer(a2.key))).toMatchObject({ status: 429 });

    // ... while another project still opens sessions.
    const other = await initialize(bearer(b1.key));
    expect(other.status, other.text).toBe(200);

    // Revoking a1 ends its sessions and frees their slots at once.
    expect((await api('DELETE', `/api/projects/${A}/keys/${a1.id}`, admin)).status).toBe(200);
    const reaped = hubLogs.lines.filter((l) => l.event === 'mcp.session.close' && l.reason === 'key_revoked');
    expect(reaped.map((l) => l.session_id).sort()).toEqual([...a1Sessions].sort());
    const again = await initialize(bearer(a2.key));
    expect(again.status, again.text).toBe(200);

    // Rotating with no grace ends the old key's sessions too, its SSE stream included.
    const rotated = await api('POST', `/api/projects/${A}/keys/${a2.id}/rotate`, admin, { graceMs: 0 });
    expect(rotated.status).toBe(201);
    const ended = hubLogs.lines.filter((l) => l.event === 'mcp.session.close' && l.reason === 'key_revoked');
    expect(ended.filter((l) => l.transport === 'sse')).toHaveLength(1);
    expect(ended).toHaveLength(PER_KEY + 2);
    const fresh = await initialize(bearer(rotated.json.key));
    expect(fresh.status, fresh.text).toBe(200);
  });
});

describe('tool names cannot be captured (finding 6)', () => {
  it('refuses a namespace another server has, or one with the tool separator in it', async () => {
    const aOwner = await createKey(A, 'a-owner');
    const bDev = await createKey(B, 'b-dev');
    expect((await api('POST', '/api/servers', bearer(aOwner.key), restServer('a-echo'))).status).toBe(201);

    const stolen = await api('POST', '/api/servers', bearer(bDev.key), restServer('b-echo', { namespace: 'a-echo' }));
    expect(stolen.status).toBe(409);
    expect(stolen.json.error).toMatchObject({ code: 'server_exists', details: { path: 'namespace' } });
    // The holder is not named: it is another project's server.
    expect(JSON.stringify(stolen.json)).not.toContain(A);

    // Taking it over by renaming an existing server is refused the same way.
    expect((await api('POST', '/api/servers', bearer(bDev.key), restServer('b-echo'))).status).toBe(201);
    const renamed = await api(
      'PUT',
      '/api/servers/b-echo',
      bearer(bDev.key),
      restServer('b-echo', { namespace: 'a-echo' }),
    );
    expect(renamed.status).toBe(409);

    // `a__b` + `echo` and `a` + `b__echo` would be one name: the separator is not allowed in a namespace.
    const split = await api(
      'POST',
      '/api/servers',
      bearer(bDev.key),
      restServer('b-split', { namespace: 'a-echo__x' }),
    );
    expect(split.status).toBe(400);
    expect(split.json.error.details).toEqual([{ path: 'namespace', message: expect.stringMatching(/separator/) }]);
    const byId = await api('POST', '/api/servers', bearer(bDev.key), restServer('b__echo'));
    expect(byId.status).toBe(400);
  });

  it('refuses a namespace that ends with the start of the separator: `evrest_` + `echo` is not `evrest` + `_echo`', async () => {
    const aOwner = await createKey(A, 'a-owner-evrest');
    const bDev = await createKey(B, 'b-dev-evrest');
    // Project B's server, namespace `evrest`, with a tool `_echo`: its aggregated name is `evrest___echo`.
    const tool = { name: '_echo', method: 'POST', path: '/echo' };
    const b = restServer('b-evrest', { namespace: 'evrest' });
    (b.config as { tools: unknown[] }).tools = [tool];
    expect((await api('POST', '/api/servers', bearer(bDev.key), b)).status).toBe(201);
    await registry.replaceTools('b-evrest', [{ name: '_echo', inputSchema: { type: 'object' } }]);

    // Project A's `evrest_` + `echo` would be the same name: the list would hide both, and once one side is
    // disabled the other would receive the admin's calls meant for it. Refused, by POST and by PUT.
    const clash = await api(
      'POST',
      '/api/servers',
      bearer(aOwner.key),
      restServer('a-evrest', { namespace: 'evrest_' }),
    );
    expect(clash.status).toBe(400);
    expect(clash.json.error.message).toMatch(/ends with "_", the start of the tool separator "__"/);
    expect(clash.json.error.details).toEqual([{ path: 'namespace', message: expect.stringMatching(/separator/) }]);
    expect((await api('POST', '/api/servers', bearer(aOwner.key), restServer('a-evrest'))).status).toBe(201);
    const renamed = await api(
      'PUT',
      '/api/servers/a-evrest',
      bearer(aOwner.key),
      restServer('a-evrest', { namespace: 'evrest_' }),
    );
    expect(renamed.status).toBe(400);
    // A namespace defaulting to an id that ends with `_` is refused the same way.
    const byId = await api('POST', '/api/servers', bearer(aOwner.key), restServer('a-evrest_'));
    expect(byId.status).toBe(400);
    expect(byId.json.error.message).toMatch(/defaults to the id/);
    await withEchoTool('a-evrest');

    // The admin sees one tool per name, and `evrest___echo` reaches B's `_echo` only.
    const client = await clients.modern(`${base}/mcp`, admin);
    const names = await toolNames(client);
    expect(names).toEqual(expect.arrayContaining(['evrest___echo', 'a-evrest__echo']));
    expect(hubLogs.lines.some((l) => l.event === 'mcp.aggregate.duplicate' && l.tool === 'evrest___echo')).toBe(false);
    // No worker runs here: the call is routed to B's server and ends at its (absent) worker.
    const routed = await callTool(client, 'evrest___echo', {}).catch((err: Error) => err.message);
    expect(typeof routed === 'string' ? routed : textOf(routed)).not.toMatch(/unknown tool/);
    const accepted = hubLogs.lines.filter((l) => l.event === 'tool.call.accepted' && l.tool === '_echo');
    expect(accepted.map((l) => l.server)).toEqual(['b-evrest']);
  });

  it('never routes a name two servers answer to (data written before the rule): both are left out', async () => {
    const victim = await api('POST', '/api/servers', admin, restServer('zz-victim', { namespace: 'shared-ns' }));
    expect(victim.status).toBe(201);
    expect((await api('POST', '/api/servers', admin, restServer('aa-attacker', { project: B }))).status).toBe(201);
    // Written straight into Redis, as an older hub would have let it be: same namespace, and its id sorts first.
    const stored = JSON.parse((await t.redis.hget(t.keys.servers, 'aa-attacker')) as string);
    await t.redis.hset(t.keys.servers, 'aa-attacker', JSON.stringify({ ...stored, namespace: 'shared-ns' }));
    await withEchoTool('zz-victim');
    await withEchoTool('aa-attacker');
    await t.redis.publish(t.keys.events, JSON.stringify({ type: 'server.upsert', id: 'aa-attacker', rev: 0, ts: '' }));

    const client = await clients.modern(`${base}/mcp`, admin);
    await waitFor(
      'the aggregated list without the duplicate',
      async () => !(await toolNames(client)).includes('shared-ns__echo'),
      5_000,
    );
    await expect(callTool(client, 'shared-ns__echo', { message: 'secret argument' })).rejects.toThrow(/unknown tool/);
    await expect(callTool(client, 'shared-ns.echo', { message: 'secret argument' })).rejects.toThrow(/unknown tool/);
    expect(hubLogs.lines.some((l) => l.event === 'tool.call.accepted' && l.tool === 'echo')).toBe(false);
    const warning = hubLogs.lines.find((l) => l.event === 'mcp.aggregate.duplicate' && l.tool === 'shared-ns__echo');
    expect(warning?.servers).toEqual(['aa-attacker', 'zz-victim']);
  });

  it("a key's aggregated call reaches only its own project's servers", async () => {
    const aDev = await createKey(A, 'a-dev');
    const bDev = await createKey(B, 'b-dev-2');
    expect((await api('POST', '/api/servers', bearer(aDev.key), restServer('a-tools'))).status).toBe(201);
    expect((await api('POST', '/api/servers', bearer(bDev.key), restServer('b-tools'))).status).toBe(201);
    await withEchoTool('a-tools');
    await withEchoTool('b-tools');

    const client = await clients.modern(`${base}/mcp`, bearer(aDev.key));
    const names = await toolNames(client);
    expect(names).toContain('a-tools__echo');
    expect(names.filter((n) => n.startsWith('b-'))).toEqual([]);
    await expect(callTool(client, 'b-tools__echo', { message: 'x' })).rejects.toThrow(/unknown tool/);
    // Moved to project B by the admin: A's key no longer reaches it by its old name.
    expect((await api('PUT', '/api/servers/a-tools', admin, restServer('a-tools', { project: B }))).status).toBe(200);
    const result = await callTool(client, 'a-tools__echo', { message: 'x' }).catch((err: Error) => err.message);
    expect(typeof result === 'string' ? result : textOf(result)).toMatch(/unknown tool/);
  });
});

describe('server ids of other projects are not discoverable (finding 8)', () => {
  it("answers POST of another project's id 404, as GET and PUT do; the own project's duplicate stays 409", async () => {
    const aDev = await createKey(A, 'a-dev-ids');
    const bDev = await createKey(B, 'b-dev-ids');
    expect((await api('POST', '/api/servers', bearer(bDev.key), restServer('b-secret-id'))).status).toBe(201);

    const post = await api('POST', '/api/servers', bearer(aDev.key), restServer('b-secret-id'));
    const get = await api('GET', '/api/servers/b-secret-id', bearer(aDev.key));
    const missing = await api('GET', '/api/servers/no-such-server', bearer(aDev.key));
    expect(post.status).toBe(404);
    expect(post.json.error).toEqual(get.json.error);
    expect(missing.json.error).toEqual({ ...get.json.error, message: 'server "no-such-server" not found' });

    const own = await api('POST', '/api/servers', bearer(bDev.key), restServer('b-secret-id'));
    expect(own.status).toBe(409);
    expect(own.json.error.code).toBe('server_exists');
  });
});
