/**
 * The Lua scripts of the rate limiter: one EVALSHA checks every window and the concurrency slot of a call and
 * counts it only when all pass (a denied call consumes no quota); another forgets a key's counters.
 */

/** Window counters outlive their window by this much, so a hub with a slightly late clock still finds them. */
const WINDOW_GRACE_MS = 60_000;

/**
 * KEYS[1] the key's concurrency sorted set, KEYS[2] the key's index of live window keys, KEYS[3..] window counters
 * ARGV[1] now (ms), ARGV[2] concurrency cap (0 = none), ARGV[3] call id, ARGV[4] slot expiry (ms, the score),
 * ARGV[5] slot set TTL (ms), then per window counter: limit, window end (ms)
 * Returns {allowed (1 | 0), slots held, count of each counter}. All or nothing: when any counter is at its
 * limit or the cap is reached nothing is written and the counts are the current ones; otherwise every counter
 * is incremented (the counts include this call) and a slot is taken. A counter gets its TTL (and its index
 * entry) when it is created; expired slots and index entries are pruned as they are met.
 */
export const CHECK = `
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local n = #KEYS - 2
local counts = {}
local allowed = 1
for i = 1, n do
  local c = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  counts[i] = c
  if c >= tonumber(ARGV[4 + 2 * i]) then allowed = 0 end
end
local held = 0
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  held = redis.call('ZCARD', KEYS[1])
  if held >= cap then allowed = 0 end
end
if allowed == 1 then
  local indexTtl = 0
  for i = 1, n do
    local c = redis.call('INCR', KEYS[i + 2])
    counts[i] = c
    if c == 1 then
      local windowEnd = tonumber(ARGV[5 + 2 * i])
      local ttl = windowEnd - now + ${WINDOW_GRACE_MS}
      redis.call('PEXPIRE', KEYS[i + 2], ttl)
      redis.call('ZADD', KEYS[2], windowEnd + ${WINDOW_GRACE_MS}, KEYS[i + 2])
      if ttl > indexTtl then indexTtl = ttl end
    end
  end
  if indexTtl > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    if redis.call('PTTL', KEYS[2]) < indexTtl then redis.call('PEXPIRE', KEYS[2], indexTtl) end
  end
  if cap > 0 then
    redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    held = held + 1
  end
end
local out = {allowed, held}
for i = 1, n do out[i + 2] = counts[i] end
return out
`;

/**
 * KEYS[1] the key's concurrency sorted set, KEYS[2] the key's index of live window keys
 * Deletes every window counter in the index, the index and the concurrency slots. Returns how many keys went.
 * (The counter names are read from the index, so under Redis Cluster the prefix must carry a hash tag, as for
 * every script here.)
 */
export const RESET = `
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local deleted = 0
for i = 1, #members, 500 do
  deleted = deleted + redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
end
return deleted + redis.call('DEL', KEYS[1], KEYS[2])
`;

export interface LimiterCommands {
  mcpRateCheck(...args: (string | number)[]): Promise<number[]>;
  mcpRateReset(...args: string[]): Promise<number>;
}
