import { conditionMismatch, type Rule, targetsOf } from './rules.js';

/** What the router knows of one member of a group when it decides. */
export interface MemberView {
  id: string;
  namespace: string;
  /** The runtime status (`running`, `backoff`, …), or `missing` for a server deleted since it joined. */
  status: string;
  /**
   * Not running, but a call would get it: stopped for idleness (the call wakes it) or on its way back (starting,
   * restarting, backing off: the call waits for it, HUB_WORKER_WAIT).
   */
  wakeable: boolean;
  /** Whether the server lists this tool. */
  hasTool(name: string): boolean;
}

export interface Candidate {
  id: string;
  status: string;
  weight: number;
  /** The tool's name on this server (the call's name without this server's namespace prefix). */
  tool: string;
  hasTool: boolean;
}

/** Where a call would go, and why: every rule looked at, and the candidates of the step that decided. */
export interface RouteDecision {
  /** The chosen server, or undefined when none can serve the call. */
  server?: string;
  /** The tool's name on that server. */
  tool?: string;
  /** `rule`, `namespace`, `tool` (a member that has the tool), or `none`. */
  by: 'rule' | 'namespace' | 'tool' | 'none';
  rule?: string;
  candidates: Candidate[];
  steps: string[];
}

export interface GroupForRouting {
  project: string;
  id: string;
  serverIds: readonly string[];
  rules: readonly Rule[];
}

/**
 * Decides which member of a group serves a call (issue 16): the enabled rules by priority (highest first; equal
 * priorities in their order) whose condition matches, each falling back to the next when none of its targets runs
 * with the tool; then the member whose namespace prefixes the tool's name; then any running member that has the
 * tool. Among several candidates, smooth weighted round robin, its state per group and rule in this hub.
 */
export class GroupRouter {
  /** Smooth weighted round robin: the current weights of each candidate set. */
  private readonly rounds = new Map<string, Map<string, number>>();

  constructor(private readonly separator: string) {}

  /** `dryRun` explains without moving the round robin on. */
  decide(
    group: GroupForRouting,
    call: { tool: string; args: unknown },
    members: ReadonlyMap<string, MemberView>,
    dryRun = false,
  ): RouteDecision {
    const running = this.pass(group, call, members, dryRun, (m) => m.status === 'running', '');
    if (running.by !== 'none') return running;
    // Nothing runs that could serve: the same steps again with the members a call would wake or wait for (a group
    // whose members all went idle must still be callable).
    const waking = this.pass(group, call, members, dryRun, (m) => m.wakeable, ' (to wake or wait for)');
    if (waking.by === 'none') return running;
    const steps = [
      ...running.steps.slice(0, -1),
      'no member runs: the ones a call would wake or wait for',
      ...waking.steps,
    ];
    return { ...waking, steps };
  }

  private pass(
    group: GroupForRouting,
    call: { tool: string; args: unknown },
    members: ReadonlyMap<string, MemberView>,
    dryRun: boolean,
    usable: (member: MemberView) => boolean,
    note: string,
  ): RouteDecision {
    const steps: string[] = [];
    const candidate = (id: string, weight: number): Candidate => {
      const member = members.get(id);
      const tool = this.toolOn(member, call.tool);
      return { id, weight, tool, status: member?.status ?? 'missing', hasTool: member?.hasTool(tool) === true };
    };
    const serving = (c: Candidate) => {
      const member = members.get(c.id);
      return member !== undefined && c.hasTool && usable(member);
    };
    const describe = (list: Candidate[]) =>
      list.map((c) => `${c.id} (${c.status}${c.hasTool ? '' : ', no such tool'})`).join(', ');

    const ordered = group.rules
      .map((rule, index) => ({ rule, index }))
      .sort((a, b) => b.rule.priority - a.rule.priority || a.index - b.index);
    for (const { rule } of ordered) {
      if (!rule.enabled) {
        steps.push(`rule ${rule.id}: disabled`);
        continue;
      }
      const why = conditionMismatch(rule, call.tool, call.args);
      if (why) {
        steps.push(`rule ${rule.id}: no match (${why})`);
        continue;
      }
      const candidates = targetsOf(rule).map((t) => candidate(t.id, t.weight));
      const ready = candidates.filter(serving);
      if (ready.length === 0) {
        if (!rule.fallback) {
          steps.push(
            `rule ${rule.id}: matched, but no target can serve: ${describe(candidates)}; it does not fall back`,
          );
          return { by: 'none', rule: rule.id, candidates, steps };
        }
        steps.push(`rule ${rule.id}: matched, but no target can serve: ${describe(candidates)}; falling back`);
        continue;
      }
      const chosen = this.pick(`${group.project}/${group.id}/rule:${rule.id}`, ready, dryRun);
      const how = ready.length > 1 ? ' by weighted round robin' : '';
      steps.push(`rule ${rule.id}: matched; ${chosen.id} chosen${how}${note}`);
      return { server: chosen.id, tool: chosen.tool, by: 'rule', rule: rule.id, candidates, steps };
    }

    const prefixed = group.serverIds
      .map((id) => members.get(id))
      .find((m) => m !== undefined && call.tool.startsWith(`${m.namespace}${this.separator}`));
    if (prefixed) {
      const c = candidate(prefixed.id, 1);
      if (serving(c)) {
        steps.push(`namespace ${prefixed.namespace}: ${prefixed.id}${note}`);
        return { server: c.id, tool: c.tool, by: 'namespace', candidates: [c], steps };
      }
      steps.push(`namespace ${prefixed.namespace}: ${describe([c])}; falling back`);
    }

    const all = group.serverIds.map((id) => candidate(id, 1));
    const ready = all.filter(serving);
    if (ready.length > 0) {
      const chosen = this.pick(`${group.project}/${group.id}/tool:${call.tool}`, ready, dryRun);
      const how = ready.length > 1 ? ' by round robin among the members that have it' : '';
      steps.push(`tool ${call.tool}: ${chosen.id}${how}${note}`);
      return { server: chosen.id, tool: chosen.tool, by: 'tool', candidates: all, steps };
    }
    steps.push(`no member can serve ${call.tool}: ${describe(all) || 'the group is empty'}`);
    return { by: 'none', candidates: all, steps };
  }

