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

export interface CatalogServer {
  spec: ServerSpec;
  tools: readonly Tool[];
}

export interface CatalogEntry {
  /** The name clients see: `<namespace><separator><tool>`, shortened with a hash suffix past 64 characters. */
  name: string;
  serverId: string;
  tool: Tool;
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
 * The tools of several servers as one list, and the alias table that resolves a called name back to its
 * server and tool: the exposed name, the full unshortened name, and `namespace.tool`. Every name resolves to
 * one tool or to none: a name two tools would answer to is dropped for both (and the tool left out of the
 * list when it is its exposed name), whatever the order of the servers.
 */
export class Catalog {
  readonly entries: readonly CatalogEntry[];
  readonly suppressed: readonly Suppressed[];
  private readonly aliases = new Map<string, CatalogEntry>();

  constructor(servers: readonly CatalogServer[], separator: string) {
    const all: { entry: CatalogEntry; names: string[] }[] = [];
    const claims = new Map<string, Set<CatalogEntry>>();
    // Deterministic order of the list: servers by id, tools by name.
    const ordered = [...servers].sort((a, b) => a.spec.id.localeCompare(b.spec.id));
    for (const { spec, tools } of ordered) {
      for (const tool of [...tools].sort((a, b) => a.name.localeCompare(b.name))) {
        const name = exposedName(spec.namespace, tool.name, separator);
        const entry = { name, serverId: spec.id, tool };
        const names = [
          ...new Set([name, `${spec.namespace}${separator}${tool.name}`, `${spec.namespace}.${tool.name}`]),
        ];
        all.push({ entry, names });
        for (const alias of names) {
          const set = claims.get(alias) ?? new Set<CatalogEntry>();
          set.add(entry);
          claims.set(alias, set);
        }
      }
    }
    const entries: CatalogEntry[] = [];
    const suppressed: Suppressed[] = [];
    const reported = new Set<string>();
    for (const { entry, names } of all) {
      for (const alias of names) {
        const claimants = claims.get(alias) as Set<CatalogEntry>;
        if (claimants.size === 1) this.aliases.set(alias, entry);
        else if (!reported.has(alias)) {
          reported.add(alias);
          suppressed.push({ name: alias, serverIds: [...new Set([...claimants].map((c) => c.serverId))] });
        }
      }
      if (this.aliases.get(entry.name) === entry) entries.push(entry);
    }
    this.entries = entries;
    this.suppressed = suppressed;
  }

  resolve(name: string): CatalogEntry | undefined {
    return this.aliases.get(name);
  }
}
