import type { HubEvent, Registry, RuntimeRecord, ServerSpec, Tool } from '@mcp-hub/shared';
import type { ArgumentsValidator, ToolValidatorFactory } from './validation/tool-validator.js';

/** What the cache asks before reading Redis (RedisReachability), and tells it after. */
export interface ReadHealth {
  readonly down: boolean;
  readonly connected: boolean;
  readOk(): void;
  readFailed(err: unknown): void;
  servedStale(what: 'server' | 'tools' | 'runtime'): void;
}

/** Reads are always tried (tests that build a cache on a Redis they control). */
const ALWAYS_UP: ReadHealth = {
  down: false,
  connected: true,
  readOk: () => {},
  readFailed: () => {},
  servedStale: () => {},
};

export interface CachedTool {
  tool: Tool;
  validate: ArgumentsValidator;
}

interface Entry<T> {
  at: number;
  value: Promise<T>;
  /** The last value read from Redis: answered past its age while Redis cannot be read (stale-if-error). */
  known?: { value: T };
  /** A background read of a stale entry is under way (one at a time per entry). */
  refreshing?: boolean;
}

/**
 * The hub's in-process view of the registry, so that the call path reads no Redis: server specs, tools
 * (with compiled argument validators) and runtime records, each dropped when an event says it changed, and
 * re-read after `maxAgeMs` in any case so that a missed event heals on its own.
 *
 * Stale-if-error: an entry past its age keeps its last value. While Redis cannot be read (`health.down`) that
 * value is answered at once, without a Redis round trip (and re-read in the background when the client is
 * connected, to find out that Redis answers again); a read that fails answers it too. An entry an event
 * dropped (the data changed) has no value to fall back on, so a changed server is never served as it was.
 */
export class RegistryCache {
  private readonly servers = new Map<string, Entry<ServerSpec | null>>();
  private readonly tools = new Map<string, Entry<Map<string, CachedTool>>>();
  private readonly runtimes = new Map<string, Entry<RuntimeRecord | null>>();
  private readonly runningWaiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly registry: Registry,
    private readonly validators: ToolValidatorFactory,
    private readonly maxAgeMs: number,
    private readonly health: ReadHealth = ALWAYS_UP,
  ) {}

  /** The spec of a server; unknown ids are not cached, so random ids cannot grow the cache. */
  async server(id: string): Promise<ServerSpec | null> {
    const spec = await this.read(this.servers, id, 'server', () => this.registry.getServer(id));
    if (spec === null) this.servers.delete(id);
    return spec;
  }

  async tool(serverId: string, name: string): Promise<CachedTool | undefined> {
    return (await this.toolMap(serverId)).get(name);
  }

  /** Every tool of a server, as the registry lists them. */
  async toolList(serverId: string): Promise<Tool[]> {
    return [...(await this.toolMap(serverId)).values()].map((cached) => cached.tool);
  }

  async toolCount(serverId: string): Promise<number> {
    return (await this.toolMap(serverId)).size;
  }

  private toolMap(serverId: string): Promise<Map<string, CachedTool>> {
    return this.read(this.tools, serverId, 'tools', async () => {
      const map = new Map<string, CachedTool>();
      for (const tool of await this.registry.listTools(serverId)) {
        // Compiled on first use (a server may list many tools and a call uses one), and held by the factory
        // only, so that its bound (one revision per tool, least recently used dropped) is the whole cost.
        const validate: ArgumentsValidator = (args) =>
          this.validators.compile(serverId, tool.name, tool.digest, tool.inputSchema)(args);
        map.set(tool.name, { tool, validate });
      }
      return map;
    });
  }

  runtime(id: string): Promise<RuntimeRecord | null> {
    return this.read(this.runtimes, id, 'runtime', () => this.registry.getRuntime(id));
  }

  /**
   * Resolves true when a `runtime.update` says the server's worker runs, false after `timeoutMs` or once
   * `signal` aborts (the caller stopped waiting: nothing is left registered).
   */
  waitForRunning(id: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const waiters = this.runningWaiters.get(id) ?? new Set();
      this.runningWaiters.set(id, waiters);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', stop);
        waiters.delete(wake);
        if (waiters.size === 0 && this.runningWaiters.get(id) === waiters) this.runningWaiters.delete(id);
        resolve(ok);
      };
      const wake = () => done(true);
      const stop = () => done(false);
      const timer = setTimeout(stop, timeoutMs);
      waiters.add(wake);
      if (signal?.aborted) stop();
      else signal?.addEventListener('abort', stop, { once: true });
    });
  }

  /** Applies one event from `mcp:events`. */
  onEvent(event: HubEvent): void {
    switch (event.type) {
      case 'server.upsert':
      case 'server.restart':
        this.servers.delete(event.id);
        break;
      case 'server.delete':
        this.servers.delete(event.id);
        this.tools.delete(event.id);
        this.runtimes.delete(event.id);
        this.validators.forget(event.id);
        break;
      case 'tool.upsert':
      case 'tool.delete':
        this.tools.delete(event.id);
        break;
      case 'runtime.update':
        this.runtimes.delete(event.id);
        if (event.status === 'running') for (const wake of this.runningWaiters.get(event.id) ?? []) wake();
        break;
    }
  }

  /**
   * Marks every entry out of date (after the event subscription was interrupted, events may have been
   * missed): the next read of each goes to Redis, and its last value stays the fallback while Redis cannot
   * be read.
   */
  clear(): void {
    for (const map of [this.servers, this.tools, this.runtimes] as Map<string, Entry<unknown>>[]) {
      for (const entry of map.values()) entry.at = Number.NEGATIVE_INFINITY;
    }
  }

  private read<T>(
    map: Map<string, Entry<T>>,
    key: string,
    what: 'server' | 'tools' | 'runtime',
    load: () => Promise<T>,
  ): Promise<T> {
    const now = Date.now();
    const hit = map.get(key);
    if (hit && now - hit.at < this.maxAgeMs) return hit.value;
    const stale = hit?.known;
    if (hit && stale && this.health.down) {
      this.health.servedStale(what);
      if (this.health.connected) this.refreshInBackground(map, key, hit, load);
      return Promise.resolve(stale.value);
    }
    const entry: Entry<T> = { at: now, value: Promise.resolve() as Promise<T>, known: stale };
    entry.value = load().then(
      (value) => {
        entry.known = { value };
        this.health.readOk();
        return value;
      },
      (err: unknown) => {
        this.health.readFailed(err);
        if (map.get(key) === entry) {
          // A failed read is not cached: the entry it replaced (out of date, with its value) stays.
          if (hit) map.set(key, hit);
          else map.delete(key);
        }
        if (!stale) throw err;
        this.health.servedStale(what);
        return stale.value;
      },
    );
    map.set(key, entry);
    return entry.value;
  }

  /** Reads a stale entry again without anyone waiting on it; its success tells `health` that Redis is back. */
  private refreshInBackground<T>(map: Map<string, Entry<T>>, key: string, hit: Entry<T>, load: () => Promise<T>): void {
    if (hit.refreshing) return;
    hit.refreshing = true;
    load().then(
      (value) => {
        hit.refreshing = false;
        if (map.get(key) === hit) map.set(key, { at: Date.now(), value: Promise.resolve(value), known: { value } });
        this.health.readOk();
      },
      (err: unknown) => {
        hit.refreshing = false;
        this.health.readFailed(err);
      },
    );
  }
}
