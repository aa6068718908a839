import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { AppError } from './errors.js';

/** The prefix of every sealed value; the version names the algorithm and the layout after it. */
export const SEALED_PREFIX = 'enc:v1:';
/** What API answers and logs show instead of a secret. */
export const MASK = '***';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHM = 'aes-256-gcm';
/** Binds every ciphertext to this format, so that a value sealed for something else never opens here. */
const AAD = Buffer.from('mcp-hub:secret-box:v1');
const HEX_KEY_RE = /^[0-9a-fA-F]{64}$/;
const BASE64_KEY_RE = /^[A-Za-z0-9+/_-]{43}=?$/;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;
/**
 * The scrypt salt of passphrase keys. It is fixed on purpose: every hub replica must derive the same key
 * from the same HUB_SECRET_KEY with no other shared state, and the passphrase is the secret, not the salt.
 */
const PASSPHRASE_SALT = 'mcp-hub:HUB_SECRET_KEY:v1';
const SCRYPT_OPTIONS = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;

/** How the 32-byte key was obtained from HUB_SECRET_KEY. */
export type SecretKeySource = 'hex' | 'base64' | 'passphrase';

/** True when `value` is in the sealed format (it may still fail to open if it was tampered with). */
export function isSealed(value: string): boolean {
  return value.startsWith(SEALED_PREFIX);
}

/**
 * Encrypts and decrypts secrets at rest with AES-256-GCM (a fresh random 96-bit IV per value, 128-bit tag).
 *
 * The key comes from HUB_SECRET_KEY:
 * - 64 hex characters → those 32 bytes;
 * - base64 or base64url of exactly 32 bytes → those bytes;
 * - anything else is a passphrase: the key is derived with scrypt (N=2^15, r=8, p=1, a fixed salt), which
 *   costs ~100 ms once per process. A random 32-byte key (`openssl rand -hex 32`) is preferred: a
 *   passphrase is only as strong as it is long.
 */
export class SecretBox {
  readonly keySource: SecretKeySource;
  readonly #key: Buffer;

  /** Throws invalid_request when `secretKey` is empty. */
  constructor(secretKey: string) {
    if (secretKey.length === 0) throw new AppError('invalid_request', 'HUB_SECRET_KEY must not be empty');
    if (HEX_KEY_RE.test(secretKey)) {
      this.#key = Buffer.from(secretKey, 'hex');
      this.keySource = 'hex';
      return;
    }
    const decoded = BASE64_KEY_RE.test(secretKey) ? Buffer.from(secretKey, 'base64') : undefined;
    if (decoded?.length === KEY_BYTES) {
      this.#key = decoded;
      this.keySource = 'base64';
      return;
    }
    this.#key = scryptSync(secretKey, PASSPHRASE_SALT, KEY_BYTES, SCRYPT_OPTIONS);
    this.keySource = 'passphrase';
  }

  /** `enc:v1:<iv>:<tag>:<ciphertext>`, each part base64url. Sealing a sealed value returns it unchanged. */
  seal(plaintext: string): string {
    if (isSealed(plaintext)) return plaintext;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, this.#key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(AAD);
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `${SEALED_PREFIX}${iv.toString('base64url')}:${tag.toString('base64url')}:${ciphertext.toString('base64url')}`;
  }

  /**
   * The plaintext of a sealed value; a value that is not sealed is returned as is, so data written before
   * encryption was turned on keeps working. Throws secret_unreadable when a sealed value is malformed, was
   * changed, or was sealed with another key.
   */
  open(value: string): string {
    if (!isSealed(value)) return value;
    const parts = value.slice(SEALED_PREFIX.length).split(':');
    if (parts.length !== 3 || !parts.every((part) => B64URL_RE.test(part))) throw unreadable('it is malformed');
    const [iv, tag, ciphertext] = parts.map((part) => Buffer.from(part, 'base64url')) as [Buffer, Buffer, Buffer];
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw unreadable('it is malformed');
    try {
      const decipher = createDecipheriv(ALGORITHM, this.#key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(AAD);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch (cause) {
      throw unreadable('it was changed or sealed with another HUB_SECRET_KEY', cause);
    }
  }

  isSealed(value: string): boolean {
    return isSealed(value);
  }
}

function unreadable(why: string, cause?: unknown): AppError {
  return new AppError(
    'secret_unreadable',
    `a stored secret cannot be decrypted: ${why}`,
    undefined,
    cause === undefined ? undefined : { cause },
  );
}

/** The secret-bearing maps of a server spec's config: `env` (stdio) and `headers` (sse, streamable-http, rest). */
export const SPEC_SECRET_FIELDS = ['env', 'headers'] as const;
/** The URL fields of a server spec's config that may carry credentials (`https://user:pass@host`). */
const SPEC_URL_FIELDS = ['url', 'baseUrl'] as const;

/** Any object; only its `config.env` and `config.headers` are looked at (works for inputs, bodies and specs). */
type SpecLike = object;

/** A copy of `spec` with every value of `config.env` and `config.headers` replaced by `map(value, field, name)`. */
function mapSpecSecrets<T extends SpecLike>(
  spec: T,
  map: (value: string, field: (typeof SPEC_SECRET_FIELDS)[number], name: string) => string,
): T {
  const config = (spec as { config?: unknown }).config;
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return spec;
  const nextConfig: Record<string, unknown> = { ...(config as Record<string, unknown>) };
  for (const field of SPEC_SECRET_FIELDS) {
    const values = nextConfig[field];
    if (values === null || typeof values !== 'object' || Array.isArray(values)) continue;
    const next: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(values)) {
      next[name] = typeof value === 'string' ? map(value, field, name) : value;
    }
    nextConfig[field] = next;
  }
  return { ...spec, config: nextConfig };
}

