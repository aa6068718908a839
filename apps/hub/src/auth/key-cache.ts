import { createHash } from 'node:crypto';
import type { KeyCheck } from '../plugins/auth.js';
import type { ProjectStore } from '../security/project-store.js';

/** How long a verified key is trusted without asking Redis again. */
export const KEY_CACHE_TTL_MS = 2_000;
const MAX_ENTRIES = 10_000;

interface Entry {
  at: number;
  check: Promise<KeyCheck>;
  keyId: string | undefined;
  /** The key's own expiry: a cached key is not trusted past it. */
  expiresAtMs: number;
}

/**
 * API key checks for the request path: a verified key is trusted for KEY_CACHE_TTL_MS, so a busy key costs
 * one Redis read every two seconds instead of one per call. Revoking or rotating through this hub forgets
 * the key at once; another hub replica notices within the TTL. Entries are keyed by a digest of the raw
 * key (no secret is kept), and failures are not cached.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly store: ProjectStore,
    private readonly clock: () => number = Date.now,
  ) {}

  check(raw: string): Promise<KeyCheck> {
    const digest = createHash('sha256').update(raw).digest('base64');
    const now = this.clock();
    const hit = this.entries.get(digest);
    if (hit && now - hit.at < KEY_CACHE_TTL_MS && now < hit.expiresAtMs) return hit.check;
    const check = this.verify(raw);
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    const entry: Entry = { at: now, check, keyId: undefined, expiresAtMs: Number.POSITIVE_INFINITY };
    this.entries.set(digest, entry);
    check.then(
      (result) => {
        if (result.ok) {
          entry.keyId = result.principal.keyId;
          entry.expiresAtMs = result.expiresAtMs;
        } else if (this.entries.get(digest) === entry) this.entries.delete(digest);
      },
      () => {
        if (this.entries.get(digest) === entry) this.entries.delete(digest);
      },
    );
    return check;
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
      },
    };
  }
}
