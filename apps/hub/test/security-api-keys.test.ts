import { describe, expect, it } from 'vitest';
import { generateApiKey, hashSecret, parseApiKey, secretMatches } from '../src/access/api-keys.js';

describe('API key format', () => {
  it('generates mcp_<id>_<secret> with a [a-z0-9] id and a 32-byte base64url secret, different each time', () => {
    const a = generateApiKey();
    const b = generateApiKey();
    expect(a.id).toMatch(/^[a-z0-9]{16}$/);
    expect(Buffer.from(a.secret, 'base64url')).toHaveLength(32);
    expect(a.key).toBe(`mcp_${a.id}_${a.secret}`);
    expect(a.id).not.toBe(b.id);
    expect(a.secret).not.toBe(b.secret);
  });

  it('parses its own keys, including secrets that contain "_", and nothing else', () => {
    for (let i = 0; i < 50; i++) {
      const k = generateApiKey();
      expect(parseApiKey(k.key)).toEqual({ id: k.id, secret: k.secret });
    }
    const secret = `${'_'.repeat(3)}${'a'.repeat(40)}`;
    expect(parseApiKey(`mcp_abcdefghijkl_${secret}`)).toEqual({ id: 'abcdefghijkl', secret });
    const good = generateApiKey();
    for (const bad of [
      '',
      'mcp_',
      good.key.slice(4),
      `xcp_${good.id}_${good.secret}`,
      `mcp_${good.id}${good.secret}`,
      `mcp_${good.id.toUpperCase()}_${good.secret}`,
      `mcp_short_${good.secret}`,
      `mcp_${good.id}_${good.secret.slice(1)}`,
      `mcp_${good.id}_${good.secret}x`,
      `mcp_${good.id}_${good.secret.slice(1)}+`,
      `Bearer ${good.key}`,
    ]) {
      expect(parseApiKey(bad), bad).toBeNull();
    }
  });

  it('stores a SHA-256 hash and matches only the right secret', () => {
    const k = generateApiKey();
    const hash = hashSecret(k.secret);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).not.toContain(k.secret);
    expect(secretMatches(hash, k.secret)).toBe(true);
    expect(secretMatches(hash, generateApiKey().secret)).toBe(false);
    expect(secretMatches('not-a-hash', k.secret)).toBe(false);
    expect(secretMatches(hash.toUpperCase(), k.secret)).toBe(false);
  });
});
