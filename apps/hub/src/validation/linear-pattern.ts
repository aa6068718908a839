import { RE2JS } from 're2js';

/** What Ajv (and any other caller) needs of a compiled pattern. */
export interface PatternMatcher {
  test(value: string): boolean;
}

/**
 * Rewrites the ECMAScript escapes RE2 spells differently: `\uXXXX` (surrogate pairs joined) and `\u{X…}` become
 * `\x{X…}`. Everything else is passed as written; an escaped backslash is copied whole so `\\u0041` stays literal.
 */
export function toRe2Syntax(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = pattern[i + 1];
    if (next === 'u') {
      const braced = /^\{([0-9a-fA-F]{1,6})\}/.exec(pattern.slice(i + 2));
      if (braced?.[1]) {
        out += `\\x{${braced[1]}}`;
        i += 2 + braced[0].length - 1;
        continue;
      }
      const hex = /^[0-9a-fA-F]{4}/.exec(pattern.slice(i + 2))?.[0];
      if (hex) {
        let code = Number.parseInt(hex, 16);
        let consumed = 6;
        const low = /^\\u([dD][c-fC-F][0-9a-fA-F]{2})/.exec(pattern.slice(i + 6))?.[1];
        if (code >= 0xd800 && code <= 0xdbff && low) {
          code = 0x10000 + ((code - 0xd800) << 10) + (Number.parseInt(low, 16) - 0xdc00);
          consumed = 12;
        }
        out += `\\x{${code.toString(16)}}`;
        i += consumed - 1;
        continue;
      }
    }
    out += ch + (next ?? '');
    i++;
  }
  return out;
}

/**
 * Compiles a pattern written for ECMAScript (JSON Schema `pattern` / `patternProperties`, routing conditions) on
 * RE2's automaton engine, which runs in time linear in the input whatever the pattern: no pattern, from anyone,
 * can make a match backtrack. Unanchored, as JSON Schema says. Returns undefined when RE2 cannot express the
 * pattern (lookarounds, backreferences, `[^]`…): the caller decides what an unenforceable pattern means.
 */
export function compileLinearPattern(pattern: string): PatternMatcher | undefined {
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(toRe2Syntax(pattern));
  } catch {
    return undefined;
  }
  return { test: (value) => compiled.test(value) };
}
