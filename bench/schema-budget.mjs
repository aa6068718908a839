// `pnpm exec turbo run build && node bench/schema-budget.mjs`: CPU time the hub spends compiling the worst tool
// input schemas that fit its compile budget (apps/hub/src/validation/schema-budget.ts), one line each, and validating the
// worst arguments against them. CPU time (process.cpuUsage), not wall time, so that other load on the machine
// counts less; the median of RUNS compiles, each on a fresh factory (nothing cached).
import { createLogger } from '@mcp-hub/shared';
import { budgetSchema, SCHEMA_MAX_KEYWORDS } from '../apps/hub/dist/validation/schema-budget.js';
import { ToolValidatorFactory } from '../apps/hub/dist/validation/tool-validator.js';

const RUNS = Number(process.env.RUNS ?? 15);
const log = createLogger({ service: 'hub', level: 'silent' });

const cpuMs = (fn) => {
  const start = process.cpuUsage();
  const result = fn();
  const used = process.cpuUsage(start);
  return [(used.user + used.system) / 1000, result];
};
const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
const object = (properties) => ({ type: 'object', properties });
const many = (n, make) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, make(i)]));

const WORST = {
  '127 string properties (128 subschemas)': object(many(127, () => ({ type: 'string' }))),
  '73 properties × 7 keywords (512 keywords)': object(
    many(73, (i) => ({
      type: 'string',
      minLength: 1,
      maxLength: 64,
      format: 'email',
      title: `t${i}`,
      default: 'a@b.c',
    })),
  ),
  '63 array properties, uniqueItems + items': object(
    many(63, () => ({ type: 'array', uniqueItems: true, items: { type: 'object' } })),
  ),
  '127 formats (date-time, uri, email…)': object(
    many(127, (i) => ({ format: ['date-time', 'uri', 'email', 'ipv6', 'uuid', 'hostname'][i % 6] })),
  ),
  'patterns: 33 × \\p{L} unrolled (cost 990)': object({ s: { type: 'string', pattern: '^\\p{L}{33}$' } }),
  'patterns: 4 × [a-z]{240} (cost 968)': object(many(4, (i) => ({ pattern: `^${'abcd'[i]}[a-z]{240}$` }))),
  'patterns: 16 distinct short (cost ~150)': object(many(16, (i) => ({ pattern: `^x${i}[0-9]+$` }))),
  'one enum of 6,000 strings (64 KiB)': object({ e: { enum: Array.from({ length: 6_000 }, (_, i) => `v${i}`) } }),
  '$ref: one definition used 62 times (expanded 126)': {
    type: 'object',
    $defs: { d: { type: 'string', maxLength: 9 } },
    properties: many(62, () => ({ $ref: '#/$defs/d' })),
  },
  'anyOf nested 30 deep': (() => {
    let schema = { type: 'string' };
    for (let i = 0; i < 30; i++) schema = { anyOf: [schema, { type: 'integer', minimum: i }] };
    return { type: 'object', properties: { x: schema } };
  })(),
};

for (const [name, schema] of Object.entries(WORST)) {
  const verdict = budgetSchema(schema);
  if (!verdict.ok) throw new Error(`${name}: over budget (${verdict.reason}: ${verdict.found} > ${verdict.limit})`);
}

// Warm the JIT on a small schema so the first line does not pay for it.
for (let i = 0; i < 20; i++) new ToolValidatorFactory(log).compile('s', 't', 'd', object(many(10, () => ({}))));

console.log(`compile, CPU ms (median of ${RUNS}; keyword budget ${SCHEMA_MAX_KEYWORDS})`);
for (const [name, schema] of Object.entries(WORST)) {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const factory = new ToolValidatorFactory(log);
    factory.compile('s', 'warm', 'w', { type: 'object' }); // creates its Ajv instances, not part of a compile
    times.push(cpuMs(() => factory.compile('s', 't', String(i), schema))[0]);
  }
  const [checkMs] = cpuMs(() => budgetSchema(schema));
  console.log(`  ${name.padEnd(52)} ${median(times).toFixed(2).padStart(7)}   (budget check ${checkMs.toFixed(2)})`);
}

const over = object(many(5_000, () => ({ type: 'string' })));
const [overMs, overVerdict] = cpuMs(() => budgetSchema(over));
console.log(`budget check of 5,000 properties (refused: ${overVerdict.reason}): ${overMs.toFixed(2)} ms`);

console.log('validate, CPU ms (worst arguments, about 1 MiB)');
const factory = new ToolValidatorFactory(log);
const unique = factory.compile('s', 'u', 'd', object({ a: { type: 'array', uniqueItems: true } }));
const items = Array.from({ length: 100_000 }, (_, i) => ({ k: i }));
console.log(`  uniqueItems, 100,000 distinct objects: ${cpuMs(() => unique({ a: items }))[0].toFixed(1)}`);
const keyed = factory.compile('s', 'k', 'd', {
  type: 'object',
  patternProperties: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`^k${i}[a-z]*$`, { type: 'string' }])),
});
const keys = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i % 16}${'x'.repeat(8)}${i}`, 's']));
console.log(`  16 patternProperties × 60,000 keys: ${cpuMs(() => keyed(keys))[0].toFixed(1)}`);
