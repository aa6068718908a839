import { randomUUID } from 'node:crypto';
import {
  AppError,
  ERROR_STATUS,
  type ErrorCode,
  isRequestId,
  type Logger,
  REQUEST_ID_HEADER,
  type Registry,
  type RuntimeRecord,
  type ServerSpec,
} from '@mcp-hub/shared';
import { InputFlows, type McpServerContext, type ProgressUpdate, progressSender } from '@mcp-hub/shared/mcp-front';
import { SdkError } from '@modelcontextprotocol/client';
import {
  type CallToolResult,
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  LOG_LEVEL_META_KEY,
  type LoggingLevel,
  type Prompt,
  ProtocolError,
  ProtocolErrorCode,
  Server,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import type { CallGuard } from '../access/call-guard.js';
import { canSee, type Principal } from '../access/principal.js';
import type { RegistryCache } from '../registry-cache.js';
import { callerId } from '../routes/mcp-proxy.js';
import { REQUEST_ID_META, type WorkerClient, type WorkerTarget } from '../workers/worker-client.js';
import type { WorkerLocator } from '../workers/worker-locator.js';
import { Catalog, type CatalogServer, MAX_TOOL_NAME } from './catalog.js';
import { decodeResourceUri, encodeResourceTemplate, encodeResourceUri } from './resource-uris.js';
import {
  EVERY_CLIENT_CAPABILITY,
  type LinkCaller,
  type LinkNotification,
  PASS_THROUGH,
  type WorkerLink,
  WorkerLinks,
} from './worker-links.js';

export interface AggregatorDeps {
  registry: Registry;
  cache: RegistryCache;
  workers: WorkerLocator;
  guard: CallGuard;
  client: WorkerClient;
  log: Logger;
  /** Between namespace and tool name (default `__`). */
  separator: string;
  /** The server list is re-read at least this often, even if an event was missed. */
  maxAgeMs: number;
  /** How long one worker may take to answer its part of a merged list, in milliseconds (default 5 s). */
  listTimeoutMs?: number;
  /** Most hub→worker MCP sessions at once (default 1000). */
  maxLinks?: number;
  /** A hub→worker session leased to 2026-07-28 requests closes after this long unused, in ms (default 60 s). */
  linkIdleMs?: number;
}

/** What the MCP front hands the server factory for one session or request. */
export type AggregateContext = McpServerContext;

const SERVER_INFO = { name: 'mcp-hub', version: '0.1.0' };
export const DEFAULT_LIST_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_LINKS = 1_000;
const DEFAULT_LINK_IDLE_MS = 60_000;
const LINK_CONNECT_TIMEOUT_MS = 10_000;
/** Items of a merged list per page (resources, templates, prompts). */
export const AGGREGATE_PAGE_SIZE = 500;
/** Pages read from one worker for one merged list; a server with more is cut there (logged). */
const MAX_WORKER_PAGES = 20;
/** Deadline of a forwarded request other than a tool call (read, get, complete, subscribe), in ms. */
const REQUEST_TIMEOUT_MS = 60_000;
/** Extra time for a tool call beyond the server's own timeout (the worker enforces that one). */
const CALL_TIMEOUT_SLACK_MS = 5_000;
const MAX_INPUT_ROUNDS = 64;
const FLOW_ROUND_TIMEOUT_MS = 120_000;
const MAX_FLOWS = 1_000;

/** The tool fields clients see (the registry's own `rev` and `digest` stay inside). */
function publicTool(name: string, tool: CatalogServer['tools'][number]): Tool {
  const { rev: _rev, digest: _digest, name: _name, ...rest } = tool;
  return { ...rest, name } as Tool;
}

/** The client capabilities a worker session passes on: only what a server may ask for. */
function askable(capabilities: ClientCapabilities | undefined): ClientCapabilities {
  const out: ClientCapabilities = {};
  if (capabilities?.sampling) out.sampling = capabilities.sampling;
  if (capabilities?.elicitation) out.elicitation = capabilities.elicitation;
  if (capabilities?.roots) out.roots = capabilities.roots;
  return out;
}

type ListMethod = 'resources/list' | 'resources/templates/list' | 'prompts/list';
const LIST_KEY: Record<ListMethod, string> = {
  'resources/list': 'resources',
  'resources/templates/list': 'resourceTemplates',
  'prompts/list': 'prompts',
};

/** A 2025 downstream session as the aggregator keeps it. */
interface AggregateSession {
  owner: string;
  logLevel: LoggingLevel | undefined;
  home: LinkCaller;
}

/** One downstream session or request: who asks, and how to reach the workers for it. */
interface Downstream {
  principal: Principal;
  caller: string;
  ctx: AggregateContext;
  server: Server;
  session: AggregateSession | undefined;
}

type LinkOperation = (
  link: WorkerLink,
  signal: AbortSignal,
  onProgress: (p: ProgressUpdate) => void,
) => Promise<unknown>;

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
  private readonly flows: InputFlows;
  private readonly links: WorkerLinks;
  private readonly listTimeoutMs: number;

  constructor(private readonly deps: AggregatorDeps) {
    this.listTimeoutMs = deps.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS;
    this.flows = new InputFlows({ log: deps.log, roundTimeoutMs: FLOW_ROUND_TIMEOUT_MS, maxFlows: MAX_FLOWS });
    this.links = new WorkerLinks({
      client: deps.client,
      log: deps.log,
      onNotification: (link, method, params) => this.relayNotification(link, method, params),
      max: deps.maxLinks ?? DEFAULT_MAX_LINKS,
      idleMs: deps.linkIdleMs ?? DEFAULT_LINK_IDLE_MS,
      connectTimeoutMs: LINK_CONNECT_TIMEOUT_MS,
    });
  }

  /** Drops what was built from the registry (after a server or tool event), so the next list is fresh. */
  invalidate(): void {
    this.servers = undefined;
    this.catalogs.clear();
  }

  /** Hub→worker MCP sessions open now. */
  get linkCount(): number {
    return this.links.size;
  }

  /** Ends the flows waiting on clients and the sessions with workers (the hub is closing). */
  async close(): Promise<void> {
    this.flows.closeAll(new Error('the hub is shutting down'));
    await this.links.close();
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
      requestState: { verify: this.flows.codec.verify },
      inputRequired: { maxRounds: MAX_INPUT_ROUNDS },
    });
    const down: Downstream = {
      principal,
      caller: callerId(principal),
      ctx,
      server,
      session: ctx.era === 'legacy' ? this.openSession(server) : undefined,
    };
    server.setRequestHandler('tools/list', async () => {
      const catalog = await this.catalogFor(principal);
      return { tools: catalog.entries.map((e) => publicTool(e.name, e.tool)) };
    });
    server.setRequestHandler('tools/call', async (request, rc) => {
      const requestId = requestIdOf(rc, ctx);
      return (await this.call(down, request.params.name, request.params.arguments ?? {}, requestId, rc)) as never;
    });
    server.setRequestHandler('resources/list', async (request, rc) =>
      this.mergedList(down, rc, 'resources/list', request.params?.cursor, (spec, item) => {
        const uri = encodeResourceUri(spec.namespace, String(item.uri));
        return uri ? { ...item, uri } : undefined;
      }),
    );
    server.setRequestHandler('resources/templates/list', async (request, rc) =>
      this.mergedList(down, rc, 'resources/templates/list', request.params?.cursor, (spec, item) => {
        const uriTemplate = encodeResourceTemplate(spec.namespace, String(item.uriTemplate));
        return uriTemplate ? { ...item, uriTemplate } : undefined;
      }),
    );
    server.setRequestHandler('resources/read', async (request, rc) => {
      const { spec, uri } = await this.resourceOwner(principal, request.params.uri);
      const result = (await this.interactive(down, rc, spec, (link, signal, onProgress) =>
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
      const catalog = await this.promptCatalog(down, rc);
      return paginate(
        'prompts',
        catalog.entries.map((e) => ({ ...e.tool, name: e.name })),
        request.params?.cursor,
      ) as never;
    });
    server.setRequestHandler('prompts/get', async (request, rc) => {
      const { spec, name } = await this.promptOwner(down, rc, request.params.name);
      const params = { ...request.params, name };
      delete (params as { _meta?: unknown })._meta;
      return (await this.interactive(down, rc, spec, (link, signal, onProgress) =>
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
        const found = await this.promptOwner(down, rc, String(ref.name));
        owner = { spec: found.spec, ref: { ...ref, name: found.name } };
      } else {
        const found = await this.resourceOwner(principal, String(ref.uri));
        owner = { spec: found.spec, ref: { ...ref, uri: found.uri } };
      }
      const { _meta, ...rest } = request.params as Record<string, unknown>;
      return (await this.onWorker(down, rc, owner.spec, REQUEST_TIMEOUT_MS, (link, signal) =>
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
          this.links
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
        const { spec, uri } = await this.resourceOwner(principal, request.params.uri);
        await this.onWorker(down, rc, spec, REQUEST_TIMEOUT_MS, (link, signal) =>
          link.client.request({ method, params: { uri } }, PASS_THROUGH, { signal, timeout: REQUEST_TIMEOUT_MS }),
        );
        return {};
      });
    }
    if (down.session) {
      const owner = down.session.owner;
      server.setNotificationHandler('notifications/roots/list_changed', async () => {
        await Promise.allSettled(this.links.ofOwner(owner).map((link) => link.client.sendRootsListChanged()));
      });
    }
    return server;
  };

  private openSession(server: Server): AggregateSession {
    const owner = `session:${randomUUID()}`;
    const session: AggregateSession = {
      owner,
      logLevel: undefined,
      home: {
        channel: {
          owner,
          capabilities: () => server.getClientCapabilities(),
          ask: (method, params, signal) =>
            server.request({ method, ...(params ? { params } : {}) } as never, { signal }) as Promise<
              Record<string, unknown>
            >,
        },
        notify: (method, params) => server.notification({ method, params } as never),
      },
    };
    const previous = server.onclose;
    server.onclose = () => {
      previous?.();
      this.links.dropOwner(owner);
    };
    return session;
  }

  /** A worker session for one request of `down` to `spec`'s worker (the session's own, or a leased one). */
  private async acquire(down: Downstream, rc: ServerContext, spec: ServerSpec, runtime: RuntimeRecord) {
    const target: WorkerTarget = { serverId: spec.id, runtime };
    const session = down.session;
    return this.links.acquire({
      owner: session?.owner ?? `caller:${down.caller}`,
      exclusive: !session,
      target,
      namespace: spec.namespace,
      caller: down.caller,
      capabilities: session ? askable(down.server.getClientCapabilities()) : EVERY_CLIENT_CAPABILITY,
      ...(session ? { home: session.home } : {}),
      logLevel: session ? session.logLevel : (envelopeField(rc, LOG_LEVEL_META_KEY) as LoggingLevel | undefined),
    });
  }

  /**
   * Runs `operation` on the worker of `spec` as a flow: what the worker asks its client meanwhile goes to
   * this request's client (input_required rounds; real requests on a 2025 session).
   */
  private interactive(
    down: Downstream,
    rc: ServerContext,
    spec: ServerSpec,
    operation: LinkOperation,
    before?: () => Promise<RuntimeRecord>,
  ): Promise<Record<string, unknown>> {
    const capabilities = down.session
      ? down.server.getClientCapabilities()
      : (envelopeField(rc, CLIENT_CAPABILITIES_META_KEY) as ClientCapabilities | undefined);
    return this.flows.round(
      rc,
      down.caller,
      down.session?.owner,
      capabilities,
      async (channel, signal, onProgress, notify) => {
        const runtime = before ? await before() : await this.deps.workers.running(spec.id);
        const { link, release } = await this.acquire(down, rc, spec, runtime);
        const leave = link.enter({ channel, notify });
        try {
          return await operation(link, signal, onProgress);
        } catch (error) {
          throw this.linkFailed(link, error);
        } finally {
          leave();
          release();
        }
      },
    );
  }

  /** Runs one request that asks nothing of the client on the worker of `spec`, within `timeoutMs`. */
  private async onWorker<T>(
    down: Downstream,
    rc: ServerContext,
    spec: ServerSpec,
    timeoutMs: number,
    operation: (link: WorkerLink, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const signal = AbortSignal.any([rc.mcpReq.signal, AbortSignal.timeout(timeoutMs)]);
    const runtime = await this.deps.workers.running(spec.id).catch((error: unknown) => {
      throw toProtocolError(error);
    });
    const { link, release } = await this.acquire(down, rc, spec, runtime);
    try {
      return await operation(link, signal);
    } catch (error) {
      throw this.linkFailed(link, error);
    } finally {
      release();
    }
  }

  /** A failure other than the worker's own answer means the session is gone: the next request opens another. */
  private linkFailed(link: WorkerLink, error: unknown): unknown {
    if (!ProtocolError.isInstance(error) && !(error instanceof AppError)) {
      this.links.discard(link, SdkError.isInstance(error) ? String(error.code) : 'request_failed');
    }
    return error;
  }

  private async call(
    down: Downstream,
    name: string,
    args: Record<string, unknown>,
    requestId: string,
    rc: ServerContext,
  ): Promise<Record<string, unknown>> {
    const { cache, guard, workers, log } = this.deps;
    const { principal } = down;
    const catalog = await this.catalogFor(principal);
    const ambiguous = catalog.ambiguity(name);
    if (ambiguous) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `tool "${name}" is ambiguous: servers ${ambiguous.join(', ')} all have it (prefixMode "never"); call it as <namespace>${this.deps.separator}${name}`,
        { reason: 'ambiguous', servers: ambiguous },
      );
    }
    const entry = catalog.resolve(name);
    if (!entry) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown tool "${name}"`);
    const server = entry.serverId;
    const tool = entry.tool.name;
    // The catalog may be older than the spec: the server's owner is checked again on the current one, so a
    // name can only reach a server of the caller's project.
    const found = await cache.server(server);
    const spec = found && canSee(principal, found.project) ? found : null;
    const cached = spec ? await cache.tool(server, tool) : null;
    const problems = cached?.validate(args);
    if (!spec || !cached || problems) {
      const message = problems
        ? `invalid arguments for ${name}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`
        : `unknown tool "${name}"`;
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, message);
    }
    let done: ((ok: boolean) => void) | undefined;
    let started = 0;
    const fields = { request_id: requestId, server, tool, via: 'mcp' };
    try {
      if (!this.mayListen(down, rc)) {
        // Nothing the worker could ask or tell this client: the REST call path, one hop cheaper than a worker
        // session (bench: `pnpm bench mcp`, path d).
        started = performance.now();
        log.info({ event: 'tool.call.accepted', ...fields }, 'tool call accepted');
        done = await guard.admit(principal, server, tool);
        const onProgress = progressSender(rc);
        const result = await workers.withWorker(
          server,
          (runtime) =>
            this.deps.client.callTool({
              target: { serverId: server, runtime },
              tool,
              args,
              requestId,
              signal: rc.mcpReq.signal,
              timeoutMs: spec.timeoutMs,
              onProgress,
            }),
          { timeoutMs: spec.timeoutMs, requestId },
        );
        done(!result.isError);
        log.info({ event: 'tool.call.done', ...fields, latency: ms(started) }, 'tool call done');
        return result as Record<string, unknown>;
      }
      const result = await this.interactive(
        down,
        rc,
        spec,
        async (link, signal, onProgress) => {
          const outcome = (await link.client.request(
            { method: 'tools/call', params: { name: tool, arguments: args, _meta: { [REQUEST_ID_META]: requestId } } },
            PASS_THROUGH,
            { signal, timeout: spec.timeoutMs + CALL_TIMEOUT_SLACK_MS, onprogress: onProgress },
          )) as CallToolResult;
          done?.(!outcome.isError);
          done = undefined;
          log.info({ event: 'tool.call.done', ...fields, latency: ms(started) }, 'tool call done');
          return outcome;
        },
        // Admission once per call (not per round): limits, usage and the worker, before the flow starts.
        async () => {
          started = performance.now();
          log.info({ event: 'tool.call.accepted', ...fields }, 'tool call accepted');
          done = await guard.admit(principal, server, tool);
          return workers.running(server, { timeoutMs: spec.timeoutMs, requestId });
        },
      );
      return result;
    } catch (err) {
      done?.(false);
      const error = asAppError(err);
      log.warn({ event: 'tool.call.failed', ...fields, code: error.code, error: error.message }, 'tool call failed');
      if (rc.mcpReq.signal.aborted)
        throw new ProtocolError(ProtocolErrorCode.InternalError, 'the request was cancelled');
      if (error.code === 'rate_limited') {
        throw new ProtocolError(ProtocolErrorCode.InternalError, error.message, {
          code: error.code,
          ...(error.details as object),
        });
      }
      if (ProtocolError.isInstance(err) && err.code !== ProtocolErrorCode.InternalError) throw err;
      // Execution failures are tool results the model can read, as MCP advises.
      return { content: [{ type: 'text', text: `${error.code}: ${error.message}` }], isError: true };
    }
  }

  /**
   * Whether the worker may have something for this client during a call: a question it can answer
   * (sampling, elicitation, roots) or log messages at a level it set.
   */
  private mayListen(down: Downstream, rc: ServerContext): boolean {
    const capabilities = down.session
      ? down.server.getClientCapabilities()
      : (envelopeField(rc, CLIENT_CAPABILITIES_META_KEY) as ClientCapabilities | undefined);
    const logLevel = down.session ? down.session.logLevel : envelopeField(rc, LOG_LEVEL_META_KEY);
    return Boolean(capabilities?.sampling || capabilities?.elicitation || capabilities?.roots || logLevel);
  }

  /** The enabled servers the principal may see whose worker runs now (lists do not wake idle workers). */
  private async runningServers(principal: Principal): Promise<{ spec: ServerSpec; runtime: RuntimeRecord }[]> {
    const all = (await this.allServers()).filter((s) => canSee(principal, s.spec.project));
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
  private async collect(
    down: Downstream,
    rc: ServerContext,
    method: ListMethod,
  ): Promise<{ spec: ServerSpec; items: Record<string, unknown>[] }[]> {
    const feature = method === 'prompts/list' ? 'prompts' : 'resources';
    const servers = await this.runningServers(down.principal);
    const parts = await Promise.all(
      servers.map(async ({ spec, runtime }) => {
        const deadline = AbortSignal.any([rc.mcpReq.signal, AbortSignal.timeout(this.listTimeoutMs)]);
        const started = performance.now();
        try {
          const items = await abortable(deadline, async () => {
            const { link, release } = await this.acquire(down, rc, spec, runtime);
            try {
              if (!link.client.getServerCapabilities()?.[feature]) return [];
              const items: Record<string, unknown>[] = [];
              let cursor: string | undefined;
              for (let page = 0; page < MAX_WORKER_PAGES; page++) {
                const result = (await link.client.request({ method, params: cursor ? { cursor } : {} }, PASS_THROUGH, {
                  signal: deadline,
                  timeout: this.listTimeoutMs,
                })) as Record<string, unknown>;
                const list = result[LIST_KEY[method]];
                if (Array.isArray(list)) items.push(...(list as Record<string, unknown>[]));
                cursor = typeof result.nextCursor === 'string' ? result.nextCursor : undefined;
                if (!cursor) break;
              }
              return items;
            } catch (error) {
              throw this.linkFailed(link, error);
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

  private async mergedList(
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

  private async promptCatalog(down: Downstream, rc: ServerContext): Promise<Catalog<Prompt>> {
    const parts = await this.collect(down, rc, 'prompts/list');
    return new Catalog<Prompt>(
      parts.map(({ spec, items }) => ({ spec, tools: items as unknown as Prompt[] })),
      this.deps.separator,
    );
  }

  private async promptOwner(
    down: Downstream,
    rc: ServerContext,
    name: string,
  ): Promise<{ spec: ServerSpec; name: string }> {
    // A prefixed name of a server that prefixes names at all goes straight to it, without listing every server.
    const sep = this.deps.separator;
    const at = name.indexOf(sep);
    // (Names of MAX_TOOL_NAME characters may be shortened with a hash: those go through the catalog.)
    if (at > 0 && name.length < MAX_TOOL_NAME) {
      const namespace = name.slice(0, at);
      const direct = (await this.allServers()).find(
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
  private async resourceOwner(principal: Principal, aggregated: string): Promise<{ spec: ServerSpec; uri: string }> {
    const decoded = decodeResourceUri(aggregated);
    const all = decoded ? await this.allServers() : [];
    const found = all.find((s) => s.spec.namespace === decoded?.namespace && canSee(principal, s.spec.project));
    if (!decoded || !found) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown resource "${aggregated.slice(0, 256)}"`, {
        reason: 'resource_not_found',
      });
    }
    return { spec: found.spec, uri: decoded.uri };
  }

  private relayNotification(link: WorkerLink, method: LinkNotification, params: Record<string, unknown>): void {
    let out = params;
    if (method === 'notifications/resources/updated') {
      const uri = typeof params.uri === 'string' ? encodeResourceUri(link.namespace, params.uri) : undefined;
      if (!uri) return;
      out = { ...params, uri };
    }
    link
      .notify(method, out)
      .catch((err: unknown) =>
        this.deps.log.debug({ event: 'mcp.notify_failed', method, server: link.serverId, err }, 'not delivered'),
      );
  }

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

