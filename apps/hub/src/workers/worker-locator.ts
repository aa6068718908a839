import { AppError, type Logger, type Registry, type RuntimeRecord, type RuntimeStatus } from '@mcp-hub/shared';
import type { RegistryCache } from '../registry-cache.js';
import { wasNeverDelivered } from './worker-client.js';

/** The error of a server without a running worker (its Retry-After is declared with the code). */
export function workerUnavailable(id: string, runtime: RuntimeRecord | null): AppError {
  return new AppError(
    'worker_unavailable',
    `server "${id}" has no running worker (status: ${runtime?.status ?? 'none'})`,
    { status: runtime?.status ?? null },
  );
}

/**
 * Statuses of a worker that is on its way (back): a call waits for it rather than failing. No record at all is
 * a server whose first worker has not been written yet. `stopped` is not among them: a worker stopped for
 * idleness is woken, any other stop is final.
 */
const COMING_BACK: ReadonlySet<RuntimeStatus | undefined> = new Set<RuntimeStatus | undefined>([
  undefined,
  'pending',
  'starting',
  'restarting',
  'backoff',
  'unhealthy',
  'stopping',
]);

function isRunning(runtime: RuntimeRecord | null): boolean {
  return runtime?.status === 'running' && runtime.port !== undefined;
}

function isIdle(runtime: RuntimeRecord | null): boolean {
  return runtime?.status === 'stopped' && runtime.reason === 'idle';
}

export interface WorkerLocatorOptions {
  /** How long a call waits for a worker stopped for idleness to start again (HUB_WAKE_TIMEOUT). */
  wakeTimeoutMs: number;
  /** How long a call waits for a worker that is starting, restarting or replaced (HUB_WORKER_WAIT). */
  workerWaitMs: number;
  /** Calls waiting for one server's worker at once; more get 503 at once (a dead server piles up nothing). */
  maxWaitersPerServer: number;
}

export interface LocateOptions {
  /** The runtime record the caller already read (from the cache); read here when left out. */
  known?: RuntimeRecord | null;
  /** The call's own timeout: no wait lasts longer, whatever the configured one. */
  timeoutMs?: number;
  /** For the log line of a retry. */
  requestId?: string;
}

/**
 * Finds the running worker of a server for a call. A worker on its way (starting, restarting, backing off,
 * woken from idleness) is waited for, event-driven on the `runtime.update` events the cache follows, within
 * HUB_WORKER_WAIT (HUB_WAKE_TIMEOUT for a wake) and the call's timeout; only then does the call get 503.
 * Every route that reaches a worker (tool calls, MCP endpoints, the aggregated endpoint) goes through here.
 */
export class WorkerLocator {
  private readonly waiting = new Map<string, number>();

  constructor(
    private readonly cache: RegistryCache,
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly options: WorkerLocatorOptions,
  ) {}

  /** Throws AppError `worker_unavailable` when no worker runs and none came in time. */
  async running(id: string, opts: LocateOptions = {}): Promise<RuntimeRecord> {
    const runtime = opts.known === undefined ? await this.cache.runtime(id) : opts.known;
    if (runtime && isRunning(runtime)) return runtime;
    if (isIdle(runtime)) {
      const woken = this.untilRunning(id, Math.min(this.options.wakeTimeoutMs, opts.timeoutMs ?? Infinity), isRunning);
      await this.registry.requestWake(id);
      this.log.info({ event: 'worker.wake', server: id }, 'starting an idle worker for a call');
      return this.orUnavailable(id, await woken);
    }
    if (!COMING_BACK.has(runtime?.status)) throw workerUnavailable(id, runtime);
    const started = performance.now();
    const found = this.orUnavailable(id, await this.untilRunning(id, this.waitMs(opts), isRunning));
    this.log.info(
      {
        event: 'worker.waited',
        request_id: opts.requestId,
        server: id,
        status: runtime?.status ?? null,
        waited_ms: Math.round(performance.now() - started),
      },
      'a call waited for its worker to start',
    );
    return found;
  }

  /**
   * Runs `attempt` on the server's running worker. A request the worker never received (its address was
   * stale: connection refused, or another run's worker on that port) runs once more on the worker that
   * replaced it, waited for like any worker on its way. Anything else `attempt` throws is thrown as it is.
   */
  async withWorker<T>(
    id: string,
    attempt: (runtime: RuntimeRecord) => Promise<T>,
    opts: LocateOptions = {},
  ): Promise<T> {
    const runtime = await this.running(id, opts);
    try {
      return await attempt(runtime);
    } catch (err) {
      if (!wasNeverDelivered(err)) throw err;
      this.log.info(
        { event: 'worker.stale_address', request_id: opts.requestId, server: id, port: runtime.port },
        'the worker was gone before the request reached it; waiting for the one that replaces it',
      );
      const replaced = (r: RuntimeRecord | null) => isRunning(r) && r?.instance !== runtime.instance;
      const next = this.orUnavailable(id, await this.untilRunning(id, this.waitMs(opts), replaced));
      this.log.info(
        {
          event: 'tool.call.redirected',
          request_id: opts.requestId,
          server: id,
          stale_port: runtime.port,
          port: next.port,
        },
        'the worker had been replaced before the request reached it; sent to the current one',
      );
      return attempt(next);
    }
  }

  private waitMs(opts: LocateOptions): number {
    return Math.min(this.options.workerWaitMs, opts.timeoutMs ?? Infinity);
  }

  private orUnavailable(id: string, runtime: RuntimeRecord | null): RuntimeRecord {
    if (!runtime || !isRunning(runtime)) throw workerUnavailable(id, runtime);
    return runtime;
  }

  /**
   * The runtime record once `accept` takes it, or the last one seen after `waitMs`. Sleeps on the cache's
   * `runtime.update` events (registered before each read, so an update between the two is not missed); gives
   * up early on a record that says the worker will not come back.
   */
  private async untilRunning(
    id: string,
    waitMs: number,
    accept: (runtime: RuntimeRecord | null) => boolean,
  ): Promise<RuntimeRecord | null> {
    const count = this.waiting.get(id) ?? 0;
    if (count >= this.options.maxWaitersPerServer) return this.cache.runtime(id);
    this.waiting.set(id, count + 1);
    const until = performance.now() + waitMs;
    try {
      for (;;) {
        const stop = new AbortController();
        const updated = this.cache.waitForRunning(id, Math.max(0, until - performance.now()), stop.signal);
        const current = await this.cache.runtime(id);
        const left = until - performance.now();
        if (accept(current) || left <= 0 || (current?.status === 'stopped' && !isIdle(current))) {
          stop.abort();
          return current;
        }
        if (!(await updated)) return this.cache.runtime(id);
      }
    } finally {
      const left = (this.waiting.get(id) ?? 1) - 1;
      if (left === 0) this.waiting.delete(id);
      else this.waiting.set(id, left);
    }
  }
}
