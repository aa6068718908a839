import { backoffMs, boundToolList, type Logger, type Registry, type ToolInput } from '@mcp-hub/shared';
import type { Upstream } from './upstream/upstream.js';

const SYNC_RETRY_BASE_MS = 500;
const SYNC_RETRY_MAX_MS = 10_000;

export interface ToolSyncDeps {
  serverId: string;
  upstream: Upstream;
  registry: Registry;
  log: Logger;
  /** The worker is stopping: no new sync starts and a failure is not retried. */
  stopping: () => boolean;
  /** The tool list changed after the first sync (downstream MCP sessions are told). */
  onToolsChanged: () => void;
  /** The first sync succeeded: the worker is ready. */
  onFirstSync: (toolCount: number) => void;
}

/**
 * Tool discovery: lists the upstream's tools and writes them to the registry. One sync at a time; a change
 * announced during a sync runs one more; a failed sync is retried with backoff.
 */
export class ToolSync {
  /** The tools as last listed (within the registry limits). */
  tools: readonly ToolInput[] = [];
  /** Whether a sync has succeeded since the worker started. */
  synced = false;
  private names = new Set<string>();
  private syncing: Promise<void> | undefined;
  private again = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ToolSyncDeps) {}

  has(tool: string): boolean {
    return this.names.has(tool);
  }

  /** Starts a sync, or asks the running one to run once more. */
  request(): void {
    if (this.deps.stopping()) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    clearTimeout(this.retryTimer);
    this.syncing = (async () => {
      do {
        this.again = false;
        await this.syncOnce();
      } while (this.again && !this.deps.stopping());
    })().finally(() => {
      this.syncing = undefined;
    });
  }

  /** Cancels a scheduled retry. */
  stop(): void {
    clearTimeout(this.retryTimer);
  }

  private async syncOnce(): Promise<void> {
    const { upstream, registry, serverId, log } = this.deps;
    if (upstream.state !== 'connected') return;
    try {
      const { kept: listed, refused } = boundToolList(await upstream.listTools());
      if (refused.length > 0) {
        // Logged at each sync that still sees them: a list that changes on every sync is the upstream's doing.
        log.warn(
          { event: 'tools.refused', count: refused.length, kept: listed.length, tools: refused.slice(0, 20) },
          'tools past the registry limits are left out (not stored, not callable through the hub)',
        );
      }
      const toolsChanged = this.synced && JSON.stringify(listed) !== JSON.stringify(this.tools);
      this.tools = listed;
      this.names = new Set(listed.map((tool) => tool.name));
      const changed = await registry.replaceTools(serverId, listed);
      this.failures = 0;
      if (changed < 0) {
        log.warn({ event: 'tools.sync_skipped', count: listed.length }, 'the server is no longer registered');
      } else {
        log.info({ event: 'tools.synced', count: listed.length, changed }, 'tools synced');
      }
      if (toolsChanged) this.deps.onToolsChanged();
      if (!this.synced) {
        this.synced = true;
        this.deps.onFirstSync(listed.length);
      }
    } catch (error) {
      if (this.deps.stopping()) return;
      const retryMs = backoffMs(this.failures++, SYNC_RETRY_BASE_MS, SYNC_RETRY_MAX_MS);
      log.error({ event: 'tools.sync_failed', err: error, retryMs }, 'tool discovery failed');
      this.retryTimer = setTimeout(() => this.request(), retryMs);
      this.retryTimer.unref();
    }
  }
}
