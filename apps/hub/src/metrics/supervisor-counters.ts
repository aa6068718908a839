import type { RedisKeys } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { SupervisorCounters } from './hub-metrics.js';

const count = z.number().int().nonnegative();
const WorkerFiguresSchema = z.object({
  rssBytes: count,
  cpuSeconds: z.number().nonnegative(),
  mcpSessions: count,
  activeCalls: count,
});
const CountersSchema = z.object({
  // Server ids (SLUG_RE: at most 64 characters); the supervisor sends at most 500.
  workers: z.record(z.string().max(64), WorkerFiguresSchema).default({}),
  spawns: z.record(z.string().max(64), count),
  failures: z.record(z.string().max(64), count),
  healthFailures: count,
  startups: count,
  startupSeconds: z.number().nonnegative(),
});

/** Supervisors read per scrape at most. */
const MAX_SUPERVISORS = 100;

/** The counters of every supervisor with a heartbeat (records that do not parse are left out). */
export async function supervisorCounters(
  redis: Redis,
  keys: RedisKeys,
): Promise<{ id: string; stats: SupervisorCounters }[]> {
  const ids = await redis.zrange(keys.supervisors, '0', String(MAX_SUPERVISORS - 1));
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => keys.supervisorStats(id)));
  const out: { id: string; stats: SupervisorCounters }[] = [];
  ids.forEach((id, i) => {
    const value = values[i];
    if (!value) return;
    try {
      const parsed = CountersSchema.safeParse(JSON.parse(value));
      if (parsed.success) out.push({ id, stats: parsed.data });
    } catch {
      // not JSON: left out
    }
  });
  return out;
}
