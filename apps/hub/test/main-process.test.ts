import { describe, expect, it } from 'vitest';
import { runMain } from '../../../test/main-process.js';
import { redisUrl, testPrefix } from '../../../test/support.js';

describe('hub main', () => {
  it('refuses a bad variable at start, naming it, with exit code 2', async () => {
    const run = runMain('hub', { HUB_PORT: 'eighty', LOG_LEVEL: 'loud' });
    expect(await run.exited).toBe(2);
    expect(run.stderr).toMatch(/HUB_PORT: must be a port number/);
    expect(run.stderr).toMatch(/LOG_LEVEL/);
  });

  it('listens, logs JSON lines, and exits 0 on SIGTERM', async () => {
    const run = runMain('hub', { REDIS_URL: redisUrl(), KEY_PREFIX: testPrefix(), HUB_PORT: '0', HUB_AUTH: 'none' });
    const listening = await run.waitForEvent('hub.listening');
    expect(listening).toMatchObject({ service: 'hub', level: 'info', host: '127.0.0.1' });
    expect(await run.stop('SIGTERM')).toBe(0);
    expect(run.lines.map((l) => l.event)).toContain('hub.stopped');
  });
});
