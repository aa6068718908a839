import {
  type Logger,
  metaTraceparent,
  type Registry,
  type ServerSpec,
  type Tracer,
  validTraceparent,
} from '@mcp-hub/shared';
import { ProtocolError, ProtocolErrorCode, Server } from '@modelcontextprotocol/server';
import type { CallGuard } from '../access/call-guard.js';
import { canSee, type Principal } from '../access/principal.js';
import type { RegistryCache } from '../registry-cache.js';
import { callerId } from '../routes/mcp-proxy.js';
import type { WorkerClient } from '../workers/worker-client.js';
import type { WorkerLocator } from '../workers/worker-locator.js';
import { AggregateCalls } from './aggregate-call.js';
import { type AggregateContext, type Downstream, paginate, publicTool, requestIdOf } from './aggregate-support.js';
import { Catalog, type CatalogServer } from './catalog.js';
import { MergedLists } from './merged-lists.js';
import { encodeResourceTemplate, encodeResourceUri } from './resource-uris.js';
import { WorkerAccess } from './worker-access.js';
import { PASS_THROUGH } from './worker-links.js';

export interface AggregatorDeps {
  registry: Registry;
  cache: RegistryCache;
  workers: WorkerLocator;
  guard: CallGuard;
  client: WorkerClient;
  log: Logger;
  /** Between namespace and tool name (default `__`). */
  separator: string;
  /** Traces tool calls (tracing.ts); unset: tracing is off. */
  tracer?: Tracer;
  /** The server list is re-read at least this often, even if an event was missed. */
  maxAgeMs: number;
  /** How long one worker may take to answer its part of a merged list, in milliseconds (default 5 s). */
  listTimeoutMs?: number;
  /** Most hub→worker MCP sessions at once (default 1000). */
  maxLinks?: number;
  /** A hub→worker session leased to 2026-07-28 requests closes after this long unused, in ms (default 60 s). */
  linkIdleMs?: number;
}

export { AGGREGATE_PAGE_SIZE, type AggregateContext } from './aggregate-support.js';

