import { defineScripts, type Logger, type RedisKeys } from '@mcp-hub/shared';
import type { ChainableCommander, Redis } from 'ioredis';
import { z } from 'zod';

/**
 * Usage counters per API key: one hash per UTC day (kept 35 days) and one running-totals hash. Recording is
 * fire-and-forget: calls are summed in memory and written by one pipeline per batch (every `flushIntervalMs`,
 * or at once when `maxBatch` calls are waiting), never awaited on the call path. Best effort: a batch that
 * Redis refuses is dropped and logged at debug.
 */

export interface UsageEvent {
  keyId: string;
  server: string;
  tool: string;
  ok: boolean;
  latencyMs: number;
  /** When the call was made (epoch ms); default now. */
  at?: number;
}

export interface UsageCounts {
  calls: number;
  errors: number;
  latencyMsSum: number;
  /** server id → calls */
  servers: Record<string, number>;
  /** `<server>/<tool>` → calls */
  tools: Record<string, number>;
}

export interface UsageDay extends UsageCounts {
  /** YYYY-MM-DD (UTC) */
  day: string;
}

export interface UsageReport {
  keyId: string;
  total: UsageCounts;
  /** The last `days` UTC days, oldest first, today last; days without calls have zero counts. */
  days: UsageDay[];
  /** ISO 8601, null when the key was never used. */
  lastRequestAt: string | null;
}

export interface UsageRecorderOptions {
  /** How long calls are summed before they are written; default 100 ms. */
  flushIntervalMs?: number;
  /** Write at once when this many calls are waiting; default 500. */
  maxBatch?: number;
  /** How long a day hash is kept; default 35 days. */
  dayTtlS?: number;
}

export const DEFAULT_USAGE_FLUSH_INTERVAL_MS = 100;
export const DEFAULT_USAGE_MAX_BATCH = 500;
export const DEFAULT_USAGE_DAY_TTL_S = 35 * 86_400;
export const DEFAULT_USAGE_REPORT_DAYS = 7;
export const MAX_USAGE_REPORT_DAYS = 35;
const DAY_MS = 86_400_000;

const F_CALLS = 'calls';
const F_ERRORS = 'errors';
const F_LATENCY = 'latency_ms_sum';
const F_LAST = 'last_request_at';
const SERVER_FIELD = 'server:';
const TOOL_FIELD = 'tool:';

/** KEYS[1] a usage hash; ARGV[1] field, ARGV[2] value. Sets the field unless it already holds a larger number. */
const SET_MAX = `
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
`;

interface UsageCommands {
  mcpUsageSetMax(key: string, field: string, value: number): Promise<number>;
}

interface UsagePipelineCommands {
  mcpUsageSetMax(key: string, field: string, value: number): ChainableCommander;
}

const UsageHashSchema = z.record(z.string(), z.string());

/** The UTC day (YYYY-MM-DD) of an epoch-ms instant. */
export function utcDay(atMs: number): string {
  return new Date(atMs).toISOString().slice(0, 10);
}

/** field → increment, per hash key; plus the latest call time per key. */
interface Batch {
  increments: Map<string, Map<string, number>>;
  dayKeys: Set<string>;
  lastAt: Map<string, number>;
  size: number;
}

const emptyBatch = (): Batch => ({ increments: new Map(), dayKeys: new Set(), lastAt: new Map(), size: 0 });

