import { describe, expect, it } from 'vitest';
import { captureLogger } from '../../../test/support.js';
import { ToolValidatorFactory } from '../src/tool-validator.js';

function validator(pattern: string) {
  const logs = captureLogger('hub');
  const factory = new ToolValidatorFactory(logs.log);
  const validate = factory.compile('srv', 'tool', pattern, {
    type: 'object',
    properties: { s: { type: 'string', pattern } },
  });
  return { validate, logs };
}

// An upstream server names the schema; one argument must not hold the hub's event loop (ReDoS).
describe('tool schema patterns from upstream servers', () => {
  it.each(['^(a|aa)+$', '^(a+)+$', '^(\\w+\\s?)*$'])('%s runs in bounded time and is still enforced', (pattern) => {
    const { validate } = validator(pattern);
    const started = performance.now();
    const problems = validate({ s: `${'a'.repeat(60)}!` });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(problems).toEqual([expect.objectContaining({ path: 's' })]);
    expect(validate({ s: 'aaaa' })).toBeNull();
  });

  it('keeps Unicode patterns, and leaves an unsafe one to the server (logged)', () => {
    const letters = validator('^\\p{L}+$');
    expect(letters.validate({ s: 'héllo' })).toBeNull();
    expect(letters.validate({ s: 'h3llo' })).not.toBeNull();

    const unsafe = validator('^(\\p{L}+)+$');
    const started = performance.now();
    expect(unsafe.validate({ s: `${'a'.repeat(60)}1` })).toBeNull();
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(unsafe.logs.lines.some((l) => l.event === 'tool.schema.unsafe_pattern')).toBe(true);
  });
});
