import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import type { ServerSpecBody } from './schemas.js';
import {
  isSealed,
  keepMaskedSecrets,
  MASK,
  maskSpecSecrets,
  openSpecSecrets,
  SecretBox,
  sealSpecSecrets,
} from './secrets.js';

const hexKey = randomBytes(32).toString('hex');
const box = new SecretBox(hexKey);

const stdio = {
  id: 'files',
  name: 'files',
  namespace: 'files',
  transport: 'stdio',
  config: { command: 'node', args: ['server.js'], env: { TOKEN: 'tok-1', MODE: 'fast' } },
  tags: [],
  enabled: true,
  timeoutMs: 60_000,
} satisfies ServerSpecBody;

const rest = {
  id: 'api',
  name: 'api',
  namespace: 'api',
  transport: 'rest',
  config: {
    baseUrl: 'https://api.example.com',
    headers: { authorization: 'Bearer abc' },
    tools: [
      {
        name: 'get',
        description: '',
        method: 'GET',
        path: '/x',
        inputSchema: { type: 'object' },
        argLocations: { token: 'header' },
      },
    ],
  },
  tags: [],
  enabled: true,
  timeoutMs: 60_000,
} satisfies ServerSpecBody;

function expectUnreadable(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('secret_unreadable');
    expect((err as AppError).message).toMatch(/cannot be decrypted/);
    return;
  }
  throw new Error('expected secret_unreadable');
}

describe('SecretBox', () => {
  it('seals to enc:v1 with a fresh IV each time and opens back, unicode included', () => {
    const a = box.seal('s3cret ✓');
    const b = box.seal('s3cret ✓');
    expect(a).toMatch(/^enc:v1:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]+$/);
    expect(a).not.toBe(b);
    expect(box.open(a)).toBe('s3cret ✓');
    expect(box.open(b)).toBe('s3cret ✓');
    expect(box.open(box.seal(''))).toBe('');
    expect(isSealed(a)).toBe(true);
    expect(box.isSealed('plain')).toBe(false);
  });

  it('passes plain values through and does not seal twice', () => {
    expect(box.open('not encrypted')).toBe('not encrypted');
    expect(box.open('enc:v2:whatever')).toBe('enc:v2:whatever');
    const sealed = box.seal('x');
    expect(box.seal(sealed)).toBe(sealed);
  });

  it('throws secret_unreadable for a tampered, truncated or foreign value', () => {
    const sealed = box.seal('hello world');
    const [iv, tag, ct] = sealed.slice('enc:v1:'.length).split(':') as [string, string, string];
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    expectUnreadable(() => box.open(`enc:v1:${iv}:${tag}:${flip(ct)}`));
    expectUnreadable(() => box.open(`enc:v1:${iv}:${flip(tag)}:${ct}`));
    expectUnreadable(() => box.open(`enc:v1:${flip(iv)}:${tag}:${ct}`));
    expectUnreadable(() => box.open(`enc:v1:${iv}:${tag}`));
    expectUnreadable(() => box.open(`enc:v1:${iv}:${tag}:${ct}:x`));
    expectUnreadable(() => box.open(`enc:v1:${iv}:${tag}:not base64!`));
    expectUnreadable(() => box.open(`enc:v1:${iv.slice(2)}:${tag}:${ct}`));
    expectUnreadable(() => new SecretBox(randomBytes(32).toString('hex')).open(sealed));
  });

  it('takes 64 hex characters, base64 or base64url of 32 bytes, or derives a key from a passphrase', () => {
    const raw = randomBytes(32);
    const fromHex = new SecretBox(raw.toString('hex'));
    const fromBase64 = new SecretBox(raw.toString('base64'));
    const fromBase64url = new SecretBox(raw.toString('base64url'));
    expect([fromHex.keySource, fromBase64.keySource, fromBase64url.keySource]).toEqual(['hex', 'base64', 'base64']);
    const sealed = fromHex.seal('same key');
    expect(fromBase64.open(sealed)).toBe('same key');
    expect(fromBase64url.open(sealed)).toBe('same key');

    const phrase = new SecretBox('correct horse battery staple, but longer');
    expect(phrase.keySource).toBe('passphrase');
    // Derivation is deterministic, so every replica reads what another wrote.
    expect(new SecretBox('correct horse battery staple, but longer').open(phrase.seal('p'))).toBe('p');
    expect(() => new SecretBox('')).toThrow(/must not be empty/);
  });
});

describe('spec secret helpers', () => {
  it('seal and open env (stdio) and headers (rest) without touching anything else or the input', () => {
    const sealed = sealSpecSecrets(stdio, box);
    expect(sealed.config.command).toBe('node');
    expect(Object.keys(sealed.config.env)).toEqual(['TOKEN', 'MODE']);
    expect(Object.values(sealed.config.env).every(isSealed)).toBe(true);
    expect(stdio.config.env.TOKEN).toBe('tok-1');
    expect(openSpecSecrets(sealed, box)).toEqual(stdio);

    const sealedRest = sealSpecSecrets(rest, box);
    expect(isSealed(sealedRest.config.headers.authorization)).toBe(true);
    expect(sealedRest.config.tools).toEqual(rest.config.tools);
    expect(openSpecSecrets(sealedRest, box)).toEqual(rest);
  });

  it('opening a spec stored before encryption returns it as is; a tampered value throws', () => {
    expect(openSpecSecrets(stdio, box)).toEqual(stdio);
    const sealed = sealSpecSecrets(stdio, box);
    const tampered = { ...sealed, config: { ...sealed.config, env: { TOKEN: `${sealed.config.env.TOKEN}AA` } } };
    expectUnreadable(() => openSpecSecrets(tampered, box));
  });

  it('keeps the stored ciphertext when the plaintext did not change, so an unchanged PUT stays unchanged', () => {
    const stored = sealSpecSecrets(stdio, box);
    const again = sealSpecSecrets(
      { ...stdio, config: { ...stdio.config, env: { TOKEN: 'tok-1', MODE: 'slow' } } },
      box,
      stored,
    );
    expect(again.config.env.TOKEN).toBe(stored.config.env.TOKEN);
    expect(again.config.env.MODE).not.toBe(stored.config.env.MODE);
    expect(box.open(again.config.env.MODE)).toBe('slow');
  });

  it('masks every value with "***" and keeps masked values from the stored spec on write', () => {
    expect(maskSpecSecrets(stdio).config.env).toEqual({ TOKEN: MASK, MODE: MASK });
    expect(maskSpecSecrets(rest).config.headers).toEqual({ authorization: MASK });
    expect(maskSpecSecrets({ id: 'no-config' })).toEqual({ id: 'no-config' });

    const stored = sealSpecSecrets(stdio, box);
    const edited = {
      ...maskSpecSecrets(stored),
      config: { ...stdio.config, env: { TOKEN: MASK, MODE: 'new', NEW: MASK } },
    };
    const merged = keepMaskedSecrets(edited, stored);
    expect(merged.config.env).toEqual({ TOKEN: stored.config.env.TOKEN, MODE: 'new', NEW: MASK });
  });
});
