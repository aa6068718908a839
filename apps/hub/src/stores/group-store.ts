import {
  AppError,
  defineScripts,
  type InvalidRecordHandler,
  parseOrThrow,
  type RedisKeys,
  type Registry,
  RUNTIME_STATUSES,
  SLUG_RE,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { checkRules, RuleSchema, RulesSchema, targetsOf } from '../routing/rules.js';
import { compare, projectNotFound, RedisRecordStore, sortById } from './store-records.js';

/** How long a hub serves calls from a group it read (changes through other replicas show within this). */
export const CACHE_TTL_MS = 1_000;
/** Groups a hub keeps parsed at most (past it, all are read again). */
const MAX_CACHED = 10_000;

/** Groups one project may have, and servers one group may hold. */
export const MAX_GROUPS_PER_PROJECT = 100;
export const MAX_GROUP_SERVERS = 100;

const slug = (what: string) =>
  z.string().regex(SLUG_RE, `${what} must be 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit`);

/** What a client sends to create or replace a group (the id comes from the path on PUT). */
export const GroupBodySchema = z.strictObject({
  name: z.string().trim().min(1, 'name must not be empty').max(128),
  description: z.string().max(1_000).optional(),
  serverIds: z
    .array(slug('a server id'))
    .max(MAX_GROUP_SERVERS, `a group holds at most ${MAX_GROUP_SERVERS} servers`)
    .refine((ids) => new Set(ids).size === ids.length, 'serverIds must not repeat a server')
    .default([]),
  /** Routing rules (routing/rules.ts): their targets must be members. */
  rules: RulesSchema,
});
export type GroupBody = z.input<typeof GroupBodySchema>;
export const CreateGroupBodySchema = GroupBodySchema.extend({ id: slug('id') });
export type CreateGroupBody = z.input<typeof CreateGroupBodySchema>;

export const GroupSchema = z.object({
  id: z.string(),
  project: z.string(),
  name: z.string(),
  description: z.string().optional(),
  serverIds: z.array(z.string()),
  rules: z.array(RuleSchema).default([]),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Group = z.output<typeof GroupSchema>;

/** A member's state in a group's health roll-up: its runtime status, or `missing` for a server deleted since. */
export const MEMBER_STATES = [...RUNTIME_STATUSES, 'missing'] as const;
export const GroupHealthSchema = z.object({
  members: z.number(),
  running: z.number(),
  byStatus: z.record(z.string(), z.number()),
  servers: z.array(z.object({ id: z.string(), status: z.enum(MEMBER_STATES) })),
});
export type GroupHealth = z.output<typeof GroupHealthSchema>;

export const GroupToolSchema = z.object({
  name: z.string(),
  description: z.string().optional(),
  inputSchema: z.record(z.string(), z.unknown()),
  servers: z.array(z.object({ id: z.string(), status: z.string() })),
});
export type GroupTool = z.output<typeof GroupToolSchema>;

/**
 * KEYS[1] the project's groups hash; ARGV[1] group id, ARGV[2] the JSON read ('' = absent), ARGV[3] the JSON to
 * write ('' = delete). Writes only if the group is still what was read: `ok`, else `changed`.
 */
const PUT_GROUP = `
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 'changed' end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 'ok'
`;

interface GroupCommands {
  mcpPutGroup(key: string, id: string, expected: string, next: string): Promise<'ok' | 'changed'>;
}

function groupNotFound(project: string, id: string): AppError {
  return new AppError('group_not_found', `group "${id}" not found in project "${project}"`);
}

/**
 * Server groups (issue 16): a project's named, curated sets of its servers, one Redis hash per project
 * (`groups:{project}`: group id → JSON). Writes that read first are compare-and-set (PUT_GROUP), so concurrent hub
 * replicas never lose a membership change. A group only names servers of its own project that exist when it is
 * written; a server deleted later shows as `missing` in the group's health.
 */
export class GroupStore extends RedisRecordStore {
  private readonly redis: Redis & GroupCommands;
  /** Groups as the call path reads them, parsed, for CACHE_TTL_MS (this hub's own writes drop them at once). */
  private readonly cached = new Map<string, { group: Group; at: number }>();
  /** Bumped by each write through this hub: a read that started before a write does not cache what it read. */
  private writes = 0;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
    private readonly registry: Registry,
    private readonly projectExists: (id: string) => Promise<boolean>,
    clock: () => number = Date.now,
    onInvalid: InvalidRecordHandler = () => {},
  ) {
    super(clock, onInvalid);
    this.redis = defineScripts<GroupCommands>(redis, { mcpPutGroup: { numberOfKeys: 1, lua: PUT_GROUP } });
  }

  async list(project: string): Promise<Group[]> {
    await this.requireProject(project);
    const key = this.keys.groups(project);
    return sortById(this.parseAll(key, await this.redis.hgetall(key), GroupSchema));
  }

  async get(project: string, id: string): Promise<Group> {
    await this.requireProject(project);
    const json = await this.redis.hget(this.keys.groups(project), id);
    const group = json === null ? null : this.parse(this.keys.groups(project), id, json, GroupSchema);
    if (!group) throw groupNotFound(project, id);
    return group;
  }

  /**
   * A group for the call path: from this hub's memory when it was read in the last CACHE_TTL_MS (a change made
   * through another replica shows within that), else read (and parsed) once. Throws group_not_found.
   */
  async forCall(project: string, id: string): Promise<Group> {
    const key = `${project}/${id}`;
    const hit = this.cached.get(key);
    const now = performance.now();
    if (hit && now - hit.at < CACHE_TTL_MS) return hit.group;
    const writes = this.writes;
    const json = await this.redis.hget(this.keys.groups(project), id);
    const group = json === null ? null : this.parse(this.keys.groups(project), id, json, GroupSchema);
    if (!group) {
      this.cached.delete(key);
      throw groupNotFound(project, id);
    }
    if (writes !== this.writes) return group;
    if (!this.cached.has(key) && this.cached.size >= MAX_CACHED) this.cached.clear();
    this.cached.set(key, { group, at: now });
    return group;
  }

  /** Drops a group from the call path's memory (written or deleted through this hub). */
  private dropCached(project: string, id: string): void {
    this.writes++;
    this.cached.delete(`${project}/${id}`);
  }

  /** Creates a group; throws project_not_found, server_not_found, group_exists, invalid_request (too many). */
  async create(project: string, body: CreateGroupBody): Promise<Group> {
    const input = parseOrThrow(CreateGroupBodySchema, body, 'group');
    checkRules(input.rules, input.serverIds);
    await this.requireProject(project);
    await this.requireServers(project, input.serverIds);
    const key = this.keys.groups(project);
    if ((await this.redis.hlen(key)) >= MAX_GROUPS_PER_PROJECT) {
      throw new AppError('invalid_request', `a project has at most ${MAX_GROUPS_PER_PROJECT} groups`);
    }
    const now = this.nowIso();
    const group: Group = { ...this.fields(input), id: input.id, project, createdAt: now, updatedAt: now };
    const created = await this.redis.hsetnx(key, group.id, JSON.stringify(group));
    this.dropCached(project, group.id);
    if (created === 0) {
      throw new AppError('group_exists', `group "${group.id}" already exists in project "${project}"`);
    }
    return group;
  }

  /** Creates or replaces group `id`; `before` is null when it did not exist. */
  async put(project: string, id: string, body: GroupBody): Promise<{ before: Group | null; group: Group }> {
    const input = parseOrThrow(GroupBodySchema, body, 'group');
    checkRules(input.rules, input.serverIds);
    await this.requireProject(project);
    await this.requireServers(project, input.serverIds);
    const key = this.keys.groups(project);
    return this.retry(async () => {
      const json = (await this.redis.hget(key, id)) ?? '';
      const before = json === '' ? null : this.parse(key, id, json, GroupSchema);
      if (!before && (await this.redis.hlen(key)) >= MAX_GROUPS_PER_PROJECT) {
        throw new AppError('invalid_request', `a project has at most ${MAX_GROUPS_PER_PROJECT} groups`);
      }
      const now = this.nowIso();
      const group: Group = { ...this.fields(input), id, project, createdAt: before?.createdAt ?? now, updatedAt: now };
      const status = await this.redis.mcpPutGroup(key, id, json, JSON.stringify(group));
      this.dropCached(project, id);
      return status === 'ok' ? { before, group } : undefined;
    });
  }

  /** Deletes group `id`, answering what it was; throws group_not_found. */
  async remove(project: string, id: string): Promise<Group> {
    const before = await this.get(project, id);
    const deleted = await this.redis.hdel(this.keys.groups(project), id);
    this.dropCached(project, id);
    if (deleted === 0) throw groupNotFound(project, id);
    return before;
  }

  /** Adds (`member` true) or removes a server; a no-op when it already is (or is not) a member. */
  async setMember(
    project: string,
    id: string,
    server: string,
    member: boolean,
  ): Promise<{ before: Group; group: Group }> {
    if (member) await this.requireServers(project, [server]);
    const key = this.keys.groups(project);
    return this.retry(async () => {
      const json = await this.redis.hget(key, id);
      const before = json === null ? null : this.parse(key, id, json, GroupSchema);
      if (!before || json === null) throw groupNotFound(project, id);
      const has = before.serverIds.includes(server);
      if (has === member) return { before, group: before };
      const targeting = before.rules.find((rule) => targetsOf(rule).some((t) => t.id === server));
      if (!member && targeting) {
        throw new AppError('invalid_request', `rule "${targeting.id}" targets "${server}": change the rule first`);
      }
      if (member && before.serverIds.length >= MAX_GROUP_SERVERS) {
        throw new AppError('invalid_request', `a group holds at most ${MAX_GROUP_SERVERS} servers`);
      }
      const serverIds = member
        ? [...before.serverIds, server].sort(compare)
        : before.serverIds.filter((s) => s !== server);
      const group: Group = { ...before, serverIds, updatedAt: this.nowIso() };
      const status = await this.redis.mcpPutGroup(key, id, json, JSON.stringify(group));
      this.dropCached(project, id);
      return status === 'ok' ? { before, group } : undefined;
    });
  }

  /** The members of `group` by runtime status (as their records in Redis say); `missing` for deleted servers. */
  async health(group: Group): Promise<GroupHealth> {
    const specs = await Promise.all(group.serverIds.map((id) => this.registry.getServer(id)));
    const runtimes = await Promise.all(group.serverIds.map((id) => this.registry.getRuntime(id)));
    const servers = group.serverIds.map((id, i) => {
      const spec = specs[i];
      const status: GroupHealth['servers'][number]['status'] =
        !spec || spec.project !== group.project ? 'missing' : (runtimes[i]?.status ?? 'stopped');
      return { id, status };
    });
    const byStatus: Record<string, number> = {};
    for (const { status } of servers) byStatus[status] = (byStatus[status] ?? 0) + 1;
    return { members: servers.length, running: byStatus.running ?? 0, byStatus, servers };
  }

  private fields(input: z.output<typeof GroupBodySchema>): Pick<Group, 'name' | 'description' | 'serverIds' | 'rules'> {
    return {
      name: input.name,
      ...(input.description === undefined ? {} : { description: input.description }),
      serverIds: [...input.serverIds].sort(compare),
      rules: input.rules,
    };
  }

  /**
   * The tools a call through the group can name, from the registry's tool lists (never an upstream): each bare
   * name once, with the members that list it and their runtime status (a call goes to one that runs).
   */
  async tools(group: { project: string; serverIds: readonly string[] }): Promise<GroupTool[]> {
    const byName = new Map<string, GroupTool>();
    const [lists, runtimes, specs] = await Promise.all([
      Promise.all(group.serverIds.map((id) => this.registry.listTools(id))),
      Promise.all(group.serverIds.map((id) => this.registry.getRuntime(id))),
      Promise.all(group.serverIds.map((id) => this.registry.getServer(id))),
    ]);
    group.serverIds.forEach((id, i) => {
      if (specs[i]?.project !== group.project) return;
      const status = runtimes[i]?.status ?? 'stopped';
      for (const tool of lists[i] ?? []) {
        const entry = byName.get(tool.name) ?? {
          name: tool.name,
          ...(tool.description === undefined ? {} : { description: tool.description }),
          inputSchema: tool.inputSchema,
          servers: [],
        };
        entry.servers.push({ id, status });
        byName.set(tool.name, entry);
      }
    });
    return [...byName.values()].sort((a, b) => compare(a.name, b.name));
  }

  private async requireProject(project: string): Promise<void> {
    if (!(await this.projectExists(project))) throw projectNotFound(project);
  }

  /** Every id must be a server of `project` (another project's server is as unknown as one that does not exist). */
  private async requireServers(project: string, ids: readonly string[]): Promise<void> {
    const specs = await Promise.all(ids.map((id) => this.registry.getServer(id)));
    const unknown = ids.filter((_, i) => specs[i]?.project !== project);
    if (unknown.length > 0) {
      throw new AppError(
        'server_not_found',
        `no server ${unknown.map((id) => `"${id}"`).join(', ')} in project "${project}"`,
        {
          servers: unknown,
        },
      );
    }
  }
}
