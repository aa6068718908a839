import { createHash } from 'node:crypto';
import type { ApiKeyStore } from '../stores/api-key-store.js';
import type { KeyCheck } from './principal.js';

/** How long a verified key is trusted without asking Redis again. */
export const KEY_CACHE_TTL_MS = 2_000;
const MAX_ENTRIES = 10_000;
/** How long a verified key stays good while Redis cannot be asked (an outage, not a revocation). */
export const STALE_IF_ERROR_MS = 10 * 60_000;

interface Entry {
  at: number;
  check: Promise<KeyCheck>;
  keyId: string | undefined;
  /** The key's own expiry: a cached key is not trusted past it. */
  expiresAtMs: number;
  /** The last successful verification, and when it was made. */
  good?: Extract<KeyCheck, { ok: true }>;
  goodAt: number;
}

/** What the cache asks before reading Redis (RedisReachability), and tells it when it answers from stale data. */
export interface KeyReadHealth {
  readonly down: boolean;
  servedStale(what: 'api_key'): void;
}

/**
 * API key checks for the request path: a verified key is trusted for KEY_CACHE_TTL_MS, so a busy key costs
 * one Redis read every two seconds instead of one per call. Revoking or rotating through this hub forgets
 * the key at once; another hub replica notices within the TTL. Entries are keyed by a digest of the raw
 * key (no secret is kept), and failures are not cached.
 *
 * While Redis is unreachable (stale-if-error), the rule is:
 * - a key this hub verified good in the last STALE_IF_ERROR_MS stays good, never past its own expiry, and is
 *   answered at once when Redis is known to be down (no caller waits on a Redis timeout for it);
 * - a key whose last answer was revoked, unknown or expired has no entry (the failure deletes it, the good
 *   result with it), so it never comes back to life, and a key this hub never verified gets 503;
 * - a revocation made through this hub forgets the key at once; one made elsewhere that this hub had not
 *   read before the outage is honoured at the first check after Redis answers again (within KEY_CACHE_TTL_MS).
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly store: ApiKeyStore,
    private readonly clock: () => number = Date.now,
    private readonly health?: KeyReadHealth,
    /** Told whether each check was answered from the cache (metrics). */
    private readonly onLookup?: (hit: boolean) => void,
  ) {}

  check(raw: string): Promise<KeyCheck> {
    const digest = createHash('sha256').update(raw).digest('base64');
    const now = this.clock();
    const hit = this.entries.get(digest);
    if (hit && now - hit.at < KEY_CACHE_TTL_MS && now < hit.expiresAtMs) {
      this.onLookup?.(true);
      return hit.check;
    }
    this.onLookup?.(false);
    // Stale-if-error: while Redis cannot be asked, a key verified in the last STALE_IF_ERROR_MS stays good
    // (never past its own expiry), so calls go on through a short outage.
    const lastGood =
      hit?.good && now < hit.expiresAtMs && now - hit.goodAt < STALE_IF_ERROR_MS
        ? { result: hit.good, at: hit.goodAt }
        : undefined;
    if (lastGood && this.health?.down) {
      this.health.servedStale('api_key');
      return Promise.resolve(lastGood.result);
    }
    const entry: Entry = {
      at: now,
      check: Promise.resolve({ ok: false, reason: 'unknown' }),
      keyId: hit?.keyId,
      expiresAtMs: Number.POSITIVE_INFINITY,
      good: lastGood?.result,
      goodAt: lastGood?.at ?? 0,
    };
    entry.check = this.verify(raw).then(
      (result) => {
        if (result.ok) {
          Object.assign(entry, { keyId: result.principal.keyId, expiresAtMs: result.expiresAtMs, good: result });
          entry.goodAt = this.clock();
        } else if (this.entries.get(digest) === entry) this.entries.delete(digest);
        return result;
      },
      (err: unknown) => {
        if (lastGood) {
          this.health?.servedStale('api_key');
          // Trusted for a moment again; asked anew after KEY_CACHE_TTL_MS.
          entry.expiresAtMs = lastGood.result.expiresAtMs;
          return lastGood.result;
        }
        if (this.entries.get(digest) === entry) this.entries.delete(digest);
        throw err;
      },
    );
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    this.entries.set(digest, entry);
    return entry.check;
  }

  /** Drops a key (after revoke or rotate), so the next request reads its record again. */
  forget(keyId: string): void {
    for (const [digest, entry] of this.entries) if (entry.keyId === keyId) this.entries.delete(digest);
  }

  private async verify(raw: string): Promise<KeyCheck> {
    const result = await this.store.authenticate(raw);
    if (!result.ok) return { ok: false, reason: result.reason };
    const { key, role, scopes } = result;
    void this.store.touchLastUsed(key.id).catch(() => {});
    return {
      ok: true,
      expiresAtMs: key.expiresAt === undefined ? Number.POSITIVE_INFINITY : Date.parse(key.expiresAt),
      principal: {
        kind: 'key',
        keyId: key.id,
        project: key.project,
        role,
        scopes,
        member: key.member,
        limits: key.limits,
        expiresAt: key.expiresAt,
      },
    };
  }
}
