import { AppError, type Logger, type Registry, type RuntimeRecord, type RuntimeStatus } from '@mcp-hub/shared';
import type { RegistryCache } from '../registry-cache.js';
import { wasLostInFlight, wasNeverDelivered } from './worker-client.js';

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
  /**
   * The tool, when it says running it twice is safe (`safeToRepeat`): a call lost in flight (its worker or
   * upstream went away while it had it) runs once more, with a warn line. Left out, such a call fails.
   */
  repeatableTool?: string;
}

/** Resends of a call no worker received (each to the worker that replaced the one that refused it). */
const MAX_RESENDS = 2;

/** Whether a tool says a second run does no harm: MCP's `idempotentHint` or `readOnlyHint`. */
export function safeToRepeat(tool: { annotations?: Record<string, unknown> } | undefined): boolean {
  return tool?.annotations?.idempotentHint === true || tool?.annotations?.readOnlyHint === true;
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
      const woken = this.untilRunning(
        id,
        Math.min(this.options.wakeTimeoutMs, opts.timeoutMs ?? Infinity),
        isRunning,
        opts.requestId,
      );
      await this.registry.requestWake(id);
      this.log.info({ event: 'worker.wake', server: id }, 'starting an idle worker for a call');
      return this.orUnavailable(id, await woken);
    }
    if (!COMING_BACK.has(runtime?.status)) throw workerUnavailable(id, runtime);
    const started = performance.now();
    const found = this.orUnavailable(id, await this.untilRunning(id, this.waitMs(opts), isRunning, opts.requestId));
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
   * Runs `attempt` on the server's running worker. A request no worker received (its address was stale:
   * connection refused, another run's worker on that port, a stream lost before the worker handed the call to
   * its upstream) runs again on the worker that replaced it, waited for like any worker on its way (at most
   * MAX_RESENDS times). A call lost in flight runs once more only for `repeatableTool`. Anything else
   * `attempt` throws is thrown as it is.
   */
  async withWorker<T>(
    id: string,
    attempt: (runtime: RuntimeRecord) => Promise<T>,
    opts: LocateOptions = {},
  ): Promise<T> {
    let runtime = await this.running(id, opts);
    let resends = 0;
    let repeated = false;
    for (;;) {
      try {
        return await attempt(runtime);
      } catch (err) {
        const undelivered = wasNeverDelivered(err);
        const fields = { request_id: opts.requestId, server: id, port: runtime.port };
        if (undelivered && resends < MAX_RESENDS) {
          resends++;
          this.log.info(
            { event: 'worker.stale_address', ...fields },
            'the worker was gone before the call reached its upstream; waiting for the one that replaces it',
          );
        } else if (!undelivered && wasLostInFlight(err) && opts.repeatableTool !== undefined && !repeated) {
          repeated = true;
          this.log.warn(
            { event: 'tool.call.retried', ...fields, tool: opts.repeatableTool, error: (err as Error).message },
            'the worker or its upstream went away during a call of an idempotent or read-only tool; running it once more',
          );
        } else {
          throw err;
        }
        const failed = runtime.instance;
        const replaced = (r: RuntimeRecord | null) => isRunning(r) && r?.instance !== failed;
        const next = this.orUnavailable(id, await this.untilRunning(id, this.waitMs(opts), replaced, opts.requestId));
        if (undelivered) {
          this.log.info(
            { event: 'tool.call.redirected', ...fields, stale_port: runtime.port, port: next.port },
            'the call had not reached the upstream; sent to the current worker',
          );
        }
        runtime = next;
      }
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
    requestId?: string,
  ): Promise<RuntimeRecord | null> {
    const count = this.waiting.get(id) ?? 0;
    if (count >= this.options.maxWaitersPerServer) return this.cache.runtime(id);
    this.waiting.set(id, count + 1);
    this.log.debug({ event: 'worker.wait', request_id: requestId, server: id, waiting: count + 1 }, 'a call waits');
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
