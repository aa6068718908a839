import { createKeys, Registry, type ServerSpecBody } from '@mcp-hub/shared';
import getPort from 'get-port';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { runMain } from '../../../test/main-process.js';
import { childPids, fixture, isAlive, killByKeyPrefix, killGroup, waitFor } from '../../../test/processes.js';
import { startPrivateRedis } from '../../../test/redis-server.js';
import { redisUrl, testPrefix } from '../../../test/support.js';

describe('supervisor main', () => {
  it('refuses a bad variable at start, naming it, with exit code 2', async () => {
    const run = runMain('supervisor', { MCP_WORKER_MAX: 'many' });
    expect(await run.exited).toBe(2);
    expect(run.stderr).toMatch(/MCP_WORKER_MAX: must be a number/);
  });

  it('does nothing when MCP_SUPERVISOR_ENABLED is false', async () => {
    const run = runMain('supervisor', { MCP_SUPERVISOR_ENABLED: 'false' });
    expect(await run.exited).toBe(0);
  });

  it('starts, and exits 0 on SIGTERM after stopping', async () => {
    const run = runMain('supervisor', { REDIS_URL: redisUrl(), KEY_PREFIX: testPrefix() });
    await run.waitForEvent('supervisor.started');
    expect(await run.stop('SIGTERM')).toBe(0);
    expect(run.lines.map((l) => l.event)).toContain('supervisor.stopped');
  });

  it('stops its workers on SIGTERM even when Redis has gone away', async () => {
    const redis = await startPrivateRedis();
    const prefix = testPrefix();
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    const basePort = await getPort({ host: '127.0.0.1' });
    const run = runMain('supervisor', {
      REDIS_URL: redis.url,
      KEY_PREFIX: prefix,
      MCP_WORKER_BASE_PORT: String(basePort),
      MCP_WORKER_PORT_RANGE: '20',
      MCP_WORKER_STOP_GRACE: '2000',
    });
    let pids: number[] = [];
    try {
      await run.waitForEvent('supervisor.started');
      const spec = {
        id: 'orphan-check',
        name: 'orphan-check',
        namespace: 'orphan-check',
        transport: 'stdio',
        config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
        tags: [],
        enabled: true,
        timeoutMs: 10_000,
      } as ServerSpecBody;
      await new Registry(client, createKeys(prefix)).upsertServer(spec, 'create');
      // The supervisor's line names the worker's pid (the worker's own lines share its stdout).
      const spawned = await run.waitForEvent('worker.spawned', 20_000);
      await run.waitForEvent('worker.ready', 20_000);
      const worker = Number(spawned.pid);
      const children = await waitFor('the stdio server', () =>
        childPids(worker).length > 0 ? childPids(worker) : null,
      );
      pids = [worker, ...children];
      client.disconnect();
      await redis.stop();

      expect(await run.stop('SIGTERM')).toBe(0);
      // The first Redis write on the way out waits 2 s, the others none once it ran out: the shutdown ran to its
      // end (it logs supervisor.stopped last), rather than being cut by its 30 s deadline.
      expect(run.lines.map((l) => l.event)).toContain('supervisor.stopped');
      for (const pid of pids) expect(isAlive(pid), `pid ${pid} outlived its supervisor`).toBe(false);
      expect(run.lines.map((l) => l.event)).toContain('worker.terminated');
    } finally {
      client.disconnect();
      for (const pid of pids) if (isAlive(pid)) killGroup(pid);
      await run.stop('SIGKILL');
      killByKeyPrefix(prefix);
      await redis.stop();
    }
  }, 60_000);
});
