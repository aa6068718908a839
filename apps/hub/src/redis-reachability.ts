import type { Logger } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';

export type RegistryMode = 'fresh' | 'stale';

export interface ReachabilityStatus {
  /** `stale`: Redis cannot be read, and calls are served from what this hub read before. */
  mode: RegistryMode;
  /** When the current mode began (ISO 8601). */
  since: string;
  /** Reads answered from stale data in the current (or last) outage. */
  staleServed: number;
  /** The error that made Redis count as unreachable, null if there was none. */
  lastError: string | null;
}

/**
 * Whether this hub can read Redis now, as its request client sees it: the caches (registry, API keys) ask it
 * before a read, so that while Redis is away they answer from what they hold at once instead of making the
 * caller wait on a Redis timeout. Down means the client is not connected, or its last read failed (a Redis
 * that hangs keeps the connection open); the client's `ready` event or one successful read ends it.
 * Logs one line when the hub starts serving stale data (`registry.stale`) and one when Redis is back
 * (`registry.fresh`), whatever the number of calls in between.
 */
export class RedisReachability {
  private failed = false;
  private lastError: string | null = null;
  private stale = false;
  private since: number;
  private staleServed = 0;
  private everReady: boolean;
  private readonly recoveredListeners: (() => void)[] = [];
  private readonly downListeners: (() => void)[] = [];

  constructor(
    private readonly client: Redis,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    this.since = clock();
    this.everReady = client.status === 'ready';
    client.on('ready', () => {
      this.everReady = true;
      this.recovered();
    });
    client.on('error', (err: Error) => {
      this.lastError = err.message;
    });
  }

  /** True while a read would wait on a Redis that cannot answer: answer from cached data instead. */
  get down(): boolean {
    return this.failed || this.client.status !== 'ready';
  }

  /** True when the client is connected, so a background read can find out whether Redis answers again. */
  get connected(): boolean {
    return this.client.status === 'ready';
  }

  /** Whether this hub has reached Redis since it started (so it holds data it can serve stale). */
  get hasReachedRedis(): boolean {
    return this.everReady;
  }

  /** A read answered. */
  readOk(): void {
    if (this.failed) {
      this.failed = false;
      this.recovered();
    }
  }

  /** A read failed: until one answers (or the client reconnects), reads are not tried on the call path. */
  readFailed(err: unknown): void {
    this.failed = true;
    this.lastError = err instanceof Error ? err.message : String(err);
  }

  /** A read was answered from stale data; the first of an outage logs `registry.stale`. */
  servedStale(what: 'server' | 'tools' | 'runtime' | 'api_key'): void {
    this.staleServed += 1;
    if (this.stale) return;
    this.stale = true;
    this.since = this.clock();
    this.staleServed = 1;
    this.log.warn(
      { event: 'registry.stale', what, redis_status: this.client.status, error: this.lastError },
      'redis unreachable: serving calls from cached registry data',
    );
    for (const listener of this.downListeners) listener();
  }

  /** Called when an outage starts to show: the first call answered from stale data. */
  onDown(listener: () => void): void {
    this.downListeners.push(listener);
  }

  /** Called when Redis answers again after an outage (the caches refresh then). */
  onRecovered(listener: () => void): void {
    this.recoveredListeners.push(listener);
  }

  /** For /readyz details. */
  status(): ReachabilityStatus {
    return {
      mode: this.down ? 'stale' : 'fresh',
      since: new Date(this.since).toISOString(),
      staleServed: this.staleServed,
      lastError: this.lastError,
    };
  }

  private recovered(): void {
    if (this.down) return;
    for (const listener of this.recoveredListeners) listener();
    if (!this.stale) return;
    const outageMs = this.clock() - this.since;
    this.stale = false;
    this.since = this.clock();
    this.log.info(
      { event: 'registry.fresh', stale_ms: outageMs, stale_served: this.staleServed },
      'redis is back: cached registry data is read again',
    );
  }
}