function previousValue(previous: SpecLike | undefined, field: string, name: string): string | undefined {
  const config = (previous as { config?: unknown } | undefined)?.config as Record<string, unknown> | undefined;
  const values = config?.[field] as Record<string, unknown> | undefined;
  const value = values?.[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Seals every `config.env` and `config.headers` value of a spec (a copy; the input is not changed).
 * When `previous` (the stored spec) holds a sealed value with the same plaintext under the same name, that
 * ciphertext is kept: sealing uses a random IV, and reusing it keeps an unchanged PUT unchanged in the
 * registry (no new revision, no worker restart). Throws secret_unreadable if `previous` cannot be opened.
 */
export function sealSpecSecrets<T extends SpecLike>(spec: T, box: SecretBox, previous?: SpecLike): T {
  return mapSpecSecrets(spec, (value, field, name) => {
    if (isSealed(value)) return value;
    const stored = previousValue(previous, field, name);
    if (stored !== undefined && isSealed(stored) && box.open(stored) === value) return stored;
    return box.seal(value);
  });
}

/** Opens every sealed `config.env` and `config.headers` value of a spec (a copy); throws secret_unreadable. */
export function openSpecSecrets<T extends SpecLike>(spec: T, box: SecretBox): T {
  return mapSpecSecrets(spec, (value) => box.open(value));
}

/**
 * Replaces every `config.env` and `config.headers` value with "***" (a copy), for API answers and logs; so are
 * the user and password of a URL stored before they were moved to a header.
 */
export function maskSpecSecrets<T extends SpecLike>(spec: T): T {
  const masked = mapSpecSecrets(spec, () => MASK);
  const config = (masked as { config?: unknown }).config;
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return masked;
  const next: Record<string, unknown> = { ...(config as Record<string, unknown>) };
  for (const field of SPEC_URL_FIELDS) {
    if (typeof next[field] === 'string') next[field] = maskUrlCredentials(next[field] as string);
  }
  return { ...masked, config: next };
}

/**
 * For a write that follows a read: each `config.env` / `config.headers` value sent as "***" takes the value
 * stored under the same name in `previous`, so that GET → edit → PUT does not overwrite secrets with the
 * mask. A "***" with no stored counterpart is kept as sent.
 */
export function keepMaskedSecrets<T extends SpecLike>(spec: T, previous: SpecLike | undefined): T {
  return mapSpecSecrets(spec, (value, field, name) =>
    value === MASK ? (previousValue(previous, field, name) ?? value) : value,
  );
}

/** `raw` with its user and password replaced by "***" (unchanged when it has none or does not parse). */
export function maskUrlCredentials(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return raw;
  }
  if (url.username === '' && url.password === '') return raw;
  url.username = MASK;
  url.password = url.password === '' ? '' : MASK;
  return url.toString();
}

/**
 * Credentials written into a remote server's URL become what they mean on the wire, an `Authorization: Basic`
 * header, so that they are sealed, masked and redacted like every other header (and fetch, which refuses URLs
 * with credentials, can use them). Returns the spec unchanged when its URL has none; throws invalid_request
 * when the spec also sends an Authorization header.
 */
export function moveUrlCredentials<T extends SpecLike>(spec: T): T {
  const config = (spec as { config?: unknown }).config as Record<string, unknown> | undefined;
  if (config === undefined || config === null || typeof config !== 'object') return spec;
  for (const field of SPEC_URL_FIELDS) {
    const raw = config[field];
    if (typeof raw !== 'string') continue;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      continue;
    }
    if (url.username === '' && url.password === '') continue;
    const headers = { ...((config.headers as Record<string, string> | undefined) ?? {}) };
    if (Object.keys(headers).some((name) => name.toLowerCase() === 'authorization')) {
      throw new AppError(
        'invalid_request',
        `config.${field} carries credentials and config.headers has an Authorization header: send one of them`,
        [{ path: `config.${field}`, message: 'credentials in the URL and an Authorization header' }],
      );
    }
    const basic = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.Authorization = `Basic ${Buffer.from(basic, 'utf8').toString('base64')}`;
    url.username = '';
    url.password = '';
    return { ...spec, config: { ...config, [field]: url.toString(), headers } };
  }
  return spec;
}
