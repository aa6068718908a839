import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { hubApi } from '../../../test/hub-api.js';
import { echoServer, waitFor } from '../../../test/processes.js';
import { useHubStack } from './hub-stack.js';

// Issue 16, item 1: server groups. A real hub, supervisor and workers: a project's group of its servers, its
// health roll-up from the workers' runtime records, membership changes, and what other projects' keys see.
const ADMIN = 'admin-token-groups-0123456789';
const stack = useHubStack(ADMIN);
const api = hubApi(() => stack.base, ADMIN);
const A = 'grp-a';
const B = 'grp-b';
const keys: Record<'aDeveloper' | 'aReporter' | 'bOwner', string> = { aDeveloper: '', aReporter: '', bOwner: '' };

interface GroupView {
  id: string;
  project: string;
  name: string;
  serverIds: string[];
  health: {
    members: number;
    running: number;
    byStatus: Record<string, number>;
    servers: { id: string; status: string }[];
  };
}

async function key(project: string, role: string): Promise<string> {
  const res = await api('POST', `/api/projects/${project}/keys`, { name: `${role}-key`, role });
  expect(res.status).toBe(201);
  return res.json.key as string;
}

beforeAll(async () => {
  for (const id of [A, B]) expect((await api('POST', '/api/projects', { id, name: id })).status).toBe(201);
  keys.aDeveloper = await key(A, 'developer');
  keys.aReporter = await key(A, 'reporter');
  keys.bOwner = await key(B, 'owner');
  for (const [id, project] of [
    ['ga-one', A],
    ['ga-two', A],
    ['gb-one', B],
  ] as const) {
    await stack.registry.upsertServer(echoServer(id, { project }), 'create');
  }
  await waitFor(
    'the servers running',
    async () => {
      const runtimes = await Promise.all(['ga-one', 'ga-two'].map((id) => stack.registry.getRuntime(id)));
      return runtimes.every((r) => r?.status === 'running') ? true : null;
    },
    30_000,
  );
}, 60_000);

