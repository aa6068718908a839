import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  closeRedis,
  createKeys,
  createRedis,
  type Logger,
  parseEvent,
  Registry,
  SUPERVISOR_HEARTBEATS_MISSED,
  type SupervisorConfig,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { Adoption } from './adoption.js';
import { bounded, ShutdownWrites } from './bounded.js';
import type { SupervisorContext } from './context.js';
import { HealthChecker } from './health-checker.js';
import { KeyedSerialQueue } from './keyed-queue.js';
import { SupervisorLoops } from './loops.js';
import { PortAllocator } from './port-allocator.js';
import { createReconciler } from './reconcile.js';
import { RuntimeStore } from './runtime-store.js';
import { SupervisorStats } from './stats.js';
import { WorkerRuns } from './worker-runs.js';
import { WorkerSet, type WorkerSnapshot } from './worker-set.js';

const HEALTH_TIMEOUT_MS = 1_500;
const CLOSE_DEADLINE_MS = 30_000;
/** On shutdown, how long any one Redis step may take: stopping the processes must not wait for a dead Redis. */
const SHUTDOWN_REDIS_MS = 2_000;

/** The worker as one bundled file (apps/worker/bundle.mjs): it starts in about half the time of dist/main.js. */
export const DEFAULT_WORKER_ENTRY = fileURLToPath(new URL('../../worker/dist/bundle/worker.mjs', import.meta.url));

export interface SupervisorDeps {
  config: Readonly<SupervisorConfig>;
  log: Logger;
  /** Redis for commands (retrying); opened from config when left out. */
  redis?: Redis;
}

export interface Supervisor {
  readonly id: string;
  /** Full sync, then events and periodic resync. */
  start(): Promise<void>;
  /** Reconciles one server now (tests and the event path). */
  reconcile(id: string): Promise<void>;
  /** A snapshot of the workers this supervisor runs. */
  workers(): WorkerSnapshot[];
  /** Stops loops, then stops workers (or leaves them for adoption with keepWorkersOnExit). Memoized. */
  close(): Promise<void>;
}

/**
 * Builds a supervisor; nothing runs until `start()`. The parts: `decide.ts` (what to do, pure),
 * `reconcile.ts` (read, decide, act per server), `worker-runs.ts` (processes), `worker-replacement.ts`
 * (planned restarts, draining), `worker-spawn.ts` (start slots, spawning), `adoption.ts` (workers left by
 * another supervisor), `loops.ts` (lease, health, resync), `worker-set.ts` (state and transitions).
 */
export function createSupervisor(deps: SupervisorDeps): Supervisor {
  const { config } = deps;
  const supervisorId = config.supervisorId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const log = deps.log.child({ supervisor: supervisorId });
  const keys = createKeys(config.keyPrefix);
  const ownsRedis = deps.redis === undefined;
  const redis = deps.redis ?? createRedis(config.redisUrl, 'loop', log.child({ component: 'redis' }));
  let subscriber: Redis | undefined;
  const registry = new Registry(redis, keys, (key, field, err) =>
    log.warn({ event: 'registry.invalid_record', key, field, err }, 'skipped a stored record that does not parse'),
  );
  const store = new RuntimeStore(redis, keys, supervisorId, config.heartbeatMs * SUPERVISOR_HEARTBEATS_MISSED);
  const entry = config.workerEntry ?? DEFAULT_WORKER_ENTRY;
  let closed = false;
  let closing: Promise<void> | undefined;

  // The queue's task is bound below: the parts need `enqueue`, and the reconciler needs the parts.
  let reconcileOne: (id: string) => Promise<void> = async () => {};
  const queue = new KeyedSerialQueue(
    (id) => reconcileOne(id),
    (id, err) => log.error({ event: 'reconcile.failed', server: id, err }, 'reconcile failed'),
  );
  const enqueue = (id: string) => queue.enqueue(id);
  const ctx: SupervisorContext = {
    config,
    log,
    store,
    ports: new PortAllocator(store, config.workerHost, config.workerBasePort, config.workerPortRange),
    health: new HealthChecker(HEALTH_TIMEOUT_MS),
    workers: new WorkerSet({ store, log, supervisorId, enqueue }),
    enqueue,
    isClosed: () => closed,
    stats: new SupervisorStats(config.healthIntervalMs),
  };
  const runs = new WorkerRuns(ctx, entry);
  const adoption = new Adoption(ctx, runs);
  reconcileOne = createReconciler(ctx, registry, runs, adoption);
  const loops = new SupervisorLoops(ctx, registry, runs);

  async function start(): Promise<void> {
    log.info({ event: 'supervisor.starting', worker_entry: entry }, 'supervisor starting');
    subscriber = createRedis(config.redisUrl, 'subscriber', log.child({ component: 'redis-subscriber' }));
    subscriber.on('message', (_channel: string, message: string) => {
      const event = parseEvent(message);
      if (!event || event.type === 'runtime.update' || event.type.startsWith('tool.')) return;
      void enqueue(event.id);
    });
    // Subscribe before the full sync, so that nothing written in between is missed.
    await subscriber.subscribe(keys.events);
    await loops.start();
    log.info({ event: 'supervisor.started', workers: ctx.workers.size }, 'supervisor started');
  }

  async function closeOnce(): Promise<void> {
    closed = true;
    log.info({ event: 'supervisor.stopping', keep_workers: config.keepWorkersOnExit }, 'supervisor stopping');
    // Leases are renewed until the workers are stopped: stopping them may outlast a lease.
    loops.stopWatching();
    const writes = new ShutdownWrites(SHUTDOWN_REDIS_MS);
    const steps: [string, () => Promise<unknown>][] = [
      ['unsubscribe', async () => subscriber && (await closeRedis(subscriber))],
      // A reconcile stuck on an unreachable Redis must not keep the workers running.
      ['drain', () => bounded(queue.idle(), SHUTDOWN_REDIS_MS)],
      [
        'workers',
        () =>
          Promise.all(
            ctx.workers.all().map(async (w) => {
              clearTimeout(w.timer);
              if (config.keepWorkersOnExit) return writes.wait(store.releaseLease(w.id));
              return runs.stopWorker(w, 'shutdown', false, writes);
            }),
          ),
      ],
      // Replaced workers drain on their own; without a supervisor left, nobody would SIGKILL one that hangs.
      ['retiring', async () => !config.keepWorkersOnExit && (await runs.retired())],
      ['leases', async () => loops.stopLeases()],
      // Gone from the heartbeats only now: until the workers were stopped (or their leases released), the
      // others must not take its servers over.
      ['heartbeat', () => writes.wait(store.leaveHeartbeat())],
      ['health', () => ctx.health.close()],
      ['redis', async () => ownsRedis && (await closeRedis(redis))],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        log.error({ event: 'supervisor.stop_step_failed', step: name, err }, 'shutdown step failed');
      }
    }
    log.info({ event: 'supervisor.stopped' }, 'supervisor stopped');
  }

  return {
    id: supervisorId,
    start,
    reconcile: enqueue,
    workers: () => ctx.workers.snapshot(),
    close() {
      closing ??= Promise.race([
        closeOnce(),
        new Promise<void>((resolve) => setTimeout(resolve, CLOSE_DEADLINE_MS).unref()),
      ]);
      return closing;
    },
  };
}
