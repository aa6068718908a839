import type { HubEvent } from '@mcp-hub/shared';
import type { Alerter } from './alerter.js';

/** How long after a tool is deleted the hub looks whether the server has any left (a restart re-lists them). */
export const TOOLS_EMPTIED_CHECK_MS = 2_000;

export interface TriggerSources {
  /** How many tools the registry holds for a server now. */
  toolCount(id: string): Promise<number>;
  /** The server's runtime status now (undefined: no record). */
  status(id: string): Promise<string | undefined>;
}

/**
 * Turns registry and runtime events into alerts: a worker in backoff (crash loop), an unhealthy worker, and a
 * running server whose tool list is empty after its tools were deleted (a restart that came back with none).
 * Returns the event listener and a function that cancels the pending checks.
 */
export function alertTriggers(
  alerter: Alerter,
  sources: TriggerSources,
): { onEvent(e: HubEvent): void; close(): void } {
  const checks = new Map<string, NodeJS.Timeout>();
  const checkTools = (id: string) => {
    checks.delete(id);
    void (async () => {
      if ((await sources.status(id)) !== 'running' || (await sources.toolCount(id)) > 0) return;
      alerter.fire({
        type: 'tools.emptied',
        server: id,
        message: `server "${id}" is running with no tools: its tool list emptied`,
      });
    })().catch(() => {});
  };
  return {
    onEvent(event) {
      if (event.type === 'runtime.update' && event.status === 'backoff') {
        alerter.fire({
          type: 'worker.crash_loop',
          server: event.id,
          message: `the worker of "${event.id}" keeps failing and is backing off`,
          details: { status: event.status },
        });
      } else if (event.type === 'runtime.update' && event.status === 'unhealthy') {
        alerter.fire({
          type: 'worker.unhealthy',
          server: event.id,
          message: `the worker of "${event.id}" fails its health checks`,
          details: { status: event.status },
        });
      } else if (event.type === 'tool.delete' && !checks.has(event.id)) {
        const timer = setTimeout(() => checkTools(event.id), TOOLS_EMPTIED_CHECK_MS);
        timer.unref();
        checks.set(event.id, timer);
      }
    },
    close() {
      for (const timer of checks.values()) clearTimeout(timer);
      checks.clear();
    },
  };
}
