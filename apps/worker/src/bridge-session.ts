import { randomUUID } from 'node:crypto';
import { AppError } from '@mcp-hub/shared';
import { ProtocolError, ProtocolErrorCode, type Server, type ServerContext } from '@modelcontextprotocol/server';
import type { Subscriber } from './client-fanout.js';
import type { ClientChannel } from './client-requests.js';
import type { PassthroughMethod } from './upstream/upstream.js';
import type { UpstreamLink, UpstreamLinks } from './upstream-links.js';

/**
 * A 2025 downstream session as the worker's upstream side sees it: a client to ask outside any call (the
 * router), a receiver of log messages and resource updates (the fan-out), and the owner of a per-client
 * upstream session. It attaches to the upstream session that serves it at its first request, and leaves
 * everything when it closes.
 */
export interface BridgeSession extends Subscriber, ClientChannel {
  /** The session's calls in flight: a notification for the session rides on the newest one's stream. */
  readonly calls: Set<ServerContext>;
  /** Joins the router and fan-out of the upstream session that serves it (once). */
  attach(link: UpstreamLink): void;
  /** The upstream session that serves it, acquired for one action. */
  withLink<T>(action: (link: UpstreamLink) => Promise<T>): Promise<T>;
  /** The client said its roots changed: its upstream hears it. */
  rootsChanged(): Promise<void>;
}

export function bridgeSession(links: UpstreamLinks, server: Server): BridgeSession {
  const calls = new Set<ServerContext>();
  let attached: { link: UpstreamLink; leave: () => void } | undefined;
  const session: BridgeSession = {
    owner: `session:${randomUUID()}`,
    calls,
    logLevel: undefined,
    uris: new Set(),
    capabilities: () => server.getClientCapabilities(),
    ask: (method, params, signal) =>
      server.request({ method, ...(params ? { params } : {}) } as never, { signal }) as Promise<
        Record<string, unknown>
      >,
    notify: (method, params) => {
      if (method === 'notifications/elicitation/complete' || calls.size === 0) {
        return server.notification({ method, params });
      }
      // Inside a call the notification goes on that call's stream, which the client reads for sure.
      const newest = [...calls].at(-1) as ServerContext;
      return newest.mcpReq.notify({ method, params });
    },
    attach(link) {
      if (attached) return;
      const leave = link.router.openSession(session);
      link.fanout.add(session);
      attached = {
        link,
        leave: () => {
          leave();
          link.fanout.remove(session);
        },
      };
    },
    async withLink(action) {
      const { link, release } = await links.acquire(session.owner);
      try {
        session.attach(link);
        return await action(link);
      } finally {
        release();
      }
    },
    async rootsChanged() {
      await attached?.link.upstream.rootsChanged().catch(() => {});
    },
  };
  // In shared mode the session is reachable from its initialization, before any request of its own (a server
  // that lists roots right after its client connected).
  server.oninitialized = () => {
    if (links.mode === 'shared') session.attach(links.primary);
  };
  const previous = server.onclose;
  server.onclose = () => {
    previous?.();
    attached?.leave();
    links.drop(session.owner);
  };
  return session;
}

/** `logging/setLevel` and resource subscriptions: kept per session, shared upstream by the fan-out. */
export function handlePerSession(
  session: BridgeSession,
  server: Server,
  method: PassthroughMethod,
  toProtocolError: (error: unknown) => ProtocolError,
): void {
  const run = async (action: (link: UpstreamLink) => Promise<void>) => {
    try {
      await session.withLink(action);
    } catch (error) {
      if (ProtocolError.isInstance(error)) throw error;
      throw error instanceof AppError
        ? toProtocolError(error)
        : new ProtocolError(ProtocolErrorCode.InvalidParams, error instanceof Error ? error.message : String(error));
    }
    return {};
  };
  if (method === 'logging/setLevel') {
    server.setRequestHandler(method, (request) => run((link) => link.fanout.setLevel(session, request.params.level)));
  } else if (method === 'resources/subscribe') {
    server.setRequestHandler(method, (request) => run((link) => link.fanout.subscribe(session, request.params.uri)));
  } else if (method === 'resources/unsubscribe') {
    server.setRequestHandler(method, (request) => run((link) => link.fanout.unsubscribe(session, request.params.uri)));
  }
}