/** One page of a merged list; the cursor is the offset of the next page (opaque to clients, checked). */
function paginate(key: string, items: unknown[], cursor: string | undefined): Record<string, unknown> {
  let offset = 0;
  if (cursor !== undefined) {
    const parsed = /^o([0-9]{1,9})$/.exec(cursor);
    if (!parsed) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'invalid cursor');
    offset = Number(parsed[1]);
  }
  const page = items.slice(offset, offset + AGGREGATE_PAGE_SIZE);
  const next = offset + AGGREGATE_PAGE_SIZE;
  return { [key]: page, ...(next < items.length ? { nextCursor: `o${next}` } : {}) };
}

/** Runs `work`, rejecting as soon as `signal` aborts (a worker that never answers does not hold the list). */
function abortable<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(`no answer within the deadline (${String(signal.reason)})`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work()
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (ProtocolError.isInstance(err)) {
    const code = (err.data as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string' && Object.hasOwn(ERROR_STATUS, code)) {
      return new AppError(code as ErrorCode, err.message, undefined, { cause: err });
    }
    return new AppError('upstream_error', err.message, undefined, { cause: err });
  }
  if (SdkError.isInstance(err)) {
    return new AppError('worker_unavailable', `the worker did not answer: ${err.message}`, undefined, { cause: err });
  }
  return new AppError('internal_error', 'internal error', undefined, { cause: err });
}

function toProtocolError(error: unknown): ProtocolError {
  if (ProtocolError.isInstance(error)) return error;
  const app = asAppError(error);
  return new ProtocolError(ProtocolErrorCode.InternalError, `${app.code}: ${app.message}`, { code: app.code });
}

/** One reserved key of a 2026-07-28 request's `_meta` envelope (the SDK types the envelope as opaque). */
function envelopeField(rc: ServerContext, key: string): unknown {
  return (rc.mcpReq.envelope as Record<string, unknown> | undefined)?.[key];
}

function ms(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

function requestIdOf(rc: ServerContext, ctx: AggregateContext): string {
  const given = rc.http?.req?.headers.get(REQUEST_ID_HEADER);
  if (given && isRequestId(given)) return given;
  return ctx.era === 'modern' && ctx.requestId ? ctx.requestId : randomUUID();
}
