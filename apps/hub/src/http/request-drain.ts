import type { Server, ServerResponse } from 'node:http';

/**
 * Counts the requests a server is answering (streams included, until they end), so that a closing hub can
 * wait for the calls in flight before it closes its connections: `server.close()` ends only connections that
 * are idle at that moment, and a keep-alive connection whose call ends later would hold it open for the
 * whole keep-alive timeout.
 */
export class RequestDrain {
  private active = 0;
  private readonly waiters = new Set<() => void>();

  constructor(server: Server) {
    server.on('request', (_req, res: ServerResponse) => {
      this.active++;
      // 'close' comes once per response: after it finished, or when its connection went away first.
      res.once('close', () => {
        this.active--;
        if (this.active === 0) for (const wake of this.waiters) wake();
      });
    });
  }

  /** Requests being answered. */
  get inFlight(): number {
    return this.active;
  }

  /** Resolves true once no request is in flight, or false when `deadlineMs` passed first. */
  idle(deadlineMs: number): Promise<boolean> {
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(idle);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), deadlineMs);
      this.waiters.add(wake);
    });
  }
}
