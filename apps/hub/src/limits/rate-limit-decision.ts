import { AppError, type RedisKeys } from '@mcp-hub/shared';

/**
 * Per-API-key rate limits: fixed windows aligned to the UTC hour and the UTC day, optionally per key+server
 * or per key+server+tool, plus a cap on concurrent calls per key. In Redis, one EVALSHA per call checks every
 * window and the concurrency slot and, only when all of them pass, counts the call everywhere (a denied call
 * consumes no quota). When Redis is unreachable the same semantics run on in-memory counters of this hub
 * (starting empty) until a periodic PING answers again.
 */

export type RateScope = 'key' | 'server' | 'tool';
export type RateWindow = 'hour' | 'day';

/** `server` counts per key+server and `tool` per key+server+tool; a rule whose server/tool is absent is skipped. */
export interface Rule {
  scope: RateScope;
  window: RateWindow;
  limit: number;
}

/** The pseudo-rule a call is denied by when the key already holds `limit` concurrent calls. */
export interface ConcurrencyRule {
  scope: 'concurrent';
  limit: number;
}

export interface CheckRequest {
  keyId: string;
  server?: string;
  tool?: string;
  rules: readonly Rule[];
  /** Most calls of this key in flight at once; unset or 0: no cap. */
  concurrent?: number;
  /** Unique per call: the member of the concurrency set. */
  callId: string;
}

export interface AllowedDecision {
  allowed: true;
  /** The tightest rule (least remaining), which the headers describe; null when no window rule applied. */
  rule: Rule | null;
  limit: number;
  /** Calls left in the tightest rule's window, this call counted. */
  remaining: number;
  /** End of the tightest rule's window, epoch seconds. */
  resetAt: number;
  /** Seconds from the check until `resetAt`. */
  resetAfterS: number;
  /** Frees the concurrency slot; idempotent, never rejects. A no-op when no cap applied. */
  release(): Promise<void>;
}

export interface DeniedDecision {
  allowed: false;
  /** The rule that denied the call (of several over their limit, the one whose window ends last). */
  rule: Rule | ConcurrencyRule;
  limit: number;
  remaining: 0;
  /** Epoch seconds at which the call may succeed again (for the concurrency cap: a guess, 1 s away). */
  resetAt: number;
  resetAfterS: number;
  retryAfterS: number;
}

export type Decision = AllowedDecision | DeniedDecision;

const CONCURRENCY_RETRY_AFTER_S = 1;
const WINDOW_MS: Record<RateWindow, number> = { hour: 3_600_000, day: 86_400_000 };

/** One window counter a check touches (rules that share a counter are merged, keeping the lowest limit). */
export interface PlannedWindow {
  rule: Rule;
  key: string;
  limit: number;
  endMs: number;
}

export interface Plan {
  keyId: string;
  callId: string;
  nowMs: number;
  windows: PlannedWindow[];
  cap: number;
  slotExpiryMs: number;
}

export interface StoreResult {
  allowed: boolean;
  held: number;
  counts: number[];
}

/** Start of the UTC hour or day containing `nowMs`, in ms. */
export function windowStartMs(window: RateWindow, nowMs: number): number {
  const size = WINDOW_MS[window];
  return Math.floor(nowMs / size) * size;
}

/**
 * The scope part of a window key. Components are URI-encoded so that a `:` inside an id cannot make two
 * different (key, server, tool) triples share a counter.
 */
function scopeName(rule: Rule, req: CheckRequest): string | null {
  const keyId = encodeURIComponent(req.keyId);
  if (rule.scope === 'key') return `key:${keyId}`;
  if (req.server === undefined) return null;
  const server = encodeURIComponent(req.server);
  if (rule.scope === 'server') return `server:${keyId}:${server}`;
  if (req.tool === undefined) return null;
  return `tool:${keyId}:${server}:${encodeURIComponent(req.tool)}`;
}

export function plan(req: CheckRequest, keys: RedisKeys, nowMs: number, slotTtlMs: number): Plan {
  const windows: PlannedWindow[] = [];
  for (const rule of req.rules) {
    const scope = scopeName(rule, req);
    if (scope === null) continue;
    const startMs = windowStartMs(rule.window, nowMs);
    const key = keys.rateWindow(scope, rule.window, startMs / 1000);
    const same = windows.find((w) => w.key === key);
    if (same) {
      if (rule.limit < same.limit) {
        same.limit = rule.limit;
        same.rule = rule;
      }
      continue;
    }
    windows.push({ rule, key, limit: rule.limit, endMs: startMs + WINDOW_MS[rule.window] });
  }
  const cap = req.concurrent !== undefined && req.concurrent > 0 ? Math.floor(req.concurrent) : 0;
  return { keyId: req.keyId, callId: req.callId, nowMs, windows, cap, slotExpiryMs: nowMs + slotTtlMs };
}

