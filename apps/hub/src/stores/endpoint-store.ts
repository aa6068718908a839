import { createHash, randomBytes, randomUUID } from 'node:crypto';
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
import { ToolFilterSchema } from '../routing/tool-filter.js';
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
  /** Which tools it offers (routing/tool-filter.ts); absent: every tool of its servers. */
  tools: ToolFilterSchema.optional(),
});
export type CreateEndpointBody = z.input<typeof CreateEndpointBodySchema>;

const StoredEndpointSchema = z.object({
  id: z.string(),
  project: z.string(),
  name: z.string(),
  group: z.string().optional(),
  keyIds: z.array(z.string()),
  tools: ToolFilterSchema.optional(),
  /** SHA-256 of the current token (the token itself is shown once, when issued). */
  tokenHash: z.string(),
  createdAt: z.string(),
  issuedAt: z.string(),
});
type StoredEndpoint = z.output<typeof StoredEndpointSchema>;
export const EndpointSchema = StoredEndpointSchema.omit({ tokenHash: true });
export type Endpoint = z.output<typeof EndpointSchema>;

/**
 * Swaps or drops an endpoint's token only if the record is still what was read (a delete and a re-issue racing each
 * other cannot bring a deleted endpoint back, nor leave a token mapped that opens nothing).
 * KEYS[1] the project's endpoints, KEYS[2] endpoint_tokens; ARGV[1] id, ARGV[2] the JSON read, ARGV[3] its token
 * hash, ARGV[4] the new JSON ('' = delete), ARGV[5] the new token hash, ARGV[6] `project/id`. 1 when applied.
 */
const SWAP_TOKEN = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[3])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
end
return 1
`;

interface EndpointCommands {
  mcpSwapEndpointToken(...args: string[]): Promise<number>;
}

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
  private readonly redis: Redis & EndpointCommands;

  constructor(
    redis: Redis,
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
    this.redis = defineScripts<EndpointCommands>(redis, {
      mcpSwapEndpointToken: { numberOfKeys: 2, lua: SWAP_TOKEN },
    });
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
      ...(input.tools === undefined ? {} : { tools: input.tools }),
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
    return this.retry(async () => {
      const { stored: before, json } = await this.read(project, id);
      const token = newToken();
      const next: StoredEndpoint = { ...before, tokenHash: hash(token), issuedAt: this.nowIso() };
      const applied = await this.swap(project, id, json, before.tokenHash, JSON.stringify(next), next.tokenHash);
      return applied ? { endpoint: view(next), token } : undefined;
    });
  }

  async remove(project: string, id: string): Promise<Endpoint> {
    return this.retry(async () => {
      const { stored: before, json } = await this.read(project, id);
      return (await this.swap(project, id, json, before.tokenHash, '', '')) ? view(before) : undefined;
    });
  }

  private async swap(project: string, id: string, json: string, oldHash: string, next: string, newHash: string) {
    const applied = await this.redis.mcpSwapEndpointToken(
      this.keys.endpoints(project),
      this.keys.endpointTokens,
      id,
      json,
      oldHash,
      next,
      newHash,
      `${project}/${id}`,
    );
    return applied === 1;
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
    return (await this.read(project, id)).stored;
  }

  private async read(project: string, id: string): Promise<{ stored: StoredEndpoint; json: string }> {
    await this.requireProject(project);
    const json = await this.redis.hget(this.keys.endpoints(project), id);
    const stored = json === null ? null : this.parse(this.keys.endpoints(project), id, json, StoredEndpointSchema);
    if (!stored || json === null) throw endpointNotFound(id);
    return { stored, json };
  }

  private async requireProject(project: string): Promise<void> {
    if (!(await this.checks.projectExists(project))) throw projectNotFound(project);
  }
}

function newToken(): string {
  return `mcpe_${randomBytes(24).toString('base64url')}`;
}
