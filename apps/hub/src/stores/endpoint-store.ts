import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { AppError, type InvalidRecordHandler, parseOrThrow, type RedisKeys, SLUG_RE } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { projectNotFound, RedisRecordStore } from './store-records.js';

/** Endpoints one project may have, and keys one endpoint may be bound to. */
export const MAX_ENDPOINTS_PER_PROJECT = 100;
export const MAX_ENDPOINT_KEYS = 100;
/** `mcpe_` and 32 characters of base64url (24 random bytes): the secret part of an endpoint's URLs. */
const TOKEN_RE = /^mcpe_[A-Za-z0-9_-]{32}$/;

export const CreateEndpointBodySchema = z.strictObject({
  name: z.string().trim().min(1, 'name must not be empty').max(128),
  /** The group it serves; absent: every server of the project (the project's default endpoint). */
  group: z.string().regex(SLUG_RE, 'group must be a group id').optional(),
  /** The API keys of the project that may use it; empty: any key of the project. */
  keyIds: z
    .array(z.string().min(1).max(64))
    .max(MAX_ENDPOINT_KEYS)
    .refine((ids) => new Set(ids).size === ids.length, 'keyIds must not repeat a key')
    .default([]),
});
export type CreateEndpointBody = z.input<typeof CreateEndpointBodySchema>;

const StoredEndpointSchema = z.object({
  id: z.string(),
  project: z.string(),
  name: z.string(),
  group: z.string().optional(),
  keyIds: z.array(z.string()),
  /** SHA-256 of the current token (the token itself is shown once, when issued). */
  tokenHash: z.string(),
  createdAt: z.string(),
  issuedAt: z.string(),
});
type StoredEndpoint = z.output<typeof StoredEndpointSchema>;
export const EndpointSchema = StoredEndpointSchema.omit({ tokenHash: true });
export type Endpoint = z.output<typeof EndpointSchema>;

const hash = (token: string) => createHash('sha256').update(token).digest('hex');
const view = ({ tokenHash: _t, ...rest }: StoredEndpoint): Endpoint => rest;

function endpointNotFound(id: string): AppError {
  return new AppError('endpoint_not_found', `endpoint "${id}" not found`);
}

/**
 * Connection endpoints (issue 16): unguessable URLs (`/e/<token>/…`) that serve one project's servers, or one of its
 * groups, to the keys bound to them. Records in `endpoints:{project}` (id → JSON, with the token's SHA-256 only);
 * `endpoint_tokens` maps a token's SHA-256 to `project/id`. A re-issue swaps the token in one MULTI: the old URLs
 * answer 404 at once, on every hub (no hub caches the map).
 */
export class EndpointStore extends RedisRecordStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly checks: {
      projectExists(id: string): Promise<boolean>;
      /** Throws group_not_found. */
      requireGroup(project: string, id: string): Promise<unknown>;
      /** Whether `keyId` is a key of `project`. */
      keyOf(project: string, keyId: string): Promise<boolean>;
    },
    clock: () => number = Date.now,
    onInvalid: InvalidRecordHandler = () => {},
  ) {
    super(clock, onInvalid);
  }

  async create(project: string, body: CreateEndpointBody): Promise<{ endpoint: Endpoint; token: string }> {
    const input = parseOrThrow(CreateEndpointBodySchema, body, 'endpoint');
    await this.requireProject(project);
    if (input.group !== undefined) await this.checks.requireGroup(project, input.group);
    for (const keyId of input.keyIds) {
      if (!(await this.checks.keyOf(project, keyId))) {
        throw new AppError('key_not_found', `key "${keyId}" not found in project "${project}"`);
      }
    }
    if ((await this.redis.hlen(this.keys.endpoints(project))) >= MAX_ENDPOINTS_PER_PROJECT) {
      throw new AppError('invalid_request', `a project has at most ${MAX_ENDPOINTS_PER_PROJECT} endpoints`);
    }
    const token = newToken();
    const now = this.nowIso();
    const stored: StoredEndpoint = {
      id: `ep_${randomUUID().replaceAll('-', '').slice(0, 16)}`,
      project,
      name: input.name,
      ...(input.group === undefined ? {} : { group: input.group }),
      keyIds: input.keyIds,
      tokenHash: hash(token),
      createdAt: now,
      issuedAt: now,
    };
    await this.redis
      .multi()
      .hset(this.keys.endpoints(project), stored.id, JSON.stringify(stored))
      .hset(this.keys.endpointTokens, stored.tokenHash, `${project}/${stored.id}`)
      .exec();
    return { endpoint: view(stored), token };
  }

  async list(project: string): Promise<Endpoint[]> {
    await this.requireProject(project);
    const key = this.keys.endpoints(project);
    return this.parseAll(key, await this.redis.hgetall(key), StoredEndpointSchema)
      .map(view)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async get(project: string, id: string): Promise<Endpoint> {
    return view(await this.stored(project, id));
  }

  /** A new token for the endpoint; the old one stops working at once. */
  async reissue(project: string, id: string): Promise<{ endpoint: Endpoint; token: string }> {
    const before = await this.stored(project, id);
    const token = newToken();
    const next: StoredEndpoint = { ...before, tokenHash: hash(token), issuedAt: this.nowIso() };
    await this.redis
      .multi()
      .hdel(this.keys.endpointTokens, before.tokenHash)
      .hset(this.keys.endpointTokens, next.tokenHash, `${project}/${id}`)
      .hset(this.keys.endpoints(project), id, JSON.stringify(next))
      .exec();
    return { endpoint: view(next), token };
  }

  async remove(project: string, id: string): Promise<Endpoint> {
    const before = await this.stored(project, id);
    await this.redis
      .multi()
      .hdel(this.keys.endpointTokens, before.tokenHash)
      .hdel(this.keys.endpoints(project), id)
      .exec();
    return view(before);
  }

  /** The endpoint a token opens, or null (a malformed, re-issued or deleted token). */
  async resolve(token: string): Promise<Endpoint | null> {
    if (!TOKEN_RE.test(token)) return null;
    const where = await this.redis.hget(this.keys.endpointTokens, hash(token));
    if (where === null) return null;
    const [project = '', id = ''] = where.split('/');
    const json = await this.redis.hget(this.keys.endpoints(project), id);
    const stored = json === null ? null : this.parse(this.keys.endpoints(project), id, json, StoredEndpointSchema);
    // The record must still hold this token (a re-issue racing this read).
    return stored && stored.tokenHash === hash(token) ? view(stored) : null;
  }

  private async stored(project: string, id: string): Promise<StoredEndpoint> {
    await this.requireProject(project);
    const json = await this.redis.hget(this.keys.endpoints(project), id);
    const stored = json === null ? null : this.parse(this.keys.endpoints(project), id, json, StoredEndpointSchema);
    if (!stored) throw endpointNotFound(id);
    return stored;
  }

  private async requireProject(project: string): Promise<void> {
    if (!(await this.checks.projectExists(project))) throw projectNotFound(project);
  }
}

function newToken(): string {
  return `mcpe_${randomBytes(24).toString('base64url')}`;
}
