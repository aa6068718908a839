/**
 * Runs at most one task per key at a time. A key enqueued while its task runs is run once more afterwards
 * (requests coalesce), which is what a level-triggered reconciler wants: the rerun sees the latest state.
 */
export class KeyedSerialQueue {
  private readonly running = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();

  constructor(
    private readonly task: (key: string) => Promise<void>,
    private readonly onError: (key: string, err: unknown) => void,
  ) {}

  enqueue(key: string): Promise<void> {
    const current = this.running.get(key);
    if (current) {
      this.dirty.add(key);
      return current;
    }
    const run = this.drain(key).finally(() => this.running.delete(key));
    this.running.set(key, run);
    return run;
  }

  /** Resolves when nothing is running. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  get size(): number {
    return this.running.size;
  }

  private async drain(key: string): Promise<void> {
    do {
      this.dirty.delete(key);
      try {
        await this.task(key);
      } catch (err) {
        this.onError(key, err);
      }
    } while (this.dirty.has(key));
  }
}
