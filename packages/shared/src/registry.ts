import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { canonicalJson } from './canonical-json.js';
import { AppError } from './errors.js';
import type { RedisKeys } from './keys.js';
import { defineScripts } from './redis.js';
import {
  type FailureRecord,
  FailureRecordSchema,
  type HubEvent,
  HubEventSchema,
  MAX_FAILURES,
  type RuntimeRecord,
  runtimeFromHash,
  type ServerSpec,
  type ServerSpecBody,
  ServerSpecSchema,
  type Tool,
  type ToolInput,
  ToolInputSchema,
  ToolSchema,
} from './schemas.js';

/**
 * KEYS[1] servers hash, KEYS[2] registry revision, KEYS[3] events channel
 * ARGV[1] server id, ARGV[2] spec body JSON (an object without rev/createdAt/updatedAt),
 * ARGV[3] 'create' | 'replace', ARGV[4] expected rev ('' = any, '0' = must not exist), ARGV[5] now (ISO),
 * ARGV[6] the spec's namespace
 * Returns {status, rev, created, json}; status is ok | unchanged | exists | conflict | namespace_taken.
 * A body equal to the stored one changes nothing (no revision, no event), so an idempotent PUT
 * never restarts a worker.
 * Namespaces are unique across the hub, so an aggregated tool name can never mean two servers: a new
 * namespace is compared with every stored spec. That is one pass over the servers hash per write (hundreds
 * of specs, writes are rare) and, unlike an index, cannot drift from the specs or miss data written before
 * the rule. A server keeping the namespace it already has is not checked, so a duplicate written before the
 * rule can still be edited (the aggregated view hides both sides of it).
 */
const UPSERT_SERVER = `
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing and ARGV[3] == 'create' then return {'exists', 0, 0, ''} end
local createdAt = ARGV[5]
local oldNamespace = nil
if existing then
  local old = cjson.decode(existing)
  if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= tonumber(old.rev) then return {'conflict', old.rev, 0, ''} end
  local prefix = string.sub(ARGV[2], 1, -2) .. ',"rev":'
  if string.sub(existing, 1, #prefix) == prefix then return {'unchanged', old.rev, 0, existing} end
  if old.createdAt then createdAt = old.createdAt end
  oldNamespace = old.namespace
elseif ARGV[4] ~= '' and tonumber(ARGV[4]) ~= 0 then
  return {'conflict', 0, 0, ''}
end
if oldNamespace ~= ARGV[6] then
  local needle = '"namespace":' .. cjson.encode(ARGV[6])
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    -- The plain find is a cheap filter; the decode confirms (the text could sit inside an env value).
    if all[i] ~= ARGV[1] and string.find(all[i + 1], needle, 1, true) then
      local ok, other = pcall(cjson.decode, all[i + 1])
      if ok and type(other) == 'table' and other.namespace == ARGV[6] then return {'namespace_taken', 0, 0, ''} end
    end
  end
end
local rev = redis.call('INCR', KEYS[2])
local json = string.sub(ARGV[2], 1, -2) .. ',"rev":' .. rev .. ',"createdAt":' .. cjson.encode(createdAt)
  .. ',"updatedAt":' .. cjson.encode(ARGV[5]) .. '}'
redis.call('HSET', KEYS[1], ARGV[1], json)
redis.call('PUBLISH', KEYS[3], '{"type":"server.upsert","id":' .. cjson.encode(ARGV[1]) .. ',"rev":' .. rev
  .. ',"ts":' .. cjson.encode(ARGV[5]) .. '}')
local created = 1
if existing then created = 0 end
return {'ok', rev, created, json}
`;

/**
 * KEYS[1] servers hash, KEYS[2] registry revision, KEYS[3] events channel, KEYS[4] the server's tools hash,
 * KEYS[5] restart counters hash, KEYS[6] the server's failure history
 * ARGV[1] server id, ARGV[2] now (ISO)
 * Returns the new revision, or 0 when the server did not exist.
 */
