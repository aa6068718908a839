import { type Logger, type Registry, SUPERVISOR_HEARTBEATS_MISSED } from '@mcp-hub/shared';
import type { SupervisorContext } from './context.js';
import type { WorkerRuns } from './worker-runs.js';
import { logFields } from './worker-set.js';

/**
 * A task run every `everyMs` by a recursive `setTimeout` (never overlapping itself), until `stop()`:
 * the `closed` flag keeps a round that is under way from scheduling another, and the pending timer is
 * cleared so that nothing waits out its sleep.
 */
export class Loop {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly everyMs: number,
    private readonly task: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.closed) return;
    this.timer = setTimeout(async () => {
      try {
        await this.task();
      } catch (err) {
        this.log.error({ event: `${this.name}.failed`, err }, `${this.name} failed`);
      }
      this.start();
    }, this.everyMs);
  }

  stop(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

/**
 * The supervisor's periodic work: lease renewal and heartbeats (from the start, until the workers are
 * stopped), health rounds, and the full resync that repairs whatever an event missed. A heartbeat that finds
 * another supervisor gone silent starts a resync at once: its servers' leases can be taken over
 * (runtime-store.ts), so its live workers are adopted and its dead ones restarted within a few heartbeats
 * instead of after its leases expire.
 */
export class SupervisorLoops {
  private readonly lease: Loop;
  private readonly heartbeat: Loop;
  /** Supervisors already found gone (and taken over from); dropped once their heartbeat is forgotten or back. */
  private readonly gone = new Set<string>();
  private takeover: Promise<void> | undefined;
  private readonly health: Loop;
  private readonly resyncLoop: Loop;
  private healthRunning = false;

  constructor(
    private readonly ctx: SupervisorContext,
    private readonly registry: Registry,
    private readonly runs: WorkerRuns,
  ) {
    const { config, log } = ctx;
    const leaseEveryMs = Math.max(100, Math.floor(config.leaseTtlMs / 3));
    this.lease = new Loop('lease', leaseEveryMs, () => this.renewLeases(), log);
    this.heartbeat = new Loop('heartbeat', config.heartbeatMs, () => this.beat(), log);
    this.health = new Loop('health', config.healthIntervalMs, () => this.healthRound(), log);
    this.resyncLoop = new Loop('resync', config.resyncIntervalMs, () => this.resync(), log);
  }

  /** Starts the loops, with one full sync first. */
  async start(): Promise<void> {
    // Leases are renewed from the start: the first sync may take longer than a lease lives.
    this.lease.start();
    await this.beat();
    this.heartbeat.start();
    this.health.start();
    await this.resync();
    this.resyncLoop.start();
  }

  /** Stops resync and health; leases go on until `stopLeases` (stopping the workers may outlast a lease). */
  stopWatching(): void {
    this.resyncLoop.stop();
    this.health.stop();
  }

  stopLeases(): void {
    this.lease.stop();
    this.heartbeat.stop();
  }

  /** Enqueues every server the registry, the runtime records or this supervisor knows of. */
  async resync(): Promise<void> {
    const { store, workers } = this.ctx;
    const [specs, runtimeIds] = await Promise.all([this.registry.listServers(), store.runtimeIds()]);
    const ids = new Set([...specs.map((s) => s.id), ...runtimeIds, ...workers.ids()]);
    // Waits for the reconciles: the first sync is over when `start()` resolves, and rounds never pile up.
    await Promise.all([...ids].map((id) => this.ctx.enqueue(id)));
    await this.releaseStalePorts(runtimeIds);
  }

  /** Frees ports held in Redis that no runtime record uses and nobody is claiming. */
  private async releaseStalePorts(runtimeIds: string[]): Promise<void> {
    const { store, ports, workers, log } = this.ctx;
    const held = await store.heldPorts();
    if (held.size === 0) return;
    const used = new Set<number>();
    for (const w of workers.all()) if (w.port !== undefined) used.add(w.port);
    for (const port of this.runs.portsInUse()) used.add(port);
    const records = await Promise.all(runtimeIds.map((id) => this.registry.getRuntime(id)));
    for (const r of records) if (r?.port !== undefined) used.add(r.port);
    for (const port of held) {
      if (used.has(port) || (await store.portLocked(port))) continue;
      await ports.release(port);
      log.info({ event: 'port.released', port, reason: 'stale' }, 'released a stale port');
    }
  }

  /** Writes this supervisor's heartbeat; a supervisor newly found silent starts a takeover resync. */
  private async beat(): Promise<void> {
    const { config, store, log } = this.ctx;
    // Forgotten once its leases are surely gone: a lease lives leaseTtlMs past its last renewal.
    const forgetAfterMs = config.leaseTtlMs + config.heartbeatMs * SUPERVISOR_HEARTBEATS_MISSED;
    const gone = new Set(await store.heartbeat(forgetAfterMs));
    await store
      .writeStats(this.ctx.stats.toJSON(), forgetAfterMs)
      .catch((err: unknown) => log.warn({ event: 'supervisor.stats_failed', err }, 'could not write the counters'));
    for (const id of this.gone) if (!gone.has(id)) this.gone.delete(id);
    const fresh = [...gone].filter((id) => !this.gone.has(id));
    if (fresh.length === 0 || this.ctx.isClosed()) return;
    for (const id of fresh) {
      this.gone.add(id);
      log.warn({ event: 'supervisor.gone', peer: id }, 'another supervisor went silent: taking its servers over');
    }
    // Not awaited (heartbeats go on while workers are adopted or started), and one resync after another.
    this.takeover = (this.takeover ?? Promise.resolve()).then(() =>
      this.resync().catch((err: unknown) =>
        log.error({ event: 'supervisor.takeover_failed', err }, 'takeover resync failed'),
      ),
    );
  }

  private async renewLeases(): Promise<void> {
    const { config, store, workers, log } = this.ctx;
    const lost = await store.renewLeases(workers.ids(), config.leaseTtlMs);
    for (const id of lost) {
      const w = workers.get(id);
      if (!w) continue;
      log.warn({ event: 'lease.lost', ...logFields(w) }, 'lost the lease on a server; handing it over');
      workers.forget(w);
    }
  }

  private async healthRound(): Promise<void> {
    if (this.healthRunning || this.ctx.isClosed()) return;
    this.healthRunning = true;
    try {
      await Promise.all(
        this.ctx.workers
          .all()
          .map((w) =>
            this.runs
              .checkHealth(w)
              .catch((err) => this.ctx.log.error({ event: 'health.error', server: w.id, err }, 'health round failed')),
          ),
      );
    } finally {
      this.healthRunning = false;
    }
  }
}
