import type { ServerSpecBody } from '@mcp-hub/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import { hubApi } from '../../../test/hub-api.js';
import { echoServer, fixture, waitFor } from '../../../test/processes.js';
import { useHubStack } from './hub-stack.js';

// Issue 15, item 5: the failures of a server's worker, as the supervisor records them, in GET /api/servers/:id and
// GET /api/servers/:id/failures; a real supervisor, a stdio server that dies at start and a worker killed -9.
const ADMIN = 'admin-token-failures-0123456789';
const stack = useHubStack(ADMIN);
const { registry } = stack;
let otherKey: string;

interface Failure {
  at: string;
  reason: string;
  error?: string;
  code?: number | null;
  signal?: string | null;
  pid?: number;
}

const api = hubApi(() => stack.base, ADMIN);
const get = (path: string, token = ADMIN) => api('GET', path, undefined, token);
async function post(path: string, body: unknown): Promise<Record<string, unknown>> {
  const answer = await api('POST', path, body);
  expect(answer.status).toBe(201);
  return answer.json;
}

const failuresOf = async (id: string) => (await get(`/api/servers/${id}/failures`)).json.failures as Failure[];

/** The failures of `id` once there is one. */
const recorded = (id: string) =>
  waitFor(
    `a recorded failure of ${id}`,
    async () => {
      const list = await failuresOf(id);
      return list.length > 0 ? list : null;
    },
    30_000,
  );

beforeAll(async () => {
  await post('/api/projects', { id: 'fp', name: 'fp' });
  await post('/api/projects', { id: 'other', name: 'other' });
  otherKey = (await post('/api/projects/other/keys', { name: 'k', role: 'owner' })).key as string;
  await registry.upsertServer(echoServer('fh-echo', { project: 'fp' }), 'create');
  await registry.upsertServer(
    echoServer('fh-crash', {
      project: 'fp',
      config: { command: process.execPath, args: [fixture('crash-server.mjs')], env: {} },
    } as Partial<ServerSpecBody>),
    'create',
  );
}, 30_000);

describe('failure history', () => {
  it('records a stdio server that dies at start, with what it said on the way out', async () => {
    const failures = await recorded('fh-crash');
    expect(failures[0]).toMatchObject({ reason: 'exited' });
    expect(failures[0]?.error).toContain('missing API_KEY');
    expect(Number.isNaN(Date.parse(failures[0]?.at ?? ''))).toBe(false);
  });

  it('records a worker killed -9, shows it in the server view, and hides it from another project', async () => {
    const runtime = await waitFor(
      'fh-echo running',
      async () => {
        const r = await registry.getRuntime('fh-echo');
        return r?.status === 'running' ? r : null;
      },
      30_000,
    );
    expect(await failuresOf('fh-echo')).toEqual([]);
    process.kill(runtime.pid as number, 'SIGKILL');
    const failures = await recorded('fh-echo');
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ reason: 'exited', signal: 'SIGKILL', pid: runtime.pid });
    const view = await get('/api/servers/fh-echo');
    expect(view.status).toBe(200);
    expect(view.json.failures).toEqual(failures);
    for (const path of ['/api/servers/fh-echo', '/api/servers/fh-echo/failures']) {
      const foreign = await get(path, otherKey);
      expect(foreign.status).toBe(404);
      expect(JSON.stringify(foreign.json)).not.toContain('SIGKILL');
    }
  });
});
