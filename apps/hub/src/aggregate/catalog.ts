import { createHash } from 'node:crypto';
import type { ServerSpec, Tool } from '@mcp-hub/shared';

/** Longest tool name the aggregated endpoint exposes: several model APIs reject longer ones. */
export const MAX_TOOL_NAME = 64;
const HASH_CHARS = 8;

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

/** A tool that lost its name to another (same namespace and tool on two servers): the first server by id wins. */
export interface Suppressed {
  name: string;
  serverId: string;
  keptServerId: string;
}

/**
 * The exposed name of a tool: namespace, separator, tool name; names past 64 characters keep their start
 * and end with `_` and 8 hex characters of a hash of the full name, so they stay stable and distinct.
 */
export function exposedName(namespace: string, tool: string, separator: string): string {
  const full = `${namespace}${separator}${tool}`;
  if (full.length <= MAX_TOOL_NAME) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_CHARS);
  return `${full.slice(0, MAX_TOOL_NAME - HASH_CHARS - 1)}_${hash}`;
}

/**
 * The tools of several servers as one list, and the alias table that resolves a called name back to its
 * server and tool: the exposed name, the full unshortened name, and `namespace.tool`.
 */
export class Catalog {
  readonly entries: readonly CatalogEntry[];
  readonly suppressed: readonly Suppressed[];
  private readonly aliases = new Map<string, CatalogEntry>();

  constructor(servers: readonly CatalogServer[], separator: string) {
    const entries: CatalogEntry[] = [];
    const suppressed: Suppressed[] = [];
    const byName = new Map<string, CatalogEntry>();
    // Deterministic: servers by id, tools by name; the first to claim a name keeps it.
    const ordered = [...servers].sort((a, b) => a.spec.id.localeCompare(b.spec.id));
    for (const { spec, tools } of ordered) {
      for (const tool of [...tools].sort((a, b) => a.name.localeCompare(b.name))) {
        const name = exposedName(spec.namespace, tool.name, separator);
        const taken = byName.get(name);
        if (taken) {
          suppressed.push({ name, serverId: spec.id, keptServerId: taken.serverId });
          continue;
        }
        const entry = { name, serverId: spec.id, tool };
        byName.set(name, entry);
        entries.push(entry);
        for (const alias of [name, `${spec.namespace}${separator}${tool.name}`, `${spec.namespace}.${tool.name}`]) {
          if (!this.aliases.has(alias)) this.aliases.set(alias, entry);
        }
      }
    }
    this.entries = entries;
    this.suppressed = suppressed;
  }

  resolve(name: string): CatalogEntry | undefined {
    return this.aliases.get(name);
  }
}
