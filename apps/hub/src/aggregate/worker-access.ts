import { randomUUID } from 'node:crypto';
import type { Logger, RuntimeRecord, ServerSpec } from '@mcp-hub/shared';
import { AppError } from '@mcp-hub/shared';
import { InputFlows } from '@mcp-hub/shared/mcp-front';
import { SdkError } from '@modelcontextprotocol/client';
import {
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  LOG_LEVEL_META_KEY,
  type LoggingLevel,
  ProtocolError,
  type Server,
  type ServerContext,
} from '@modelcontextprotocol/server';
import type { WorkerClient, WorkerTarget } from '../workers/worker-client.js';
import type { WorkerLocator } from '../workers/worker-locator.js';
import {
  type AggregateSession,
  askable,
  type Downstream,
  envelopeField,
  type LinkOperation,
  toProtocolError,
} from './aggregate-support.js';
import { encodeResourceUri } from './resource-uris.js';
import { EVERY_CLIENT_CAPABILITY, type LinkNotification, type WorkerLink, WorkerLinks } from './worker-links.js';

const DEFAULT_MAX_LINKS = 1_000;
const DEFAULT_LINK_IDLE_MS = 60_000;
const LINK_CONNECT_TIMEOUT_MS = 10_000;
const FLOW_ROUND_TIMEOUT_MS = 120_000;
const MAX_FLOWS = 1_000;

export interface WorkerAccessDeps {
  client: WorkerClient;
  workers: WorkerLocator;
  log: Logger;
  /** Most hub→worker MCP sessions at once (default 1000). */
  maxLinks?: number;
  /** A hub→worker session leased to 2026-07-28 requests closes after this long unused, in ms (default 60 s). */
  linkIdleMs?: number;
}

/**
 * How the aggregated endpoint reaches workers for a downstream session or request: MCP sessions with the
 * workers (worker-links.ts), flows for what a worker asks the client (input_required rounds, or real requests
 * on a 2025 session), and the worker's notifications relayed to the right downstream client.
 */
export class WorkerAccess {
  readonly flows: InputFlows;
  readonly links: WorkerLinks;

  constructor(private readonly deps: WorkerAccessDeps) {
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

  /** Ends the flows waiting on clients and the sessions with workers (the hub is closing). */
  async close(): Promise<void> {
    this.flows.closeAll(new Error('the hub is shutting down'));
    await this.links.close();
  }

  openSession(server: Server): AggregateSession {
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
  async acquire(down: Downstream, rc: ServerContext, spec: ServerSpec, runtime: RuntimeRecord) {
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
  interactive(
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
  async onWorker<T>(
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
  linkFailed(link: WorkerLink, error: unknown): unknown {
    if (!ProtocolError.isInstance(error) && !(error instanceof AppError)) {
      this.links.discard(link, SdkError.isInstance(error) ? String(error.code) : 'request_failed');
    }
    return error;
  }

  relayNotification(link: WorkerLink, method: LinkNotification, params: Record<string, unknown>): void {
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
}
