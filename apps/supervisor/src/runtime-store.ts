import {
  defineScripts,
  type FailureRecord,
  MAX_FAILURE_ERROR_CHARS,
  MAX_FAILURES,
  type RedisKeys,
  type RuntimeRecord,
  type RuntimeStatus,
  runtimeToHash,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import type { SupervisorStatsRecord } from './stats.js';

/** Redis server time in ms: every supervisor's heartbeat is judged by one clock, whatever the hosts' clocks say. */
const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS[1] lease of the server, KEYS[2] supervisors heartbeat sorted set
 * ARGV[1] supervisor id, ARGV[2] ttl in ms, ARGV[3] silence in ms after which a holder counts as gone
 * Takes the lease when free, renews it when held by ARGV[1], and takes it over from a holder whose last
 * heartbeat is older than ARGV[3] (a holder with no heartbeat at all is waited out: its lease expires).
 * Returns 1 when held by ARGV[1] afterwards, 2 when taken over from a gone holder, 0 otherwise.
 */
const ACQUIRE_LEASE = `
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
local beat = redis.call('ZSCORE', KEYS[2], holder)
if beat == false then return 0 end
${NOW_MS}
if tonumber(beat) < now - tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
`;

/**
 * KEYS[1] supervisors heartbeat sorted set
 * ARGV[1] supervisor id, ARGV[2] silence in ms after which a supervisor counts as gone, ARGV[3] silence in ms
 * after which it is forgotten (longer than a lease lives, so its leases are gone by then)
 * Records ARGV[1]'s heartbeat and returns the ids of the supervisors gone (silent past ARGV[2], not yet
 * forgotten). A supervisor that was silent itself (cut off from Redis) judges nobody on its first beat back:
 * the others may have been cut off just as long.
 */
const HEARTBEAT = `
${NOW_MS}
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if mine == false or tonumber(mine) < now - tonumber(ARGV[2]) then return {} end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
`;

/**
 * KEYS[1] lease of the server
 * ARGV[1] supervisor id
 * Drops the lease only if ARGV[1] holds it. Returns 1 when dropped.
 */
const RELEASE_LEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * KEYS[1] runtime record hash, KEYS[2] lease of the server, KEYS[3] events channel
 * ARGV[1] supervisor id, ARGV[2] server id, ARGV[3] 'replace' | 'merge', ARGV[4] status to announce ('' = none),
 * ARGV[5] now (ISO), ARGV[6..] field, value pairs
 * Writes only while ARGV[1] holds the lease, so a supervisor that lost a server can never overwrite the
 * record of the one that took it over. Returns 1 when written.
 */
const WRITE_RUNTIME = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[3] == 'replace' then redis.call('DEL', KEYS[1]) end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', KEYS[3], '{"type":"runtime.update","id":' .. cjson.encode(ARGV[2]) .. ',"status":'
    .. cjson.encode(ARGV[4]) .. ',"ts":' .. cjson.encode(ARGV[5]) .. '}')
end
return 1
`;

/**
 * KEYS[1] runtime record hash, KEYS[2] lease of the server, KEYS[3] events channel, KEYS[4] runtime ports set
 * ARGV[1] supervisor id, ARGV[2] server id, ARGV[3] port to free ('' = none), ARGV[4] now (ISO)
 * Deletes the record and frees its port while ARGV[1] holds the lease, then drops the lease.
 */
const DELETE_RUNTIME = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then redis.call('SREM', KEYS[4], ARGV[3]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[3], '{"type":"runtime.update","id":' .. cjson.encode(ARGV[2])
  .. ',"status":"stopped","ts":' .. cjson.encode(ARGV[4]) .. '}')
return 1
`;

/**
 * KEYS[1] runtime ports set, KEYS[2] lock of the port
 * ARGV[1] port, ARGV[2] supervisor id, ARGV[3] lock ttl in ms
 * Claims a port unless it is held or being claimed. Returns 1 when claimed.
 */
const CLAIM_PORT = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
`;

interface RuntimeCommands {
  mcpAcquireLease(key: string, supervisors: string, supervisor: string, ttlMs: number, goneMs: number): Promise<number>;
  mcpHeartbeat(supervisors: string, supervisor: string, goneMs: number, forgetMs: number): Promise<string[]>;
  mcpReleaseLease(key: string, supervisor: string): Promise<number>;
  mcpWriteRuntime(...args: string[]): Promise<number>;
  mcpDeleteRuntime(...args: string[]): Promise<number>;
  mcpClaimPort(setKey: string, lockKey: string, port: number, supervisor: string, ttlMs: number): Promise<number>;
}

const PORT_LOCK_TTL_MS = 10_000;

/** Runtime records, leases and port claims: every compare-and-set is one Lua script. */
export class RuntimeStore {
  private readonly redis: Redis & RuntimeCommands;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
    readonly supervisorId: string,
    /** Silence (ms) after which a lease holder counts as gone and its leases may be taken over. */
    private readonly goneAfterMs: number = Number.POSITIVE_INFINITY,
  ) {
    this.redis = defineScripts<RuntimeCommands>(redis, {
      mcpAcquireLease: { numberOfKeys: 2, lua: ACQUIRE_LEASE },
      mcpHeartbeat: { numberOfKeys: 1, lua: HEARTBEAT },
      mcpReleaseLease: { numberOfKeys: 1, lua: RELEASE_LEASE },
      mcpWriteRuntime: { numberOfKeys: 3, lua: WRITE_RUNTIME },
      mcpDeleteRuntime: { numberOfKeys: 4, lua: DELETE_RUNTIME },
      mcpClaimPort: { numberOfKeys: 2, lua: CLAIM_PORT },
    });
  }

  /**
   * Takes or renews the lease on a server: `held` (renewed or free), `taken_over` (its holder's heartbeat went
   * silent), or false when another supervisor holds it.
   */
  async claimLease(id: string, ttlMs: number): Promise<'held' | 'taken_over' | false> {
    const result = await this.redis.mcpAcquireLease(
      this.keys.lease(id),
      this.keys.supervisors,
      this.supervisorId,
      ttlMs,
      this.goneMs(),
    );
    return result === 1 ? 'held' : result === 2 ? 'taken_over' : false;
  }

  /** Takes or renews the lease on a server; false when another supervisor holds it. */
  async acquireLease(id: string, ttlMs: number): Promise<boolean> {
    return (await this.claimLease(id, ttlMs)) !== false;
  }

  /** Renews many leases in one round trip; returns the ids whose lease was lost. */
  async renewLeases(ids: readonly string[], ttlMs: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) {
      (pipeline as unknown as RuntimeCommands).mcpAcquireLease(
        this.keys.lease(id),
        this.keys.supervisors,
        this.supervisorId,
        ttlMs,
        this.goneMs(),
      );
    }
    const results = (await pipeline.exec()) ?? [];
    return ids.filter((_, i) => results[i]?.[1] !== 1 && results[i]?.[1] !== 2);
  }

  /**
   * Records this supervisor's heartbeat; returns the ids of supervisors gone silent (empty on the first beat
   * after this one was silent itself). Those are forgotten after `forgetAfterMs`.
   */
  async heartbeat(forgetAfterMs: number): Promise<string[]> {
    return this.redis.mcpHeartbeat(this.keys.supervisors, this.supervisorId, this.goneMs(), forgetAfterMs);
  }

  /** Removes this supervisor's heartbeat and its counters (it stopped, its leases are released). */
  async leaveHeartbeat(): Promise<void> {
    await this.redis
      .multi()
      .zrem(this.keys.supervisors, this.supervisorId)
      .del(this.keys.supervisorStats(this.supervisorId))
      .exec();
  }

  /** Writes this supervisor's counters (the hub's /metrics reads them); they expire with a silent supervisor. */
  async writeStats(stats: SupervisorStatsRecord, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.supervisorStats(this.supervisorId), JSON.stringify(stats), 'PX', ttlMs);
  }

  /** Lua takes a number: "never" is a silence no heartbeat can reach. */
  private goneMs(): number {
    return Number.isFinite(this.goneAfterMs) ? this.goneAfterMs : Number.MAX_SAFE_INTEGER;
  }

  async releaseLease(id: string): Promise<void> {
    await this.redis.mcpReleaseLease(this.keys.lease(id), this.supervisorId);
  }

  async leaseHolder(id: string): Promise<string | null> {
    return this.redis.get(this.keys.lease(id));
  }

  /** Replaces the whole record (and announces `status`); false when the lease is not ours. */
  async writeRecord(id: string, record: RuntimeRecord): Promise<boolean> {
    return this.write(id, 'replace', record.status, runtimeToHash(record));
  }

  /** Updates some fields without announcing a status change; false when the lease is not ours. */
  async mergeFields(id: string, fields: Partial<RuntimeRecord>): Promise<boolean> {
    return this.write(id, 'merge', '', runtimeToHash(fields));
  }

  /** Deletes the record, frees its port and drops the lease; false when the lease is not ours. */
  async deleteRecord(id: string, port: number | undefined): Promise<boolean> {
    const done = await this.redis.mcpDeleteRuntime(
      this.keys.runtime(id),
      this.keys.lease(id),
      this.keys.events,
      this.keys.runtimePorts,
      this.supervisorId,
      id,
      port === undefined ? '' : String(port),
      new Date().toISOString(),
    );
    return done === 1;
  }

  /** Adds a failure to the server's history (newest first, at most MAX_FAILURES kept). */
  async recordFailure(id: string, failure: Omit<FailureRecord, 'at'>): Promise<void> {
    const record: FailureRecord = {
      at: new Date().toISOString(),
      ...failure,
      ...(failure.error === undefined ? {} : { error: failure.error.slice(0, MAX_FAILURE_ERROR_CHARS) }),
    };
    const key = this.keys.failures(id);
    await this.redis
      .multi()
      .lpush(key, JSON.stringify(record))
      .ltrim(key, 0, MAX_FAILURES - 1)
      .exec();
  }

  /** The worker's own note of why it failed (it writes `last_error` before exiting). */
  async readLastError(id: string): Promise<string | null> {
    return this.redis.hget(this.keys.runtime(id), 'last_error');
  }

  async claimPort(port: number): Promise<boolean> {
    const claimed = await this.redis.mcpClaimPort(
      this.keys.runtimePorts,
      this.keys.portLock(port),
      port,
      this.supervisorId,
      PORT_LOCK_TTL_MS,
    );
    return claimed === 1;
  }

  async releasePort(port: number): Promise<void> {
    await this.redis.srem(this.keys.runtimePorts, String(port));
  }

  async heldPorts(): Promise<Set<number>> {
    return new Set((await this.redis.smembers(this.keys.runtimePorts)).map(Number));
  }

  async portLocked(port: number): Promise<boolean> {
    return (await this.redis.exists(this.keys.portLock(port))) === 1;
  }

  /** Ids of every server that has a runtime record. */
  async runtimeIds(): Promise<string[]> {
    const ids: string[] = [];
    const cut = this.keys.runtime('').length;
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', this.keys.runtimePattern, 'COUNT', 500);
      cursor = next;
      for (const key of batch) ids.push(key.slice(cut));
    } while (cursor !== '0');
    return ids;
  }

  private async write(
    id: string,
    mode: 'replace' | 'merge',
    status: RuntimeStatus | '',
    hash: Record<string, string>,
  ): Promise<boolean> {
    const pairs = Object.entries(hash).flat();
    const done = await this.redis.mcpWriteRuntime(
      this.keys.runtime(id),
      this.keys.lease(id),
      this.keys.events,
      this.supervisorId,
      id,
      mode,
      status,
      new Date().toISOString(),
      ...pairs,
    );
    return done === 1;
  }
}
