import { AppError, SLUG_RE } from '@mcp-hub/shared';
import { z } from 'zod';
import { compileLinearPattern, type PatternMatcher } from '../validation/linear-pattern.js';

/** Rules one group may hold, argument matches one rule may have, servers one target may name. */
export const MAX_RULES = 32;
export const MAX_ARG_MATCHES = 8;
export const MAX_TARGETS = 20;

const slug = z.string().regex(SLUG_RE, 'must be 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit');

/** A match on one argument: `path` names it (dots for nested fields), `op` says how its value is compared. */
const ArgMatchSchema = z.strictObject({
  path: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'path must be field names joined by dots'),
  op: z.enum(['eq', 'prefix', 'regex']),
  value: z.union([z.string().max(256), z.number(), z.boolean()]),
});

const TargetSchema = z.union([
  z.strictObject({ server: slug }),
  z.strictObject({
    servers: z
      .array(z.strictObject({ id: slug, weight: z.number().int().min(1).max(100).default(1) }))
      .min(1)
      .max(MAX_TARGETS),
  }),
]);

/**
 * A routing rule of a group: when its `condition` matches a call (a tool-name glob with `*` and `?`, and argument
 * matches, all of which must hold), the call goes to its `target` (one server, or several with weights), if one of
 * them runs and has the tool; otherwise the next rule is tried.
 */
export const RuleSchema = z.strictObject({
  id: slug,
  priority: z.number().int().min(-1_000).max(1_000).default(0),
  enabled: z.boolean().default(true),
  /**
   * false: a call this rule matches goes to its targets or nowhere (503 while none can serve), never on to later
   * rules or other members: for calls that must stay on some servers (their data, their region).
   */
  fallback: z.boolean().default(true),
  condition: z
    .strictObject({
      tool: z.string().min(1).max(128).optional(),
      args: z.array(ArgMatchSchema).max(MAX_ARG_MATCHES).optional(),
    })
    .default({}),
  target: TargetSchema,
});
export type Rule = z.output<typeof RuleSchema>;

export const RulesSchema = z
  .array(RuleSchema)
  .max(MAX_RULES, `a group holds at most ${MAX_RULES} rules`)
  .refine((rules) => new Set(rules.map((r) => r.id)).size === rules.length, 'rule ids must not repeat')
  .refine(
    (rules) => rules.every((r) => new Set(targetsOf(r).map((t) => t.id)).size === targetsOf(r).length),
    'a rule names each target once',
  )
  .default([]);

/** The servers a rule sends calls to, with their weights. */
export function targetsOf(rule: Rule): { id: string; weight: number }[] {
  return 'server' in rule.target ? [{ id: rule.target.server, weight: 1 }] : rule.target.servers;
}

/**
 * Refuses rules that could not run as written: a target that is not a member of the group, a regex RE2 cannot
 * run in linear time (the same safety as tool-schema patterns). Throws invalid_request naming the rule.
 */
export function checkRules(rules: readonly Rule[], members: readonly string[]): void {
  for (const rule of rules) {
    const outside = targetsOf(rule).filter((t) => !members.includes(t.id));
    if (outside.length > 0) {
      throw new AppError(
        'invalid_request',
        `rule "${rule.id}" targets ${outside.map((t) => `"${t.id}"`).join(', ')}, not in the group's serverIds`,
      );
    }
    for (const match of rule.condition.args ?? []) {
      if (match.op === 'regex' && (typeof match.value !== 'string' || !compileLinearPattern(match.value))) {
        throw new AppError(
          'invalid_request',
          `rule "${rule.id}": the regex of "${match.path}" is not a pattern RE2 can run (no lookaround or backreferences)`,
        );
      }
    }
  }
}

/**
 * `*` any run of characters, `?` one character; everything else literal. The classic iterative matcher (back to the
 * last `*` on a mismatch): O(glob × name) at worst, no regex, nothing to compile.
 */
export function globMatches(glob: string, name: string): boolean {
  let g = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (g < glob.length && (glob[g] === '?' || (glob[g] !== '*' && glob[g] === name[n]))) {
      g++;
      n++;
    } else if (g < glob.length && glob[g] === '*') {
      star = g++;
      resume = n;
    } else if (star >= 0) {
      g = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

/** Compiled regexes of rules, by pattern (RE2: linear time, whatever the argument). */
const compiled = new Map<string, PatternMatcher | undefined>();
const MAX_COMPILED = 1_000;

function regexOf(pattern: string): PatternMatcher | undefined {
  if (!compiled.has(pattern)) {
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    compiled.set(pattern, compileLinearPattern(pattern));
  }
  return compiled.get(pattern);
}

function valueAt(args: unknown, path: string): unknown {
  let value: unknown = args;
  for (const key of path.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Longest argument value a prefix or regex match reads: a longer one does not match (bounded work per call). */
export const MAX_MATCHED_CHARS = 4_096;

/** Why a rule's condition does not match a call, or undefined when it matches. */
export function conditionMismatch(rule: Rule, tool: string, args: unknown): string | undefined {
  const { condition } = rule;
  if (condition.tool !== undefined && !globMatches(condition.tool, tool)) {
    return `tool "${tool}" does not match "${condition.tool}"`;
  }
  for (const match of condition.args ?? []) {
    const value = valueAt(args, match.path);
    const ok =
      match.op === 'eq'
        ? value === match.value
        : typeof value === 'string' &&
          value.length <= MAX_MATCHED_CHARS &&
          (match.op === 'prefix'
            ? value.startsWith(String(match.value))
            : regexOf(String(match.value))?.test(value) === true);
    if (!ok)
      return `argument "${match.path}" does not ${match.op === 'eq' ? 'equal' : `match (${match.op})`} ${JSON.stringify(match.value)}`;
  }
  return undefined;
}
