import type { ChildProcess } from 'node:child_process';
import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll } from 'vitest';
import { startWatchedSupervisor, stopStack } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

export interface HubStack {
  t: ReturnType<typeof testRedis>;
  registry: Registry;
  hubLogs: ReturnType<typeof captureLogger>;
  /** The JSON lines of the supervisor and its workers (they write to the supervisor's stdout). */
  processLines: Record<string, unknown>[];
  /** The hub's address, once listening (in tests and in `beforeAll` hooks registered after this). */
  base: string;
  hub?: FastifyInstance;
}

/**
 * A private key prefix on the test Redis, a real supervisor (no idle stops) and a hub with `adminToken` listening
 * on a free port, started before the file's tests (and before `beforeAll` hooks registered after this call) and
 * stopped after them, leaving no process or Redis record behind. `hubEnv` adds to the hub's configuration,
 * `supervisorEnv` to the supervisor's (both read when the stack starts).
 */
export function useHubStack(
  adminToken: string,
  hubEnv: Record<string, string> = {},
  supervisorEnv: Record<string, string> = {},
): HubStack {
  const t = testRedis();
  const processLines: Record<string, unknown>[] = [];
  const stack: HubStack = {
    t,
    registry: new Registry(t.redis, t.keys),
    hubLogs: captureLogger('hub'),
    processLines,
    base: '',
  };
  let supervisor: ChildProcess | undefined;
  beforeAll(async () => {
    supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, {
      MCP_WORKER_IDLE_TTL: '0',
      ...supervisorEnv,
    });
    stack.hub = await buildHub({
      config: loadHubConfig({
        REDIS_URL: redisUrl(),
        KEY_PREFIX: t.prefix,
        HUB_PORT: '0',
        HUB_ADMIN_TOKEN: adminToken,
        ...hubEnv,
      }),
      log: stack.hubLogs.log,
    });
    stack.base = await stack.hub.listen({ host: '127.0.0.1', port: 0 });
  }, 30_000);
  afterAll(() => stopStack(supervisor, stack.hub, t.prefix));
  return stack;
}
