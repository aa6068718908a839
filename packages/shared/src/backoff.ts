/**
 * Exponential backoff: `baseMs` doubled `attempt` times (attempt 0 waits `baseMs`), capped at `maxMs`. The one
 * formula behind every retry loop (Redis reconnects, a worker's tool discovery, remote upstream reconnects).
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  // The exponent is capped so a long outage cannot overflow to Infinity before the cap applies.
  return Math.min(baseMs * 2 ** Math.min(Math.max(attempt, 0), 30), maxMs);
}

/**
 * backoffMs with ±20% jitter, still capped at `maxMs`: many workers that lost the same upstream do not
 * retry in step. `random` is injectable for tests (default Math.random).
 */
export function jitteredBackoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return Math.round(Math.min(backoffMs(attempt, baseMs, maxMs) * (0.8 + random() * 0.4), maxMs));
}
