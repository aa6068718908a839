import { jsonBytes, TOOL_SCHEMA_MAX_BYTES } from '@mcp-hub/shared';

/**
 * What the hub compiles of a tool's input schema. Ajv compiles in one synchronous step, and its time grows
 * faster than the schema (5,000 properties: 23 s); RE2 compiles each pattern into a program whose size is the
 * pattern with its counted repetitions unrolled (`\p{L}{1,1000}`: tens of ms). The limits below keep the worst
 * schema within them to a few milliseconds of compiling (see `bench/schema-budget.mjs`), and the walk that
 * checks them is linear in the schema. They also bound validation: with `$ref`s expanded, every subschema
 * applies at most once to each part of an argument, so checking costs at most (expanded schema) × (argument).
 */
export const SCHEMA_MAX_SUBSCHEMAS = 128;
/** Keywords (object keys of subschemas, `$ref`s expanded) of one schema. */
export const SCHEMA_MAX_KEYWORDS = 512;
/** `pattern`s and `patternProperties` keys of one schema, `$ref`s expanded (each is a match per string or key). */
export const SCHEMA_MAX_PATTERNS = 16;
/** Nesting of subschemas, `$ref`s followed; also bounds the recursion of this walk and of Ajv's compiler. */
export const SCHEMA_MAX_DEPTH = 32;
/**
 * Estimated RE2 program size of all `pattern`s and `patternProperties` keys of one schema: one unit per atom,
 * `PATTERN_UNICODE_CLASS_COST` for a Unicode property class, times each counted repetition's upper bound.
 */
export const SCHEMA_MAX_PATTERN_COST = 1_000;
/** A `\p{…}` class costs RE2 about 30 times a plain one to copy (hundreds of ranges), measured. */
export const PATTERN_UNICODE_CLASS_COST = 30;

/**
 * The keyword `uniqueItems: true` becomes: Ajv's own check compares every pair of items (quadratic: 100k items
 * held the event loop 19 s), the hub's compares a hash of each item's canonical JSON (linear).
 */
export const LINEAR_UNIQUE_ITEMS_KEYWORD = 'hubUniqueItems';

export type BudgetReason =
  | 'schema_too_large'
  | 'too_many_subschemas'
  | 'too_many_keywords'
  | 'too_deep'
  | 'too_many_patterns'
  | 'patterns_too_costly'
  | 'recursive_ref'
  | 'unsupported_ref';

export type BudgetVerdict =
  | { ok: true; schema: Record<string, unknown> }
  | { ok: false; reason: BudgetReason; limit: number; found: number };

/** Keywords whose value is one subschema. */
const SINGLE = new Set([
  'not',
  'if',
  'then',
  'else',
  'additionalItems',
  'contains',
  'propertyNames',
  'additionalProperties',
  'unevaluatedItems',
  'unevaluatedProperties',
  'contentSchema',
]);
/** Keywords whose value is an array of subschemas (`items` too in draft-07's array form). */
const LIST = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
/** Keywords whose value is an object of subschemas (`dependencies` too, for its object values). */
const MAP = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas']);
/** References this walk cannot follow, so cannot bound: left to the upstream. */
const UNSUPPORTED_REFS = new Set(['$dynamicRef', '$recursiveRef']);

interface Cost {
  subschemas: number;
  keywords: number;
  /** How many patterns, and their estimated RE2 program size. */
  patterns: number;
  patternCost: number;
}

class OverBudget extends Error {
  constructor(
    readonly reason: BudgetReason,
    readonly limit: number,
    readonly found: number,
  ) {
    super(reason);
  }
}

/**
 * Checks a tool's input schema against the compile budget and, when within it, returns the copy to compile
 * (with `uniqueItems` replaced by the linear keyword). Never throws; linear in the schema's size.
 */
