import { type Env, type Registry, type RuntimeRecord, WORKER_TOKEN_HEADER } from '@mcp-hub/shared';
import { type Dispatcher, request } from 'undici';
import { waitFor } from '../../../test/processes.js';

export { echoServer } from '../../../test/processes.js';

/** Helpers of the supervisor's process-level tests. */

/** A supervisor's environment for tests: fast loops, short backoffs, a random block of 100 worker ports. */
export function testSupervisorEnv(redisUrl: string, prefix: string, extra: Env = {}): Env {
  const base = 20_000 + Math.floor(Math.random() * 400) * 100;
  return {
    REDIS_URL: redisUrl,
    KEY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    MCP_WORKER_BASE_PORT: String(base),
    MCP_WORKER_PORT_RANGE: '100',
    MCP_RESYNC_INTERVAL: '300ms',
    MCP_HEALTH_INTERVAL: '150ms',
    MCP_HEALTH_FAILURES: '2',
    MCP_LEASE_TTL: '1500ms',
    MCP_WORKER_STOP_GRACE: '1s',
    MCP_BACKOFF_BASE: '200ms',
    MCP_BACKOFF_MAX: '2s',
    MCP_WORKER_START_TIMEOUT: '10s',
    ...extra,
  };
}

/** Waits for the record of `id` to say running (with another pid than `notPid`); adds its pid to `pids`. */
export function runningRecord(
  registry: Registry,
  id: string,
  pids: Set<number>,
  notPid?: number,
  timeoutMs = 15_000,
): Promise<RuntimeRecord> {
  return waitFor(
    `${id} running${notPid === undefined ? '' : ` as another pid than ${notPid}`}`,
    async () => {
      const r = await registry.getRuntime(id);
      if (r?.status === 'running' && r.pid !== undefined && r.pid !== notPid) {
        pids.add(r.pid);
        return r;
      }
      return null;
    },
    timeoutMs,
  );
}

/** Calls a tool straight at the worker the record names (JSON answer); the first text, or the status and body. */
export async function callTool(
  r: RuntimeRecord,
  tool: string,
  args: Record<string, unknown>,
  dispatcher?: Dispatcher,
): Promise<string> {
  const res = await request(`http://${r.host}:${r.port}/tools/${tool}`, {
    method: 'POST',
    ...(dispatcher === undefined ? {} : { dispatcher }),
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      [WORKER_TOKEN_HEADER]: r.workerToken ?? '',
    },
    body: JSON.stringify(args),
  });
  const body = (await res.body.json()) as { content?: { text?: string }[] };
  return body.content?.[0]?.text ?? `status ${res.statusCode}: ${JSON.stringify(body)}`;
}
