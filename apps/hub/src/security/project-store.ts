import {
  AppError,
  defineScripts,
  type InvalidRecordHandler,
  parseOrThrow,
  type RedisKeys,
  SLUG_RE,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { generateApiKey, hashSecret, parseApiKey, secretMatches } from './api-keys.js';

/** Roles from most to least powerful. */
export const ROLES = ['owner', 'developer', 'reporter'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a key may do. A key's scopes are a subset of its role's, and default to all of them:
 * - `servers:read`   list and read the project's servers and tools (secrets masked);
 * - `servers:write`  create, replace, delete and restart the project's servers (and groups);
 * - `tools:call`     call tools (`/mcp/...`);
 * - `usage:read`     read usage and limit counters;
 * - `audit:read`     read the project's audit log;
 * - `members:manage` add, change and remove members;
 * - `keys:manage`    create, list, rotate and revoke keys.
 */
export const SCOPES = [
  'servers:read',
  'servers:write',
  'tools:call',
  'usage:read',
  'audit:read',
  'members:manage',
  'keys:manage',
] as const;
export type Scope = (typeof SCOPES)[number];

/** The scopes each role grants: owner everything; developer servers, calls and reading; reporter read and call. */
export const ROLE_SCOPES: Readonly<Record<Role, readonly Scope[]>> = Object.freeze({
  owner: SCOPES,
  // Usage and audit are the owner's (issue 6: "GET /api/usage/:keyId (owner of the project, or admin)").
  developer: ['servers:read', 'servers:write', 'tools:call'],
  reporter: ['servers:read', 'tools:call'],
});

/** True when `role` has at least the powers of `min`. */
export function roleAtLeast(role: Role, min: Role): boolean {
  return ROLES.indexOf(role) <= ROLES.indexOf(min);
}

/** The less powerful of two roles. */
export function lesserRole(a: Role, b: Role): Role {
  return roleAtLeast(a, b) ? b : a;
}

/** Default grace of a rotated key: how long the old secret keeps working (1 h). */
export const DEFAULT_KEY_GRACE_MS = 3_600_000;
/** Longest grace a rotation may give the old key (30 days). */
export const MAX_KEY_GRACE_MS = 30 * 24 * 3_600_000;
/** `lastUsedAt` is written at most this often per key and hub process (1 min). */
export const TOUCH_INTERVAL_MS = 60_000;
const MAX_CAS_ATTEMPTS = 5;

const projectId = z
  .string({ error: 'id must be a string' })
  .regex(SLUG_RE, "id must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit");
/** An email or an external id: any visible characters, no spaces. */
const memberId = z
  .string({ error: 'member id must be a string' })
  .regex(/^[^\s\p{Cc}]{1,320}$/u, 'member id must be 1-320 characters without spaces (an email or an external id)');
const role = z.enum(ROLES, { error: `role must be one of ${ROLES.join(', ')}` });
const scope = z.enum(SCOPES, { error: `scope must be one of ${SCOPES.join(', ')}` });
const positiveInt = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be an integer`)
    .positive(`${what} must be > 0`);

/** Per-key limits; the rate limiter enforces them. */
export const KeyLimitsSchema = z.strictObject({
  perHour: positiveInt('perHour').optional(),
  perDay: positiveInt('perDay').optional(),
  concurrent: positiveInt('concurrent').optional(),
  /** A budget each server gets separately (calls of this key to one server). */
  perServer: z
    .strictObject({
      perHour: positiveInt('perServer.perHour').optional(),
      perDay: positiveInt('perServer.perDay').optional(),
    })
    .optional(),
  /** A budget each tool gets separately (calls of this key to one tool of one server). */
  perTool: z
    .strictObject({
      perHour: positiveInt('perTool.perHour').optional(),
      perDay: positiveInt('perTool.perDay').optional(),
    })
    .optional(),
});
export type KeyLimits = z.output<typeof KeyLimitsSchema>;

/** Body of `POST /api/projects`. */
export const CreateProjectBodySchema = z.strictObject({
  id: projectId,
  name: z.string({ error: 'name must be a string' }).trim().min(1, 'name must not be empty').max(200),
});
export type CreateProjectBody = z.input<typeof CreateProjectBodySchema>;

/** Body of `POST /api/projects/:pid/members` (adds or changes a member). */
export const AddMemberBodySchema = z.strictObject({ id: memberId, role });
export type AddMemberBody = z.input<typeof AddMemberBodySchema>;

/** Body of `POST /api/projects/:pid/keys`. */
export const CreateKeyBodySchema = z.strictObject({
  name: z.string({ error: 'name must be a string' }).trim().min(1, 'name must not be empty').max(100),
  role,
  member: memberId.optional(),
  scopes: z
    .array(scope)
    .min(1, 'scopes must not be empty (leave it out for the role defaults)')
    .refine((list) => new Set(list).size === list.length, 'scopes must not repeat')
    .optional(),
  expiresAt: z.iso.datetime({ offset: true, error: 'expiresAt must be an ISO 8601 date-time' }).optional(),
  limits: KeyLimitsSchema.optional(),
});
export type CreateKeyBody = z.input<typeof CreateKeyBodySchema>;

/** Body of `POST /api/projects/:pid/keys/:kid/rotate`; without `graceMs` the route uses its configured default. */
export const RotateKeyBodySchema = z.strictObject({
  graceMs: z.number().int().min(0).max(MAX_KEY_GRACE_MS, 'graceMs must be at most 30 days').optional(),
});

export const ProjectSchema = z.object({ id: z.string(), name: z.string(), createdAt: z.string() });
export type Project = z.output<typeof ProjectSchema>;

export const MemberSchema = z.object({ id: z.string(), role, addedAt: z.string(), updatedAt: z.string().optional() });
export type Member = z.output<typeof MemberSchema>;

/** An API key as stored in the `apiKeys` hash: the hash of the secret, never the secret. */
export const ApiKeyRecordSchema = z.object({
  id: z.string(),
  project: z.string(),
  name: z.string(),
  role,
  member: z.string().optional(),
  scopes: z.array(scope),
  createdAt: z.string(),
  expiresAt: z.string().optional(),
  revokedAt: z.string().optional(),
  rotatedTo: z.string().optional(),
  lastUsedAt: z.string().optional(),
  limits: KeyLimitsSchema.optional(),
  hash: z.string(),
});
export type ApiKeyRecord = z.output<typeof ApiKeyRecordSchema>;
/** A key record as callers see it: everything but the hash. */
export type ApiKeyInfo = Omit<ApiKeyRecord, 'hash'>;

/** A key just created or rotated: `key` is the only time the secret is ever shown. */
export interface CreatedKey {
  record: ApiKeyInfo;
  key: string;
}

export type AuthFailure = 'malformed' | 'unknown' | 'revoked' | 'expired';
export type AuthResult =
  | {
      ok: true;
      key: ApiKeyInfo;
      /** The key's role, lowered to its member's current role when the key belongs to a member. */
      role: Role;
      /** The key's scopes that `role` still grants. */
      scopes: Scope[];
    }
  | { ok: false; reason: AuthFailure /** when the raw key was well-formed */; keyId?: string };

/**
 * KEYS[1] projects hash, KEYS[2] members hash of the project
 * ARGV[1] project id, ARGV[2] member id, ARGV[3] expected member JSON ('' = absent), ARGV[4] new member JSON
 * Returns ok | no_project | changed (the member was written by someone else since it was read).
 */
const PUT_MEMBER = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'no_project' end
local current = redis.call('HGET', KEYS[2], ARGV[2]) or ''
if current ~= ARGV[3] then return 'changed' end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
return 'ok'
`;

/**
 * KEYS[1] projects hash, KEYS[2] members hash of the project, KEYS[3] apiKeys hash, KEYS[4] key ids of the project
 * ARGV[1] project id, ARGV[2] member id ('' = none), ARGV[3] expected member JSON, ARGV[4] key id, ARGV[5] key JSON
 * The member check is a compare-and-set on the JSON its role was checked against, so a concurrent demotion
 * cannot slip in between. Returns ok | no_project | changed | exists.
 */
const CREATE_KEY = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'no_project' end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[2], ARGV[2]) or '') ~= ARGV[3] then return 'changed' end
if redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) == 0 then return 'exists' end
redis.call('SADD', KEYS[4], ARGV[4])
return 'ok'
`;

/**
 * KEYS[1] apiKeys hash
 * ARGV[1] key id, ARGV[2] expected key JSON, ARGV[3] new key JSON
 * Returns ok | changed.
 */
const REPLACE_KEY = `
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 'changed' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 'ok'
`;

/**
 * KEYS[1] apiKeys hash, KEYS[2] key ids of the project
 * ARGV[1] old key id, ARGV[2] expected old key JSON, ARGV[3] new old-key JSON (rotatedTo, expiresAt),
 * ARGV[4] new key id, ARGV[5] new key JSON
 * Returns ok | changed | exists.
 */
const ROTATE_KEY = `
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 'changed' end
if redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then return 'exists' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[4], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[4])
return 'ok'
`;

/**
 * KEYS[1] projects hash, KEYS[2] serverProjects hash
 * ARGV[1] server id, ARGV[2] project id
 * Returns 1, or 0 when the project does not exist.
 */
const SET_SERVER_PROJECT = `
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`;

type CasStatus = 'ok' | 'no_project' | 'changed' | 'exists';

interface ProjectCommands {
  mcpPutMember(...args: string[]): Promise<CasStatus>;
  mcpCreateKey(...args: string[]): Promise<CasStatus>;
  mcpReplaceKey(...args: string[]): Promise<CasStatus>;
  mcpRotateKey(...args: string[]): Promise<CasStatus>;
  mcpSetServerProject(...args: string[]): Promise<number>;
}

/** Compared against when a key id is unknown, so that an unknown id takes as long as a wrong secret. */
const DUMMY_HASH = hashSecret('mcp-hub: no such key');

/**
 * Projects, their members, their API keys and which project owns each server. Every write that touches
 * more than one key, or reads before it writes, is one Lua script (compare-and-set on the JSON read), so
 * concurrent hub replicas never lose an update. `clock` returns epoch milliseconds.
 */
export class ProjectStore {
  private readonly redis: Redis & ProjectCommands;
  private readonly lastTouch = new Map<string, number>();

  constructor(
    redis: Redis,
    readonly keys: RedisKeys,
    private readonly clock: () => number = Date.now,
    private readonly onInvalid: InvalidRecordHandler = () => {},
  ) {
    this.redis = defineScripts<ProjectCommands>(redis, {
      mcpPutMember: { numberOfKeys: 2, lua: PUT_MEMBER },
      mcpCreateKey: { numberOfKeys: 4, lua: CREATE_KEY },
      mcpReplaceKey: { numberOfKeys: 1, lua: REPLACE_KEY },
      mcpRotateKey: { numberOfKeys: 2, lua: ROTATE_KEY },
      mcpSetServerProject: { numberOfKeys: 2, lua: SET_SERVER_PROJECT },
    });
  }

  // ---- projects -------------------------------------------------------------------------------------------

  /** Creates a project; throws invalid_request, project_exists. */
  async createProject(input: CreateProjectBody): Promise<Project> {
    const body = parseOrThrow(CreateProjectBodySchema, input, 'project');
    const project: Project = { id: body.id, name: body.name, createdAt: this.nowIso() };
    const created = await this.redis.hsetnx(this.keys.projects, project.id, JSON.stringify(project));
    if (created === 0) throw new AppError('project_exists', `project "${project.id}" already exists`);
    return project;
  }

  /** All projects, sorted by id. */
  async listProjects(): Promise<Project[]> {
    const all = await this.redis.hgetall(this.keys.projects);
    return sortById(this.parseAll(this.keys.projects, all, ProjectSchema));
  }

  async getProject(id: string): Promise<Project | null> {
    const json = await this.redis.hget(this.keys.projects, id);
    return json === null ? null : this.parse(this.keys.projects, id, json, ProjectSchema);
  }

  /** Like getProject, but throws project_not_found. */
  async requireProject(id: string): Promise<Project> {
    const project = await this.getProject(id);
    if (!project) throw projectNotFound(id);
    return project;
  }

  /** The projects `memberId` belongs to, with the role in each, sorted by project id. */
  async projectsOfMember(memberId: string): Promise<{ project: Project; role: Role }[]> {
    const projects = await this.listProjects();
    if (projects.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const project of projects) pipeline.hget(this.keys.members(project.id), memberId);
    const replies = (await pipeline.exec()) ?? [];
    const out: { project: Project; role: Role }[] = [];
    projects.forEach((project, i) => {
      const json = replies[i]?.[1];
      if (typeof json !== 'string') return;
      const member = this.parse(this.keys.members(project.id), memberId, json, MemberSchema);
      if (member) out.push({ project, role: member.role });
    });
    return out;
  }

  // ---- members --------------------------------------------------------------------------------------------

  /** Adds a member or changes their role; throws invalid_request, project_not_found. */
  async addMember(projectId: string, input: AddMemberBody): Promise<Member> {
    const body = parseOrThrow(AddMemberBodySchema, input, 'member');
    return this.retry(async () => {
      const key = this.keys.members(projectId);
      const currentJson = (await this.redis.hget(key, body.id)) ?? '';
      const current = currentJson === '' ? null : this.parse(key, body.id, currentJson, MemberSchema);
      const now = this.nowIso();
      const member: Member = current
        ? { id: body.id, role: body.role, addedAt: current.addedAt, updatedAt: now }
        : { id: body.id, role: body.role, addedAt: now };
      const status = await this.redis.mcpPutMember(
        this.keys.projects,
        key,
        projectId,
        body.id,
        currentJson,
        JSON.stringify(member),
      );
      if (status === 'no_project') throw projectNotFound(projectId);
      return status === 'ok' ? member : undefined;
    });
  }

  /**
   * Removes a member and revokes their keys; throws project_not_found, member_not_found. Authentication
   * already refuses a key whose member is gone, so the revocations that follow only make that visible.
   */
  async removeMember(projectId: string, memberId: string): Promise<void> {
    await this.requireProject(projectId);
    if ((await this.redis.hdel(this.keys.members(projectId), memberId)) === 0) {
      throw new AppError('member_not_found', `project "${projectId}" has no member "${memberId}"`);
    }
    for (const key of await this.listKeys(projectId)) {
      if (key.member === memberId && !key.revokedAt) await this.revokeKey(projectId, key.id);
    }
  }

  /** The members of a project, sorted by id; throws project_not_found. */
  async listMembers(projectId: string): Promise<Member[]> {
    await this.requireProject(projectId);
    const key = this.keys.members(projectId);
    return sortById(this.parseAll(key, await this.redis.hgetall(key), MemberSchema));
  }

  async getMember(projectId: string, memberId: string): Promise<Member | null> {
    const key = this.keys.members(projectId);
    const json = await this.redis.hget(key, memberId);
    return json === null ? null : this.parse(key, memberId, json, MemberSchema);
  }

  // ---- API keys -------------------------------------------------------------------------------------------

  /**
   * Creates a key; the returned `key` is the only time its secret is shown. Scopes default to the role's;
   * a member's key may not have a role above the member's. Throws invalid_request, project_not_found,
   * member_not_found.
   */
  async createKey(projectId: string, input: CreateKeyBody): Promise<CreatedKey> {
    const body = parseOrThrow(CreateKeyBodySchema, input, 'API key');
    const scopes = body.scopes ?? [...ROLE_SCOPES[body.role]];
    const extra = scopes.filter((s) => !ROLE_SCOPES[body.role].includes(s));
    if (extra.length > 0) {
      throw invalid('scopes', `role "${body.role}" does not grant ${extra.map((s) => `"${s}"`).join(', ')}`);
    }
    let expiresAt: string | undefined;
    if (body.expiresAt !== undefined) {
      const ms = Date.parse(body.expiresAt);
      if (ms <= this.clock()) throw invalid('expiresAt', 'expiresAt must be in the future');
      expiresAt = new Date(ms).toISOString();
    }
    return this.retry(async () => {
      let memberJson = '';
      if (body.member !== undefined) {
        memberJson = (await this.redis.hget(this.keys.members(projectId), body.member)) ?? '';
        const member =
          memberJson === '' ? null : this.parse(this.keys.members(projectId), body.member, memberJson, MemberSchema);
        if (!member) {
          if (!(await this.redis.hexists(this.keys.projects, projectId))) throw projectNotFound(projectId);
          throw new AppError('member_not_found', `project "${projectId}" has no member "${body.member}"`);
        }
        if (!roleAtLeast(member.role, body.role)) {
          throw invalid('role', `member "${member.id}" is a ${member.role}, so their key cannot be a ${body.role}`);
        }
      }
      const generated = generateApiKey();
      const record: ApiKeyRecord = {
        id: generated.id,
        project: projectId,
        name: body.name,
        role: body.role,
        member: body.member,
        scopes,
        createdAt: this.nowIso(),
        expiresAt,
        limits: body.limits,
        hash: hashSecret(generated.secret),
      };
      const status = await this.redis.mcpCreateKey(
        this.keys.projects,
        this.keys.members(projectId),
        this.keys.apiKeys,
        this.keys.projectKeys(projectId),
        projectId,
        body.member ?? '',
        memberJson,
        record.id,
        JSON.stringify(record),
      );
      if (status === 'no_project') throw projectNotFound(projectId);
      return status === 'ok' ? { record: publicKey(record), key: generated.key } : undefined;
    });
  }

  /** The keys of a project (revoked and rotated ones included), oldest first; throws project_not_found. */
  async listKeys(projectId: string): Promise<ApiKeyInfo[]> {
    await this.requireProject(projectId);
    const ids = await this.redis.smembers(this.keys.projectKeys(projectId));
    if (ids.length === 0) return [];
    const jsons = await this.redis.hmget(this.keys.apiKeys, ...ids);
    const keys: ApiKeyInfo[] = [];
    ids.forEach((id, i) => {
      const json = jsons[i];
      const record = json ? this.parse(this.keys.apiKeys, id, json, ApiKeyRecordSchema) : null;
      if (record) keys.push(publicKey(record));
    });
    return keys.sort((a, b) => compare(a.createdAt, b.createdAt) || compare(a.id, b.id));
  }

  /** One key, without its hash; null when unknown. */
  async getKeyRecord(keyId: string): Promise<ApiKeyInfo | null> {
    const record = await this.readKey(keyId);
    return record ? publicKey(record.record) : null;
  }

  /** Revokes a key at once (idempotent: a revoked key keeps its first `revokedAt`); throws key_not_found. */
  async revokeKey(projectId: string, keyId: string): Promise<ApiKeyInfo> {
    return this.retry(async () => {
      const { record, json } = await this.requireKey(projectId, keyId);
      if (record.revokedAt) return publicKey(record);
      const next: ApiKeyRecord = { ...record, revokedAt: this.nowIso() };
      const status = await this.redis.mcpReplaceKey(this.keys.apiKeys, keyId, json, JSON.stringify(next));
      return status === 'ok' ? publicKey(next) : undefined;
    });
  }

  /**
   * Replaces a key by a new one with the same name, role, member, scopes, limits and expiry. The old one
   * keeps working for `graceMs` (never past its own expiry) and records `rotatedTo`. Throws invalid_request,
   * key_not_found, key_not_active (revoked, expired or already rotated).
   */
  async rotateKey(
    projectId: string,
    keyId: string,
    graceMs: number = DEFAULT_KEY_GRACE_MS,
  ): Promise<CreatedKey & { previous: ApiKeyInfo }> {
    if (!Number.isInteger(graceMs) || graceMs < 0 || graceMs > MAX_KEY_GRACE_MS) {
      throw invalid('graceMs', `graceMs must be an integer from 0 to ${MAX_KEY_GRACE_MS}`);
    }
    return this.retry(async () => {
      const { record, json } = await this.requireKey(projectId, keyId);
      const now = this.clock();
      const inactive = record.revokedAt
        ? 'revoked'
        : record.rotatedTo
          ? `already rotated to "${record.rotatedTo}"`
          : isExpired(record, now)
            ? 'expired'
            : undefined;
      if (inactive) throw new AppError('key_not_active', `key "${keyId}" cannot be rotated: it is ${inactive}`);
      const generated = generateApiKey();
      const graceEnd = now + graceMs;
      const oldExpiry = record.expiresAt === undefined ? graceEnd : Math.min(Date.parse(record.expiresAt), graceEnd);
      const previous: ApiKeyRecord = {
        ...record,
        expiresAt: new Date(oldExpiry).toISOString(),
        rotatedTo: generated.id,
      };
      const fresh: ApiKeyRecord = {
        id: generated.id,
        project: projectId,
        name: record.name,
        role: record.role,
        member: record.member,
        scopes: record.scopes,
        createdAt: new Date(now).toISOString(),
        expiresAt: record.expiresAt,
        limits: record.limits,
        hash: hashSecret(generated.secret),
      };
      const status = await this.redis.mcpRotateKey(
        this.keys.apiKeys,
        this.keys.projectKeys(projectId),
        keyId,
        json,
        JSON.stringify(previous),
        fresh.id,
        JSON.stringify(fresh),
      );
      if (status !== 'ok') return undefined;
      return { record: publicKey(fresh), key: generated.key, previous: publicKey(previous) };
    });
  }

  /**
   * Checks a raw `mcp_<id>_<secret>` key. The secret is compared in constant time, and an unknown id is
   * compared against a dummy hash, so timing tells neither whether an id exists nor how much of a secret
   * is right. A wrong secret answers `unknown`, like an unknown id. Does not write `lastUsedAt`: call
   * touchLastUsed once the request is accepted.
   */
  async authenticate(rawKey: string): Promise<AuthResult> {
    const parsed = parseApiKey(rawKey);
    if (!parsed) return { ok: false, reason: 'malformed' };
    const found = await this.readKey(parsed.id);
    if (!found) {
      secretMatches(DUMMY_HASH, parsed.secret);
      return { ok: false, reason: 'unknown', keyId: parsed.id };
    }
    const { record } = found;
    if (!secretMatches(record.hash, parsed.secret)) return { ok: false, reason: 'unknown', keyId: parsed.id };
    if (record.revokedAt) return { ok: false, reason: 'revoked', keyId: parsed.id };
    if (isExpired(record, this.clock())) return { ok: false, reason: 'expired', keyId: parsed.id };
    let role = record.role;
    if (record.member !== undefined) {
      const member = await this.getMember(record.project, record.member);
      // A member who left takes their keys along, even before removeMember has revoked each one.
      if (!member) return { ok: false, reason: 'revoked', keyId: parsed.id };
      role = lesserRole(role, member.role);
    }
    const scopes = record.scopes.filter((s) => ROLE_SCOPES[role].includes(s));
    return { ok: true, key: publicKey(record), role, scopes };
  }

  /**
   * Whether a key still authenticates, by id (no secret): it exists, is neither revoked nor expired (a
   * rotated key expires at the end of its grace), and its member, if any, is still in the project.
   */
  async keyActive(keyId: string): Promise<boolean> {
    const found = await this.readKey(keyId);
    if (!found) return false;
    const { record } = found;
    if (record.revokedAt || isExpired(record, this.clock())) return false;
    return record.member === undefined || (await this.getMember(record.project, record.member)) !== null;
  }

  /**
   * Records that a key was used now; written at most once per TOUCH_INTERVAL_MS per key in this process,
   * since it is on every call's path. Returns whether it wrote. Best effort: a concurrent change wins.
   */
  async touchLastUsed(keyId: string): Promise<boolean> {
    const now = this.clock();
    const last = this.lastTouch.get(keyId);
    if (last !== undefined && now - last < TOUCH_INTERVAL_MS) return false;
    this.lastTouch.set(keyId, now);
    if (this.lastTouch.size > 10_000) this.pruneTouches(now);
    const found = await this.readKey(keyId);
    if (!found) return false;
    const next: ApiKeyRecord = { ...found.record, lastUsedAt: new Date(now).toISOString() };
    const status = await this.redis.mcpReplaceKey(this.keys.apiKeys, keyId, found.json, JSON.stringify(next));
    return status === 'ok';
  }

  // ---- server ownership -----------------------------------------------------------------------------------

  /** Makes `projectId` the owner of a server (replacing any previous owner); throws project_not_found. */
  async setServerProject(serverId: string, projectId: string): Promise<void> {
    const ok = await this.redis.mcpSetServerProject(this.keys.projects, this.keys.serverProjects, serverId, projectId);
    if (ok === 0) throw projectNotFound(projectId);
  }

  /** The project that owns a server; null for a server no project owns (admin-only). */
  async serverProject(serverId: string): Promise<string | null> {
    return this.redis.hget(this.keys.serverProjects, serverId);
  }

  /** Forgets a server's owner; returns whether there was one. */
  async deleteServerProject(serverId: string): Promise<boolean> {
    return (await this.redis.hdel(this.keys.serverProjects, serverId)) === 1;
  }

  /** The ids of the servers a project owns, sorted. */
  async serversOfProject(projectId: string): Promise<string[]> {
    const all = await this.redis.hgetall(this.keys.serverProjects);
    return Object.entries(all)
      .filter(([, owner]) => owner === projectId)
      .map(([serverId]) => serverId)
      .sort(compare);
  }

  // ---- internals ------------------------------------------------------------------------------------------

  private async readKey(keyId: string): Promise<{ record: ApiKeyRecord; json: string } | null> {
    const json = await this.redis.hget(this.keys.apiKeys, keyId);
    if (json === null) return null;
    const record = this.parse(this.keys.apiKeys, keyId, json, ApiKeyRecordSchema);
    return record ? { record, json } : null;
  }

  private async requireKey(projectId: string, keyId: string): Promise<{ record: ApiKeyRecord; json: string }> {
    const found = await this.readKey(keyId);
    // A key of another project is reported as missing, so ids cannot be probed across projects.
    if (!found || found.record.project !== projectId) {
      throw new AppError('key_not_found', `project "${projectId}" has no key "${keyId}"`);
    }
    return found;
  }

  /** Runs a read-then-compare-and-set step until it applies (the step returns undefined when it lost a race). */
  private async retry<T>(step: () => Promise<T | undefined>): Promise<T> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const result = await step();
      if (result !== undefined) return result;
    }
    throw new AppError('revision_conflict', 'the record kept changing while being written; retry');
  }

  private pruneTouches(now: number): void {
    for (const [id, at] of this.lastTouch) if (now - at >= TOUCH_INTERVAL_MS) this.lastTouch.delete(id);
  }

  private nowIso(): string {
    return new Date(this.clock()).toISOString();
  }

  private parseAll<T>(key: string, all: Record<string, string>, schema: z.ZodType<T>): T[] {
    const out: T[] = [];
    for (const [field, json] of Object.entries(all)) {
      const value = this.parse(key, field, json, schema);
      if (value) out.push(value);
    }
    return out;
  }

  private parse<T>(key: string, field: string, json: string, schema: z.ZodType<T>): T | null {
    try {
      return schema.parse(JSON.parse(json));
    } catch (error) {
      this.onInvalid(key, field, error);
      return null;
    }
  }
}

/** A key record without its hash. */
export function publicKey(record: ApiKeyRecord): ApiKeyInfo {
  const { hash: _hash, ...info } = record;
  return info;
}

function isExpired(record: ApiKeyRecord, now: number): boolean {
  return record.expiresAt !== undefined && Date.parse(record.expiresAt) <= now;
}

function projectNotFound(id: string): AppError {
  return new AppError('project_not_found', `project "${id}" not found`);
}

function invalid(path: string, message: string): AppError {
  return new AppError('invalid_request', `invalid API key: ${path}: ${message}`, [{ path, message }]);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortById<T extends { id: string }>(list: T[]): T[] {
  return list.sort((a, b) => compare(a.id, b.id));
}
