import { AppError, type Logger, type Registry, type RuntimeRecord, WORKER_TOKEN_HEADER } from '@mcp-hub/shared';
import type { RegistryCache } from './registry-cache.js';

/** Seconds a client is told to wait when a server has no running worker. */
export const RETRY_AFTER_S = '2';

export function workerUnavailable(id: string, runtime: RuntimeRecord | null): AppError {
  return new AppError(
    'worker_unavailable',
    `server "${id}" has no running worker (status: ${runtime?.status ?? 'none'})`,
    { status: runtime?.status ?? null },
  );
}

/** The origin (`http://host:port`) of a running worker. */
export function workerOrigin(runtime: RuntimeRecord): string {
  return `http://${runtime.host ?? '127.0.0.1'}:${runtime.port}`;
}

/**
 * The credential header of a running worker, for requests to it only: it must never be copied into an
 * answer or a log line (workers refuse requests without it with 401).
 */
export function workerAuth(runtime: RuntimeRecord): Record<string, string> {
  return { [WORKER_TOKEN_HEADER]: runtime.workerToken ?? '' };
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
