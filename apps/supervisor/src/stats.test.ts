import type { WorkerHealth } from '@mcp-hub/shared';
import { describe, expect, it } from 'vitest';
import { SupervisorStats } from './stats.js';

const health = (over: Partial<WorkerHealth> = {}): WorkerHealth => ({
  serverId: 's',
  instance: 'i',
  pid: 1,
  specRev: 1,
  upstream: 'connected',
  tools: 1,
  activeCalls: 2,
  idleMs: 0,
  rssBytes: 50_000_000,
  cpuSeconds: 1.5,
  mcpSessions: 3,
  ...over,
});

describe('SupervisorStats: the workers own figures', () => {
  it('keeps the last figures of each worker until it exits or stops answering for three health intervals', () => {
    let now = 0;
    const stats = new SupervisorStats(5_000, () => now);
    stats.workerHealth('a', health());
    stats.workerHealth('b', health({ rssBytes: 1 }));
    expect(stats.toJSON().workers).toEqual({
      a: { rssBytes: 50_000_000, cpuSeconds: 1.5, mcpSessions: 3, activeCalls: 2 },
      b: { rssBytes: 1, cpuSeconds: 1.5, mcpSessions: 3, activeCalls: 2 },
    });
    stats.workerGone('b');
    expect(Object.keys(stats.toJSON().workers)).toEqual(['a']);
    now = 14_999; // 3 × 5 s, not yet
    expect(Object.keys(stats.toJSON().workers)).toEqual(['a']);
    now = 15_001;
    expect(stats.toJSON().workers).toEqual({});
  });

  it('ignores a worker of an older build without figures, and keeps at most 500 workers', () => {
    const stats = new SupervisorStats();
    stats.workerHealth('old', health({ rssBytes: undefined, cpuSeconds: undefined }));
    for (let i = 0; i < 600; i++) stats.workerHealth(`w${i}`, health());
    const workers = stats.toJSON().workers;
    expect(Object.keys(workers)).toHaveLength(500);
    expect(workers.old).toBeUndefined();
  });
});
