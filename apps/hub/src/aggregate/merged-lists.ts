import type { Logger, RuntimeRecord, ServerSpec } from '@mcp-hub/shared';
import { type Prompt, ProtocolError, ProtocolErrorCode, type ServerContext } from '@modelcontextprotocol/server';
import { canSee, type Principal } from '../access/principal.js';
import type { RegistryCache } from '../registry-cache.js';
import { abortable, type Downstream, LIST_KEY, type ListMethod, ms, paginate } from './aggregate-support.js';
import { Catalog, type CatalogServer, MAX_TOOL_NAME } from './catalog.js';
import { decodeResourceUri } from './resource-uris.js';
import { PASS_THROUGH, type WorkerLink } from './worker-links.js';

/** Pages read from one worker for one merged list; a server with more is cut there (logged). */
const MAX_WORKER_PAGES = 20;

export interface MergedListsDeps {
  /** The enabled servers and their tools (cached by the aggregator). */
  allServers: () => Promise<CatalogServer[]>;
  cache: RegistryCache;
  log: Logger;
  separator: string;
  /** How long one worker may take to answer its part of a merged list, in milliseconds. */
  listTimeoutMs: number;
  /** A worker session for one request of `down` to the worker of `spec`. */
  acquire: (
    down: Downstream,
    rc: ServerContext,
    spec: ServerSpec,
    runtime: RuntimeRecord,
  ) => Promise<{ link: WorkerLink; release: () => void }>;
  /** Discards a session that failed for a reason other than the worker's answer; answers the error. */
  linkFailed: (link: WorkerLink, error: unknown) => unknown;
}

/**
 * The aggregated lists (resources, templates, prompts) merged from every running visible server, each within
 * a deadline, and the way back from an aggregated name or URI to its owning server.
 */
export class MergedLists {
  constructor(private readonly deps: MergedListsDeps) {}

  /** The enabled servers the principal may see whose worker runs now (lists do not wake idle workers). */
  async runningServers(principal: Principal): Promise<{ spec: ServerSpec; runtime: RuntimeRecord }[]> {
    const all = (await this.deps.allServers()).filter((s) => canSee(principal, s.spec.project));
    const out: { spec: ServerSpec; runtime: RuntimeRecord }[] = [];
    for (const { spec } of all) {
      const runtime = await this.deps.cache.runtime(spec.id);
      if (runtime?.status === 'running' && runtime.port !== undefined) out.push({ spec, runtime });
    }
    return out;
  }

  /**
   * Every running visible server's items of one list, read page by page, each server within the list
   * deadline: a server that fails or hangs is left out (logged `mcp.aggregate.server_skipped`).
   */
  async collect(
    down: Downstream,
    rc: ServerContext,
    method: ListMethod,
  ): Promise<{ spec: ServerSpec; items: Record<string, unknown>[] }[]> {
    const feature = method === 'prompts/list' ? 'prompts' : 'resources';
    const servers = await this.runningServers(down.principal);
    const parts = await Promise.all(
      servers.map(async ({ spec, runtime }) => {
        const deadline = AbortSignal.any([rc.mcpReq.signal, AbortSignal.timeout(this.deps.listTimeoutMs)]);
        const started = performance.now();
        try {
          const items = await abortable(deadline, async () => {
            const { link, release } = await this.deps.acquire(down, rc, spec, runtime);
            try {
              if (!link.client.getServerCapabilities()?.[feature]) return [];
              const items: Record<string, unknown>[] = [];
              let cursor: string | undefined;
              for (let page = 0; page < MAX_WORKER_PAGES; page++) {
                const result = (await link.client.request({ method, params: cursor ? { cursor } : {} }, PASS_THROUGH, {
                  signal: deadline,
                  timeout: this.deps.listTimeoutMs,
                })) as Record<string, unknown>;
                const list = result[LIST_KEY[method]];
                if (Array.isArray(list)) items.push(...(list as Record<string, unknown>[]));
                cursor = typeof result.nextCursor === 'string' ? result.nextCursor : undefined;
                if (!cursor) break;
              }
              return items;
            } catch (error) {
              throw this.deps.linkFailed(link, error);
            } finally {
              release();
            }
          });
          return { spec, items };
        } catch (error) {
          this.deps.log.warn(
            {
              event: 'mcp.aggregate.server_skipped',
              server: spec.id,
              method,
              latency: ms(started),
              error: error instanceof Error ? error.message : String(error),
            },
            'a server was left out of an aggregated list',
          );
          return { spec, items: [] };
        }
      }),
    );
    return parts;
  }

  async mergedList(
    down: Downstream,
    rc: ServerContext,
    method: 'resources/list' | 'resources/templates/list',
    cursor: string | undefined,
    rename: (spec: ServerSpec, item: Record<string, unknown>) => Record<string, unknown> | undefined,
  ): Promise<never> {
    const parts = await this.collect(down, rc, method);
    const merged = parts
      .sort((a, b) => a.spec.id.localeCompare(b.spec.id))
      .flatMap(({ spec, items }) => items.map((item) => rename(spec, item)))
      .filter((item): item is Record<string, unknown> => item !== undefined);
    return paginate(LIST_KEY[method], merged, cursor) as never;
  }

  async promptCatalog(down: Downstream, rc: ServerContext): Promise<Catalog<Prompt>> {
    const parts = await this.collect(down, rc, 'prompts/list');
    return new Catalog<Prompt>(
      parts.map(({ spec, items }) => ({ spec, tools: items as unknown as Prompt[] })),
      this.deps.separator,
    );
  }

  async promptOwner(down: Downstream, rc: ServerContext, name: string): Promise<{ spec: ServerSpec; name: string }> {
    // A prefixed name of a server that prefixes names at all goes straight to it, without listing every server.
    const sep = this.deps.separator;
    const at = name.indexOf(sep);
    // (Names of MAX_TOOL_NAME characters may be shortened with a hash: those go through the catalog.)
    if (at > 0 && name.length < MAX_TOOL_NAME) {
      const namespace = name.slice(0, at);
      const direct = (await this.deps.allServers()).find(
        (s) => s.spec.namespace === namespace && canSee(down.principal, s.spec.project),
      );
      if (direct && (direct.spec.prefixMode ?? 'always') !== 'never') {
        return { spec: direct.spec, name: name.slice(at + sep.length) };
      }
    }
    const catalog = await this.promptCatalog(down, rc);
    const ambiguous = catalog.ambiguity(name);
    if (ambiguous) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `prompt "${name}" is ambiguous: servers ${ambiguous.join(', ')} all have it (prefixMode "never")`,
        { reason: 'ambiguous', servers: ambiguous },
      );
    }
    const entry = catalog.resolve(name);
    const spec = entry ? await this.deps.cache.server(entry.serverId) : null;
    if (!entry || !spec || !canSee(down.principal, spec.project)) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown prompt "${name}"`);
    }
    return { spec, name: entry.tool.name };
  }

  /** The server owning an aggregated resource URI (of a server the principal may see), and the original URI. */
  async resourceOwner(principal: Principal, aggregated: string): Promise<{ spec: ServerSpec; uri: string }> {
    const decoded = decodeResourceUri(aggregated);
    const all = decoded ? await this.deps.allServers() : [];
    const found = all.find((s) => s.spec.namespace === decoded?.namespace && canSee(principal, s.spec.project));
    if (!decoded || !found) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown resource "${aggregated.slice(0, 256)}"`, {
        reason: 'resource_not_found',
      });
    }
    return { spec: found.spec, uri: decoded.uri };
  }
}
