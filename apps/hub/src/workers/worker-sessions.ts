import type { Registry } from '@mcp-hub/shared';
import type { WorkerClient } from './worker-client.js';

/**
 * Asks a server's running worker to end every MCP session of `caller` (`key:<id>`); answers how many ended,
 * 0 when no worker runs (a worker that is not running holds no sessions). Throws `worker_unavailable` when
 * the worker does not answer 200 in time (SESSIONS_CLOSE_TIMEOUT_MS). The runtime record is read from
 * Redis, not the cache: a restarted worker has a new token.
 */
export async function closeWorkerSessions(
  registry: Registry,
  client: WorkerClient,
  serverId: string,
  caller: string,
): Promise<number> {
  const runtime = await registry.getRuntime(serverId);
  if (runtime?.status !== 'running' || runtime.port === undefined) return 0;
  return client.closeSessions({ serverId, runtime }, caller);
}
