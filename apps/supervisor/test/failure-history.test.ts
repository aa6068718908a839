import { MAX_FAILURE_ERROR_CHARS, MAX_FAILURES, Registry } from '@mcp-hub/shared';
import { afterAll, describe, expect, it } from 'vitest';
import { echoServer } from '../../../test/processes.js';
import { testRedis } from '../../../test/support.js';
import { RuntimeStore } from '../src/runtime-store.js';

// Issue 15, item 5: the failure history of a server is bounded, newest first, and goes with the server.
const t = testRedis();
const registry = new Registry(t.redis, t.keys);
afterAll(() => t.cleanup());

describe('failure history', () => {
  it(`keeps the last ${MAX_FAILURES} failures, newest first, with the error text cut to ${MAX_FAILURE_ERROR_CHARS} characters`, async () => {
    const store = new RuntimeStore(t.redis, t.keys, 'sup-f');
    for (let i = 0; i < MAX_FAILURES + 5; i++) {
      await store.recordFailure('fh-bound', { reason: 'exited', code: i, signal: null, error: 'x'.repeat(2_000) });
    }
    const failures = await registry.listFailures('fh-bound');
    expect(failures).toHaveLength(MAX_FAILURES);
    expect(failures.map((f) => f.code)).toEqual(Array.from({ length: MAX_FAILURES }, (_, i) => MAX_FAILURES + 4 - i));
    expect(failures[0]?.error).toHaveLength(MAX_FAILURE_ERROR_CHARS);
  });

  it('skips a stored record that does not parse, and is deleted with its server', async () => {
    const store = new RuntimeStore(t.redis, t.keys, 'sup-f');
    await registry.upsertServer(echoServer('fh-gone'), 'create');
    await store.recordFailure('fh-gone', { reason: 'start_timeout', error: 'not healthy within 30000 ms' });
    await t.redis.lpush(t.keys.failures('fh-gone'), '{"not":"a failure"}');
    const failures = await registry.listFailures('fh-gone');
    expect(failures.map((f) => f.reason)).toEqual(['start_timeout']);
    await registry.deleteServer('fh-gone');
    expect(await t.redis.exists(t.keys.failures('fh-gone'))).toBe(0);
  });
});
