import { readFileSync } from 'node:fs';
import type { ServerSpecBody } from '@mcp-hub/shared';
import { expect } from 'vitest';
import { type AnyClient, callTool, callWithProgress, textOf } from './mcp-clients.js';
import { fixture, waitFor } from './processes.js';

/**
 * Driving the echo fixture (fixtures/echo-server.mjs) from a test, whether it runs as a stdio child or in-process:
 * its spec, what it recorded, and the checks several layers make through it (cancellation, concurrent clients).
 */

/**
 * Between the fixture's progress steps (`intervalMs`, and before its answer). The SDK's client drops a progress
 * notification that it reads in the same turn as the answer (the answer removes the handler first): when a loaded
 * host delays a process this long, the steps pile up and all but the first can be lost. Tests hold on to "at least
 * two of three", so losing one takes a stall of two steps.
 */
export const FIXTURE_STEP_MS = 150;

/** The spec body of a stdio server running the echo fixture (`env` goes to the fixture). */
export function echoServerSpec(
  id: string,
  extra: Partial<ServerSpecBody> & { env?: Record<string, string> } = {},
): ServerSpecBody {
  const { env = {}, ...rest } = extra;
  return {
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('echo-server.mjs')], env },
    tags: [],
    enabled: true,
    timeoutMs: 10_000,
    ...rest,
  } as ServerSpecBody;
}

/** Counts the events a stdio fixture wrote to its FIXTURE_EVENTS_FILE (0 before the file exists). */
export function fixtureEventCounter(file: string): (event: string) => number {
  return (event) => {
    try {
      return readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '' && (JSON.parse(line) as { event: string }).event === event).length;
    } catch {
      return 0;
    }
  };
}

/**
 * Starts the fixture's `slow` tool (20 s) as `tool` on `client`, cancels it once the fixture started it, and
 * waits for the fixture to record the cancellation: it does only when `notifications/cancelled` reaches it
 * before the 20 s are up, so the call can only end in time by being cancelled.
 */
export async function expectSlowCallCancelled(
  client: AnyClient,
  tool: string,
  count: (event: string) => number,
): Promise<void> {
  const startedBefore = count('started');
  const cancelledBefore = count('cancelled');
  const controller = new AbortController();
  const call = callTool(client, tool, { ms: 20_000 }, controller.signal);
  await waitFor('the call to start upstream', () => count('started') > startedBefore);
  controller.abort();
  await expect(call).rejects.toThrow();
  await waitFor('the fixture to see the cancellation', () => count('cancelled') > cancelledBefore);
}

/**
 * Two clients call at once, each a `progress` run of its own length and an echo: each must get its own results,
 * and only its own progress (told apart by their totals). `stepMs` apart, so at most the last step is lost.
 */
export async function expectClientsKeptApart(a: AnyClient, b: AnyClient, stepMs: number): Promise<void> {
  const [runA, runB, echoA, echoB] = await Promise.all([
    callWithProgress(a, 'progress', { steps: 4, intervalMs: stepMs }),
    callWithProgress(b, 'progress', { steps: 2, intervalMs: stepMs }),
    callTool(a, 'echo', { message: 'from a' }),
    callTool(b, 'echo', { message: 'from b' }),
  ]);
  expect(runA.text).toBe('done in 4 steps');
  expect(runB.text).toBe('done in 2 steps');
  expect(runA.progress.length).toBeGreaterThanOrEqual(2);
  expect(runB.progress.length).toBeGreaterThanOrEqual(1);
  expect(runA.progress.every((p) => p.total === 4)).toBe(true);
  expect(runB.progress.every((p) => p.total === 2)).toBe(true);
  expect(textOf(echoA)).toBe('from a');
  expect(textOf(echoB)).toBe('from b');
}
