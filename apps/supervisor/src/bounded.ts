/** `promise`, or undefined once `ms` have passed (the promise goes on; its failure is ignored). */
export function bounded<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  promise.catch(() => {});
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The Redis writes of a shutdown: each waits at most `ms`, and once one ran out Redis counts as away, so the
 * rest do not wait at all (they stay queued in the client and may still land). A shutdown with Redis gone
 * then takes one deadline, not one per write: stopping five workers wrote a dozen times (Docker's default
 * 10 s stop timeout would SIGKILL the supervisor before its workers are stopped).
 */
export class ShutdownWrites {
  private away = false;

  constructor(private readonly ms: number) {}

  async wait<T>(promise: Promise<T>): Promise<T | undefined> {
    promise.catch(() => {});
    if (this.away) return undefined;
    const result = await bounded(
      promise.then((value) => ({ value })),
      this.ms,
    );
    if (result === undefined) {
      this.away = true;
      return undefined;
    }
    return result.value;
  }
}
