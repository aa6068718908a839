import type { Logger } from '@mcp-hub/shared';
import type { Server } from '@modelcontextprotocol/server';
import { jsonRpcError, TRANSPORT_ERROR } from './web-response.js';

/** One sessionful downstream MCP session: a 2025 Streamable HTTP session or a legacy SSE stream. */
export interface FrontSession {
  id: string;
  kind: 'streamable-http' | 'sse';
  server: Server;
  /** The `auth` of the request that opened the session. */
  auth: unknown;
  /** HTTP requests (and streams) of this session in flight: an idle sweep never drops a busy session. */
  active: number;
  lastSeen: number;
  closeTransport(): Promise<void>;
}

export interface SessionLimits {
  maxSessions: number;
  maxPerCaller: number;
  callerKey: (auth: unknown) => string;
  maxPerProject: number;
  projectKey: (auth: unknown) => string | undefined;
}

/**
 * The open sessionful sessions of one MCP front: the caps on opening one, logging their open and close, and
 * the idle sweep of Streamable HTTP sessions (`idleTtlMs`, 0 = never).
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, FrontSession>();
  private readonly openedAt = new WeakMap<FrontSession, number>();
  private readonly sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly limits: SessionLimits,
    idleTtlMs: number,
    /** Told how long each session lasted, in seconds, when it closes (metrics). */
    private readonly onClosed?: (seconds: number, transport: FrontSession['kind']) => void,
  ) {
    this.sweepTimer =
      idleTtlMs > 0
        ? setInterval(
            () => {
              const now = Date.now();
              for (const session of this.sessions.values()) {
                if (session.kind === 'streamable-http' && session.active === 0 && now - session.lastSeen > idleTtlMs) {
                  void this.end(session, 'idle');
                }
              }
            },
            Math.max(1_000, Math.min(idleTtlMs / 2, 60_000)),
          )
        : undefined;
    this.sweepTimer?.unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  get(id: string): FrontSession | undefined {
    return this.sessions.get(id);
  }

  values(): IterableIterator<FrontSession> {
    return this.sessions.values();
  }

  /** The refusal for a new session over a cap (sessions hold memory: a server and an event store each). */
  overCap(auth: unknown): Response | undefined {
    const { sessions, log } = this;
    const { maxSessions, maxPerCaller, callerKey, maxPerProject, projectKey } = this.limits;
    if (sessions.size >= maxSessions) {
      log.warn(
        { event: 'mcp.session.refused', reason: 'max_sessions', sessions: sessions.size },
        'too many MCP sessions',
      );
      return jsonRpcError(503, TRANSPORT_ERROR, 'Too many open sessions; retry later', { 'retry-after': '5' });
    }
    const project = projectKey(auth);
    if (project !== undefined) {
      let ours = 0;
      for (const session of sessions.values()) if (projectKey(session.auth) === project) ours++;
      if (ours >= maxPerProject) {
        log.warn(
          { event: 'mcp.session.refused', reason: 'max_sessions_per_project', project, sessions: ours },
          'project has too many MCP sessions',
        );
        return jsonRpcError(
          429,
          TRANSPORT_ERROR,
          `Too many open sessions for this project (${maxPerProject}); close some`,
        );
      }
    }
    const caller = callerKey(auth);
    let mine = 0;
    for (const session of sessions.values()) if (callerKey(session.auth) === caller) mine++;
    if (mine >= maxPerCaller) {
      log.warn(
        { event: 'mcp.session.refused', reason: 'max_sessions_per_caller', sessions: mine },
        'caller has too many MCP sessions',
      );
      return jsonRpcError(429, TRANSPORT_ERROR, `Too many open sessions for this caller (${maxPerCaller}); close some`);
    }
    return undefined;
  }

  open(session: FrontSession): void {
    this.sessions.set(session.id, session);
    this.openedAt.set(session, performance.now());
    this.log.info(
      { event: 'mcp.session.open', session_id: session.id, era: 'legacy', transport: session.kind },
      'MCP session opened',
    );
  }

  forget(session: FrontSession, reason: string): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    const opened = this.openedAt.get(session);
    if (opened !== undefined) this.onClosed?.((performance.now() - opened) / 1000, session.kind);
    this.log.info(
      { event: 'mcp.session.close', session_id: session.id, era: 'legacy', transport: session.kind, reason },
      'MCP session closed',
    );
  }

  async end(session: FrontSession, reason: string): Promise<void> {
    this.forget(session, reason);
    try {
      await session.closeTransport();
    } catch (err) {
      this.log.warn(
        { event: 'mcp.session.close_failed', session_id: session.id, err },
        'closing an MCP session failed',
      );
    }
  }

  /** Ends the sessions whose `auth` matches; returns how many. */
  async endMatching(match: (auth: unknown) => boolean, reason: string): Promise<number> {
    const matched = [...this.sessions.values()].filter((session) => match(session.auth));
    await Promise.allSettled(matched.map((session) => this.end(session, reason)));
    return matched.length;
  }

  /** Stops the idle sweep and ends every session. */
  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.endMatching(() => true, 'shutdown');
  }
}
