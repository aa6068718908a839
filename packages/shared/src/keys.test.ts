import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createKeys } from './keys.js';

/** Every `{…}` placeholder reads `{}`, so `mcp:tools:{id}` in the README and `mcp:tools:{}` built here compare. */
const shape = (key: string) => key.replace(/\{[^}]*\}/g, '{}');

/** Not keys: the prefix itself and a SCAN pattern. */
const NOT_KEYS = new Set(['prefix', 'runtimePattern']);

describe('Redis key names', () => {
  it('the README table lists every key keys.ts builds, and no other', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Redis layout'));
    const table = section.slice(0, section.indexOf('\n## '));
    const documented = [...table.matchAll(/^\|\s*`(mcp:[^`]+)`\s*\|/gm)].map((m) => shape(m[1] as string));

    const built: string[] = [];
    for (const [name, value] of Object.entries(createKeys('mcp:'))) {
      if (NOT_KEYS.has(name)) continue;
      // Each builder gets `{}` for every argument: the placeholders are what the table shows.
      const args: unknown[] = typeof value === 'function' ? Array.from({ length: value.length }, () => '{}') : [];
      built.push(shape(typeof value === 'function' ? (value as (...a: unknown[]) => string)(...args) : value));
    }
    expect(documented.length).toBeGreaterThan(0);
    expect([...new Set(documented)].sort()).toEqual([...new Set(built)].sort());
  });
});
