import { describe, expect, it } from 'vitest';
import { runMain } from '../../../test/main-process.js';
import { redisUrl, testPrefix } from '../../../test/support.js';

describe('supervisor main', () => {
  it('refuses a bad variable at start, naming it, with exit code 2', async () => {
    const run = runMain('supervisor', { MCP_WORKER_MAX: 'many' });
    expect(await run.exited).toBe(2);
    expect(run.stderr).toMatch(/MCP_WORKER_MAX: must be a number/);
  });

  it('does nothing when MCP_SUPERVISOR_ENABLED is false', async () => {
    const run = runMain('supervisor', { MCP_SUPERVISOR_ENABLED: 'false' });
    expect(await run.exited).toBe(0);
  });

  it('starts, and exits 0 on SIGTERM after stopping', async () => {
    const run = runMain('supervisor', { REDIS_URL: redisUrl(), KEY_PREFIX: testPrefix() });
    await run.waitForEvent('supervisor.started');
    expect(await run.stop('SIGTERM')).toBe(0);
    expect(run.lines.map((l) => l.event)).toContain('supervisor.stopped');
  });
});