export function budgetSchema(schema: Record<string, unknown>): BudgetVerdict {
  const bytes = jsonBytes(schema);
  if (bytes > TOOL_SCHEMA_MAX_BYTES) {
    return { ok: false, reason: 'schema_too_large', limit: TOOL_SCHEMA_MAX_BYTES, found: bytes };
  }
  try {
    const cost = new Expansion(schema).cost(schema, 0);
    if (cost.subschemas > SCHEMA_MAX_SUBSCHEMAS) {
      throw new OverBudget('too_many_subschemas', SCHEMA_MAX_SUBSCHEMAS, cost.subschemas);
    }
    if (cost.keywords > SCHEMA_MAX_KEYWORDS)
      throw new OverBudget('too_many_keywords', SCHEMA_MAX_KEYWORDS, cost.keywords);
    if (cost.patterns > SCHEMA_MAX_PATTERNS)
      throw new OverBudget('too_many_patterns', SCHEMA_MAX_PATTERNS, cost.patterns);
    if (cost.patternCost > SCHEMA_MAX_PATTERN_COST) {
      throw new OverBudget('patterns_too_costly', SCHEMA_MAX_PATTERN_COST, cost.patternCost);
    }
  } catch (err) {
    if (err instanceof OverBudget) return { ok: false, reason: err.reason, limit: err.limit, found: err.found };
    throw err;
  }
  return { ok: true, schema: linearCopy(schema) as Record<string, unknown> };
}

/** The cost of a schema with every `$ref` expanded in place, memoized per subschema so the walk stays linear. */
class Expansion {
  private readonly done = new Map<object, Cost>();
  private readonly open = new Set<object>();

  constructor(private readonly root: Record<string, unknown>) {}

  cost(node: unknown, depth: number): Cost {
    if (depth > SCHEMA_MAX_DEPTH) throw new OverBudget('too_deep', SCHEMA_MAX_DEPTH, depth);
    if (node === null || typeof node !== 'object' || Array.isArray(node))
      return { subschemas: 1, keywords: 0, patterns: 0, patternCost: 0 };
    const known = this.done.get(node);
    if (known) return known;
    // A reference back to a subschema being expanded: its expansion has no bound (a recursive schema may apply
    // itself 2^depth times to a small argument).
    if (this.open.has(node)) throw new OverBudget('recursive_ref', 0, 1);
    this.open.add(node);
    const record = node as Record<string, unknown>;
    const total: Cost = { subschemas: 1, keywords: 0, patterns: 0, patternCost: 0 };
    const add = (child: unknown) => {
      const c = this.cost(child, depth + 1);
      total.subschemas += c.subschemas;
      total.keywords += c.keywords;
      total.patterns += c.patterns;
      total.patternCost += c.patternCost;
    };
    const pattern = (source: string) => {
      total.patterns++;
      total.patternCost += patternCost(source);
    };
    for (const [key, value] of Object.entries(record)) {
      total.keywords++;
      if (UNSUPPORTED_REFS.has(key)) throw new OverBudget('unsupported_ref', 0, 1);
      if (key === '$id' && node !== this.root) throw new OverBudget('unsupported_ref', 0, 1);
      if (key === '$ref') add(this.resolve(value));
      else if (key === 'pattern' && typeof value === 'string') pattern(value);
      else if (SINGLE.has(key)) add(value);
      else if (LIST.has(key) || (key === 'items' && Array.isArray(value))) {
        if (Array.isArray(value)) for (const child of value) add(child);
      } else if (key === 'items') add(value);
      else if (MAP.has(key) || key === 'dependencies') {
        if (value === null || typeof value !== 'object') continue;
        for (const [name, child] of Object.entries(value)) {
          if (key === 'patternProperties') pattern(name);
          // draft-07 `dependencies` mixes subschemas and arrays of property names.
          if (key !== 'dependencies' || !Array.isArray(child)) add(child);
        }
      }
    }
    this.open.delete(node);
    this.done.set(node, total);
    return total;
  }

