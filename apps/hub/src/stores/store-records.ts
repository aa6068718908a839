import { AppError, type InvalidRecordHandler } from '@mcp-hub/shared';
import type { z } from 'zod';

const MAX_CAS_ATTEMPTS = 5;

/**
 * What the project and key stores share: parsing what Redis holds (a broken record is reported and skipped,
 * never cast), the compare-and-set retry loop and the clock (epoch milliseconds).
 */
export abstract class RedisRecordStore {
  constructor(
    protected readonly clock: () => number,
    private readonly onInvalid: InvalidRecordHandler,
  ) {}

  /** Runs a read-then-compare-and-set step until it applies (the step returns undefined when it lost a race). */
  protected async retry<T>(step: () => Promise<T | undefined>): Promise<T> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const result = await step();
      if (result !== undefined) return result;
    }
    throw new AppError('revision_conflict', 'the record kept changing while being written; retry');
  }

  protected nowIso(): string {
    return new Date(this.clock()).toISOString();
  }

  protected parseAll<T>(key: string, all: Record<string, string>, schema: z.ZodType<T>): T[] {
    const out: T[] = [];
    for (const [field, json] of Object.entries(all)) {
      const value = this.parse(key, field, json, schema);
      if (value) out.push(value);
    }
    return out;
  }

  protected parse<T>(key: string, field: string, json: string, schema: z.ZodType<T>): T | null {
    try {
      return schema.parse(JSON.parse(json));
    } catch (error) {
      this.onInvalid(key, field, error);
      return null;
    }
  }
}

export function projectNotFound(id: string): AppError {
  return new AppError('project_not_found', `project "${id}" not found`);
}

export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortById<T extends { id: string }>(list: T[]): T[] {
  return list.sort((a, b) => compare(a.id, b.id));
}