const SERVER_INFO = { name: 'mcp-hub', version: '0.1.0' };
export const DEFAULT_LIST_TIMEOUT_MS = 5_000;
const _DEFAULT_MAX_LINKS = 1_000;
const _DEFAULT_LINK_IDLE_MS = 60_000;
const _LINK_CONNECT_TIMEOUT_MS = 10_000;
/** Extra time for a tool call beyond the server's own timeout (the worker enforces that one). */
const _CALL_TIMEOUT_SLACK_MS = 5_000;
const MAX_INPUT_ROUNDS = 64;
const _FLOW_ROUND_TIMEOUT_MS = 120_000;
const _MAX_FLOWS = 1_000;
/** Deadline of a forwarded request other than a tool call (read, get, complete, subscribe), in ms. */
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * The hub's own MCP server behind the aggregated `/mcp` and `/sse`: the tools and prompts of every enabled
 * server the caller may see, named by each server's prefix mode (catalog.ts), its resources under
 * `mcphub://<namespace>/…` (resource-uris.ts), completions, log levels and subscriptions, each request
 * routed to the owning worker over an MCP session with that worker (worker-links.ts). What a worker asks its
 * client (sampling, elicitation, roots) goes to the downstream client whose call caused it: as
 * `input_required` rounds for 2026-07-28 requests, as real requests on the call's stream for 2025 sessions
 * (the SDK's shim over the same flows).
 */
export class Aggregator {
  private servers: { at: number; value: Promise<CatalogServer[]> } | undefined;
  private readonly catalogs = new Map<string, Promise<Catalog>>();
  private readonly warned = new Set<string>();
  private readonly access: WorkerAccess;
  private readonly lists: MergedLists;
  private readonly calls: AggregateCalls;

  constructor(private readonly deps: AggregatorDeps) {
    this.calls = new AggregateCalls({
      ...deps,
      catalogFor: (principal) => this.catalogFor(principal),
      interactive: (down, rc, spec, operation, before) => this.access.interactive(down, rc, spec, operation, before),
    });
    this.lists = new MergedLists({
      allServers: () => this.allServers(),
      cache: deps.cache,
      log: deps.log,
      separator: deps.separator,
      listTimeoutMs: deps.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS,
      acquire: (down, rc, spec, runtime) => this.access.acquire(down, rc, spec, runtime),
      linkFailed: (link, error) => this.access.linkFailed(link, error),
    });
    this.access = new WorkerAccess(deps);
  }

  /** Drops what was built from the registry (after a server or tool event), so the next list is fresh. */
  invalidate(): void {
    this.servers = undefined;
    this.catalogs.clear();
  }

  /** Hub→worker MCP sessions open now. */
  get linkCount(): number {
    return this.access.links.size;
  }

  /** Ends the flows waiting on clients and the sessions with workers (the hub is closing). */
  async close(): Promise<void> {
    await this.access.close();
  }

  /** The catalog a principal sees (admins: every enabled server; a key: its project's). */
  catalogFor(principal: Principal): Promise<Catalog> {
    const scope = principal.kind === 'key' ? `project:${principal.project}` : '*';
    const now = Date.now();
    if (this.servers && now - this.servers.at >= this.deps.maxAgeMs) this.invalidate();
    let catalog = this.catalogs.get(scope);
    if (!catalog) {
      catalog = this.allServers().then((all) => {
        const built = new Catalog(
          all.filter((s) => canSee(principal, s.spec.project)),
          this.deps.separator,
        );
        this.warnSuppressed(built);
        return built;
      });
      catalog.catch(() => this.catalogs.delete(scope));
      this.catalogs.set(scope, catalog);
    }
    return catalog;
  }

  /** The MCP front's server factory. */
  serverFactory = (ctx: AggregateContext): Server => {
    const principal = (ctx.auth as Principal | undefined) ?? { kind: 'anonymous' };
    const server = new Server(SERVER_INFO, {
      capabilities: {
        tools: { listChanged: true },
        resources: { listChanged: true, subscribe: ctx.era === 'legacy' },
        prompts: { listChanged: true },
        completions: {},
        logging: {},
      },
      requestState: { verify: this.access.flows.codec.verify },
      inputRequired: { maxRounds: MAX_INPUT_ROUNDS },
    });
    const down: Downstream = {
      principal,
      caller: callerId(principal),
      ctx,
      server,
      session: ctx.era === 'legacy' ? this.access.openSession(server) : undefined,
    };
    server.setRequestHandler('tools/list', async () => {
      const catalog = await this.catalogFor(principal);
      return { tools: catalog.entries.map((e) => publicTool(e.name, e.tool)) };
    });
    server.setRequestHandler('tools/call', async (request, rc) => {
      const requestId = requestIdOf(rc, ctx);
      const { name, arguments: args = {} } = request.params;
      const traceparent = validTraceparent(rc.http?.req?.headers.get('traceparent')) ?? metaTraceparent(request.params);
      return (await this.calls.call(down, name, args, requestId, rc, traceparent)) as never;
    });
    server.setRequestHandler('resources/list', async (request, rc) =>
      this.lists.mergedList(down, rc, 'resources/list', request.params?.cursor, (spec, item) => {
        const uri = encodeResourceUri(spec.namespace, String(item.uri));
        return uri ? { ...item, uri } : undefined;
      }),
    );
    server.setRequestHandler('resources/templates/list', async (request, rc) =>
      this.lists.mergedList(down, rc, 'resources/templates/list', request.params?.cursor, (spec, item) => {
        const uriTemplate = encodeResourceTemplate(spec.namespace, String(item.uriTemplate));
        return uriTemplate ? { ...item, uriTemplate } : undefined;
      }),
    );
    server.setRequestHandler('resources/read', async (request, rc) => {
      const { spec, uri } = await this.lists.resourceOwner(principal, request.params.uri);
      const result = (await this.access.interactive(down, rc, spec, (link, signal, onProgress) =>
        link.client.request({ method: 'resources/read', params: { uri } }, PASS_THROUGH, {
          signal,
          timeout: REQUEST_TIMEOUT_MS,
          onprogress: onProgress,
        }),
      )) as { contents?: { uri?: string }[] };
      if (Array.isArray(result.contents)) {
        result.contents = result.contents.map((c) => ({
          ...c,
          uri: encodeResourceUri(spec.namespace, String(c.uri)) ?? request.params.uri,
        }));
      }
      return result as never;
    });
    server.setRequestHandler('prompts/list', async (request, rc) => {
      const catalog = await this.lists.promptCatalog(down, rc);
      return paginate(
        'prompts',
        catalog.entries.map((e) => ({ ...e.tool, name: e.name })),
        request.params?.cursor,
      ) as never;
    });
    server.setRequestHandler('prompts/get', async (request, rc) => {
      const { spec, name } = await this.lists.promptOwner(down, rc, request.params.name);
      const params = { ...request.params, name };
      delete (params as { _meta?: unknown })._meta;
      return (await this.access.interactive(down, rc, spec, (link, signal, onProgress) =>
        link.client.request({ method: 'prompts/get', params }, PASS_THROUGH, {
          signal,
          timeout: REQUEST_TIMEOUT_MS,
          onprogress: onProgress,
        }),
      )) as never;
    });
    server.setRequestHandler('completion/complete', async (request, rc) => {
      const ref = request.params.ref as { type: string; name?: string; uri?: string };
      let owner: { spec: ServerSpec; ref: Record<string, unknown> };
      if (ref.type === 'ref/prompt') {
        const found = await this.lists.promptOwner(down, rc, String(ref.name));
        owner = { spec: found.spec, ref: { ...ref, name: found.name } };
      } else {
        const found = await this.lists.resourceOwner(principal, String(ref.uri));
        owner = { spec: found.spec, ref: { ...ref, uri: found.uri } };
      }
      const { _meta, ...rest } = request.params as Record<string, unknown>;
      return (await this.access.onWorker(down, rc, owner.spec, REQUEST_TIMEOUT_MS, (link, signal) =>
        link.client.request({ method: 'completion/complete', params: { ...rest, ref: owner.ref } }, PASS_THROUGH, {
          signal,
          timeout: REQUEST_TIMEOUT_MS,
        }),
      )) as never;
    });
    server.setRequestHandler('logging/setLevel', async (request) => {
      // A 2025 session's level applies to every worker session it has or opens; a 2026-07-28 request names
      // its level in its envelope instead.
      if (down.session) {
        down.session.logLevel = request.params.level;
        await Promise.allSettled(
          this.access.links
            .ofOwner(down.session.owner)
            .filter((link) => link.client.getServerCapabilities()?.logging)
            .map(async (link) => {
              await link.client.setLoggingLevel(request.params.level, { timeout: REQUEST_TIMEOUT_MS });
              link.logLevel = request.params.level;
            }),
        );
      }
      return {};
    });
    for (const method of ['resources/subscribe', 'resources/unsubscribe'] as const) {
      server.setRequestHandler(method, async (request, rc) => {
        if (!down.session) {
          throw new ProtocolError(ProtocolErrorCode.MethodNotFound, `${method} needs a 2025 session`);
        }
        const { spec, uri } = await this.lists.resourceOwner(principal, request.params.uri);
        await this.access.onWorker(down, rc, spec, REQUEST_TIMEOUT_MS, (link, signal) =>
          link.client.request({ method, params: { uri } }, PASS_THROUGH, { signal, timeout: REQUEST_TIMEOUT_MS }),
        );
        return {};
      });
    }
    if (down.session) {
      const owner = down.session.owner;
      server.setNotificationHandler('notifications/roots/list_changed', async () => {
        await Promise.allSettled(this.access.links.ofOwner(owner).map((link) => link.client.sendRootsListChanged()));
      });
    }
    return server;
  };

  private allServers(): Promise<CatalogServer[]> {
    if (!this.servers) {
      const value = (async () => {
        const specs = (await this.deps.registry.listServers()).filter((s: ServerSpec) => s.enabled);
        return Promise.all(specs.map(async (spec) => ({ spec, tools: await this.deps.cache.toolList(spec.id) })));
      })();
      this.servers = { at: Date.now(), value };
      value.catch(() => {
        this.servers = undefined;
      });
    }
    return this.servers.value;
  }

  private warnSuppressed(catalog: Catalog): void {
    for (const s of catalog.suppressed) {
      const key = `${s.serverIds.join(',')}:${s.name}`;
      if (this.warned.has(key)) continue;
      this.warned.add(key);
      this.deps.log.warn(
        { event: 'mcp.aggregate.duplicate', tool: s.name, servers: s.serverIds },
        'several servers answer to the same prefixed tool name; it is left out for all of them',
      );
    }
  }
}