describe('server groups', () => {
  it('creates a group of the project’s servers and answers it with the members’ health', async () => {
    const res = await api(
      'POST',
      `/api/projects/${A}/groups`,
      { id: 'core', name: 'Core tools', description: 'what the agents use', serverIds: ['ga-two', 'ga-one'] },
      keys.aDeveloper,
    );
    expect(res.status).toBe(201);
    const group = res.json as unknown as GroupView;
    expect(group).toMatchObject({ id: 'core', project: A, name: 'Core tools', serverIds: ['ga-one', 'ga-two'] });
    expect(group.health).toEqual({
      members: 2,
      running: 2,
      byStatus: { running: 2 },
      servers: [
        { id: 'ga-one', status: 'running' },
        { id: 'ga-two', status: 'running' },
      ],
    });
    // Readable by the project's reporter, listed, and recorded in the audit log.
    const read = await api('GET', `/api/projects/${A}/groups/core`, undefined, keys.aReporter);
    expect(read.status).toBe(200);
    const list = await api('GET', `/api/projects/${A}/groups`, undefined, keys.aReporter);
    expect((list.json.groups as GroupView[]).map((g) => g.id)).toEqual(['core']);
    const audit = await api('GET', '/api/audit');
    expect(JSON.stringify(audit.json)).toContain('group.create');
  });

  it('refuses what would break the group: another project’s server, a taken id, a bad body, a reporter', async () => {
    const foreign = await api('POST', `/api/projects/${A}/groups`, { id: 'x', name: 'x', serverIds: ['gb-one'] });
    expect(foreign.status).toBe(404);
    expect(foreign.json.error).toMatchObject({ code: 'server_not_found', details: { servers: ['gb-one'] } });
    const taken = await api('POST', `/api/projects/${A}/groups`, { id: 'core', name: 'again' });
    expect(taken.status).toBe(409);
    expect((taken.json.error as { code: string }).code).toBe('group_exists');
    for (const bad of [
      { id: 'Bad Id', name: 'x' },
      { id: 'ok', name: '' },
      { id: 'ok', name: 'x', serverIds: ['ga-one', 'ga-one'] },
      { id: 'ok', name: 'x', extra: true },
    ]) {
      expect((await api('POST', `/api/projects/${A}/groups`, bad)).status, JSON.stringify(bad)).toBe(400);
    }
    expect((await api('PUT', `/api/projects/${A}/groups/Not%20A%20Slug`, { name: 'x' })).status).toBe(400);
    const reporter = await api('POST', `/api/projects/${A}/groups`, { id: 'r', name: 'r' }, keys.aReporter);
    expect(reporter.status).toBe(403);
    // Nothing of that was stored.
    expect(Object.keys(await stack.t.redis.hgetall(stack.t.keys.groups(A)))).toEqual(['core']);
  });

  it('changes membership one server at a time, idempotently, and shows a deleted server as missing', async () => {
    await stack.registry.upsertServer(echoServer('ga-three', { project: A }), 'create');
    const added = await api('PUT', `/api/projects/${A}/groups/core/servers/ga-three`, undefined, keys.aDeveloper);
    expect(added.status).toBe(200);
    expect((added.json as unknown as GroupView).serverIds).toEqual(['ga-one', 'ga-three', 'ga-two']);
    const again = await api('PUT', `/api/projects/${A}/groups/core/servers/ga-three`, undefined, keys.aDeveloper);
    expect((again.json as unknown as GroupView).serverIds).toEqual(['ga-one', 'ga-three', 'ga-two']);
    await stack.registry.deleteServer('ga-three');
    const health = ((await api('GET', `/api/projects/${A}/groups/core`)).json as unknown as GroupView).health;
    expect(health.servers.find((s) => s.id === 'ga-three')?.status).toBe('missing');
    expect(health.byStatus.missing).toBe(1);
    const removed = await api('DELETE', `/api/projects/${A}/groups/core/servers/ga-three`, undefined, keys.aDeveloper);
    expect(removed.status).toBe(200);
    expect((removed.json as unknown as GroupView).serverIds).toEqual(['ga-one', 'ga-two']);
    // Another project's server cannot join.
    const foreign = await api('PUT', `/api/projects/${A}/groups/core/servers/gb-one`, undefined, keys.aDeveloper);
    expect(foreign.status).toBe(404);
  });

  it('replaces a group with PUT (201 when new), and deletes it', async () => {
    const created = await api('PUT', `/api/projects/${A}/groups/edge`, { name: 'Edge', serverIds: ['ga-one'] });
    expect(created.status).toBe(201);
    const replaced = await api('PUT', `/api/projects/${A}/groups/edge`, { name: 'Edge 2', serverIds: [] });
    expect(replaced.status).toBe(200);
    expect(replaced.json).toMatchObject({ name: 'Edge 2', serverIds: [], health: { members: 0, running: 0 } });
    expect((await api('DELETE', `/api/projects/${A}/groups/edge`, undefined, keys.aDeveloper)).status).toBe(204);
    const gone = await api('GET', `/api/projects/${A}/groups/edge`);
    expect(gone.status).toBe(404);
    expect((gone.json.error as { code: string }).code).toBe('group_not_found');
  });

  it('explains where a call would go: by rule, by namespace, and falling back when the target stops', async () => {
    const created = await api('PUT', `/api/projects/${A}/groups/routed`, {
      name: 'Routed',
      serverIds: ['ga-one', 'ga-two'],
      rules: [{ id: 'prefer-two', priority: 10, condition: { tool: 'ech*' }, target: { server: 'ga-two' } }],
    });
    expect(created.status).toBe(201);
    const route = async (tool: string) =>
      (
        await api(
          'POST',
          `/api/projects/${A}/groups/routed/route`,
          { tool, arguments: { message: 'x' } },
          keys.aReporter,
        )
      ).json;
    expect(await route('echo')).toMatchObject({ server: 'ga-two', tool: 'echo', by: 'rule', rule: 'prefer-two' });
    expect(await route('ga-one__echo')).toMatchObject({ server: 'ga-one', tool: 'echo', by: 'namespace' });
    // Its tools: each name once, with the members that list it.
    const tools = (await api('GET', `/api/projects/${A}/groups/routed/tools`, undefined, keys.aReporter)).json
      .tools as { name: string; servers: { id: string; status: string }[] }[];
    expect(tools.find((t) => t.name === 'echo')?.servers).toEqual([
      { id: 'ga-one', status: 'running' },
      { id: 'ga-two', status: 'running' },
    ]);
    expect(tools.map((t) => t.name)).toContain('meta');
    // A rule aimed outside the group is refused when written.
    const outside = await api('PUT', `/api/projects/${A}/groups/routed`, {
      name: 'Routed',
      serverIds: ['ga-one'],
      rules: [{ id: 'x', target: { server: 'ga-two' } }],
    });
    expect(outside.status).toBe(400);
    // The rule's target stops (its server is disabled): the call falls back to the member that runs.
    await stack.registry.upsertServer({ ...echoServer('ga-two', { project: A }), enabled: false }, 'replace');
    await waitFor(
      'ga-two stopped',
      async () => ((await stack.registry.getRuntime('ga-two'))?.status !== 'running' ? true : null),
      20_000,
    );
    const fallback = await route('echo');
    expect(fallback).toMatchObject({ server: 'ga-one', by: 'tool' });
    expect((fallback.steps as string[])[0]).toMatch(/^rule prefer-two: matched, but no target can serve: ga-two \(/);
    await stack.registry.upsertServer(echoServer('ga-two', { project: A }), 'replace');
  });

  it('calls through a group: the rule’s server answers, a killed worker is waited for, a stopped server is stood in for; no call fails', async () => {
    await waitFor(
      'ga-two running again',
      async () => ((await stack.registry.getRuntime('ga-two'))?.status === 'running' ? true : null),
      30_000,
    );
    const made = await api('PUT', `/api/projects/${A}/groups/failover`, {
      name: 'Failover',
      serverIds: ['ga-one', 'ga-two'],
      rules: [{ id: 'primary', target: { server: 'ga-two' } }],
    });
    expect(made.status).toBe(201);
    const served: string[] = [];
    const failures: string[] = [];
    const callOnce = async () => {
      const requestId = `failover-${served.length}`;
      const res = await request(`${stack.base}/api/projects/${A}/groups/failover/tools/echo`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${keys.aReporter}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'x-request-id': requestId,
        },
        body: JSON.stringify({ message: requestId }),
      });
      const body = (await res.body.json()) as { isError?: boolean; content?: { text: string }[] };
      if (res.statusCode !== 200 || body.isError || body.content?.[0]?.text !== requestId) {
        failures.push(`${requestId}: ${res.statusCode} ${JSON.stringify(body).slice(0, 200)}`);
      }
      const line = stack.hubLogs.lines.find((l) => l.event === 'tool.call.accepted' && l.request_id === requestId);
      served.push(String(line?.server));
    };
    for (let i = 0; i < 3; i++) await callOnce();
    expect(served).toEqual(['ga-two', 'ga-two', 'ga-two']);
    // A tool no member has is no tool (404), not an outage to retry.
    const unknown = await api('POST', `/api/projects/${A}/groups/failover/tools/no-such-tool`, {}, keys.aReporter);
    expect(unknown.status).toBe(404);
    expect((unknown.json.error as { code: string }).code).toBe('tool_not_found');
    // Its worker killed: the supervisor starts another at once, and a call that found the old one gone waits
    // for it (HUB_WORKER_WAIT) rather than fail.
    const runtime = await stack.registry.getRuntime('ga-two');
    process.kill(runtime?.pid as number, 'SIGKILL');
    // Once the kill is seen (the runtime record no longer names the killed process as running), no call fails: the
    // successor is waited for, or the other member answers. (A call that reached the dying process first may be
    // lost with it, as on any route: whether it ran is unknown.)
    await waitFor(
      'the kill seen',
      async () => {
        const now = await stack.registry.getRuntime('ga-two');
        return now?.pid !== runtime?.pid || now?.status !== 'running' ? true : null;
      },
      10_000,
    );
    for (let i = 0; i < 20; i++) await callOnce();
    expect(failures).toEqual([]);
    // Its server stopped (disabled) while calls go on: they go to ga-one, none fails; back when it runs again.
    const before = served.length;
    await stack.registry.upsertServer({ ...echoServer('ga-two', { project: A }), enabled: false }, 'replace');
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !served.slice(before).includes('ga-one')) await callOnce();
    for (let i = 0; i < 5; i++) await callOnce();
    expect(served.slice(-5)).toEqual(['ga-one', 'ga-one', 'ga-one', 'ga-one', 'ga-one']);
    await stack.registry.upsertServer(echoServer('ga-two', { project: A }), 'replace');
    const back = Date.now() + 30_000;
    while (Date.now() < back && served.at(-1) !== 'ga-two') await callOnce();
    expect(served.at(-1)).toBe('ga-two');
    expect(failures).toEqual([]);
  }, 90_000);

  it('shows another project nothing, and the admin every group', async () => {
    const other = await api('GET', `/api/projects/${A}/groups`, undefined, keys.bOwner);
    expect(other.status).toBe(404);
    expect((other.json.error as { code: string }).code).toBe('project_not_found');
    expect((await api('GET', `/api/projects/${A}/groups/core`, undefined, keys.bOwner)).status).toBe(404);
    expect((await api('GET', '/api/groups', undefined, keys.bOwner)).status).toBe(403);
    expect((await api('POST', `/api/projects/${B}/groups`, { id: 'b-set', name: 'B' }, keys.bOwner)).status).toBe(201);
    const all = await api('GET', '/api/groups');
    expect((all.json.groups as GroupView[]).map((g) => `${g.project}/${g.id}`).sort()).toEqual([
      `${A}/core`,
      `${A}/failover`,
      `${A}/routed`,
      `${B}/b-set`,
    ]);
  });
});