  /** Forgets a group's round-robin state (it was changed or deleted). */
  forget(project: string, group: string): void {
    const prefix = `${project}/${group}/`;
    for (const key of this.rounds.keys()) if (key.startsWith(prefix)) this.rounds.delete(key);
  }

  private toolOn(member: MemberView | undefined, tool: string): string {
    const prefix = member ? `${member.namespace}${this.separator}` : undefined;
    return prefix && tool.startsWith(prefix) ? tool.slice(prefix.length) : tool;
  }

  /** Smooth weighted round robin (each gains its weight; the largest is chosen and pays the total). */
  private pick(key: string, ready: Candidate[], dryRun: boolean): Candidate {
    const first = ready[0] as Candidate;
    if (ready.length === 1) return first;
    const stored = this.rounds.get(key) ?? new Map<string, number>();
    const current = dryRun ? new Map(stored) : stored;
    let total = 0;
    let best = first;
    for (const c of ready) {
      const value = (current.get(c.id) ?? 0) + c.weight;
      current.set(c.id, value);
      total += c.weight;
      if (value > (current.get(best.id) ?? 0)) best = c;
    }
    current.set(best.id, (current.get(best.id) ?? 0) - total);
    if (!dryRun) {
      if (!this.rounds.has(key) && this.rounds.size >= MAX_ROUNDS) this.rounds.clear();
      this.rounds.set(key, current);
    }
    return best;
  }
}

/** Candidate sets whose round-robin state a hub keeps at most (past it, every set starts again). */
const MAX_ROUNDS = 10_000;

/** The registry cache's answers a call's routing needs. */
export interface MemberSource {
  server(
    id: string,
  ): Promise<{ id: string; project?: string | undefined; namespace?: string | undefined; enabled?: boolean } | null>;
  runtime(id: string): Promise<{ status: string; reason?: string | undefined } | null>;
  tool(id: string, name: string): Promise<unknown | null>;
}

/**
 * What the router needs of a group's members for a call of `tool`, read from the hub's registry cache (no Redis
 * round trip on the call path): each member's namespace and runtime status, and whether it lists the tool (under
 * the name it knows: without its namespace prefix). Servers of another project or disabled are left out.
 */
export async function cachedMembers(
  cache: MemberSource,
  separator: string,
  group: { project: string; serverIds: readonly string[] },
  tool: string,
): Promise<Map<string, MemberView>> {
  const out = new Map<string, MemberView>();
  await Promise.all(
    group.serverIds.map(async (id) => {
      const spec = await cache.server(id);
      if (!spec || spec.project !== group.project || spec.enabled === false) return;
      const namespace = spec.namespace ?? spec.id;
      const prefix = `${namespace}${separator}`;
      const name = tool.startsWith(prefix) ? tool.slice(prefix.length) : tool;
      const [runtime, found] = await Promise.all([cache.runtime(id), cache.tool(id, name)]);
      const listed = found !== null && found !== undefined;
      const status = runtime?.status ?? 'stopped';
      out.set(id, { id, namespace, status, wakeable: wakeable(runtime), hasTool: (n) => listed && n === name });
    }),
  );
  return out;
}

/** Statuses a worker comes back from on its own (a call waits for it, as on the direct route). */
const COMING_BACK = new Set(['pending', 'starting', 'restarting', 'backoff', 'unhealthy']);

/** Whether a call would get this server's worker: stopped for idleness (woken) or on its way back. */
export function wakeable(runtime: { status: string; reason?: string | undefined } | null): boolean {
  if (!runtime) return false;
  return (runtime.status === 'stopped' && runtime.reason === 'idle') || COMING_BACK.has(runtime.status);
}
