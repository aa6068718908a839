import { AppError, defineScripts, type InvalidRecordHandler, parseOrThrow, type RedisKeys } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { generateApiKey, hashSecret, parseApiKey, secretMatches } from '../access/api-keys.js';
import { lesserRole, ROLE_SCOPES, roleAtLeast } from '../access/roles.js';
import {
  type ApiKeyInfo,
  type ApiKeyRecord,
  ApiKeyRecordSchema,
  type AuthResult,
  type CreatedKey,
  type CreateKeyBody,
  CreateKeyBodySchema,
  DEFAULT_KEY_GRACE_MS,
  MAX_KEY_GRACE_MS,
  type Member,
  MemberSchema,
  type Project,
  publicKey,
} from './project-schemas.js';
import { compare, projectNotFound, RedisRecordStore } from './store-records.js';

/** `lastUsedAt` is written at most this often per key and hub process (1 min). */
export const TOUCH_INTERVAL_MS = 60_000;

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

type CasStatus = 'ok' | 'no_project' | 'changed' | 'exists';

interface KeyCommands {
  mcpCreateKey(...args: string[]): Promise<CasStatus>;
  mcpReplaceKey(...args: string[]): Promise<CasStatus>;
  mcpRotateKey(...args: string[]): Promise<CasStatus>;
}

/** What the key store asks of the project store: a key's project must exist, a member key's member too. */
export interface ProjectDirectory {
  requireProject(id: string): Promise<Project>;
  getMember(projectId: string, memberId: string): Promise<Member | null>;
}

/** Compared against when a key id is unknown, so that an unknown id takes as long as a wrong secret. */
const DUMMY_HASH = hashSecret('mcp-hub: no such key');

/**
 * The API keys of projects: create, list, rotate, revoke, and authenticate a raw key. Writes are Lua
 * compare-and-set steps on the JSON read, as in the project store. `clock` returns epoch milliseconds.
 */
export class ApiKeyStore extends RedisRecordStore {
  private readonly redis: Redis & KeyCommands;
  private readonly lastTouch = new Map<string, number>();

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
    private readonly projects: ProjectDirectory,
    clock: () => number = Date.now,
    onInvalid: InvalidRecordHandler = () => {},
  ) {
    super(clock, onInvalid);
    this.redis = defineScripts<KeyCommands>(redis, {
      mcpCreateKey: { numberOfKeys: 4, lua: CREATE_KEY },
      mcpReplaceKey: { numberOfKeys: 1, lua: REPLACE_KEY },
      mcpRotateKey: { numberOfKeys: 2, lua: ROTATE_KEY },
    });
  }

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
    await this.projects.requireProject(projectId);
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
      const member = await this.projects.getMember(record.project, record.member);
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
    return record.member === undefined || (await this.projects.getMember(record.project, record.member)) !== null;
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

  private pruneTouches(now: number): void {
    for (const [id, at] of this.lastTouch) if (now - at >= TOUCH_INTERVAL_MS) this.lastTouch.delete(id);
  }
}

function isExpired(record: ApiKeyRecord, now: number): boolean {
  return record.expiresAt !== undefined && Date.parse(record.expiresAt) <= now;
}

function invalid(path: string, message: string): AppError {
  return new AppError('invalid_request', `invalid API key: ${path}: ${message}`, [{ path, message }]);
}
