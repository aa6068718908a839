import { describe, expect, it } from 'vitest';
import { captureLogger } from '../../../test/support.js';
import { compileLinearPattern, toRe2Syntax } from '../src/validation/linear-pattern.js';
import { ToolValidatorFactory } from '../src/validation/tool-validator.js';

function validator(pattern: string, where: 'pattern' | 'patternProperties' = 'pattern') {
  const logs = captureLogger('hub');
  const factory = new ToolValidatorFactory(logs.log);
  const schema =
    where === 'pattern'
      ? { type: 'object', properties: { s: { type: 'string', pattern } } }
      : { type: 'object', patternProperties: { [pattern]: { type: 'integer' } } };
  const validate = factory.compile('srv', 'tool', pattern, schema);
  return { validate, logs };
}

// Inputs long enough that a backtracking engine would run for longer than the age of the universe on these
// patterns: the test can only finish (within vitest's timeout) because matching is linear.
const HOSTILE = `${'a'.repeat(5_000)}!`;

// An upstream server (or a developer key's REST tool) writes the schema; no argument may hold the event loop.
describe('tool schema patterns run on a linear-time engine', () => {
  it.each([
    '^(a|aa)+$',
    '^(a+)+$',
    '^(\\w+\\s?)*$',
    '^(\\p{L}|a)*$', // Unicode, star height 1: passed the old star-height guard and stalled the hub 10 s
    '^(\\p{L}+)+$',
    '^([\\u0061-\\u007a]|a)*$',
  ])('%s is enforced, and a hostile argument is answered', (pattern) => {
    const { validate, logs } = validator(pattern);
    expect(validate({ s: HOSTILE })).toEqual([expect.objectContaining({ path: 's' })]);
    expect(validate({ s: 'aaaa' })).toBeNull();
    expect(logs.lines.some((l) => l.event === 'tool.schema.unsafe_pattern')).toBe(false);
  });

  it('enforces patternProperties keys the same way', () => {
    const { validate } = validator('^(a|aa)+$', 'patternProperties');
    expect(validate({ [HOSTILE]: 'x', aaaa: 'not an integer' })).toEqual([expect.objectContaining({ path: 'aaaa' })]);
  });

  it('keeps Unicode semantics: classes, escapes and code points beyond the BMP', () => {
    expect(validator('^\\p{L}+$').validate({ s: 'héllo' })).toBeNull();
    expect(validator('^\\p{L}+$').validate({ s: 'h3llo' })).not.toBeNull();
    expect(validator('^\\uD83D\\uDE00$').validate({ s: '😀' })).toBeNull();
    expect(validator('^\\u{1F600}.$').validate({ s: '😀x' })).toBeNull();
    expect(validator('^[\\u0000-\\u007f]*$').validate({ s: 'é' })).not.toBeNull();
  });

  it('leaves lookarounds and backreferences to the server, logged once with the tool, and never runs them', () => {
    for (const pattern of ['^(?=(a+)+b)', '^(a+)\\1$', '(?<!x)(a|aa)+$']) {
      const { validate, logs } = validator(pattern);
      expect(validate({ s: HOSTILE })).toBeNull();
      expect(validate({ s: HOSTILE })).toBeNull();
      const lines = logs.lines.filter((l) => l.event === 'tool.schema.unsafe_pattern');
      expect(lines).toEqual([expect.objectContaining({ server: 'srv', tool: 'tool', pattern })]);
    }
  });
});

describe('ECMAScript escapes in RE2 syntax', () => {
  it('rewrites \\u escapes and leaves escaped backslashes alone', () => {
    expect(toRe2Syntax('\\u0041')).toBe('\\x{41}');
    expect(toRe2Syntax('\\\\u0041')).toBe('\\\\u0041');
    expect(toRe2Syntax('\\uD83D\\uDE00')).toBe('\\x{1f600}');
    expect(toRe2Syntax('a\\u{1F600}b')).toBe('a\\x{1F600}b');
    expect(compileLinearPattern('\\\\u0041')?.test('\\u0041')).toBe(true);
    expect(compileLinearPattern('(?=a)')).toBeUndefined();
  });
});
