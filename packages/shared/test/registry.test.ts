import { Redis } from 'ioredis';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { redisUrl, testRedis } from '../../../test/support.js';
import { AppError, type HubEvent, parseEvent, Registry, type ServerSpecBody } from '../src/index.js';

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const subscriber = new Redis(redisUrl());
const events: HubEvent[] = [];
await subscriber.subscribe(t.keys.events);
subscriber.on('message', (_channel: string, message: string) => {
  const event = parseEvent(message);
  if (event) events.push(event);
});

afterAll(async () => {
  subscriber.disconnect();
  await t.cleanup();
});

beforeEach(async () => {
  const keys = await t.redis.keys(`${t.prefix}*`);
  if (keys.length > 0) await t.redis.del(...keys);
  events.length = 0;
});

function stdio(id: string, extra: Partial<ServerSpecBody> = {}): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: 'node', args: ['server.js'], env: { TOKEN: 'secret' } },
    tags: [],
    enabled: true,
    timeoutMs: 60_000,
    ...extra,
  } as ServerSpecBody;
}

async function waitForEvents(count: number): Promise<HubEvent[]> {
  await waitFor(`${count} events`, () => events.length >= count, 2_000);
  return events;
}

describe('Registry', () => {
  it('keeps namespaces unique across the hub, atomically with the write', async () => {
    await registry.upsertServer(stdio('alpha', { namespace: 'shared' }), 'create');
    // Text that merely looks like a namespace (an env entry named "namespace") is not a clash.
    const lookalike = stdio('beta', { config: { command: 'node', args: [], env: { namespace: 'epsilon' } } });
    await registry.upsertServer(lookalike, 'create');
    for (const write of [
      () => registry.upsertServer(stdio('gamma', { namespace: 'shared' }), 'create'),
      () => registry.upsertServer(stdio('beta', { namespace: 'shared' }), 'replace'),
    ]) {
      const err = await write().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({ code: 'server_exists', details: { path: 'namespace' } });
    }
    expect((await registry.getServer('gamma')) === null).toBe(true);
    // A server keeps (and may edit with) its own namespace; a freed namespace can be taken.
    await registry.upsertServer(stdio('alpha', { namespace: 'shared', tags: ['x'] }), 'replace');
    await registry.upsertServer(stdio('alpha', { namespace: 'moved' }), 'replace');
    await registry.upsertServer(stdio('gamma', { namespace: 'shared' }), 'create');
    await registry.upsertServer(stdio('delta', { namespace: 'epsilon' }), 'create');
  });

  it('creates, reads, lists, replaces and deletes a server, bumping the revision each time', async () => {
    const created = await registry.upsertServer(stdio('alpha'), 'create');
    expect(created.created).toBe(true);
    expect(created.spec.rev).toBe(1);
    expect(created.spec.createdAt).toBe(created.spec.updatedAt);
    expect(await registry.getServer('alpha')).toEqual(created.spec);

    await registry.upsertServer(stdio('beta'), 'create');
    expect((await registry.listServers()).map((s) => s.id)).toEqual(['alpha', 'beta']);

    const replaced = await registry.upsertServer(stdio('alpha', { tags: ['prod'] }), 'replace');
    expect(replaced.created).toBe(false);
    expect(replaced.spec.rev).toBe(3);
    expect(replaced.spec.tags).toEqual(['prod']);
    expect(replaced.spec.createdAt).toBe(created.spec.createdAt);

    expect(await registry.deleteServer('alpha')).toBe(4);
    expect(await registry.getServer('alpha')).toBeNull();
    expect(await registry.getRevision()).toBe(4);
  });

  it('refuses to create an existing id and leaves the stored spec unchanged', async () => {
    const first = await registry.upsertServer(stdio('alpha'), 'create');
    await expect(registry.upsertServer(stdio('alpha', { tags: ['x'] }), 'create')).rejects.toMatchObject({
      code: 'server_exists',
    });
    expect(await registry.getServer('alpha')).toEqual(first.spec);
    expect(await registry.getRevision()).toBe(1);
  });

  it('checks the expected revision (optimistic concurrency)', async () => {
    const first = await registry.upsertServer(stdio('alpha'), 'create');
    await expect(registry.upsertServer(stdio('alpha', { tags: ['x'] }), 'replace', 99)).rejects.toMatchObject({
      code: 'revision_conflict',
      details: { currentRev: first.spec.rev },
    });
    const second = await registry.upsertServer(stdio('alpha', { tags: ['x'] }), 'replace', first.spec.rev);
    expect(second.spec.rev).toBe(first.spec.rev + 1);
    await expect(registry.upsertServer(stdio('gamma'), 'replace', 5)).rejects.toBeInstanceOf(AppError);
  });

  it('treats an identical replace as a no-op: no revision, no event', async () => {
    const first = await registry.upsertServer(stdio('alpha'), 'create');
    await waitForEvents(1);
    const again = await registry.upsertServer(stdio('alpha'), 'replace');
    expect(again.changed).toBe(false);
    expect(again.spec).toEqual(first.spec);
    // Events arrive in the order they were published: the next one is the restart's, nothing in between.
    await registry.requestRestart('alpha');
    expect((await waitForEvents(2)).map((e) => e.type)).toEqual(['server.upsert', 'server.restart']);
  });

  it('publishes one event per write, in order, with increasing revisions', async () => {
    await registry.upsertServer(stdio('alpha'), 'create');
    await registry.upsertServer(stdio('alpha', { enabled: false }), 'replace');
    await registry.requestRestart('alpha');
    await registry.replaceTools('alpha', [{ name: 'echo', inputSchema: { type: 'object' } }]);
    await registry.deleteServer('alpha');
    const got = await waitForEvents(5);
    expect(got.map((e) => e.type)).toEqual([
      'server.upsert',
      'server.upsert',
      'server.restart',
      'tool.upsert',
      'server.delete',
    ]);
    const revs = got.map((e) => ('rev' in e ? e.rev : 0));
    expect(revs).toEqual([1, 2, 3, 4, 5]);
    expect(got.every((e) => e.id === 'alpha')).toBe(true);
  });

  it('counts restart requests, so a supervisor that missed the event still sees them', async () => {
    await registry.upsertServer(stdio('alpha'), 'create');
    expect(await registry.getRestartRequests('alpha')).toBe(0);
    await registry.requestRestart('alpha');
    const { restartRequests } = await registry.requestRestart('alpha');
    expect(restartRequests).toBe(2);
    expect(await registry.getRestartRequests('alpha')).toBe(2);
    await expect(registry.requestRestart('nope')).rejects.toMatchObject({ code: 'server_not_found' });
  });

  it('wakes an idle server once, however many callers ask', async () => {
    await registry.upsertServer(stdio('alpha'), 'create');
    await t.redis.hset(t.keys.runtime('alpha'), { status: 'stopped', reason: 'idle', restart_requests: '0' });
    expect(await Promise.all([1, 2, 3, 4].map(() => registry.requestWake('alpha')))).toEqual([1, 1, 1, 1]);
    expect(await registry.getRestartRequests('alpha')).toBe(1);
    await expect(registry.requestWake('ghost')).rejects.toMatchObject({ code: 'server_not_found' });
  });

  it('replaces tools: writes changes only, deletes vanished tools, and removes them with the server', async () => {
    await registry.upsertServer(stdio('alpha'), 'create');
    const echo = { name: 'echo', description: 'echoes', inputSchema: { type: 'object' as const } };
    const add = { name: 'add', inputSchema: { type: 'object' as const, properties: { a: { type: 'number' } } } };
    expect(await registry.replaceTools('alpha', [echo, add])).toBe(2);
    expect(await registry.replaceTools('alpha', [echo, add])).toBe(0);
    expect(await registry.replaceTools('alpha', [{ ...echo, description: 'echoes back' }])).toBe(2);
    const tools = await registry.listTools('alpha');
    expect(tools.map((x) => [x.name, x.description])).toEqual([['echo', 'echoes back']]);
    expect(tools[0]?.rev).toBeGreaterThan(0);
    await registry.deleteServer('alpha');
    expect(await t.redis.exists(t.keys.tools('alpha'))).toBe(0);
    expect(await registry.replaceTools('alpha', [echo])).toBe(-1);
    expect(await t.redis.exists(t.keys.tools('alpha'))).toBe(0);
  });

  it('throws server_not_found when deleting an absent server, and changes nothing', async () => {
    await expect(registry.deleteServer('ghost')).rejects.toMatchObject({ code: 'server_not_found' });
    expect(await registry.getRevision()).toBe(0);
  });

  it('skips a stored record that does not parse instead of failing the listing', async () => {
    const seen: string[] = [];
    const tolerant = new Registry(t.redis, t.keys, (_key, field) => seen.push(field));
    await tolerant.upsertServer(stdio('alpha'), 'create');
    await t.redis.hset(t.keys.servers, 'broken', '{"id":"broken"');
    expect((await tolerant.listServers()).map((s) => s.id)).toEqual(['alpha']);
    expect(seen).toEqual(['broken']);
  });

  it('is atomic: concurrent creates of one id give exactly one winner', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => registry.upsertServer(stdio('race', { tags: [`t${i}`] }), 'create')),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(await registry.getRevision()).toBe(1);
  });

  it('keeps a write whole when the script fails half-way (nothing half-written)', async () => {
    // A wrong-typed revision key makes INCR fail inside the script after the existence check.
    await t.redis.set(t.keys.registryRev, 'not-a-number');
    await expect(registry.upsertServer(stdio('alpha'), 'create')).rejects.toThrow();
    expect(await t.redis.hexists(t.keys.servers, 'alpha')).toBe(0);
  });
});
