import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Registry, type RuntimeRecord, ServerInputSchema, specBodyFromInput } from '@mcp-hub/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, killByKeyPrefix, startSupervisorProcess, stopProcess, waitFor } from '../../../test/processes.js';
import { redisUrl, testRedis } from '../../../test/support.js';

/**
 * Defence in depth at spawn (security review of issue 10, finding A): whoever can write to Redis (a local
 * user of an open Redis, an older hub) skips the hub's stdio checks. A real supervisor with a stdio policy
 * must not run a spec written straight into Redis that breaks it: its worker refuses before spawning, says
 * why in `last_error`, exits 3, and the supervisor does not crash-loop it; once the spec is fixed it runs.
 */

const NODE = process.execPath;
const FIXTURES = dirname(fixture('echo-server.mjs'));
const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const work = mkdtempSync(join(tmpdir(), 'stdio-policy-at-spawn-'));
/** What every forbidden spec would create if it ran. */
const marker = join(work, 'pwned');
const evil = join(work, 'evil.cjs');
const writeMarker = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x')`;
const echoArgs = [fixture('echo-server.mjs')];
let supervisor: ChildProcess;

beforeAll(() => {
  writeFileSync(evil, writeMarker);
  supervisor = startSupervisorProcess(redisUrl(), t.prefix, {
    MCP_STDIO_ALLOWED_COMMANDS: `${NODE} ${FIXTURES}/*.mjs`,
    MCP_RESYNC_INTERVAL: '300ms',
    MCP_HEALTH_INTERVAL: '150ms',
    MCP_BACKOFF_BASE: '200ms',
    // A refused spec waits this long before its next try; a crash loop would start again at once.
    MCP_BACKOFF_MAX: '1h',
  });
});

afterAll(async () => {
  await stopProcess(supervisor);
  killByKeyPrefix(t.prefix);
  await t.cleanup();
  rmSync(work, { recursive: true, force: true });
});

/** Writes a spec straight into Redis (no hub), as a local user of an open Redis could. */
function write(id: string, config: Record<string, unknown>, mode: 'create' | 'replace' = 'create'): Promise<unknown> {
  return registry.upsertServer(specBodyFromInput(ServerInputSchema.parse({ id, transport: 'stdio', config })), mode);
}

function runtime(id: string): Promise<RuntimeRecord | null> {
  return registry.getRuntime(id);
}

describe('a worker re-checks the stdio policy before it spawns', () => {
  it('does not run a forbidden spec written straight into Redis; says why; does not crash-loop it', async () => {
    const attacks: [string, Record<string, unknown>, RegExp][] = [
      ['eval', { command: NODE, args: ['-e', writeMarker] }, /argument 1 "-e" does not match/],
      ['shell', { command: '/bin/sh', args: ['-c', `touch ${marker}`] }, /the command "\/bin\/sh" does not match/],
      ['node-options', { command: NODE, args: echoArgs, env: { NODE_OPTIONS: `--require ${evil}` } }, /NODE_OPTIONS/],
      ['ld-preload', { command: NODE, args: echoArgs, env: { LD_PRELOAD: join(work, 'evil.so') } }, /LD_PRELOAD/],
      ['ca', { command: NODE, args: echoArgs, env: { SSL_CERT_FILE: '/proc/self/environ' } }, /SSL_CERT_FILE/],
      ['cwd', { command: NODE, args: echoArgs, cwd: work }, /config\.cwd is not allowed/],
    ];
    for (const [id, config] of attacks) await write(id, config);

    for (const [id, , why] of attacks) {
      const record = await waitFor(`the refusal of ${id}`, async () => {
        const r = await runtime(id);
        return r?.status === 'backoff' && r.lastError ? r : null;
      });
      expect(record.lastError).toMatch(/the stdio policy of this worker refuses server/);
      expect(record.lastError).toMatch(why);
      // Not restarted at once as a crash would be: it waits the longest backoff (a spec change starts it).
      expect(record.restarts).toBe(1);
      expect(Date.parse(record.nextAttemptAt as string)).toBeGreaterThan(Date.now() + 30 * 60_000);
    }
    expect(existsSync(marker)).toBe(false);

    // Fixed, the same server starts at once and runs (so the refusals above were the policy, not a broken setup).
    await write('node-options', { command: NODE, args: echoArgs }, 'replace');
    const running = await waitFor('the fixed server running', async () => {
      const r = await runtime('node-options');
      return r?.status === 'running' ? r : null;
    });
    expect(running.lastError).toBeUndefined();
    expect(existsSync(marker)).toBe(false);
  });
});
