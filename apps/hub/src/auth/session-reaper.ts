import type { Logger } from '@mcp-hub/shared';
import type { McpFront } from '@mcp-hub/shared/mcp-front';
import type { Principal } from '../plugins/auth.js';

export interface SessionReaperOptions {
  front: McpFront;
  /** Whether a key still authenticates (not revoked, not expired, not past its rotation grace, member kept). */
  keyActive(keyId: string): Promise<boolean>;
  log: Logger;
  /** How often open sessions' keys are checked, in milliseconds. */
  intervalMs: number;
}

/**
 * Ends the MCP sessions of keys that no longer authenticate. Every request on a session is authenticated
 * again, so a dead key could not use its sessions anyway; but an open session holds a slot of the session
 * caps (and an SSE stream) until it idles out, so a revoked key would keep its project's or the hub's slots
 * for up to 30 minutes. `sweep()` runs after every key change made through this hub (revoke, rotate, member
 * removal), and on a timer: that covers the end of a rotation grace, expiry, and changes made through
 * another hub replica (within `intervalMs`).
 */
export class SessionReaper {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<number> | undefined;

  constructor(private readonly opts: SessionReaperOptions) {
    this.timer = setInterval(() => void this.sweep(), opts.intervalMs);
    this.timer.unref();
  }

  /** Checks the key of every open session once and ends those of dead keys; answers how many ended. */
  sweep(): Promise<number> {
    // One sweep at a time; one asked for during another runs after it (it may have read the key before the revoke).
    if (this.running) return this.running.then(() => this.sweep());
    this.running = this.sweepOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async sweepOnce(): Promise<number> {
    const { front, keyActive, log } = this.opts;
    const keyIds = new Set<string>();
    for (const auth of front.sessionAuths()) {
      const principal = auth as Principal | undefined;
      if (principal?.kind === 'key') keyIds.add(principal.keyId);
    }
    const dead = new Set<string>();
    await Promise.all(
      [...keyIds].map(async (keyId) => {
        try {
          if (!(await keyActive(keyId))) dead.add(keyId);
        } catch (err) {
          // Redis unreachable: keep the sessions (their requests are checked anyway) and look again next time.
          log.warn({ event: 'mcp.session.key_check_failed', key_id: keyId, err }, 'could not check a session key');
        }
      }),
    );
    if (dead.size === 0) return 0;
    const closed = await front.closeSessions((auth) => {
      const principal = auth as Principal | undefined;
      return principal?.kind === 'key' && dead.has(principal.keyId);
    }, 'key_revoked');
    log.info(
      { event: 'mcp.session.reaped', keys: [...dead], sessions: closed },
      'ended the MCP sessions of keys that no longer authenticate',
    );
    return closed;
  }
}