const DELETE_SERVER = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[4], KEYS[6])
redis.call('HDEL', KEYS[5], ARGV[1])
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], '{"type":"server.delete","id":' .. cjson.encode(ARGV[1]) .. ',"rev":' .. rev
  .. ',"ts":' .. cjson.encode(ARGV[2]) .. '}')
return rev
`;

/**
 * KEYS[1] servers hash, KEYS[2] restart counters hash, KEYS[3] registry revision, KEYS[4] events channel
 * ARGV[1] server id, ARGV[2] now (ISO)
 * Returns {restart count, rev}, or {-1, 0} when the server does not exist. The counter is what a
 * supervisor compares against; the event only wakes it early.
 */
const REQUEST_RESTART = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {-1, 0} end
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local rev = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], '{"type":"server.restart","id":' .. cjson.encode(ARGV[1]) .. ',"rev":' .. rev
  .. ',"ts":' .. cjson.encode(ARGV[2]) .. '}')
return {n, rev}
`;

/**
 * KEYS[1] servers hash, KEYS[2] restart counters hash, KEYS[3] the server's runtime record, KEYS[4] registry
 * revision, KEYS[5] events channel
 * ARGV[1] server id, ARGV[2] now (ISO)
 * A restart request made only if none is pending yet (the counter is not ahead of the one the worker was
 * stopped with), so that a burst of calls to an idle server starts it once. Returns the counter, or -1
 * when the server does not exist.
 */
const REQUEST_WAKE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local seen = tonumber(redis.call('HGET', KEYS[3], 'restart_requests') or '0')
if n > seen then return n end
n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local rev = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', KEYS[5], '{"type":"server.restart","id":' .. cjson.encode(ARGV[1]) .. ',"rev":' .. rev
  .. ',"ts":' .. cjson.encode(ARGV[2]) .. '}')
return n
`;

/**
 * KEYS[1] the server's tools hash, KEYS[2] registry revision, KEYS[3] events channel, KEYS[4] servers hash
 * ARGV[1] server id, ARGV[2] now (ISO), then triples: tool name, digest, tool JSON body (without rev)
 * Writes changed tools, removes vanished ones, one revision and one event per change.
 * Returns the number of changes, or -1 when the server no longer exists (nothing is written).
 */
const REPLACE_TOOLS = `
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then return -1 end
local stored = redis.call('HGETALL', KEYS[1])
local old = {}
for i = 1, #stored, 2 do old[stored[i]] = stored[i + 1] end
local changes = 0
local seen = {}
local function publish(kind, name, rev)
  redis.call('PUBLISH', KEYS[3], '{"type":"' .. kind .. '","id":' .. cjson.encode(ARGV[1]) .. ',"tool":'
    .. cjson.encode(name) .. ',"rev":' .. rev .. ',"ts":' .. cjson.encode(ARGV[2]) .. '}')
end
for i = 3, #ARGV, 3 do
  local name, digest, body = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  seen[name] = true
  local prev = old[name]
  if not prev or cjson.decode(prev).digest ~= digest then
    local rev = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[1], name, string.sub(body, 1, -2) .. ',"rev":' .. rev .. '}')
    publish('tool.upsert', name, rev)
    changes = changes + 1
  end
end
for name, _ in pairs(old) do
  if not seen[name] then
    redis.call('HDEL', KEYS[1], name)
    publish('tool.delete', name, redis.call('INCR', KEYS[2]))
    changes = changes + 1
  end
