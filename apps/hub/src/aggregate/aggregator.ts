import { randomUUID } from 'node:crypto';
import { AppError, isRequestId, type Logger, REQUEST_ID_HEADER, type Registry, type ServerSpec } from '@mcp-hub/shared';
import { progressSender } from '@mcp-hub/shared/mcp-front';
import {
  type CallToolResult,
  ProtocolError,
  ProtocolErrorCode,
  Server,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import type { CallGuard } from '../access/call-guard.js';
import { canSee, type Principal } from '../access/principal.js';
import type { RegistryCache } from '../registry-cache.js';
import type { WorkerClient } from '../workers/worker-client.js';
import type { WorkerLocator } from '../workers/worker-locator.js';
import { Catalog, type CatalogServer } from './catalog.js';

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
}

/** What the MCP front hands the server factory for one session or request. */
export interface AggregateContext {
  era: 'modern' | 'legacy';
  requestId?: string;
  /** The caller, as the auth layer found them. */
  auth?: unknown;
}

const SERVER_INFO = { name: 'mcp-hub', version: '0.1.0' };

/** The tool fields clients see (the registry's own `rev` and `digest` stay inside). */
function publicTool(name: string, tool: CatalogServer['tools'][number]): Tool {
  const { rev: _rev, digest: _digest, name: _name, ...rest } = tool;
  return { ...rest, name } as Tool;
}

/**
 * The hub's own MCP server behind the aggregated `/mcp` and `/sse`: the tools of every enabled server the
 * caller may see, prefixed with the server's namespace, each call routed to the owning worker. Only tools
 * are aggregated; resources and prompts are served per server (`/mcp/<id>`).
 */
export class Aggregator {
  private servers: { at: number; value: Promise<CatalogServer[]> } | undefined;
  private readonly catalogs = new Map<string, Promise<Catalog>>();
  private readonly warned = new Set<string>();

  constructor(private readonly deps: AggregatorDeps) {}

  /** Drops what was built from the registry (after a server or tool event), so the next list is fresh. */
  invalidate(): void {
    this.servers = undefined;
    this.catalogs.clear();
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
    const server = new Server(SERVER_INFO, { capabilities: { tools: { listChanged: true } } });
    server.setRequestHandler('tools/list', async () => {
      const catalog = await this.catalogFor(principal);
      return { tools: catalog.entries.map((e) => publicTool(e.name, e.tool)) };
    });
    server.setRequestHandler('tools/call', async (request, rc) => {
      const requestId = requestIdOf(rc, ctx);
      return this.call(principal, request.params.name, request.params.arguments ?? {}, requestId, rc);
    });
    return server;
  };

  private async call(
    principal: Principal,
    name: string,
    args: Record<string, unknown>,
    requestId: string,
    rc: ServerContext,
  ): Promise<CallToolResult> {
    const { cache, guard, workers, log } = this.deps;
    const entry = (await this.catalogFor(principal)).resolve(name);
    if (!entry) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown tool "${name}"`);
    const server = entry.serverId;
    const tool = entry.tool.name;
    const started = performance.now();
    log.info({ event: 'tool.call.accepted', request_id: requestId, server, tool, via: 'mcp' }, 'tool call accepted');
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
    try {
      done = await guard.admit(principal, server, tool);
      const runtime = await workers.running(server);
      const result = await this.deps.client.callTool({
        target: { serverId: server, runtime },
        tool,
        args,
        requestId,
        signal: rc.mcpReq.signal,
        timeoutMs: spec.timeoutMs,
        onProgress: progressSender(rc),
      });
      done(!result.isError);
      log.info(
        { event: 'tool.call.done', request_id: requestId, server, tool, via: 'mcp', latency: ms(started) },
        'tool call done',
      );
      return result as CallToolResult;
    } catch (err) {
      done?.(false);
      const error =
        err instanceof AppError ? err : new AppError('internal_error', 'internal error', undefined, { cause: err });
      log.warn(
        {
          event: 'tool.call.failed',
          request_id: requestId,
          server,
          tool,
          via: 'mcp',
          code: error.code,
          error: error.message,
        },
        'tool call failed',
      );
      if (rc.mcpReq.signal.aborted)
        throw new ProtocolError(ProtocolErrorCode.InternalError, 'the request was cancelled');
      if (error.code === 'rate_limited') {
        throw new ProtocolError(ProtocolErrorCode.InternalError, error.message, {
          code: error.code,
          ...(error.details as object),
        });
      }
      // Execution failures are tool results the model can read, as MCP advises.
      return { content: [{ type: 'text', text: `${error.code}: ${error.message}` }], isError: true };
    }
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

function ms(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

function requestIdOf(rc: ServerContext, ctx: AggregateContext): string {
  const given = rc.http?.req?.headers.get(REQUEST_ID_HEADER);
  if (given && isRequestId(given)) return given;
  return ctx.era === 'modern' && ctx.requestId ? ctx.requestId : randomUUID();
}
