import type { Logger, SupervisorConfig } from '@mcp-hub/shared';
import type { HealthChecker } from './health-checker.js';
import type { PortAllocator } from './port-allocator.js';
import type { RuntimeStore } from './runtime-store.js';
import type { SupervisorStats } from './stats.js';
import type { WorkerSet } from './worker-set.js';

/** What the parts of a supervisor share; built once by `createSupervisor`. */
export interface SupervisorContext {
  config: Readonly<SupervisorConfig>;
  log: Logger;
  store: RuntimeStore;
  ports: PortAllocator;
  health: HealthChecker;
  workers: WorkerSet;
  /** Asks the reconciler to look at a server again (coalesced per server). */
  enqueue(id: string): Promise<void>;
  /** True once `close()` began: nothing new starts, and watchers stop watching. */
  isClosed(): boolean;
  /** Counters for the hub's /metrics, written with every heartbeat. */
  stats: SupervisorStats;
}
