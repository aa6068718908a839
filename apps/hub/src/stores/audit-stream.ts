import { AppError, MASK, type RedisKeys } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';

/**
 * Field names whose values never reach the audit log, at any depth (compared case-insensitively): server
 * `env` and `headers` maps keep their names with every value masked; the others are masked whole.
 */
export const AUDIT_REDACTED_FIELDS = ['env', 'headers', 'key', 'hash', 'secret', 'authorization', 'password'] as const;
const REDACTED = new Set<string>(AUDIT_REDACTED_FIELDS);
const MAP_FIELDS = new Set(['env', 'headers']);
const MAX_DEPTH = 32;

/** Entries a query returns when no limit is given, and the most it returns. */
export const DEFAULT_AUDIT_QUERY_LIMIT = 100;
export const MAX_AUDIT_QUERY_LIMIT = 1_000;

export const AuditActorSchema = z.object({
  keyId: z.string().optional(),
  member: z.string().optional(),
  /** The bootstrap super-admin (HUB_ADMIN_TOKEN). */
  admin: z.boolean().optional(),
});
export type AuditActor = z.output<typeof AuditActorSchema>;

/** What one audit entry records; `before` and `after` are redacted when appended. */
export const AuditRecordSchema = z.object({
  actor: AuditActorSchema,
  /** A verb on a resource: `server.create`, `key.rotate`, `member.remove`, … */
  action: z.string().min(1),
  resource: z.object({ type: z.string().min(1), id: z.string() }),
  project: z.string().optional(),
  requestId: z.string(),
  before: z.unknown().optional(),
  after: z.unknown().optional(),
});
export type AuditRecord = z.output<typeof AuditRecordSchema>;

/** An entry read back: `id` is its stream id, `ts` (ISO 8601) the Redis time it was appended. */
export type AuditEntry = AuditRecord & { id: string; ts: string };

export interface AuditQuery {
  project?: string;
  /** Entries appended at or after this time: ISO 8601 or epoch milliseconds. */
  since?: string | number;
  /** A key id, a member id, or `admin`. */
  actor?: string;
  /** 1 to 1000, default 100. */
  limit?: number;
}

export interface AuditStreamOptions {
  /** Entries the stream keeps; older ones are trimmed (approximately: Redis trims whole stream nodes). */
  maxLength: number;
}

/**
 * The audit log: one Redis Stream entry per change, trimmed to about `maxLength` entries. Entry ids (and so
 * `ts` and `since`) use Redis's clock, one clock for every hub replica, so entries are in append order.
 */
export class AuditStream {
  private readonly maxLength: number;

  constructor(
    private readonly redis: Redis,
    readonly keys: RedisKeys,
    options: AuditStreamOptions,
  ) {
    if (!Number.isInteger(options.maxLength) || options.maxLength < 1) {
      throw new RangeError(`audit maxLength must be a positive integer, not ${options.maxLength}`);
    }
    this.maxLength = options.maxLength;
  }

  /** Appends one entry with `before` and `after` redacted; returns it as a query would. */
  async append(record: AuditRecord): Promise<AuditEntry> {
    const redacted: AuditRecord = AuditRecordSchema.parse({
      ...record,
      before: redactAuditValue(record.before),
      after: redactAuditValue(record.after),
    });
    const id = await this.redis.xadd(
      this.keys.audit,
      'MAXLEN',
      '~',
      String(this.maxLength),
      '*',
      'data',
      JSON.stringify(redacted),
    );
    if (id === null) throw new Error('XADD returned no id');
    return { ...redacted, id, ts: tsOfId(id) };
  }

  /** Entries newest first, filtered by project, time and actor; throws invalid_request for a bad `since` or `limit`. */
  async query(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const limit = query.limit ?? DEFAULT_AUDIT_QUERY_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_QUERY_LIMIT) {
      throw new AppError('invalid_request', `limit must be an integer from 1 to ${MAX_AUDIT_QUERY_LIMIT}`);
    }
    const start = query.since === undefined ? '-' : `${sinceMs(query.since)}-0`;
    const batch = Math.max(limit, DEFAULT_AUDIT_QUERY_LIMIT);
    const out: AuditEntry[] = [];
    let end = '+';
    while (out.length < limit) {
      const page = await this.redis.xrevrange(this.keys.audit, end, start, 'COUNT', batch);
      for (const [id, fields] of page) {
        const entry = parseEntry(id, fields);
        if (entry && matches(entry, query)) out.push(entry);
        if (out.length === limit) break;
      }
      const last = page.at(-1);
      if (page.length < batch || !last) break;
      end = `(${last[0]}`;
    }
    return out;
  }
}

/**
 * A deep copy of `value` with secrets masked: every field named in AUDIT_REDACTED_FIELDS, at any depth.
 * `env` and `headers` objects keep their names with each value "***" (so a diff still shows which changed).
 */
export function redactAuditValue(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((item) => redactAuditValue(item, depth + 1));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [name, inner] of Object.entries(value)) {
    const lower = name.toLowerCase();
    if (!REDACTED.has(lower)) out[name] = redactAuditValue(inner, depth + 1);
    else if (MAP_FIELDS.has(lower) && inner !== null && typeof inner === 'object' && !Array.isArray(inner)) {
      out[name] = Object.fromEntries(Object.keys(inner).map((k) => [k, MASK]));
    } else out[name] = MASK;
  }
  return out;
}

function matches(entry: AuditEntry, query: AuditQuery): boolean {
  if (query.project !== undefined && entry.project !== query.project) return false;
  if (query.actor !== undefined) {
    const { keyId, member, admin } = entry.actor;
    if (keyId !== query.actor && member !== query.actor && !(query.actor === 'admin' && admin === true)) return false;
  }
  return true;
}

function parseEntry(id: string, fields: string[]): AuditEntry | null {
  const at = fields.indexOf('data');
  const json = at >= 0 && at % 2 === 0 ? fields[at + 1] : undefined;
  if (json === undefined) return null;
  try {
    const result = AuditRecordSchema.safeParse(JSON.parse(json));
    return result.success ? { ...result.data, id, ts: tsOfId(id) } : null;
  } catch {
    return null;
  }
}

function tsOfId(id: string): string {
  return new Date(Number(id.split('-')[0])).toISOString();
}

function sinceMs(since: string | number): number {
  const ms = typeof since === 'number' ? since : /^\d+$/.test(since) ? Number(since) : Date.parse(since);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new AppError('invalid_request', `since must be an ISO 8601 date-time or epoch milliseconds, not "${since}"`);
  }
  return ms;
}
