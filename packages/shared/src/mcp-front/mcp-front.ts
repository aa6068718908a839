import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@mcp-hub/shared';
import { toWebRequest } from '@modelcontextprotocol/node';
// The legacy HTTP+SSE server transport exists only in SDK v1; v2 dropped it.
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import {
  createMcpHandler,
  isInitializeRequest,
  isLegacyRequest,
  type McpServer,
  type Server,
  type Transport,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import {
  DEFAULT_MCP_SESSIONS_MAX,
  DEFAULT_MCP_SESSIONS_PER_KEY,
  DEFAULT_MCP_SESSIONS_PER_PROJECT,
} from '../hub-config.js';
import { isRequestId, REQUEST_ID_HEADER } from '../ids.js';
import { BoundedEventStore, DEFAULT_MAX_EVENTS } from './event-store.js';
import { type FrontSession, SessionRegistry } from './session-registry.js';
import { jsonRpcError, safeJson, singleHeader, TRANSPORT_ERROR, writeResponse } from './web-response.js';

export type McpEra = 'modern' | 'legacy';

export interface McpServerContext {
  /** `modern`: one 2026-07-28 request; `legacy`: one 2025-era session (Streamable HTTP or HTTP+SSE). */
  era: McpEra;
  /** The `x-request-id` of the HTTP request that made the instance, when it carried one. */
  requestId?: string;
  /**
   * What the caller of `handleMcp` / `handleSse` said about who asks (the hub's principal), passed through
   * untouched; a 2025 session keeps the one of its `initialize` request.
   */
  auth?: unknown;
}

export type McpFrontServerFactory = (ctx: McpServerContext) => Server | McpServer;

export interface McpFrontOptions {
  serverFactory: McpFrontServerFactory;
  log: Logger;
  /** Interval of SSE keep-alive comments on every stream the front serves, in milliseconds. */
  keepAliveMs: number;
  /** Drops a 2025 session (Streamable HTTP) with no open request or stream for this long, in milliseconds; 0 never. */
  sessionIdleTtlMs?: number;
  /** Events kept per 2025 session for `Last-Event-ID` resumption (default 1000). */
  maxEventsPerSession?: number;
  /**
   * Whether a request's `auth` may use a session opened with `opened` (default: equal values). A session id
   * presented by another caller is answered 404, as if it did not exist.
   */
  sameCaller?: (opened: unknown, presented: unknown) => boolean;
  /** Most open 2025 sessions (Streamable HTTP and SSE) at once; more get 503 (default 1000). */
  maxSessions?: number;
  /** Most open sessions of one caller (`callerKey(auth)`); more get 429 (default 100). */
  maxSessionsPerCaller?: number;
  /** Names the caller of `auth` for the per-caller cap (default: `String(auth)`). */
  callerKey?: (auth: unknown) => string;
  /**
   * Most open sessions of one project (`projectKey(auth)`), so that one tenant's callers together cannot take
   * every slot of the front; more get 429 (default 200).
   */
  maxSessionsPerProject?: number;
  /** Names the project of `auth` for the per-project cap; undefined: no project cap (default: none). */
  projectKey?: (auth: unknown) => string | undefined;
  /**
   * Serves a 2026-07-28 request some other way (a worker forwards it to an upstream that speaks the same
   * era); undefined: the server factory serves it.
   */
  modernPassthrough?: (request: Request, body: unknown, requestId: string | undefined) => Promise<Response | undefined>;
  /** Told how long each 2025 session lasted (seconds) and its transport, when it closes: for metrics. */
  onSessionClosed?: (seconds: number, transport: 'streamable-http' | 'sse') => void;
}

export {
  DEFAULT_MCP_SESSIONS_MAX as DEFAULT_MAX_SESSIONS,
  DEFAULT_MCP_SESSIONS_PER_KEY as DEFAULT_MAX_SESSIONS_PER_CALLER,
  DEFAULT_MCP_SESSIONS_PER_PROJECT as DEFAULT_MAX_SESSIONS_PER_PROJECT,
};

/** Serves any number of downstream MCP clients, of every protocol era, from one server factory. */
export interface McpFront {
  /** `POST|GET|DELETE` on the dual-era Streamable HTTP endpoint (2026-07-28 stateless and 2025 sessions). */
  handleMcp(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown): Promise<void>;
  /** Legacy HTTP+SSE `GET /sse`: its `endpoint` event points at `${messagesPath}?sessionId=…`. */
  handleSse(req: IncomingMessage, res: ServerResponse, messagesPath: string, auth?: unknown): Promise<void>;
  /** Legacy HTTP+SSE `POST /messages?sessionId=…`. */
  handleMessages(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown): Promise<void>;
  /** Sends `notifications/tools/list_changed` to every connected client and open `subscriptions/listen` stream. */
  toolsChanged(): void;
  resourcesChanged(): void;
  promptsChanged(): void;
  /** Sends `notifications/resources/updated` to the `subscriptions/listen` streams that listen to `uri`. */
  resourceUpdated(uri: string): void;
  /** Open 2025 sessions: Streamable HTTP plus HTTP+SSE. */
  sessionCount(): number;
  /** The `auth` of every open 2025 session (one entry per session). */
  sessionAuths(): unknown[];
  /**
   * Ends the open sessions whose `auth` matches at once (their streams end, their ids answer 404, their slots
   * are free); answers how many.
   */
  closeSessions(match: (auth: unknown) => boolean, reason: string): Promise<number>;
  /** Ends every session and stream; later requests are answered 503. Memoized. */
  close(): Promise<void>;
}

/** Where `auth` rides in the SDK's AuthInfo for the stateless (2026-07-28) handler. */
const AUTH_EXTRA = 'mcpHubAuth';

/** A session id the spec allows: visible ASCII. */
const SESSION_ID_RE = /^[\x21-\x7E]{1,256}$/;

type ListChange = 'tools' | 'resources' | 'prompts';

/** The low-level Server of either SDK face (McpServer wraps one). */
function lowLevel(server: Server | McpServer): Server {
  return 'server' in server ? server.server : server;
}

function headerRequestId(value: string | null | undefined): string | undefined {
  return value && isRequestId(value) ? value : undefined;
}

/**
 * Creates an MCP front: 2026-07-28 traffic goes to the SDK's stateless handler (`legacy: 'reject'`), 2025-era
 * Streamable HTTP traffic to one sessionful transport per session (with resumption), and the legacy HTTP+SSE
 * transport to one SDK v1 SSE transport per stream. Every session gets its own server instance, so the
 * JSON-RPC ids and messages of one client never reach another.
 */
export function createMcpFront(options: McpFrontOptions): McpFront {
  const { serverFactory, log, keepAliveMs } = options;
  const maxEvents = options.maxEventsPerSession ?? DEFAULT_MAX_EVENTS;
  const sameCaller = options.sameCaller ?? ((opened: unknown, presented: unknown) => opened === presented);

  const sessions = new SessionRegistry(
    log,
    {
      maxSessions: options.maxSessions ?? DEFAULT_MCP_SESSIONS_MAX,
      maxPerCaller: options.maxSessionsPerCaller ?? DEFAULT_MCP_SESSIONS_PER_KEY,
      callerKey: options.callerKey ?? ((auth: unknown) => String(auth)),
      maxPerProject: options.maxSessionsPerProject ?? DEFAULT_MCP_SESSIONS_PER_PROJECT,
      projectKey: options.projectKey ?? (() => undefined),
    },
    options.sessionIdleTtlMs ?? 0,
    options.onSessionClosed,
  );
  let closing: Promise<void> | undefined;

  const modern = createMcpHandler(
    (ctx) =>
      serverFactory({
        era: 'modern',
        requestId: headerRequestId(ctx.requestInfo?.headers.get(REQUEST_ID_HEADER)),
        auth: ctx.authInfo?.extra?.[AUTH_EXTRA],
      }),
    {
      legacy: 'reject',
      keepAliveMs,
      onerror: (err) => log.debug({ event: 'mcp.modern.error', err }, 'modern MCP request refused or failed'),
    },
  );

  /** Opens a 2025 Streamable HTTP session for an `initialize` POST; it is kept only if initialize succeeds. */
  async function initializeSession(request: Request, parsedBody: unknown, auth: unknown): Promise<Response> {
    const refused = sessions.overCap(auth);
    if (refused) return refused;
    const server = lowLevel(
      serverFactory({ era: 'legacy', requestId: headerRequestId(request.headers.get(REQUEST_ID_HEADER)), auth }),
    );
    let session: FrontSession | undefined;
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      eventStore: new BoundedEventStore(maxEvents),
      keepAliveMs,
      onsessioninitialized: (id) => {
        session = {
          id,
          kind: 'streamable-http',
          server,
          auth,
          active: 0,
          lastSeen: Date.now(),
          closeTransport: () => server.close(),
        };
        sessions.open(session);
      },
    });
    const factoryOnClose = server.onclose;
    server.onclose = () => {
      factoryOnClose?.();
      if (session) sessions.forget(session, 'closed');
    };
    await server.connect(transport);
    const response = await transport.handleRequest(request, { parsedBody });
    if (!session) await server.close();
    return response;
  }

  async function routeLegacy(
    request: Request,
    parsedBody: unknown,
    auth: unknown,
    track: (s: FrontSession) => void,
  ): Promise<Response> {
    const sessionId = request.headers.get('mcp-session-id');
    if (sessionId !== null) {
      const session = SESSION_ID_RE.test(sessionId) ? sessions.get(sessionId) : undefined;
      // Unknown or expired (e.g. the worker restarted): 404 tells a 2025 client to initialize again.
      if (session?.kind !== 'streamable-http' || !sameCaller(session.auth, auth)) {
        return jsonRpcError(404, -32_001, 'Session not found');
      }
      track(session);
      const transport = (session.server.transport ?? undefined) as WebStandardStreamableHTTPServerTransport | undefined;
      if (!transport) return jsonRpcError(404, -32_001, 'Session not found');
      return transport.handleRequest(request, { parsedBody });
    }
    if (request.method === 'POST') {
      const messages = Array.isArray(parsedBody) ? parsedBody : [parsedBody];
      if (messages.some((message) => isInitializeRequest(message))) return initializeSession(request, parsedBody, auth);
    }
    return jsonRpcError(400, TRANSPORT_ERROR, 'Bad Request: Mcp-Session-Id header is required');
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown) {
    if (closing) {
      await writeResponse(res, jsonRpcError(503, TRANSPORT_ERROR, 'The server is shutting down'), undefined);
      return;
    }
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    let tracked: FrontSession | undefined;
    let response: Response;
    try {
      const request = await toWebRequest(req, parsedBody, { signal: gone.signal });
      const body = parsedBody ?? (request.method === 'POST' ? await safeJson(request.clone()) : undefined);
      if (await isLegacyRequest(request, body)) {
        response = await routeLegacy(request, body, auth, (session) => {
          tracked = session;
          session.active++;
          session.lastSeen = Date.now();
        });
      } else {
        const passed = await options.modernPassthrough?.(
          request,
          body,
          headerRequestId(request.headers.get(REQUEST_ID_HEADER)),
        );
        const authInfo =
          auth === undefined
            ? undefined
            : { token: '', clientId: 'mcp-hub', scopes: [], extra: { [AUTH_EXTRA]: auth } };
        response =
          passed ??
          (await modern.fetch(request, {
            ...(body === undefined ? {} : { parsedBody: body }),
            ...(authInfo ? { authInfo } : {}),
          }));
      }
    } catch (err) {
      const tooLarge = (err as { status?: unknown }).status === 413;
      if (!tooLarge) log.error({ event: 'mcp.request.failed', err }, 'MCP request failed');
      response = tooLarge
        ? jsonRpcError(413, TRANSPORT_ERROR, 'Request body too large')
        : jsonRpcError(500, -32_603, 'Internal error');
    }
    try {
      await writeResponse(res, response, gone.signal);
    } finally {
      if (tracked) {
        tracked.active--;
        tracked.lastSeen = Date.now();
      }
    }
  }

  async function handleSse(req: IncomingMessage, res: ServerResponse, messagesPath: string, auth?: unknown) {
    if (closing) {
      await writeResponse(res, jsonRpcError(503, TRANSPORT_ERROR, 'The server is shutting down'), undefined);
      return;
    }
    const refused = sessions.overCap(auth);
    if (refused) {
      await writeResponse(res, refused, undefined);
      return;
    }
    const server = lowLevel(
      serverFactory({ era: 'legacy', requestId: headerRequestId(singleHeader(req.headers[REQUEST_ID_HEADER])), auth }),
    );
    const transport = new SSEServerTransport(messagesPath, res);
    const session: FrontSession = {
      id: transport.sessionId,
      kind: 'sse',
      server,
      auth,
      active: 0,
      lastSeen: Date.now(),
      closeTransport: () => server.close(),
    };
    res.setHeader('x-accel-buffering', 'no');
    const keepAlive = setInterval(() => {
      if (!res.destroyed && !res.writableEnded) res.write(': keep-alive\n\n');
    }, keepAliveMs);
    keepAlive.unref();
    const factoryOnClose = server.onclose;
    server.onclose = () => {
      factoryOnClose?.();
      clearInterval(keepAlive);
      sessions.forget(session, 'closed');
    };
    sessions.open(session);
    try {
      // The v1 transport is structurally the v2 Transport (start, send, close and the three callbacks).
      await server.connect(transport as unknown as Transport);
    } catch (err) {
      clearInterval(keepAlive);
      sessions.forget(session, 'failed');
      log.warn({ event: 'mcp.session.start_failed', session_id: session.id, err }, 'an SSE session could not start');
      if (!res.headersSent) await writeResponse(res, jsonRpcError(500, -32_603, 'Internal error'), undefined);
      else res.end();
    }
  }

  async function handleMessages(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown) {
    const sessionId = new URL(req.url ?? '/', 'http://localhost').searchParams.get('sessionId');
    if (!sessionId) {
      await writeResponse(res, jsonRpcError(400, TRANSPORT_ERROR, 'Missing sessionId parameter'), undefined);
      return;
    }
    const session = sessions.get(sessionId);
    const transport = session?.kind === 'sse' ? session.server.transport : undefined;
    if (!session || !(transport instanceof SSEServerTransport) || !sameCaller(session.auth, auth)) {
      await writeResponse(res, jsonRpcError(404, -32_001, 'Session not found'), undefined);
      return;
    }
    session.lastSeen = Date.now();
    await transport.handlePostMessage(req, res, parsedBody);
  }

  function broadcast(change: ListChange): void {
    if (change === 'tools') modern.notify.toolsChanged();
    else if (change === 'resources') modern.notify.resourcesChanged();
    else modern.notify.promptsChanged();
    for (const session of sessions.values()) {
      const server = session.server;
      if (!server.transport) continue;
      const sent =
        change === 'tools'
          ? server.sendToolListChanged()
          : change === 'resources'
            ? server.sendResourceListChanged()
            : server.sendPromptListChanged();
      sent.catch((err: unknown) =>
        log.debug({ event: 'mcp.notify_failed', session_id: session.id, change, err }, 'list_changed not delivered'),
      );
    }
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      await sessions.close();
      try {
        await modern.close();
      } catch (err) {
        log.warn({ event: 'mcp.close_failed', err }, 'closing the modern MCP handler failed');
      }
    })();
    return closing;
  }

  return {
    handleMcp,
    handleSse,
    handleMessages,
    toolsChanged: () => broadcast('tools'),
    resourcesChanged: () => broadcast('resources'),
    promptsChanged: () => broadcast('prompts'),
    resourceUpdated: (uri) => modern.notify.resourceUpdated(uri),
    sessionCount: () => sessions.size,
    sessionAuths: () => [...sessions.values()].map((session) => session.auth),
    closeSessions: (match, reason) => sessions.endMatching(match, reason),
    close,
  };
}
