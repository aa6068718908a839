import { AppError, type Logger, type Registry, type RuntimeRecord } from '@mcp-hub/shared';
import type { RegistryCache } from '../registry-cache.js';

/** The error of a server without a running worker (its Retry-After is declared with the code). */
export function workerUnavailable(id: string, runtime: RuntimeRecord | null): AppError {
  return new AppError(
    'worker_unavailable',
    `server "${id}" has no running worker (status: ${runtime?.status ?? 'none'})`,
    { status: runtime?.status ?? null },
  );
}

/**
 * Finds the running worker of a server for a call, starting one that was stopped for idleness and waiting
 * a bounded time for it. Every route that reaches a worker (tool calls, MCP endpoints) goes through here.
 */
export class WorkerLocator {
  constructor(
    private readonly cache: RegistryCache,
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly wakeTimeoutMs: number,
  ) {}

  /** Throws AppError `worker_unavailable` when no worker runs (and none could be woken in time). */
  async running(id: string, known?: RuntimeRecord | null): Promise<RuntimeRecord> {
    let runtime = known === undefined ? await this.cache.runtime(id) : known;
    if (runtime?.status === 'stopped' && runtime.reason === 'idle') {
      const woke = this.cache.waitForRunning(id, this.wakeTimeoutMs);
      await this.registry.requestWake(id);
      this.log.info({ event: 'worker.wake', server: id }, 'starting an idle worker for a call');
      if (await woke) runtime = await this.cache.runtime(id);
    }
    if (runtime?.status !== 'running' || runtime.port === undefined) throw workerUnavailable(id, runtime);
    return runtime;
  }
}
