import { keyCaller, type Logger } from '@mcp-hub/shared';
import type { McpFront } from '@mcp-hub/shared/mcp-front';
import type { Principal } from './principal.js';

/** Keys remembered with per-server sessions, at most; past it the least recently seen is dropped. */
export const DEFAULT_MAX_REMEMBERED_KEYS = 10_000;

export interface SessionReaperOptions {
  front: McpFront;
  /** Whether a key still authenticates (not revoked, not expired, not past its rotation grace, member kept). */
  keyActive(keyId: string): Promise<boolean>;
  /**
   * Ends a caller's MCP sessions in a server's worker; answers how many ended (0 when no worker runs). Throws
   * when the worker could not be asked (down, timed out): the sweep tries again next time.
   */
  closeWorkerSessions(serverId: string, caller: string): Promise<number>;
  /** The ids of a project's servers (a key's per-server sessions can only be on those). */
  projectServers(project: string): Promise<string[]>;
  log: Logger;
  /** How often open sessions' keys are checked, in milliseconds. */
  intervalMs: number;
  /** Most keys remembered with per-server sessions (default DEFAULT_MAX_REMEMBERED_KEYS). */
  maxRememberedKeys?: number;
}

/**
 * Ends the MCP sessions of keys that no longer authenticate. Every request on a session is authenticated
 * again, so a dead key could not use its sessions anyway; but an open session holds a slot of the session
 * caps (and an SSE stream) until it idles out, so a revoked key would keep its project's or the hub's slots
 * for up to 30 minutes. `sweep()` runs after every key change made through this hub (revoke, rotate), and on
 * a timer: that covers the end of a rotation grace, expiry, and changes made through another hub replica
 * (within `intervalMs`).
 *
 * Two kinds of sessions: the aggregated ones live in this hub's front; the per-server ones (`/mcp/<id>`,
 * `/sse/<id>`) live in each server's worker, bound to the caller the hub named. For those the reaper keeps a
 * bounded map of the keys it proxied sessions for and on which servers (plus, for a key revoked or rotated
 * here, every server of its project), and asks those servers' workers to end a dead key's sessions. A worker
 * that cannot be asked keeps its entry and is asked again at the next sweep.
 */
export class SessionReaper {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<number> | undefined;
  private next: Promise<number> | undefined;
  /** keyId → ids of the servers whose workers may hold sessions of that key; oldest entries first. */
  private readonly remembered = new Map<string, Set<string>>();
  private readonly maxRememberedKeys: number;

  constructor(private readonly opts: SessionReaperOptions) {
    this.maxRememberedKeys = opts.maxRememberedKeys ?? DEFAULT_MAX_REMEMBERED_KEYS;
    this.timer = setInterval(() => void this.sweep(), opts.intervalMs);
    this.timer.unref();
  }

  /** Notes that a key opened or used an MCP session on a server's worker (called on the request path). */
  remember(keyId: string, serverId: string): void {
    const servers = this.remembered.get(keyId);
    // Re-inserted, so that the map's order is least recently seen first and the cap drops the stalest key.
    if (servers) this.remembered.delete(keyId);
    this.remembered.set(keyId, (servers ?? new Set()).add(serverId));
    if (this.remembered.size > this.maxRememberedKeys) {
      const oldest = this.remembered.keys().next().value as string;
      this.remembered.delete(oldest);
      this.opts.log.warn(
        { event: 'mcp.session.key_forgotten', key_id: oldest, max: this.maxRememberedKeys },
        'too many keys with per-server sessions: the oldest is no longer watched',
      );
    }
  }

  /**
   * A key of `project` was revoked or rotated through this hub: its sessions may be on any server of the
   * project (opened through another replica too), so every one is watched; then a sweep ends what is dead.
   */
  async keyChanged(keyId: string, project: string): Promise<number> {
    try {
      for (const serverId of await this.opts.projectServers(project)) this.remember(keyId, serverId);
    } catch (err) {
      // Redis unreachable: the servers this hub proxied for the key are still watched.
      this.opts.log.warn(
        { event: 'mcp.session.key_check_failed', key_id: keyId, err },
        "could not list the servers of a key's project",
      );
    }
    return this.sweep();
  }

  /** Checks the key of every open session once and ends those of dead keys; answers how many ended. */
  sweep(): Promise<number> {
    // One sweep at a time; one asked for during another runs once after it (it may have read the key before
    // the revoke), shared by every ask meanwhile: a sweep slowed by a worker that does not answer must not
    // pile up timer ticks.
    if (this.running) {
      this.next ??= this.running.then(() => {
        this.next = undefined;
        return this.sweep();
      });
      return this.next;
    }
    this.running = this.sweepOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async sweepOnce(): Promise<number> {
    const { front, log } = this.opts;
    const aggregated = new Set<string>();
    for (const auth of front.sessionAuths()) {
      const principal = auth as Principal | undefined;
      if (principal?.kind === 'key') aggregated.add(principal.keyId);
    }
    const dead = await this.deadKeys(new Set([...aggregated, ...this.remembered.keys()]));
    if (dead.size === 0) return 0;

    let closed = 0;
    const deadAggregated = [...dead].filter((keyId) => aggregated.has(keyId));
    if (deadAggregated.length > 0) {
      const ended = await front.closeSessions((auth) => {
        const principal = auth as Principal | undefined;
        return principal?.kind === 'key' && dead.has(principal.keyId);
      }, 'key_revoked');
      closed += ended;
      log.info(
        { event: 'mcp.session.reaped', keys: deadAggregated, sessions: ended },
        'ended the MCP sessions of keys that no longer authenticate',
      );
    }
    const ended = await Promise.all([...dead].map((keyId) => this.closeOnWorkers(keyId)));
    return closed + ended.reduce((sum, n) => sum + n, 0);
  }

  private async deadKeys(keyIds: Set<string>): Promise<Set<string>> {
    const dead = new Set<string>();
    await Promise.all(
      [...keyIds].map(async (keyId) => {
        try {
          if (!(await this.opts.keyActive(keyId))) dead.add(keyId);
        } catch (err) {
          // Redis unreachable: keep the sessions (their requests are checked anyway) and look again next time.
          this.opts.log.warn(
            { event: 'mcp.session.key_check_failed', key_id: keyId, err },
            'could not check a session key',
          );
        }
      }),
    );
    return dead;
  }

  /** Ends a dead key's sessions on the workers of its remembered servers; forgets each server that answered. */
  private async closeOnWorkers(keyId: string): Promise<number> {
    const { closeWorkerSessions, log } = this.opts;
    const servers = this.remembered.get(keyId);
    if (!servers) return 0;
    const counts = await Promise.all(
      [...servers].map(async (serverId) => {
        try {
          const ended = await closeWorkerSessions(serverId, keyCaller(keyId));
          servers.delete(serverId);
          if (ended > 0) {
            log.info(
              { event: 'mcp.session.reaped', server: serverId, key_id: keyId, sessions: ended },
              "ended a dead key's MCP sessions on a server's worker",
            );
          }
          return ended;
        } catch (err) {
          log.warn(
            { event: 'mcp.session.reap_failed', server: serverId, key_id: keyId, err },
            "could not end a dead key's MCP sessions on a server's worker; trying again at the next sweep",
          );
          return 0;
        }
      }),
    );
    // Servers may have been remembered again meanwhile (a request already past authentication): keep those.
    if (servers.size === 0 && this.remembered.get(keyId) === servers) this.remembered.delete(keyId);
    return counts.reduce((sum, n) => sum + n, 0);
  }
}
