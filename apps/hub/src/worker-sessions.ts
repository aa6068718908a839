import {
  type Registry,
  WORKER_SESSIONS_CLOSE_PATH,
  type WorkerSessionsCloseBody,
  WorkerSessionsClosedSchema,
} from '@mcp-hub/shared';
import { type Agent, request } from 'undici';
import { workerAuth, workerOrigin } from './worker-locator.js';

/** Time a worker has to end a caller's sessions and answer; past it the reaper tries again at its next sweep. */
export const WORKER_SESSIONS_CLOSE_TIMEOUT_MS = 2_000;

/**
 * Asks a server's running worker to end every MCP session of `caller` (`key:<id>`); answers how many ended,
 * 0 when no worker runs (a worker that is not running holds no sessions). Throws when the worker does not
 * answer 200 within WORKER_SESSIONS_CLOSE_TIMEOUT_MS. The runtime record is read from Redis, not the cache:
 * a restarted worker has a new token.
 */
export async function closeWorkerSessions(
  registry: Registry,
  agent: Agent,
  serverId: string,
  caller: string,
): Promise<number> {
  const runtime = await registry.getRuntime(serverId);
  if (runtime?.status !== 'running' || runtime.port === undefined) return 0;
  const body: WorkerSessionsCloseBody = { caller };
  const signal = AbortSignal.timeout(WORKER_SESSIONS_CLOSE_TIMEOUT_MS);
  const res = await request(`${workerOrigin(runtime)}${WORKER_SESSIONS_CLOSE_PATH}`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...workerAuth(runtime) },
    body: JSON.stringify(body),
    signal,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`the worker answered ${res.statusCode}`);
  return WorkerSessionsClosedSchema.parse(JSON.parse(text)).closed;
}