  /** Resolves `#` and `#/json/pointer`; anything else (anchors, other documents) is not followed. */
  private resolve(ref: unknown): unknown {
    if (typeof ref !== 'string' || !ref.startsWith('#')) throw new OverBudget('unsupported_ref', 0, 1);
    if (ref === '#') return this.root;
    if (!ref.startsWith('#/')) throw new OverBudget('unsupported_ref', 0, 1);
    let at: unknown = this.root;
    for (const raw of ref.slice(2).split('/')) {
      let token: string;
      try {
        token = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
      } catch {
        throw new OverBudget('unsupported_ref', 0, 1);
      }
      if (at === null || typeof at !== 'object' || !Object.hasOwn(at, token)) {
        throw new OverBudget('unsupported_ref', 0, 1);
      }
      at = (at as Record<string, unknown>)[token];
    }
    return at;
  }
}

/** A copy in which every subschema's `uniqueItems: true` is the linear keyword; data (enum, const…) is kept as is. */
function linearCopy(node: unknown): unknown {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'uniqueItems') {
      if (value === true) out[LINEAR_UNIQUE_ITEMS_KEYWORD] = true;
      else out[key] = value;
    } else if (SINGLE.has(key) || (key === 'items' && !Array.isArray(value))) out[key] = linearCopy(value);
    else if (LIST.has(key) || key === 'items') out[key] = Array.isArray(value) ? value.map(linearCopy) : value;
    else if ((MAP.has(key) || key === 'dependencies') && value !== null && typeof value === 'object') {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, child]) => [name, linearCopy(child)]));
    } else out[key] = value;
  }
  return out;
}

/**
 * Estimated size of the RE2 program of a pattern: atoms count 1 (a Unicode property class
 * PATTERN_UNICODE_CLASS_COST), a group the sum of its alternatives, and a counted repetition `{m,n}` multiplies
 * what it repeats by n (m + 1 when open), as RE2 unrolls it. Over-estimates rather than under.
 */
export function patternCost(pattern: string): number {
  // Each open group: its running sum, and the cost of the last atom (what a quantifier applies to).
  const stack: { sum: number; last: number }[] = [{ sum: 0, last: 0 }];
  const top = () => stack[stack.length - 1] as { sum: number; last: number };
  const atom = (cost: number) => {
    const t = top();
    t.sum += cost;
    t.last = cost;
  };
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '\\') {
      const next = pattern[i + 1];
      if (next === 'p' || next === 'P') {
        i += pattern[i + 2] === '{' ? pattern.indexOf('}', i) - i : 2;
        if (i < 0) return Number.POSITIVE_INFINITY;
        atom(PATTERN_UNICODE_CLASS_COST);
      } else {
        i++;
        if ((next === 'x' || next === 'u') && pattern[i + 1] === '{') i = Math.max(i, pattern.indexOf('}', i));
        atom(1);
      }
    } else if (ch === '[') {
      let unicode = false;
      let j = i + 1;
      if (pattern[j] === '^') j++;
      if (pattern[j] === ']') j++;
      for (; j < pattern.length && pattern[j] !== ']'; j++) {
        if (pattern[j] === '\\') {
          if (pattern[j + 1] === 'p' || pattern[j + 1] === 'P') unicode = true;
          j++;
        }
      }
      i = j;
      atom(unicode ? PATTERN_UNICODE_CLASS_COST : 1);
    } else if (ch === '(') {
      stack.push({ sum: 0, last: 0 });
    } else if (ch === ')') {
      if (stack.length > 1) {
        const group = stack.pop() as { sum: number; last: number };
        atom(group.sum + 1);
      }
    } else if (ch === '{') {
      const counted = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
      if (!counted) {
        atom(1);
        continue;
      }
      const min = Number(counted[1]);
      const max = counted[2] === undefined ? min : counted[3] === '' ? min + 1 : Number(counted[3]);
      const t = top();
      t.sum += t.last * (Math.max(max, 1) - 1);
      t.last *= Math.max(max, 1);
      i += counted[0].length - 1;
    } else if (ch === '*' || ch === '+' || ch === '?' || ch === '|') {
      top().sum += 1;
    } else {
      atom(1);
    }
  }
  while (stack.length > 1) {
    const group = stack.pop() as { sum: number; last: number };
    atom(group.sum + 1);
  }
  return top().sum;
}
