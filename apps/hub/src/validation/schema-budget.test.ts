import { describe, expect, it } from 'vitest';
import { captureLogger } from '../../../../test/support.js';
import { budgetSchema, LINEAR_UNIQUE_ITEMS_KEYWORD, patternCost, SCHEMA_MAX_SUBSCHEMAS } from './schema-budget.js';
import { PATTERN_UNITS_PER_CALL, ToolValidatorFactory } from './tool-validator.js';

const object = (properties: Record<string, unknown>) => ({ type: 'object', properties });
const reason = (schema: Record<string, unknown>) => {
  const verdict = budgetSchema(schema);
  return verdict.ok ? 'ok' : verdict.reason;
};

describe('the compile budget of a tool schema', () => {
  it('counts subschemas with $refs expanded: a 2^12 expansion of a 1 KB schema is refused', () => {
    const $defs: Record<string, unknown> = { d12: { type: 'string' } };
    for (let i = 0; i < 12; i++)
      $defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    expect(budgetSchema({ type: 'object', $defs, properties: { x: { $ref: '#/$defs/d0' } } })).toEqual(
      expect.objectContaining({ ok: false, reason: 'too_many_subschemas', limit: SCHEMA_MAX_SUBSCHEMAS }),
    );
  });

  it('refuses what it cannot bound: recursion, other documents, anchors, dynamic refs, nested $id, depth', () => {
    expect(reason({ type: 'object', properties: { n: { $ref: '#' } } })).toBe('recursive_ref');
    expect(reason({ type: 'object', properties: { n: { $ref: 'https://example.com/s.json' } } })).toBe(
      'unsupported_ref',
    );
    expect(reason({ type: 'object', properties: { n: { $ref: '#node' } } })).toBe('unsupported_ref');
    expect(reason({ type: 'object', properties: { n: { $ref: '#/$defs/missing' } } })).toBe('unsupported_ref');
    expect(reason({ type: 'object', properties: { n: { $dynamicRef: '#node' } } })).toBe('unsupported_ref');
    expect(reason({ type: 'object', properties: { n: { $id: 'https://example.com/n' } } })).toBe('unsupported_ref');
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { not: deep };
    expect(reason(object({ x: deep }))).toBe('too_deep');
  });

  it('accepts ordinary schemas, with $defs and draft-07 forms', () => {
    expect(
      reason({
        type: 'object',
        $defs: { id: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } },
        properties: { a: { $ref: '#/$defs/id' }, b: { type: 'array', items: [{ type: 'string' }], uniqueItems: true } },
        dependencies: { a: ['b'], b: { required: ['a'] } },
        required: ['a'],
      }),
    ).toBe('ok');
  });

  it('estimates RE2 program size with counted repetitions unrolled', () => {
    expect(patternCost('^[a-z]+$')).toBeLessThan(10);
    expect(patternCost('^\\p{L}{1,100}$')).toBeGreaterThan(1_000);
    expect(patternCost('^(?:a{1,100}){1,100}$')).toBeGreaterThan(10_000);
    expect(reason(object({ s: { pattern: '^a{1,1000}b[c-z]+$' } }))).toBe('patterns_too_costly');
    expect(reason(object(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`p${i}`, { pattern: 'x' }]))))).toBe(
      'too_many_patterns',
    );
  });

  it('replaces uniqueItems: true in subschemas only, never in data', () => {
    const verdict = budgetSchema({
      type: 'object',
      properties: { uniqueItems: { type: 'array', uniqueItems: true, default: { uniqueItems: true } } },
    });
    expect(verdict).toEqual({
      ok: true,
      schema: {
        type: 'object',
        properties: {
          uniqueItems: { type: 'array', [LINEAR_UNIQUE_ITEMS_KEYWORD]: true, default: { uniqueItems: true } },
        },
      },
    });
  });
});

describe('pattern work per call', () => {
  it('is metered: past the allowance the remaining pattern checks pass, and the call is logged', () => {
    const logs = captureLogger('hub');
    const validate = new ToolValidatorFactory(logs.log).compile('srv', 'tool', 'd', {
      type: 'object',
      properties: { s: { type: 'array', items: { type: 'string', pattern: '^a+$' } } },
    });
    // Each item costs its length plus a per-test constant; these use up the allowance before the last one.
    const items = Array.from({ length: PATTERN_UNITS_PER_CALL / 64 }, () => 'a'.repeat(64));
    expect(validate({ s: ['b', ...items] })).toEqual([expect.objectContaining({ path: 's.0' })]);
    expect(validate({ s: [...items, 'b'] })).toBeNull();
    // Both calls used it up (all errors are collected, so the first went on past its error).
    expect(logs.lines.filter((l) => l.event === 'tool.args.patterns_unchecked')).toHaveLength(2);
    // The next call starts with the whole allowance again.
    expect(validate({ s: ['a', 'b'] })).toEqual([expect.objectContaining({ path: 's.1' })]);
  });
});
