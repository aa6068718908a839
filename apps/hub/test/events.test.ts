import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { hubApi } from '../../../test/hub-api.js';
import { echoServer, waitFor } from '../../../test/processes.js';
import { useHubStack } from './hub-stack.js';

// Issue 15, item 4: GET /api/events, the live status feed. A real supervisor and workers: a registration, a
// kill -9 and a restart show up in order; another project's key sees none of it; Last-Event-ID resumes.
const ADMIN = 'admin-token-events-0123456789';
const stack = useHubStack(ADMIN);
const { registry } = stack;
const keys: Record<'a' | 'b', string> = { a: '', b: '' };

interface FeedEvent {
  id?: string;
  event: string;
  data: { type?: string; server?: string; status?: string; reason?: string };
}

/** An open event stream, read in the background into `events` until `close()`. */
interface Feed {
  status: number;
  events: FeedEvent[];
  close(): void;
}

async function openFeed(token: string, lastEventId?: string): Promise<Feed> {
  const abort = new AbortController();
  const res = await request(`${stack.base}/api/events`, {
    headers: { authorization: `Bearer ${token}`, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
    signal: abort.signal,
  });
  const feed: Feed = { status: res.statusCode, events: [], close: () => abort.abort() };
  let buffer = '';
  void (async () => {
    try {
      for await (const chunk of res.body) {
        buffer += (chunk as Buffer).toString('utf8');
        let cut = buffer.indexOf('\n\n');
        while (cut >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          cut = buffer.indexOf('\n\n');
          const event: FeedEvent = { event: 'message', data: {} };
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) event.id = line.slice(4);
            else if (line.startsWith('event: ')) event.event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data === '') continue;
          event.data = JSON.parse(data);
          feed.events.push(event);
        }
      }
    } catch {
      // closed by the test
    }
  })();
  return feed;
}

const call = hubApi(() => stack.base, ADMIN);
/** An admin API call that must succeed; answers its JSON. */
async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const answer = await call(method, path, body);
  expect(answer.status, JSON.stringify(answer.json)).toBeLessThan(300);
  return answer.json;
}

const of = (feed: Feed, server: string) => feed.events.filter((e) => e.data.server === server);
const summary = (events: FeedEvent[]) => events.map((e) => (e.data.status ? `${e.event}:${e.data.status}` : e.event));

/** Waits until `feed` holds an event of `server` matching `match`, after `from` of its events. */
async function seen(feed: Feed, server: string, match: (e: FeedEvent) => boolean, from = 0): Promise<number> {
  const found = await waitFor(
    `${server}: ${match.toString()}`,
    async () => {
      const index = feed.events.findIndex((e, i) => i >= from && e.data.server === server && match(e));
      return index >= 0 ? { index } : null;
    },
    20_000,
  );
  return found.index;
}

beforeAll(async () => {
  for (const p of ['a', 'b'] as const) {
    await api('POST', '/api/projects', { id: `ev${p}`, name: p });
    keys[p] = (await api('POST', `/api/projects/ev${p}/keys`, { name: 'k', role: 'reporter' })).key as string;
  }
}, 30_000);

describe('GET /api/events', () => {
  it('shows a registration, a kill and a restart in order, only to those who may see the server', async () => {
    const admin = await openFeed(ADMIN);
    const a = await openFeed(keys.a);
    const b = await openFeed(keys.b);
    expect([admin.status, a.status, b.status]).toEqual([200, 200, 200]);

    await api('POST', '/api/servers', { ...echoServer('ev-one'), project: 'eva' });
    const up = await seen(a, 'ev-one', (e) => e.data.status === 'running');
    const runtime = await registry.getRuntime('ev-one');
    process.kill(runtime?.pid as number, 'SIGKILL');
    const back = await seen(a, 'ev-one', (e) => e.data.status === 'running', up + 1);
    await api('POST', '/api/servers/ev-one/restart');
    const restarted = await seen(a, 'ev-one', (e) => e.event === 'server.restart', back + 1);
    await seen(a, 'ev-one', (e) => e.data.status === 'running', restarted + 1);

    const events = summary(of(a, 'ev-one'));
    expect(events[0]).toBe('server.upsert');
    // Running, then not running after the kill, then running again; the restart request, then running again.
    const firstRunning = events.indexOf('runtime.update:running');
    const afterKill = events.findIndex(
      (e, i) => i > firstRunning && e.startsWith('runtime.update:') && e !== 'runtime.update:running',
    );
    const runningAgain = events.indexOf('runtime.update:running', afterKill);
    const restart = events.indexOf('server.restart');
    expect(firstRunning).toBeGreaterThan(0);
    expect(afterKill).toBeGreaterThan(firstRunning);
    expect(runningAgain).toBeGreaterThan(afterKill);
    expect(restart).toBeGreaterThan(runningAgain);
    expect(events.lastIndexOf('runtime.update:running')).toBeGreaterThan(restart);
    // Ids grow with each event.
    const seqs = of(a, 'ev-one').map((e) => Number(e.id?.split('-')[1]));
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));

    // The admin saw the same events; the other project's key saw none of them.
    await waitFor('admin caught up', async () => (of(admin, 'ev-one').length >= events.length ? true : null), 10_000);
    expect(summary(of(admin, 'ev-one')).slice(0, events.length)).toEqual(events);
    expect(b.events.filter((e) => e.data.server === 'ev-one')).toEqual([]);
    for (const f of [admin, a, b]) f.close();
  });

  it('resumes with Last-Event-ID: what was missed, once; an id it cannot resume from gets a reset', async () => {
    const a = await openFeed(keys.a);
    await api('PUT', '/api/servers/ev-one', { ...echoServer('ev-one'), project: 'eva', tags: ['first'] });
    await seen(a, 'ev-one', (e) => e.event === 'server.upsert');
    const last = a.events.at(-1)?.id as string;
    a.close();

    await api('PUT', '/api/servers/ev-one', { ...echoServer('ev-one'), project: 'eva', tags: ['second'] });
    await api('POST', '/api/servers', { ...echoServer('ev-b'), project: 'evb' });
    await api('DELETE', '/api/servers/ev-one');
    const resumed = await openFeed(keys.a, last);
    await seen(resumed, 'ev-one', (e) => e.event === 'server.delete');
    const replayed = of(resumed, 'ev-one');
    expect(replayed[0]?.event).toBe('server.upsert');
    expect(Number(replayed[0]?.id?.split('-')[1])).toBe(Number(last.split('-')[1]) + 1);
    expect(new Set(replayed.map((e) => e.id)).size).toBe(replayed.length);
    // A deleted server's events still reach only its project.
    expect(resumed.events.some((e) => e.data.server === 'ev-b')).toBe(false);
    resumed.close();

    const stranger = await openFeed(keys.a, '0123456789ab-5');
    await waitFor('reset', async () => (stranger.events[0] ? stranger.events[0] : null), 10_000);
    expect(stranger.events[0]?.event).toBe('reset');
    stranger.close();
  });

  it('refuses a key more than its share of streams, in the one error shape', async () => {
    const feeds: Feed[] = [];
    for (let i = 0; i < 10; i++) feeds.push(await openFeed(keys.b));
    expect(feeds.every((f) => f.status === 200)).toBe(true);
    const res = await request(`${stack.base}/api/events`, { headers: { authorization: `Bearer ${keys.b}` } });
    expect(res.statusCode).toBe(429);
    expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
    for (const f of feeds) f.close();
  });
});
