import { AppError } from '@mcp-hub/shared';
import { describe, expect, it } from 'vitest';
import { GroupRouter, type MemberView } from './router.js';
import { checkRules, globMatches, type Rule, RuleSchema } from './rules.js';

// The routing decision of issue 16 on its own: which member of a group serves a call, and why. The members are
// described as the hub reads them from Redis (status, namespace, tools); tests/groups.test.ts runs the same
// decisions against real workers.
const member = (id: string, status = 'running', tools = ['echo', 'search']): MemberView => ({
  id,
  namespace: id,
  status: status === 'idle' ? 'stopped' : status,
  // As cachedMembers says: stopped for idleness, or on its way back.
  wakeable: ['idle', 'starting', 'restarting', 'backoff'].includes(status),
  hasTool: (name) => tools.includes(name),
});
const members = (...list: MemberView[]) => new Map(list.map((m) => [m.id, m]));
const rule = (input: Record<string, unknown>): Rule => RuleSchema.parse(input);
const group = (rules: Rule[], serverIds = ['a', 'b', 'c']) => ({ project: 'p', id: 'g', serverIds, rules });

describe('GroupRouter', () => {
  it('sends a call to the target of the first matching rule by priority, and says why', () => {
    const router = new GroupRouter('__');
    const rules = [
      rule({ id: 'low', priority: 1, condition: { tool: '*' }, target: { server: 'c' } }),
      rule({ id: 'high', priority: 5, condition: { tool: 'ec?o' }, target: { server: 'b' } }),
      rule({ id: 'off', priority: 9, enabled: false, target: { server: 'a' } }),
    ];
    const decision = router.decide(
      group(rules),
      { tool: 'echo', args: {} },
      members(member('a'), member('b'), member('c')),
    );
    expect(decision).toMatchObject({ server: 'b', tool: 'echo', by: 'rule', rule: 'high' });
    expect(decision.steps).toEqual(['rule off: disabled', 'rule high: matched; b chosen']);
  });

  it('falls back to the next rule, then to any member with the tool, when targets do not run', () => {
    const router = new GroupRouter('__');
    const rules = [
      rule({ id: 'primary', priority: 2, target: { server: 'a' } }),
      rule({ id: 'secondary', priority: 1, target: { server: 'b' } }),
    ];
    const view = members(member('a', 'backoff'), member('b', 'running', ['other']), member('c'));
    const decision = router.decide(group(rules), { tool: 'echo', args: {} }, view);
    expect(decision).toMatchObject({ server: 'c', by: 'tool' });
    expect(decision.steps.slice(0, 2)).toEqual([
      'rule primary: matched, but no target can serve: a (backoff); falling back',
      'rule secondary: matched, but no target can serve: b (running, no such tool); falling back',
    ]);
  });

  it('wakes an idle member (or waits for one coming back) when none runs, keeping the rules first', () => {
    const router = new GroupRouter('__');
    const rules = [rule({ id: 'prefer-b', target: { server: 'b' } })];
    const decision = router.decide(
      group(rules, ['a', 'b']),
      { tool: 'echo', args: {} },
      members(member('a', 'idle'), member('b', 'idle')),
    );
    expect(decision).toMatchObject({ server: 'b', by: 'rule', rule: 'prefer-b' });
    expect(decision.steps.at(-1)).toBe('rule prefer-b: matched; b chosen (to wake or wait for)');
    // A running member still wins over waking one.
    const mixed = router.decide(
      group(rules, ['a', 'b']),
      { tool: 'echo', args: {} },
      members(member('a'), member('b', 'idle')),
    );
    expect(mixed).toMatchObject({ server: 'a', by: 'tool' });
  });

  it('keeps a call on a rule that does not fall back: its targets or nothing', () => {
    const router = new GroupRouter('__');
    const rules = [rule({ id: 'eu-only', fallback: false, condition: { tool: 'search' }, target: { server: 'a' } })];
    const view = members(member('a', 'crashed'), member('b'));
    const held = router.decide(group(rules, ['a', 'b']), { tool: 'search', args: {} }, view);
    expect(held).toMatchObject({ by: 'none', rule: 'eu-only' });
    expect(held.server).toBeUndefined();
    expect(held.steps.at(-1)).toBe(
      'rule eu-only: matched, but no target can serve: a (crashed); it does not fall back',
    );
    // Other tools are not held by it.
    expect(router.decide(group(rules, ['a', 'b']), { tool: 'echo', args: {} }, view).server).toBe('b');
    // A target a call would wake is still used (the second look).
    const idle = router.decide(
      group(rules, ['a', 'b']),
      { tool: 'search', args: {} },
      members(member('a', 'idle'), member('b')),
    );
    expect(idle).toMatchObject({ server: 'a', rule: 'eu-only' });
  });

  it('answers none, with every candidate and its state, when nothing can serve', () => {
    const router = new GroupRouter('__');
    const decision = router.decide(
      group([]),
      { tool: 'echo', args: {} },
      members(member('a', 'crashed'), member('b', 'stopped')),
    );
    expect(decision.by).toBe('none');
    expect(decision.server).toBeUndefined();
    expect(decision.candidates.map((c) => [c.id, c.status])).toEqual([
      ['a', 'crashed'],
      ['b', 'stopped'],
      ['c', 'missing'],
    ]);
  });

  it('spreads calls by weight (smooth weighted round robin); a dry run does not move it', () => {
    const router = new GroupRouter('__');
    const rules = [
      rule({
        id: 'spread',
        target: {
          servers: [
            { id: 'a', weight: 3 },
            { id: 'b', weight: 1 },
          ],
        },
      }),
    ];
    const view = members(member('a'), member('b'));
    const g = group(rules, ['a', 'b']);
    const dry = router.decide(g, { tool: 'echo', args: {} }, view, true).server;
    expect(router.decide(g, { tool: 'echo', args: {} }, view, true).server).toBe(dry);
    const picks = Array.from({ length: 8 }, () => router.decide(g, { tool: 'echo', args: {} }, view).server);
    expect(picks).toEqual(['a', 'a', 'b', 'a', 'a', 'a', 'b', 'a']);
    // Without rules, members that have the tool take turns.
    const plain = group([], ['a', 'b']);
    const turns = Array.from({ length: 4 }, () => router.decide(plain, { tool: 'echo', args: {} }, view).server);
    expect(turns).toEqual(['a', 'b', 'a', 'b']);
  });

  it('routes a namespaced name to its server, with the name the server knows', () => {
    const router = new GroupRouter('__');
    const decision = router.decide(group([]), { tool: 'b__search', args: {} }, members(member('a'), member('b')));
    expect(decision).toMatchObject({ server: 'b', tool: 'search', by: 'namespace' });
  });

  it('matches arguments: equality, prefix and an RE2 regex, all of which must hold', () => {
    const router = new GroupRouter('__');
    const rules = [
      rule({
        id: 'eu',
        condition: {
          tool: 'search',
          args: [
            { path: 'region', op: 'eq', value: 'eu' },
            { path: 'query.text', op: 'prefix', value: 'invoice' },
            { path: 'query.id', op: 'regex', value: '^[0-9]{4}$' },
          ],
        },
        target: { server: 'b' },
      }),
    ];
    const view = members(member('a'), member('b'));
    const g = group(rules, ['a', 'b']);
    const args = { region: 'eu', query: { text: 'invoice 7', id: '2024' } };
    expect(router.decide(g, { tool: 'search', args }, view).rule).toBe('eu');
    const miss = router.decide(g, { tool: 'search', args: { ...args, query: { text: 'invoice', id: '20x4' } } }, view);
    expect(miss.by).toBe('tool');
    expect(miss.steps[0]).toBe('rule eu: no match (argument "query.id" does not match (regex) "^[0-9]{4}$")');
  });
});

describe('rules', () => {
  it('refuses a target outside the group and a regex RE2 cannot run', () => {
    expect(() => checkRules([rule({ id: 'r', target: { server: 'z' } })], ['a'])).toThrow(AppError);
    const lookahead = rule({
      id: 'r',
      condition: { args: [{ path: 'q', op: 'regex', value: '(?=a)a' }] },
      target: { server: 'a' },
    });
    expect(() => checkRules([lookahead], ['a'])).toThrow(/RE2/);
    expect(() => checkRules([rule({ id: 'r', target: { server: 'a' } })], ['a'])).not.toThrow();
  });

  it('reads globs with * and ? only', () => {
    expect(globMatches('github_*', 'github_create_issue')).toBe(true);
    expect(globMatches('a.c', 'abc')).toBe(false);
    expect(globMatches('ec?o', 'echo')).toBe(true);
  });
});
