import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubApi } from '../../../test/hub-api.js';
import { echoServer, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl } from '../../../test/support.js';
import { buildHub } from '../src/index.js';
import { useHubStack } from './hub-stack.js';

// Issue 16, item 3 (the REST part): connection endpoints. A real hub and a second replica on the same Redis, a real
// supervisor and workers: an endpoint's unguessable URL serves its group (or its project) to the keys bound to it,
// and a re-issue makes the old URL answer 404 on the other replica at once.
const ADMIN = 'admin-token-endpoints-0123456789';
const stack = useHubStack(ADMIN);
const api = hubApi(() => stack.base, ADMIN);
const P = 'ep-proj';
const OTHER = 'ep-other';
const keys: Record<'bound' | 'unbound' | 'other', { id: string; key: string }> = {} as never;
let second: FastifyInstance;
let secondBase = '';

async function key(project: string, name: string): Promise<{ id: string; key: string }> {
  const res = await api('POST', `/api/projects/${project}/keys`, { name, role: 'reporter' });
  expect(res.status).toBe(201);
  return { id: res.json.id as string, key: res.json.key as string };
}

beforeAll(async () => {
  for (const id of [P, OTHER]) expect((await api('POST', '/api/projects', { id, name: id })).status).toBe(201);
  keys.bound = await key(P, 'bound');
  keys.unbound = await key(P, 'unbound');
  keys.other = await key(OTHER, 'other');
  for (const id of ['ep-one', 'ep-two']) await stack.registry.upsertServer(echoServer(id, { project: P }), 'create');
  await waitFor(
    'both servers running',
    async () => {
      const all = await Promise.all(['ep-one', 'ep-two'].map((id) => stack.registry.getRuntime(id)));
      return all.every((r) => r?.status === 'running') ? true : null;
    },
    30_000,
  );
  expect(
    (await api('POST', `/api/projects/${P}/groups`, { id: 'only-one', name: 'One', serverIds: ['ep-one'] })).status,
  ).toBe(201);
  second = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: stack.t.prefix, HUB_PORT: '0', HUB_ADMIN_TOKEN: ADMIN }),
    log: captureLogger('hub').log,
  });
  secondBase = await second.listen({ host: '127.0.0.1', port: 0 });
}, 60_000);
afterAll(async () => {
  await second?.close();
});

describe('connection endpoints', () => {
  let token = '';
  let endpointId = '';

  it('issues an endpoint of a group bound to one key, showing its token once', async () => {
    const res = await api('POST', `/api/projects/${P}/endpoints`, {
      name: 'agents',
      group: 'only-one',
      keyIds: [keys.bound.id],
    });
    expect(res.status).toBe(201);
    token = res.json.token as string;
    endpointId = res.json.id as string;
    expect(token).toMatch(/^mcpe_[A-Za-z0-9_-]{32}$/);
    expect(res.json.urls).toEqual({ tools: `/e/${token}/tools`, call: `/e/${token}/tools/{tool}` });
    // Never shown again, never stored.
    const read = await api('GET', `/api/projects/${P}/endpoints/${endpointId}`);
    expect(JSON.stringify(read.json)).not.toContain(token);
    const stored = JSON.stringify(await stack.t.redis.hgetall(stack.t.keys.endpoints(P)));
    expect(stored).not.toContain(token);
    // Refused: an unknown group, a key of another project.
    expect((await api('POST', `/api/projects/${P}/endpoints`, { name: 'x', group: 'nope' })).status).toBe(404);
    expect((await api('POST', `/api/projects/${P}/endpoints`, { name: 'x', keyIds: [keys.other.id] })).status).toBe(
      404,
    );
  });

  it('serves its group’s tools and calls to the bound key only', async () => {
    const asKey = (k: string) => hubApi(() => stack.base, k);
    const tools = await asKey(keys.bound.key)('GET', `/e/${token}/tools`);
    expect(tools.status).toBe(200);
    const names = (tools.json.tools as { name: string; servers: { id: string }[] }[]).map((t) => t.name);
    expect(names).toContain('echo');
    const called = await callJson(stack.base, `/e/${token}`, 'echo', keys.bound.key, {
      message: 'through the endpoint',
    });
    expect(called.status).toBe(200);
    expect((called.json.content as { text: string }[])[0]?.text).toBe('through the endpoint');
    expect((await asKey(keys.unbound.key)('GET', `/e/${token}/tools`)).status).toBe(403);
    const foreign = await callJson(stack.base, `/e/${token}`, 'echo', keys.other.key, { message: 'x' });
    expect(foreign.status).toBe(404);
    expect((foreign.json.error as { code: string }).code).toBe('endpoint_not_found');
    // The group holds ep-one only: ep-two's tool is not reachable through it.
    const outside = await callJson(stack.base, `/e/${token}`, 'ep-two__echo', keys.bound.key, { message: 'x' });
    expect(outside.status).toBe(404);
  });

  it('re-issues: the old URL answers 404 on another replica at once, the new one works there', async () => {
    const onSecond = hubApi(() => secondBase, keys.bound.key);
    expect((await onSecond('GET', `/e/${token}/tools`)).status).toBe(200);
    const res = await api('POST', `/api/projects/${P}/endpoints/${endpointId}/reissue`);
    expect(res.status).toBe(200);
    const fresh = res.json.token as string;
    expect(fresh).not.toBe(token);
    const old = await onSecond('GET', `/e/${token}/tools`);
    expect(old.status).toBe(404);
    expect((old.json.error as { code: string }).code).toBe('endpoint_not_found');
    expect((await callJson(secondBase, `/e/${fresh}`, 'echo', keys.bound.key, { message: 'again' })).status).toBe(200);
    expect((await api('DELETE', `/api/projects/${P}/endpoints/${endpointId}`)).status).toBe(204);
    expect((await onSecond('GET', `/e/${fresh}/tools`)).status).toBe(404);
  });

  it('a default endpoint serves every server of its project, by namespace or round robin', async () => {
    const res = await api('POST', `/api/projects/${P}/endpoints`, { name: 'everything' });
    const open = hubApi(() => stack.base, keys.unbound.key);
    const url = `/e/${res.json.token as string}`;
    const tools = (await open('GET', `${url}/tools`)).json.tools as { name: string; servers: { id: string }[] }[];
    expect(tools.find((t) => t.name === 'echo')?.servers.map((s) => s.id)).toEqual(['ep-one', 'ep-two']);
    const served: string[] = [];
    for (const [i, name] of ['ep-two__echo', 'echo', 'echo'].entries()) {
      const requestId = `ep-default-${i}`;
      const answer = await request(stack.base, url, name, keys.unbound.key, requestId);
      expect(answer).toBe(200);
      served.push(
        String(stack.hubLogs.lines.find((l) => l.event === 'tool.call.accepted' && l.request_id === requestId)?.server),
      );
    }
    expect(served[0]).toBe('ep-two');
    expect(new Set(served.slice(1))).toEqual(new Set(['ep-one', 'ep-two']));
  });
});

