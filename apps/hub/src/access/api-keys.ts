import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

/** Every API key starts with this, so leaked keys are easy to recognise (and to scan for). */
export const API_KEY_PREFIX = 'mcp_';
/** Length of a key id: 16 characters of [a-z0-9] ≈ 82 bits, so ids never collide in practice. */
export const KEY_ID_LENGTH = 16;
/** Random bytes in a key's secret (base64url: 43 characters). */
export const SECRET_BYTES = 32;

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const KEY_ID_RE = /^[a-z0-9]{12,32}$/;
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;
const HASH_RE = /^[0-9a-f]{64}$/;

export interface GeneratedApiKey {
  /** Public: names the key in listings, logs and the audit log. */
  id: string;
  /** Shown once, never stored. */
  secret: string;
  /** What the client sends: `mcp_<id>_<secret>`. */
  key: string;
}

/** A new key: a random id and a 32-byte random secret. */
export function generateApiKey(): GeneratedApiKey {
  let id = '';
  for (let i = 0; i < KEY_ID_LENGTH; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { id, secret, key: `${API_KEY_PREFIX}${id}_${secret}` };
}

/**
 * Splits `mcp_<id>_<secret>`; null when the value does not have that shape. The id never contains `_`,
 * so the first `_` after it ends the id even though a base64url secret may itself contain `_`.
 */
export function parseApiKey(raw: string): { id: string; secret: string } | null {
  if (!raw.startsWith(API_KEY_PREFIX)) return null;
  const rest = raw.slice(API_KEY_PREFIX.length);
  const split = rest.indexOf('_');
  if (split < 0) return null;
  const id = rest.slice(0, split);
  const secret = rest.slice(split + 1);
  return KEY_ID_RE.test(id) && SECRET_RE.test(secret) ? { id, secret } : null;
}

/**
 * The stored form of a secret: SHA-256, hex. A slow password hash (scrypt, argon2) is for guessable
 * passwords; these secrets are 256 random bits, so no dictionary or brute force applies to the hash, and
 * a fast hash keeps authentication on every call cheap. (A pepper — HMAC with a server-side key — would
 * only add protection against a Redis dump paired with a preimage attack on SHA-256.)
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether `secret` hashes to `hash`, compared in constant time; false for a malformed stored hash. */
export function secretMatches(hash: string, secret: string): boolean {
  const actual = Buffer.from(hashSecret(secret), 'hex');
  const wellFormed = HASH_RE.test(hash);
  // Compare even when the stored hash is malformed, so the time taken does not tell the two cases apart.
  const expected = wellFormed ? Buffer.from(hash, 'hex') : actual;
  return timingSafeEqual(actual, expected) && wellFormed;
}
