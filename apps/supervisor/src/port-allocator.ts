import getPort, { portNumbers } from 'get-port';
import type { RuntimeStore } from './runtime-store.js';

const MAX_CLAIM_ATTEMPTS = 50;

export class NoFreePortError extends Error {
  constructor(base: number, range: number) {
    super(`no free port in ${base}-${base + range - 1}`);
    this.name = 'NoFreePortError';
  }
}

/**
 * Hands out worker ports in [basePort, basePort + range): free on this host (get-port) and claimed in Redis
 * (a set of held ports plus a short lock), so two supervisors never hand out the same port.
 */
export class PortAllocator {
  constructor(
    private readonly store: RuntimeStore,
    private readonly host: string,
    private readonly basePort: number,
    private readonly range: number,
  ) {}

  /** Claims a port; throws NoFreePortError when the range is exhausted. */
  async claim(): Promise<number> {
    const exclude = await this.store.heldPorts();
    const last = this.basePort + this.range - 1;
    for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
      const port = await getPort({ host: this.host, port: portNumbers(this.basePort, last), exclude });
      // get-port falls back to a random port when none of the preferred ones is free.
      if (port < this.basePort || port > last) break;
      if (await this.store.claimPort(port)) return port;
      exclude.add(port);
    }
    throw new NoFreePortError(this.basePort, this.range);
  }

  release(port: number): Promise<void> {
    return this.store.releasePort(port);
  }
}
