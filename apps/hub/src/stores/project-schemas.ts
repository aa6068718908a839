import { SLUG_RE } from '@mcp-hub/shared';
import { z } from 'zod';
import { ROLES, type Role, SCOPES, type Scope } from '../access/roles.js';

/** The wire and Redis shapes of projects, members and API keys (request bodies, stored records). */

/** Default grace of a rotated key: how long the old secret keeps working (1 h). */
export const DEFAULT_KEY_GRACE_MS = 3_600_000;
/** Longest grace a rotation may give the old key (30 days). */
export const MAX_KEY_GRACE_MS = 30 * 24 * 3_600_000;

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

/** A key record without its hash. */
export function publicKey(record: ApiKeyRecord): ApiKeyInfo {
  const { hash: _hash, ...info } = record;
  return info;
}