const ceilS = (ms: number): number => Math.ceil(ms / 1000);

export function decide(p: Plan, result: StoreResult, release: () => Promise<void>): Decision {
  if (!result.allowed) {
    let over: PlannedWindow | undefined;
    p.windows.forEach((w, i) => {
      if ((result.counts[i] ?? 0) >= w.limit && (over === undefined || w.endMs > over.endMs)) over = w;
    });
    if (over) {
      const resetAfterS = Math.max(1, ceilS(over.endMs - p.nowMs));
      return {
        allowed: false,
        rule: over.rule,
        limit: over.limit,
        remaining: 0,
        resetAt: ceilS(over.endMs),
        resetAfterS,
        retryAfterS: resetAfterS,
      };
    }
    return {
      allowed: false,
      rule: { scope: 'concurrent', limit: p.cap },
      limit: p.cap,
      remaining: 0,
      resetAt: ceilS(p.nowMs) + CONCURRENCY_RETRY_AFTER_S,
      resetAfterS: CONCURRENCY_RETRY_AFTER_S,
      retryAfterS: CONCURRENCY_RETRY_AFTER_S,
    };
  }
  let tightest: PlannedWindow | undefined;
  let tightestRemaining = Number.POSITIVE_INFINITY;
  p.windows.forEach((w, i) => {
    const remaining = Math.max(0, w.limit - (result.counts[i] ?? 0));
    if (remaining < tightestRemaining || (remaining === tightestRemaining && tightest && w.endMs > tightest.endMs)) {
      tightest = w;
      tightestRemaining = remaining;
    }
  });
  let released = false;
  const releaseOnce = (): Promise<void> => {
    if (released || p.cap === 0) return Promise.resolve();
    released = true;
    return release();
  };
  if (!tightest) {
    return { allowed: true, rule: null, limit: 0, remaining: 0, resetAt: 0, resetAfterS: 0, release: releaseOnce };
  }
  return {
    allowed: true,
    rule: tightest.rule,
    limit: tightest.limit,
    remaining: tightestRemaining,
    resetAt: ceilS(tightest.endMs),
    resetAfterS: Math.max(0, ceilS(tightest.endMs - p.nowMs)),
    release: releaseOnce,
  };
}

/**
 * The headers of a decision: RateLimit-Limit/Remaining/Reset (IETF draft; Reset in seconds from now), and the
 * same values under X-RateLimit-* (seconds too, as @fastify/rate-limit sends them). Empty when no window rule
 * applied to an allowed call. A denied call's Retry-After comes with its error (`rate_limited` in ERROR_HEADERS).
 */
export function rateLimitHeaders(decision: Decision): Record<string, string> {
  const headers: Record<string, string> = {};
  if (decision.allowed && decision.rule === null) return headers;
  const limit = String(decision.limit);
  const remaining = String(decision.remaining);
  const reset = String(decision.resetAfterS);
  headers['RateLimit-Limit'] = limit;
  headers['RateLimit-Remaining'] = remaining;
  headers['RateLimit-Reset'] = reset;
  headers['X-RateLimit-Limit'] = limit;
  headers['X-RateLimit-Remaining'] = remaining;
  headers['X-RateLimit-Reset'] = reset;
  return headers;
}

/** The 429 a denied decision becomes (code rate_limited); `details` carries the rule and remaining quota. */
export function rateLimitedError(decision: DeniedDecision): AppError {
  const { rule, limit, remaining, resetAt, retryAfterS } = decision;
  const what =
    rule.scope === 'concurrent'
      ? `${limit} concurrent calls`
      : `${limit} calls per ${rule.window}${rule.scope === 'key' ? '' : ` per ${rule.scope}`}`;
  return new AppError('rate_limited', `rate limit reached (${what}); retry in ${retryAfterS} s`, {
    rule,
    limit,
    remaining,
    resetAt,
    retryAfterS,
  });
}
