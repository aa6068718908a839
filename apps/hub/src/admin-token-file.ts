import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from '@mcp-hub/shared';

/** Random bytes in a generated token (base64url: 43 characters). */
const TOKEN_BYTES = 32;
/** The same floor as HUB_ADMIN_TOKEN's. */
const MIN_TOKEN_LENGTH = 16;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** Permission bits that let anyone but the owner read or change the file. */
const NOT_OWNER_BITS = 0o077;

/** The token file cannot be used: the message says what to do. */
export class AdminTokenFileError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AdminTokenFileError';
  }
}

const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

function generate(path: string, log: Logger): string | undefined {
  mkdirSync(dirname(path), { recursive: true, mode: DIR_MODE });
  const token = randomBytes(TOKEN_BYTES).toString('base64url');
  try {
    // `wx`: two hubs starting at once must not each write their own; the loser reads the winner's.
    writeFileSync(path, `${token}\n`, { mode: FILE_MODE, flag: 'wx' });
  } catch (err) {
    if (code(err) === 'EEXIST') return undefined;
    throw err;
  }
  log.info({ event: 'auth.token_generated', path }, 'generated an admin token (HUB_ADMIN_TOKEN was not set)');
  return token;
}

function load(path: string, log: Logger): string {
  const stat = statSync(path);
  if (!stat.isFile()) throw new AdminTokenFileError(`${path} is not a regular file`);
  const mode = stat.mode & 0o777;
  if ((mode & NOT_OWNER_BITS) !== 0) {
    try {
      chmodSync(path, FILE_MODE);
    } catch (err) {
      throw new AdminTokenFileError(
        `${path} can be read by others (mode ${mode.toString(8)}) and cannot be made private: chmod 600 it, or set HUB_ADMIN_TOKEN`,
        { cause: err },
      );
    }
    log.warn(
      { event: 'auth.token_file_mode', path, mode: mode.toString(8) },
      'the admin token file could be read by others: made it private (0600); replace the token if they may have read it',
    );
  }
  const token = readFileSync(path, 'utf8').trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new AdminTokenFileError(
      `${path} holds no usable token (one line of ${MIN_TOKEN_LENGTH}+ characters): delete it to generate a new one`,
    );
  }
  log.info({ event: 'auth.token_loaded', path }, 'admin token read from its file');
  return token;
}

/**
 * The admin token kept in `file` (relative to the working directory): read it, or on first start generate
 * one (32 random bytes, base64url) into a new file of mode 0600 in a directory of mode 0700. A file that
 * others can read is made private, with a warning. Logs `auth.token_generated` or `auth.token_loaded` with
 * the path, never the token. Throws AdminTokenFileError when the file cannot be used.
 */
export function adminTokenFromFile(file: string, log: Logger): string {
  const path = resolve(file);
  try {
    let exists = true;
    try {
      statSync(path);
    } catch (err) {
      if (code(err) !== 'ENOENT') throw err;
      exists = false;
    }
    return (exists ? undefined : generate(path, log)) ?? load(path, log);
  } catch (err) {
    if (err instanceof AdminTokenFileError) throw err;
    throw new AdminTokenFileError(`cannot use ${path} for the admin token: ${(err as Error).message}`, { cause: err });
  }
}