async function request(base: string, url: string, tool: string, key: string, requestId: string): Promise<number> {
  const res = await fetch(`${base}${url}/tools/${tool}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json',
      'x-request-id': requestId,
    },
    body: JSON.stringify({ message: requestId }),
  });
  await res.text();
  return res.status;
}

async function callJson(base: string, url: string, tool: string, key: string, body: unknown) {
  const res = await fetch(`${base}${url}/tools/${tool}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('tool filtering per endpoint', () => {
  it('neither lists nor calls a denied tool, on the list and the call alike', async () => {
    const denied = await api('POST', `/api/projects/${P}/endpoints`, { name: 'no-meta', tools: { deny: ['meta'] } });
    expect(denied.status).toBe(201);
    const url = `/e/${denied.json.token as string}`;
    const open = hubApi(() => stack.base, keys.unbound.key);
    const names = ((await open('GET', `${url}/tools`)).json.tools as { name: string }[]).map((t) => t.name);
    expect(names).toContain('echo');
    expect(names).not.toContain('meta');
    const call = await callJson(stack.base, url, 'meta', keys.unbound.key, {});
    expect(call.status).toBe(404);
    expect((call.json.error as { code: string }).code).toBe('tool_not_found');
    expect((await callJson(stack.base, url, 'ep-one__meta', keys.unbound.key, {})).status).toBe(404);
  });

  it('with an allow list by server, offers only that server’s tools', async () => {
    const only = await api('POST', `/api/projects/${P}/endpoints`, {
      name: 'two-only',
      tools: { allow: ['ep-two/*'] },
    });
    const url = `/e/${only.json.token as string}`;
    const open = hubApi(() => stack.base, keys.unbound.key);
    const tools = (await open('GET', `${url}/tools`)).json.tools as { name: string; servers: { id: string }[] }[];
    expect(new Set(tools.flatMap((t) => t.servers.map((s) => s.id)))).toEqual(new Set(['ep-two']));
    for (let i = 0; i < 3; i++) {
      const requestId = `two-only-${i}`;
      expect(await request(stack.base, url, 'echo', keys.unbound.key, requestId)).toBe(200);
      const line = stack.hubLogs.lines.find((l) => l.event === 'tool.call.accepted' && l.request_id === requestId);
      expect(line?.server).toBe('ep-two');
    }
    expect((await callJson(stack.base, url, 'ep-one__echo', keys.unbound.key, { message: 'x' })).status).toBe(404);
    // A malformed entry is refused when written.
    expect((await api('POST', `/api/projects/${P}/endpoints`, { name: 'x', tools: { deny: ['a/b/c'] } })).status).toBe(
      400,
    );
  });
});

describe('endpoint tokens stay out of logs', () => {
  it('logs an unknown route under an endpoint URL without its token', async () => {
    const secret = 'mcpe_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const res = await fetch(`${stack.base}/e/${secret}/no-such-route`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    const body = await res.text();
    expect(res.status).toBe(404);
    expect(body).not.toContain(secret);
    expect(stack.hubLogs.text()).not.toContain(secret);
    expect(stack.hubLogs.lines.some((l) => l.url === '/e/<token>/no-such-route')).toBe(true);
  });
});

describe('endpoint token redaction', () => {
  it('replaces a token by its shape, however the path spells the route', async () => {
    const { loggedPath } = await import('@mcp-hub/shared');
    expect(loggedPath('/e/mcpe_abc/tools?x=1')).toBe('/e/<token>/tools');
    expect(loggedPath('/%65/mcpe_AAAAAAAA/tools')).toBe('/%65/<token>/tools');
    expect(loggedPath('/api/servers/x')).toBe('/api/servers/x');
  });
});
