import { createKeys, loadSupervisorConfig, Registry, type ServerSpecBody } from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, killByKeyPrefix, killGroup, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testPrefix } from '../../../test/support.js';
import { createSupervisor, type Supervisor } from '../src/index.js';

/**
 * Finding 5, workers: one project's servers used up MCP_WORKER_MAX and left another project's server
 * pending. A real supervisor with cheap workers (the echo fixture): a project past its quota waits, the
 * other project's server starts.
 */

const prefix = testPrefix();
const redis = new Redis(redisUrl());
const registry = new Registry(redis, createKeys(prefix));
const pids = new Set<number>();
let supervisor: Supervisor | undefined;

afterAll(async () => {
  await supervisor?.close();
  for (const pid of pids) killGroup(pid);
  killByKeyPrefix(prefix);
  const found = await redis.keys(`${prefix}*`);
  if (found.length > 0) await redis.del(...found);
  redis.disconnect();
});

function echoServer(id: string, project: string): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    project,
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
    tags: [],
    enabled: true,
    timeoutMs: 10_000,
  } as ServerSpecBody;
}

async function status(id: string, wanted: string) {
  return waitFor(
    `${id} ${wanted}`,
    async () => {
      const r = await registry.getRuntime(id);
      if (r?.pid !== undefined) pids.add(r.pid);
      return r?.status === wanted ? r : null;
    },
    20_000,
  );
}

describe('worker slots per project', () => {
  it("keeps one project's servers past its quota pending while another project's server starts", async () => {
    const base = 20_000 + Math.floor(Math.random() * 400) * 100;
    supervisor = createSupervisor({
      config: loadSupervisorConfig({
        REDIS_URL: redisUrl(),
        KEY_PREFIX: prefix,
        MCP_WORKER_BASE_PORT: String(base),
        MCP_WORKER_PORT_RANGE: '100',
        MCP_RESYNC_INTERVAL: '300ms',
        MCP_WORKER_MAX: '3',
        MCP_WORKER_MAX_PER_PROJECT: '2',
      }),
      log: captureLogger('supervisor').log,
    });
    await supervisor.start();

    for (const id of ['greedy-1', 'greedy-2', 'greedy-3'])
      await registry.upsertServer(echoServer(id, 'greedy'), 'create');
    await status('greedy-1', 'running');
    await status('greedy-2', 'running');
    const held = await status('greedy-3', 'pending');
    expect(held.reason).toMatch(/MCP_WORKER_MAX_PER_PROJECT=2 workers of project "greedy"/);

    // The slot one project may not take is still there for another.
    await registry.upsertServer(echoServer('modest-1', 'modest'), 'create');
    await status('modest-1', 'running');

    // Full now: the next server of either project waits for the cap, and greedy-3 still for its quota.
    await registry.upsertServer(echoServer('modest-2', 'modest'), 'create');
    expect((await status('modest-2', 'pending')).reason).toMatch(/MCP_WORKER_MAX=3/);
    expect((await registry.getRuntime('greedy-3'))?.status).toBe('pending');

    // A third project waits too. A freed slot goes to the waiting project running the fewest workers
    // (newbie: none), not to greedy-3 or modest-2 (their projects run one each), whichever asks first.
    await registry.upsertServer(echoServer('newbie-1', 'newbie'), 'create');
    await status('newbie-1', 'pending');
    await registry.deleteServer('greedy-1');
    await status('newbie-1', 'running');
    for (const id of ['greedy-3', 'modest-2']) expect((await registry.getRuntime(id))?.status).toBe('pending');
  });
});