export class UsageRecorder {
  private readonly redis: Redis;
  private batch: Batch = emptyBatch();
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();
  /** Calls whose usage was not written since the last batch that was (0 while writes succeed). */
  private droppedSinceWrite = 0;
  /** Calls whose usage was not written since this recorder started. */
  private droppedTotal = 0;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly dayTtlS: number;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
    options: UsageRecorderOptions = {},
  ) {
    this.redis = defineScripts<UsageCommands>(redis, { mcpUsageSetMax: { numberOfKeys: 1, lua: SET_MAX } });
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_USAGE_FLUSH_INTERVAL_MS;
    this.maxBatch = options.maxBatch ?? DEFAULT_USAGE_MAX_BATCH;
    this.dayTtlS = options.dayTtlS ?? DEFAULT_USAGE_DAY_TTL_S;
  }

  /** Counts one finished call; returns at once (written within flushIntervalMs). */
  record(event: UsageEvent): void {
    const at = event.at ?? this.clock();
    const dayKey = this.keys.usageDay(event.keyId, utcDay(at));
    const totalKey = this.keys.usage(event.keyId);
    this.batch.dayKeys.add(dayKey);
    const latency = Math.max(0, Math.round(event.latencyMs));
    for (const key of [dayKey, totalKey]) {
      this.add(key, F_CALLS, 1);
      if (!event.ok) this.add(key, F_ERRORS, 1);
      if (latency > 0) this.add(key, F_LATENCY, latency);
      this.add(key, `${SERVER_FIELD}${event.server}`, 1);
      this.add(key, `${TOOL_FIELD}${event.server}/${event.tool}`, 1);
    }
    if (at > (this.batch.lastAt.get(totalKey) ?? 0)) this.batch.lastAt.set(totalKey, at);
    this.batch.size += 1;
    if (this.batch.size >= this.maxBatch) this.write();
    else if (this.timer === null) {
      this.timer = setTimeout(() => this.write(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Writes whatever is waiting and waits for every write under way (tests, shutdown). Never rejects. */
  async flush(): Promise<void> {
    this.write();
    await Promise.all([...this.inFlight]);
  }

  /** Usage of one key: running totals and the last `days` UTC days (default 7, at most 35). */
  async get(keyId: string, options: { days?: number } = {}): Promise<UsageReport> {
    const count = Math.min(MAX_USAGE_REPORT_DAYS, Math.max(1, Math.floor(options.days ?? DEFAULT_USAGE_REPORT_DAYS)));
    const today = Math.floor(this.clock() / DAY_MS) * DAY_MS;
    const dayNames: string[] = [];
    for (let i = count - 1; i >= 0; i--) dayNames.push(utcDay(today - i * DAY_MS));
    const pipeline = this.redis.pipeline();
    pipeline.hgetall(this.keys.usage(keyId));
    for (const day of dayNames) pipeline.hgetall(this.keys.usageDay(keyId, day));
    const replies = (await pipeline.exec()) ?? [];
    const hashes = replies.map(([err, value]) => {
      if (err) throw err;
      return UsageHashSchema.parse(value);
    });
    const total = hashes[0] ?? {};
    const last = Number(total[F_LAST]);
    return {
      keyId,
      total: countsFromHash(total),
      days: dayNames.map((day, i) => ({ day, ...countsFromHash(hashes[i + 1] ?? {}) })),
      lastRequestAt: Number.isFinite(last) && last > 0 ? new Date(last).toISOString() : null,
    };
  }

  /** Stops the timer and writes what is waiting. */
  async close(): Promise<void> {
    await this.flush();
  }

  private add(key: string, field: string, by: number): void {
    let fields = this.batch.increments.get(key);
    if (!fields) {
      fields = new Map();
      this.batch.increments.set(key, fields);
    }
    fields.set(field, (fields.get(field) ?? 0) + by);
  }

  private write(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.batch;
    if (batch.size === 0) return;
    this.batch = emptyBatch();
    const pipeline = this.redis.pipeline() as ChainableCommander & UsagePipelineCommands;
    for (const [key, fields] of batch.increments) {
      for (const [field, by] of fields) pipeline.hincrby(key, field, by);
    }
    // Hubs write their batches in any order: only ever move last_request_at forward.
    for (const [key, at] of batch.lastAt) pipeline.mcpUsageSetMax(key, F_LAST, at);
    for (const key of batch.dayKeys) pipeline.expire(key, this.dayTtlS);
    const done = pipeline.exec().then(
      (replies) => {
        const failed = replies?.find(([err]) => err !== null);
        if (failed) this.dropped(batch, failed[0]);
        else this.written();
      },
      (err: unknown) => this.dropped(batch, err),
    );
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  /** How many calls went uncounted since this recorder started (Redis refused or could not take them). */
  get droppedCalls(): number {
    return this.droppedTotal;
  }

  private dropped(batch: Batch, err: unknown): void {
    this.log.debug({ event: 'usage.write_failed', calls: batch.size, err }, 'usage batch not written');
    if (this.droppedSinceWrite === 0) {
      this.log.warn({ event: 'usage.dropped', calls: batch.size, err }, 'usage not written: calls go uncounted');
    }
    this.droppedSinceWrite += batch.size;
    this.droppedTotal += batch.size;
  }

  private written(): void {
    if (this.droppedSinceWrite === 0) return;
    this.log.info({ event: 'usage.recovered', dropped_calls: this.droppedSinceWrite }, 'usage is written again');
    this.droppedSinceWrite = 0;
  }
}

function countsFromHash(hash: Record<string, string>): UsageCounts {
  const counts: UsageCounts = { calls: 0, errors: 0, latencyMsSum: 0, servers: {}, tools: {} };
  for (const [field, raw] of Object.entries(hash)) {
    const value = Number(raw);
    if (!Number.isFinite(value)) continue;
    if (field === F_CALLS) counts.calls = value;
    else if (field === F_ERRORS) counts.errors = value;
    else if (field === F_LATENCY) counts.latencyMsSum = value;
    else if (field.startsWith(SERVER_FIELD)) counts.servers[field.slice(SERVER_FIELD.length)] = value;
    else if (field.startsWith(TOOL_FIELD)) counts.tools[field.slice(TOOL_FIELD.length)] = value;
  }
  return counts;
}
