import { AppError } from '@mcp-hub/shared';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/processes.js';
import { testRedis } from '../../../test/support.js';
import { type AuditRecord, AuditStream, redactAuditValue } from '../src/stores/audit-stream.js';

const t = testRedis();
const audit = new AuditStream(t.redis, t.keys, { maxLength: 1_000 });

afterAll(() => t.cleanup());
beforeEach(async () => {
  await t.redis.del(t.keys.audit);
});

function record(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    actor: { keyId: 'key1', member: 'ann@example.com' },
    action: 'server.update',
    resource: { type: 'server', id: 'files' },
    project: 'acme',
    requestId: 'req-1',
    ...overrides,
  };
}

describe('AuditStream', () => {
  it('appends to the stream and reads entries back newest first with id and ISO ts', async () => {
    const before = Date.now();
    const first = await audit.append(record({ requestId: 'r1' }));
    const second = await audit.append(record({ requestId: 'r2', action: 'server.delete' }));
    expect(first.id).toMatch(/^\d+-\d+$/);
    expect(Date.parse(first.ts)).toBeGreaterThanOrEqual(before - 1_000);
    expect(await t.redis.xlen(t.keys.audit)).toBe(2);

    const entries = await audit.query();
    expect(entries.map((e) => e.requestId)).toEqual(['r2', 'r1']);
    expect(entries[0]).toEqual(second);
    expect(entries[1]).toEqual({ ...record({ requestId: 'r1' }), id: first.id, ts: first.ts });
  });

  it('redacts env, headers, key, hash and secret at any depth, keeping the names of env and headers', async () => {
    const spec = {
      id: 'files',
      transport: 'stdio',
      config: { command: 'node', env: { TOKEN: 'sk-live-123', MODE: 'fast' } },
    };
    const entry = await audit.append(
      record({
        before: spec,
        after: {
          ...spec,
          config: { ...spec.config, env: { TOKEN: 'sk-live-456' } },
          nested: [{ headers: { Authorization: 'Bearer abc' } }, { Secret: 'x', hash: 'h', key: 'mcp_k' }],
          headers: 'not-a-map',
        },
      }),
    );
    expect(entry.before).toEqual({ ...spec, config: { command: 'node', env: { TOKEN: '***', MODE: '***' } } });
    expect(entry.after).toEqual({
      ...spec,
      config: { command: 'node', env: { TOKEN: '***' } },
      nested: [{ headers: { Authorization: '***' } }, { Secret: '***', hash: '***', key: '***' }],
      headers: '***',
    });
    const raw = JSON.stringify(await t.redis.xrange(t.keys.audit, '-', '+'));
    for (const secret of ['sk-live-123', 'sk-live-456', 'Bearer abc', 'mcp_k']) expect(raw).not.toContain(secret);
    expect(redactAuditValue(null)).toBeNull();
    expect(redactAuditValue('text')).toBe('text');
  });

  it('filters by project, actor (key id, member or admin) and since, and honours limit', async () => {
    await audit.append(record({ project: 'acme', requestId: 'a1' }));
    await audit.append(record({ project: 'beta', requestId: 'b1', actor: { keyId: 'key2', member: 'bob' } }));
    const last = await audit.append(record({ project: undefined, requestId: 'x1', actor: { admin: true } }));
    // Entries carry the millisecond Redis added them in: `cut` falls strictly between the ones before and after.
    const cut = await waitFor('a millisecond after the last entry', () => {
      const now = Date.now();
      return now > Date.parse(last.ts) ? now : 0;
    });
    await waitFor('a millisecond after the cut', () => Date.now() > cut);
    await audit.append(record({ project: 'acme', requestId: 'a2' }));
    await audit.append(record({ project: 'acme', requestId: 'a3', actor: { keyId: 'key3' } }));

    const ids = async (q: Parameters<AuditStream['query']>[0]) => (await audit.query(q)).map((e) => e.requestId);
    expect(await ids({ project: 'acme' })).toEqual(['a3', 'a2', 'a1']);
    expect(await ids({ project: 'beta' })).toEqual(['b1']);
    expect(await ids({ actor: 'key1' })).toEqual(['a2', 'a1']);
    expect(await ids({ actor: 'bob' })).toEqual(['b1']);
    expect(await ids({ actor: 'ann@example.com', project: 'acme' })).toEqual(['a2', 'a1']);
    expect(await ids({ actor: 'admin' })).toEqual(['x1']);
    expect(await ids({ since: cut })).toEqual(['a3', 'a2']);
    expect(await ids({ since: new Date(cut).toISOString(), project: 'acme' })).toEqual(['a3', 'a2']);
    expect(await ids({ since: String(cut) })).toEqual(['a3', 'a2']);
    expect(await ids({ project: 'acme', limit: 2 })).toEqual(['a3', 'a2']);
    expect(await ids({ project: 'nope' })).toEqual([]);

    await expect(audit.query({ since: 'yesterday' })).rejects.toThrow(AppError);
    await expect(audit.query({ limit: 0 })).rejects.toThrow(/limit must be/);
  });

  it('finds matches older than one page of the stream', async () => {
    await audit.append(record({ project: 'rare', requestId: 'old' }));
    for (let i = 0; i < 250; i++) await audit.append(record({ requestId: `n${i}` }));
    expect((await audit.query({ project: 'rare' })).map((e) => e.requestId)).toEqual(['old']);
    const page = await audit.query({ project: 'acme', limit: 120 });
    expect(page).toHaveLength(120);
    expect(page[0]?.requestId).toBe('n249');
  });

  it('trims the stream to about maxLength entries', async () => {
    const small = new AuditStream(t.redis, t.keys, { maxLength: 10 });
    for (let i = 0; i < 400; i++) await small.append(record({ requestId: `r${i}` }));
    const length = await t.redis.xlen(t.keys.audit);
    // MAXLEN ~ trims whole stream nodes (100 entries each by default), never below maxLength.
    expect(length).toBeGreaterThanOrEqual(10);
    expect(length).toBeLessThanOrEqual(10 + 100);
    expect((await small.query({ limit: 1 }))[0]?.requestId).toBe('r399');
    expect(() => new AuditStream(t.redis, t.keys, { maxLength: 0 })).toThrow(RangeError);
  });

  it('skips entries it cannot parse', async () => {
    await t.redis.xadd(t.keys.audit, '*', 'data', 'not json');
    await t.redis.xadd(t.keys.audit, '*', 'other', '{}');
    await audit.append(record({ requestId: 'good' }));
    expect((await audit.query()).map((e) => e.requestId)).toEqual(['good']);
  });
});
