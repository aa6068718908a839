/** Label values kept per counter at most (reasons come from the supervisor's own code, but stay bounded). */
const MAX_REASONS = 32;

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
    return {
      spawns: Object.fromEntries(this.spawns),
      failures: Object.fromEntries(this.failures),
      healthFailures: this.healthFailures,
      startups: this.startups,
      startupSeconds: Math.round(this.startupSeconds * 1000) / 1000,
    };
  }
}

export interface SupervisorStatsRecord {
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
