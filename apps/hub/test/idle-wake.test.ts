import type { ChildProcess } from 'node:child_process';
import { loadHubConfig, Registry, type ServerSpecBody } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, startSupervisorProcess, stopStack, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;

const sleepy: ServerSpecBody = {
  id: 'sleepy',
  name: 'sleepy',
  namespace: 'sleepy',
  transport: 'stdio',
  config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
  tags: [],
  enabled: true,
  timeoutMs: 10_000,
};

beforeAll(async () => {
  supervisor = startSupervisorProcess(redisUrl(), t.prefix, {
    MCP_RESYNC_INTERVAL: '300ms',
    MCP_HEALTH_INTERVAL: '150ms',
    MCP_WORKER_IDLE_TTL: '700ms',
  });
  hub = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_WAKE_TIMEOUT: '15s', HUB_AUTH: 'none' }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  await registry.upsertServer(sleepy, 'create');
}, 30_000);

afterAll(async () => {
  await stopStack(supervisor, hub, t.prefix);
  await t.cleanup();
});

describe('a worker stopped for idleness', () => {
  it('is started again by the next call, which waits for it and succeeds', async () => {
    const stopped = await waitFor(
      'stopped for idleness',
      async () => {
        const r = await registry.getRuntime('sleepy');
        return r?.status === 'stopped' && r.reason === 'idle' ? r : null;
      },
      20_000,
    );
    expect(stopped.pid).toBeUndefined();
    const res = await request(`${base}/mcp/sleepy/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ message: 'wake up' }),
    });
    const body = (await res.body.json()) as { content: { text: string }[] };
    expect(res.statusCode).toBe(200);
    expect(body.content[0]?.text).toBe('wake up');
    expect(hubLogs.lines.some((l) => l.event === 'worker.wake' && l.server === 'sleepy')).toBe(true);
  });
});
