import { createHash } from 'node:crypto';
import type { ServerSpec, Tool } from '@mcp-hub/shared';

/** Longest tool name the aggregated endpoint exposes: several model APIs reject longer ones. */
export const MAX_TOOL_NAME = 64;
const HASH_CHARS = 8;
/**
 * How much of a name past MAX_TOOL_NAME a shortened name keeps. A namespace and separator fit in it whole
 * (the hub refuses longer namespaces), so a shortened name still splits at its first separator into its own
 * namespace and cannot be another namespace's full name.
 */
export const SHORTENED_NAME_KEEPS = MAX_TOOL_NAME - HASH_CHARS - 1;

/** What the catalog names: a tool or a prompt (anything with a name). */
export interface Named {
  name: string;
}

export interface CatalogServer<T extends Named = Tool> {
  spec: ServerSpec;
  tools: readonly T[];
}

export interface CatalogEntry<T extends Named = Tool> {
  /** The name clients see: `<namespace><separator><tool>` (shortened past 64 characters), or the bare name. */
  name: string;
  serverId: string;
  tool: T;
}

/**
 * A name more than one tool answers to (same namespace and tool on two servers, written before namespaces
 * were unique): none of them gets it, since any pick would let one server receive calls meant for another.
 */
export interface Suppressed {
  name: string;
  serverIds: readonly string[];
}

/**
 * The exposed name of a tool: namespace, separator, tool name; names past 64 characters keep their start
 * and end with `_` and 8 hex characters of a hash of the full name, so they stay stable and distinct.
 */
export function exposedName(namespace: string, tool: string, separator: string): string {
  const full = `${namespace}${separator}${tool}`;
  if (full.length <= MAX_TOOL_NAME) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_CHARS);
  return `${full.slice(0, SHORTENED_NAME_KEEPS)}_${hash}`;
}

/**
 * The tools (or prompts) of several servers as one list, and the alias table that resolves a called name
 * back to its server and tool. Each server's `prefixMode` (default `always`) picks the listed name:
 * `always` the prefixed name; `conditional` the bare name unless another server has a tool of that name;
 * `never` the bare name. The prefixed name, the full unshortened one and `namespace.tool` are aliases of
 * every tool. A name two tools would answer to resolves to none of them (the tool left out of the list when
 * it is its listed name), whatever the order of the servers; except the bare name of a `never` server's
 * tool, which stays listed once and answers an ambiguity error naming the servers (`ambiguity`).
 */
export class Catalog<T extends Named = Tool> {
  readonly entries: readonly CatalogEntry<T>[];
  readonly suppressed: readonly Suppressed[];
  private readonly aliases = new Map<string, CatalogEntry<T>>();
  private readonly ambiguous = new Map<string, readonly string[]>();

  constructor(servers: readonly CatalogServer<T>[], separator: string) {
    const all: { entry: CatalogEntry<T>; names: string[]; bare: boolean }[] = [];
    const claims = new Map<string, Set<CatalogEntry<T>>>();
    // Deterministic order of the list: servers by id, tools by name.
    const ordered = [...servers].sort((a, b) => a.spec.id.localeCompare(b.spec.id));
    const bareOwners = new Map<string, Set<string>>();
    for (const { spec, tools } of ordered) {
      for (const tool of tools) {
        const owners = bareOwners.get(tool.name) ?? new Set<string>();
        owners.add(spec.id);
        bareOwners.set(tool.name, owners);
      }
    }
    for (const { spec, tools } of ordered) {
      const mode = spec.prefixMode ?? 'always';
      for (const tool of [...tools].sort((a, b) => a.name.localeCompare(b.name))) {
        const prefixed = exposedName(spec.namespace, tool.name, separator);
        const clash = (bareOwners.get(tool.name)?.size ?? 0) > 1;
        const bare = mode === 'never' || (mode === 'conditional' && !clash);
        const entry = { name: bare ? tool.name : prefixed, serverId: spec.id, tool };
        const names = [
          ...new Set([
            entry.name,
            prefixed,
            `${spec.namespace}${separator}${tool.name}`,
            `${spec.namespace}.${tool.name}`,
          ]),
        ];
        all.push({ entry, names, bare: mode === 'never' });
        for (const alias of names) {
          const set = claims.get(alias) ?? new Set<CatalogEntry<T>>();
          set.add(entry);
          claims.set(alias, set);
        }
      }
    }
    const entries: CatalogEntry<T>[] = [];
    const suppressed: Suppressed[] = [];
    const reported = new Set<string>();
    for (const { entry, names, bare } of all) {
      for (const alias of names) {
        const claimants = claims.get(alias) as Set<CatalogEntry<T>>;
        if (claimants.size === 1) this.aliases.set(alias, entry);
        else if (bare && alias === entry.name) {
          // A `never` server keeps its bare name: listed once, and a call names the servers it could mean.
          if (!this.ambiguous.has(alias)) {
            this.ambiguous.set(alias, [...new Set([...claimants].map((c) => c.serverId))]);
            entries.push(entry);
          }
        } else if (!reported.has(alias)) {
          reported.add(alias);
          suppressed.push({ name: alias, serverIds: [...new Set([...claimants].map((c) => c.serverId))] });
        }
      }
      if (this.aliases.get(entry.name) === entry) entries.push(entry);
    }
    this.entries = entries;
    this.suppressed = suppressed.filter((s) => !this.ambiguous.has(s.name));
  }

  resolve(name: string): CatalogEntry<T> | undefined {
    return this.aliases.get(name);
  }

  /** The servers a listed bare name of a `never` server could mean, when more than one has it. */
  ambiguity(name: string): readonly string[] | undefined {
    return this.ambiguous.get(name);
  }
}
