import type { WorkerHealth } from '@mcp-hub/shared';

/** Label values kept per counter at most (reasons come from the supervisor's own code, but stay bounded). */
const MAX_REASONS = 32;
/** Workers whose figures go out with a heartbeat at most (the hub's /metrics caps its server labels at 500 too). */
const MAX_WORKERS = 500;
/** A worker's figures are left out once no health check answered for this long (at least 3 health intervals). */
const WORKER_FIGURES_TTL_MS = 10_000;

/** What a running worker said of itself at its last health check. */
export interface WorkerFigures {
  rssBytes: number;
  cpuSeconds: number;
  mcpSessions: number;
  activeCalls: number;
}

/**
 * Counters of one supervisor since it started, for the hub's `/metrics` (the supervisor has no HTTP server): worker
 * spawns by reason, failed runs by reason, health-check failures, and the time from spawn to healthy. Written to
 * Redis with every heartbeat (`supervisor_stats:{id}`, expiring with the heartbeat's silence) and deleted when the
 * supervisor stops.
 */
export class SupervisorStats {
  private readonly spawns = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private healthFailures = 0;
  private startups = 0;
  private startupSeconds = 0;
  private readonly workers = new Map<string, { figures: WorkerFigures; at: number }>();

  private readonly figuresTtlMs: number;

  constructor(
    healthIntervalMs = 0,
    private readonly now: () => number = Date.now,
  ) {
    this.figuresTtlMs = Math.max(WORKER_FIGURES_TTL_MS, 3 * healthIntervalMs);
  }

  /** The worker of `server` exited: its figures go at once. */
  workerGone(server: string): void {
    this.workers.delete(server);
  }

  /** A running worker's own figures, from a health check that answered (/healthz). */
  workerHealth(server: string, health: WorkerHealth): void {
    if (health.rssBytes === undefined || health.cpuSeconds === undefined) return;
    if (!this.workers.has(server) && this.workers.size >= MAX_WORKERS) return;
    this.workers.set(server, {
      figures: {
        rssBytes: health.rssBytes,
        cpuSeconds: health.cpuSeconds,
        mcpSessions: health.mcpSessions ?? 0,
        activeCalls: health.activeCalls,
      },
      at: this.now(),
    });
  }

  spawned(reason: string): void {
    bump(this.spawns, reason);
  }

  ready(startupMs: number): void {
    this.startups++;
    this.startupSeconds += startupMs / 1000;
  }

  failed(reason: string): void {
    bump(this.failures, reason);
  }

  healthFailed(): void {
    this.healthFailures++;
  }

  toJSON(): SupervisorStatsRecord {
    const workers: Record<string, WorkerFigures> = {};
    const cutoff = this.now() - this.figuresTtlMs;
    for (const [server, { figures, at }] of this.workers) {
      if (at < cutoff) this.workers.delete(server);
      else workers[server] = figures;
    }
    return {
      workers,
      spawns: Object.fromEntries(this.spawns),
      failures: Object.fromEntries(this.failures),
      healthFailures: this.healthFailures,
      startups: this.startups,
      startupSeconds: Math.round(this.startupSeconds * 1000) / 1000,
    };
  }
}

export interface SupervisorStatsRecord {
  /** The running workers' own figures, by server id. */
  workers: Record<string, WorkerFigures>;
  spawns: Record<string, number>;
  failures: Record<string, number>;
  healthFailures: number;
  startups: number;
  startupSeconds: number;
}

function bump(map: Map<string, number>, reason: string): void {
  const key = map.has(reason) || map.size < MAX_REASONS ? reason : 'other';
  map.set(key, (map.get(key) ?? 0) + 1);
}