end
return changes
`;

type ScriptReply = [string, number, number, string];

interface RegistryCommands {
  mcpUpsertServer(...args: string[]): Promise<ScriptReply>;
  mcpDeleteServer(...args: string[]): Promise<number>;
  mcpRequestRestart(...args: string[]): Promise<[number, number]>;
  mcpReplaceTools(...args: string[]): Promise<number>;
  mcpRequestWake(...args: string[]): Promise<number>;
}

export interface UpsertResult {
  spec: ServerSpec;
  created: boolean;
  changed: boolean;
}

export type UpsertMode = 'create' | 'replace';

/** Called for a stored value that no longer parses; the registry skips it instead of failing a listing. */
export type InvalidRecordHandler = (key: string, field: string, error: unknown) => void;

/**
 * The registry client: every read parses, every write is one Lua script that bumps the registry revision
 * and publishes its event in the same atomic step.
 */
export class Registry {
  private readonly redis: Redis & RegistryCommands;

  constructor(
    redis: Redis,
    readonly keys: RedisKeys,
    private readonly onInvalid: InvalidRecordHandler = () => {},
    private readonly now: () => Date = () => new Date(),
  ) {
    this.redis = defineRegistryCommands(redis);
  }

  /**
   * Creates (`create`: fails with server_exists) or replaces a server; `expectedRev` guards against lost
   * updates. Throws server_exists (details `{ path: 'namespace' }`) when another server has the namespace.
   */
  async upsertServer(body: ServerSpecBody, mode: UpsertMode, expectedRev?: number): Promise<UpsertResult> {
    const [status, rev, created, json] = await this.redis.mcpUpsertServer(
      this.keys.servers,
      this.keys.registryRev,
      this.keys.events,
      body.id,
      canonicalJson(body),
      mode,
      expectedRev === undefined ? '' : String(expectedRev),
      this.now().toISOString(),
      body.namespace,
    );
    if (status === 'exists') throw new AppError('server_exists', `server "${body.id}" already exists`);
    if (status === 'namespace_taken') {
      // The holder is not named: it may belong to a project the caller cannot see.
      throw new AppError('server_exists', `namespace "${body.namespace}" is already used by another server`, {
        path: 'namespace',
      });
    }
    if (status === 'conflict') {
      throw new AppError(
        'revision_conflict',
        `server "${body.id}" is at revision ${rev}, not ${expectedRev}; read it again and retry`,
        { currentRev: Number(rev) },
      );
    }
    return { spec: ServerSpecSchema.parse(JSON.parse(json)), created: created === 1, changed: status === 'ok' };
  }

  /** Deletes a server and its tools; throws server_not_found when absent. Returns the new revision. */
  async deleteServer(id: string): Promise<number> {
    const rev = await this.redis.mcpDeleteServer(
      this.keys.servers,
      this.keys.registryRev,
      this.keys.events,
      this.keys.tools(id),
      this.keys.restarts,
      this.keys.failures(id),
      id,
      this.now().toISOString(),
    );
    if (rev === 0) throw notFound(id);
    return rev;
  }

  /** Bumps the server's restart counter and publishes `server.restart`; throws server_not_found. */
  async requestRestart(id: string): Promise<{ restartRequests: number; rev: number }> {
    const [count, rev] = await this.redis.mcpRequestRestart(
      this.keys.servers,
      this.keys.restarts,
      this.keys.registryRev,
      this.keys.events,
      id,
      this.now().toISOString(),
    );
    if (count < 0) throw notFound(id);
    return { restartRequests: count, rev };
  }

  /** Asks for a worker stopped for idleness to start, once however many callers ask; throws server_not_found. */
  async requestWake(id: string): Promise<number> {
    const count = await this.redis.mcpRequestWake(
      this.keys.servers,
      this.keys.restarts,
      this.keys.runtime(id),
      this.keys.registryRev,
      this.keys.events,
      id,
      this.now().toISOString(),
    );
    if (count < 0) throw notFound(id);
    return count;
  }

  /** Replaces the tool list of a server; returns how many tools changed, or -1 if the server is gone. */
  async replaceTools(id: string, tools: readonly ToolInput[]): Promise<number> {
    const args: string[] = [];
    for (const input of tools) {
      const tool = ToolInputSchema.parse(input);
      const digest = createHash('sha256').update(canonicalJson(tool)).digest('base64url');
      args.push(tool.name, digest, canonicalJson({ ...tool, digest }));
    }
    return this.redis.mcpReplaceTools(
      this.keys.tools(id),
      this.keys.registryRev,
      this.keys.events,
      this.keys.servers,
      id,
      this.now().toISOString(),
      ...args,
    );
  }

  async getServer(id: string): Promise<ServerSpec | null> {
    const json = await this.redis.hget(this.keys.servers, id);
    return json === null ? null : this.parse(this.keys.servers, id, json, ServerSpecSchema);
  }

  /** Like getServer, but throws server_not_found. */
  async requireServer(id: string): Promise<ServerSpec> {
    const spec = await this.getServer(id);
    if (!spec) throw notFound(id);
    return spec;
  }

  /** All servers, sorted by id. */
  async listServers(): Promise<ServerSpec[]> {
    const all = await this.redis.hgetall(this.keys.servers);
    const specs: ServerSpec[] = [];
    for (const [id, json] of Object.entries(all)) {
      const spec = this.parse(this.keys.servers, id, json, ServerSpecSchema);
      if (spec) specs.push(spec);
    }
    return specs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The tools of one server, sorted by name. */
  async listTools(id: string): Promise<Tool[]> {
    const all = await this.redis.hgetall(this.keys.tools(id));
    const tools: Tool[] = [];
    for (const [name, json] of Object.entries(all)) {
      const tool = this.parse(this.keys.tools(id), name, json, ToolSchema);
      if (tool) tools.push(tool);
    }
    return tools.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async getTool(id: string, name: string): Promise<Tool | null> {
    const json = await this.redis.hget(this.keys.tools(id), name);
    return json === null ? null : this.parse(this.keys.tools(id), name, json, ToolSchema);
  }

  async getRuntime(id: string): Promise<RuntimeRecord | null> {
    const hash = await this.redis.hgetall(this.keys.runtime(id));
    try {
      return runtimeFromHash(hash);
    } catch (error) {
      this.onInvalid(this.keys.runtime(id), '', error);
      return null;
    }
  }

  /** The server's recorded failures, newest first (at most MAX_FAILURES); records that do not parse are skipped. */
  async listFailures(id: string): Promise<FailureRecord[]> {
    const items = await this.redis.lrange(this.keys.failures(id), 0, MAX_FAILURES - 1);
    const out: FailureRecord[] = [];
    for (const item of items) {
      try {
        out.push(FailureRecordSchema.parse(JSON.parse(item)));
      } catch (error) {
        this.onInvalid(this.keys.failures(id), '', error);
      }
    }
    return out;
  }

  /** How many restarts have been requested for a server (0 when none). */
  async getRestartRequests(id: string): Promise<number> {
    return Number((await this.redis.hget(this.keys.restarts, id)) ?? 0);
  }

  async getRevision(): Promise<number> {
    return Number((await this.redis.get(this.keys.registryRev)) ?? 0);
  }

  private parse<T>(key: string, field: string, json: string, schema: { parse(data: unknown): T }): T | null {
    try {
      return schema.parse(JSON.parse(json));
    } catch (error) {
      this.onInvalid(key, field, error);
      return null;
    }
  }
}

function notFound(id: string): AppError {
  return new AppError('server_not_found', `server "${id}" not found`);
}

function defineRegistryCommands(redis: Redis): Redis & RegistryCommands {
  return defineScripts<RegistryCommands>(redis, {
    mcpUpsertServer: { numberOfKeys: 3, lua: UPSERT_SERVER },
    mcpDeleteServer: { numberOfKeys: 6, lua: DELETE_SERVER },
    mcpRequestRestart: { numberOfKeys: 4, lua: REQUEST_RESTART },
    mcpReplaceTools: { numberOfKeys: 4, lua: REPLACE_TOOLS },
    mcpRequestWake: { numberOfKeys: 5, lua: REQUEST_WAKE },
  });
}

/** Parses one message of the events channel; null for anything that is not a known event. */
export function parseEvent(message: string): HubEvent | null {
  try {
    const result = HubEventSchema.safeParse(JSON.parse(message));
    return result.success ? result.data : null;
  } catch {
    return null;
  }
}
