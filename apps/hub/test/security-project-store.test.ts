import { AppError, type ErrorCode } from '@mcp-hub/shared';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { testRedis } from '../../../test/support.js';
import { generateApiKey } from '../src/access/api-keys.js';
import { ROLE_SCOPES } from '../src/access/roles.js';
import { TOUCH_INTERVAL_MS } from '../src/stores/api-key-store.js';
import { CreateKeyBodySchema } from '../src/stores/project-schemas.js';
import { ProjectStore } from '../src/stores/project-store.js';

const t = testRedis();
const START = Date.parse('2030-01-01T00:00:00.000Z');
let now = START;
const invalid: string[] = [];
const store = new ProjectStore(
  t.redis,
  t.keys,
  () => now,
  (key, field) => invalid.push(`${key}/${field}`),
);

afterAll(() => t.cleanup());
beforeEach(async () => {
  const found = await t.redis.keys(`${t.prefix}*`);
  if (found.length > 0) await t.redis.del(...found);
  now = START;
  invalid.length = 0;
});

async function rejects(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<AppError> {
  const err = await promise.then(
    () => {
      throw new Error(`expected ${code}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  if (message) expect((err as AppError).message).toMatch(message);
  return err as AppError;
}

async function project(id = 'acme') {
  return store.createProject({ id, name: `${id} inc` });
}

describe('projects and members', () => {
  it('creates, reads and lists projects; a taken id is project_exists; bad bodies are invalid_request', async () => {
    const acme = await project('acme');
    expect(acme).toEqual({ id: 'acme', name: 'acme inc', createdAt: '2030-01-01T00:00:00.000Z' });
    await project('beta');
    expect(await store.getProject('acme')).toEqual(acme);
    expect(await store.getProject('nope')).toBeNull();
    expect((await store.listProjects()).map((p) => p.id)).toEqual(['acme', 'beta']);
    await rejects(project('acme'), 'project_exists', /already exists/);
    await rejects(store.createProject({ id: 'Bad Id', name: 'x' }), 'invalid_request', /id must be/);
    const err = await rejects(
      store.createProject({ id: 'ok', name: 'x', extra: 1 } as never),
      'invalid_request',
      /unknown field "extra"/,
    );
    expect(err.details).toEqual([{ path: 'extra', message: 'unknown field "extra"' }]);
    await rejects(store.requireProject('nope'), 'project_not_found');
  });

  it('adds members (upsert keeps addedAt), lists them, and lets one person be in many projects', async () => {
    await project('acme');
    await project('beta');
    const added = await store.addMember('acme', { id: 'ann@example.com', role: 'developer' });
    expect(added).toEqual({ id: 'ann@example.com', role: 'developer', addedAt: '2030-01-01T00:00:00.000Z' });
    now += 1_000;
    const changed = await store.addMember('acme', { id: 'ann@example.com', role: 'owner' });
    expect(changed).toEqual({ ...added, role: 'owner', updatedAt: '2030-01-01T00:00:01.000Z' });
    await store.addMember('acme', { id: 'github|42', role: 'reporter' });
    await store.addMember('beta', { id: 'ann@example.com', role: 'reporter' });

    expect((await store.listMembers('acme')).map((m) => [m.id, m.role])).toEqual([
      ['ann@example.com', 'owner'],
      ['github|42', 'reporter'],
    ]);
    expect(await store.getMember('acme', 'ann@example.com')).toEqual(changed);
    expect(await store.getMember('acme', 'bob')).toBeNull();
    expect((await store.projectsOfMember('ann@example.com')).map(({ project, role }) => [project.id, role])).toEqual([
      ['acme', 'owner'],
      ['beta', 'reporter'],
    ]);

    await rejects(store.addMember('nope', { id: 'x', role: 'owner' }), 'project_not_found');
    await rejects(store.listMembers('nope'), 'project_not_found');
    await rejects(store.addMember('acme', { id: 'x', role: 'admin' } as never), 'invalid_request', /role must be/);
    await rejects(store.addMember('acme', { id: 'has space', role: 'owner' }), 'invalid_request');
  });
});

describe('API keys', () => {
  it('shows the key once, stores only its hash, lists without hash or secret, and authenticates it', async () => {
    await project();
    const { record, key } = await store.apiKeys.createKey('acme', {
      name: 'ci',
      role: 'developer',
      limits: { perHour: 100, concurrent: 2 },
    });
    expect(key).toMatch(new RegExp(`^mcp_${record.id}_[A-Za-z0-9_-]{43}$`));
    expect(record).toEqual({
      id: record.id,
      project: 'acme',
      name: 'ci',
      role: 'developer',
      scopes: [...ROLE_SCOPES.developer],
      createdAt: '2030-01-01T00:00:00.000Z',
      limits: { perHour: 100, concurrent: 2 },
    });
    expect(record).not.toHaveProperty('hash');

    const secret = key.slice(`mcp_${record.id}_`.length);
    const stored = await t.redis.hget(t.keys.apiKeys, record.id);
    expect(stored).not.toContain(secret);
    expect(JSON.parse(stored ?? '{}').hash).toMatch(/^[0-9a-f]{64}$/);

    const listed = await store.apiKeys.listKeys('acme');
    expect(listed).toEqual([record]);
    expect(JSON.stringify(listed)).not.toContain(secret);
    expect(await store.apiKeys.getKeyRecord(record.id)).toEqual(record);
    expect(await store.apiKeys.getKeyRecord('nope')).toBeNull();

    expect(await store.apiKeys.authenticate(key)).toEqual({
      ok: true,
      key: record,
      role: 'developer',
      scopes: [...ROLE_SCOPES.developer],
    });
  });

  it('answers malformed, unknown (wrong secret or id), revoked and expired', async () => {
    await project();
    const { record, key } = await store.apiKeys.createKey('acme', {
      name: 'short-lived',
      role: 'reporter',
      expiresAt: '2030-01-01T01:00:00+00:00',
    });
    expect(record.expiresAt).toBe('2030-01-01T01:00:00.000Z');

    expect(await store.apiKeys.authenticate('Bearer nonsense')).toEqual({ ok: false, reason: 'malformed' });
    const other = generateApiKey();
    expect(await store.apiKeys.authenticate(`mcp_${record.id}_${other.secret}`)).toEqual({
      ok: false,
      reason: 'unknown',
      keyId: record.id,
    });
    expect(await store.apiKeys.authenticate(other.key)).toEqual({ ok: false, reason: 'unknown', keyId: other.id });

    now = Date.parse('2030-01-01T00:59:59.999Z');
    expect((await store.apiKeys.authenticate(key)).ok).toBe(true);
    now = Date.parse('2030-01-01T01:00:00.000Z');
    expect(await store.apiKeys.authenticate(key)).toEqual({ ok: false, reason: 'expired', keyId: record.id });

    now = START;
    const revoked = await store.apiKeys.revokeKey('acme', record.id);
    expect(revoked.revokedAt).toBe('2030-01-01T00:00:00.000Z');
    now += 5_000;
    expect((await store.apiKeys.revokeKey('acme', record.id)).revokedAt).toBe(revoked.revokedAt);
    expect(await store.apiKeys.authenticate(key)).toEqual({ ok: false, reason: 'revoked', keyId: record.id });
    expect((await store.apiKeys.listKeys('acme'))[0]?.revokedAt).toBe(revoked.revokedAt);
  });

  it('rotates: the old key works within the grace time and fails after it, the new one works', async () => {
    await project();
    await store.addMember('acme', { id: 'ann', role: 'developer' });
    const old = await store.apiKeys.createKey('acme', {
      name: 'deploy',
      role: 'developer',
      member: 'ann',
      scopes: ['servers:read', 'tools:call'],
      limits: { perDay: 1000 },
    });
    now += 10_000;
    const rotated = await store.apiKeys.rotateKey('acme', old.record.id, 60_000);
    expect(rotated.key).not.toBe(old.key);
    expect(rotated.record).toEqual({
      id: rotated.record.id,
      project: 'acme',
      name: 'deploy',
      role: 'developer',
      member: 'ann',
      scopes: ['servers:read', 'tools:call'],
      limits: { perDay: 1000 },
      createdAt: '2030-01-01T00:00:10.000Z',
    });
    expect(rotated.previous).toMatchObject({ rotatedTo: rotated.record.id, expiresAt: '2030-01-01T00:01:10.000Z' });
    expect(await store.apiKeys.getKeyRecord(old.record.id)).toEqual(rotated.previous);
    expect((await store.apiKeys.listKeys('acme')).map((k) => k.id)).toEqual([old.record.id, rotated.record.id]);

    expect((await store.apiKeys.authenticate(old.key)).ok).toBe(true);
    expect((await store.apiKeys.authenticate(rotated.key)).ok).toBe(true);
    now += 60_000;
    expect(await store.apiKeys.authenticate(old.key)).toMatchObject({ ok: false, reason: 'expired' });
    expect((await store.apiKeys.authenticate(rotated.key)).ok).toBe(true);

    await rejects(store.apiKeys.rotateKey('acme', old.record.id, 0), 'key_not_active', /already rotated|expired/);
    await store.apiKeys.revokeKey('acme', rotated.record.id);
    await rejects(store.apiKeys.rotateKey('acme', rotated.record.id), 'key_not_active', /revoked/);
    await rejects(store.apiKeys.rotateKey('acme', 'nope'), 'key_not_found');
    await rejects(store.apiKeys.rotateKey('acme', rotated.record.id, -1), 'invalid_request', /graceMs/);
  });

  it('never extends an expiry by rotating: the new key keeps it and the old one ends at the earlier time', async () => {
    await project();
    const old = await store.apiKeys.createKey('acme', {
      name: 'k',
      role: 'reporter',
      expiresAt: '2030-01-01T00:00:30Z',
    });
    const rotated = await store.apiKeys.rotateKey('acme', old.record.id, 3_600_000);
    expect(rotated.record.expiresAt).toBe('2030-01-01T00:00:30.000Z');
    expect(rotated.previous.expiresAt).toBe('2030-01-01T00:00:30.000Z');
  });

  it("checks roles and scopes: a member's key cannot outrank the member, and follows the member down and out", async () => {
    await project();
    await project('beta');
    await store.addMember('acme', { id: 'rita', role: 'reporter' });
    await rejects(
      store.apiKeys.createKey('acme', { name: 'k', role: 'developer', member: 'rita' }),
      'invalid_request',
      /rita" is a reporter/,
    );
    await rejects(
      store.apiKeys.createKey('acme', { name: 'k', role: 'reporter', scopes: ['servers:write'] }),
      'invalid_request',
      /does not grant "servers:write"/,
    );
    await rejects(store.apiKeys.createKey('acme', { name: 'k', role: 'reporter', member: 'bob' }), 'member_not_found');
    await rejects(store.apiKeys.createKey('nope', { name: 'k', role: 'reporter' }), 'project_not_found');
    await rejects(store.apiKeys.createKey('nope', { name: 'k', role: 'reporter', member: 'x' }), 'project_not_found');
    await rejects(
      store.apiKeys.createKey('acme', { name: 'k', role: 'reporter', expiresAt: '2029-12-31T23:59:59Z' }),
      'invalid_request',
      /in the future/,
    );
    await rejects(
      store.apiKeys.createKey('acme', { name: 'k', role: 'reporter', limits: { perHour: 0 } }),
      'invalid_request',
      /perHour/,
    );
    await rejects(
      store.apiKeys.createKey('acme', { name: 'k', role: 'reporter', hash: 'x' } as never),
      'invalid_request',
    );
    expect(CreateKeyBodySchema.safeParse({ name: 'k', role: 'owner', expiresAt: 'tomorrow' }).success).toBe(false);

    await store.addMember('acme', { id: 'olga', role: 'owner' });
    const olgas = await store.apiKeys.createKey('acme', { name: 'olga', role: 'owner', member: 'olga' });
    expect(await store.apiKeys.authenticate(olgas.key)).toMatchObject({ ok: true, role: 'owner' });
    await store.addMember('acme', { id: 'olga', role: 'reporter' });
    const demoted = await store.apiKeys.authenticate(olgas.key);
    expect(demoted).toMatchObject({ ok: true, role: 'reporter', scopes: [...ROLE_SCOPES.reporter] });
    expect(demoted.ok && demoted.key.role).toBe('owner');

    await store.removeMember('acme', 'olga');
    expect(await store.apiKeys.authenticate(olgas.key)).toMatchObject({ ok: false, reason: 'revoked' });
    expect((await store.apiKeys.getKeyRecord(olgas.record.id))?.revokedAt).toBeDefined();
    await rejects(store.removeMember('acme', 'olga'), 'member_not_found');

    // Keys are only reachable through their own project.
    await rejects(store.apiKeys.revokeKey('beta', olgas.record.id), 'key_not_found');
    expect(await store.apiKeys.listKeys('beta')).toEqual([]);
  });

  it('writes lastUsedAt at most once a minute per key', async () => {
    await project();
    const { record } = await store.apiKeys.createKey('acme', { name: 'k', role: 'reporter' });
    expect(await store.apiKeys.touchLastUsed(record.id)).toBe(true);
    expect((await store.apiKeys.getKeyRecord(record.id))?.lastUsedAt).toBe('2030-01-01T00:00:00.000Z');
    now += TOUCH_INTERVAL_MS - 1;
    expect(await store.apiKeys.touchLastUsed(record.id)).toBe(false);
    now += 1;
    expect(await store.apiKeys.touchLastUsed(record.id)).toBe(true);
    expect((await store.apiKeys.getKeyRecord(record.id))?.lastUsedAt).toBe('2030-01-01T00:01:00.000Z');
    expect(await store.apiKeys.touchLastUsed('unknown-key-id')).toBe(false);
  });

  it('creates keys concurrently without losing any, and treats a corrupt record as unknown', async () => {
    await project();
    const made = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.apiKeys.createKey('acme', { name: `k${i}`, role: 'reporter' })),
    );
    expect(await store.apiKeys.listKeys('acme')).toHaveLength(20);
    const [first] = made;
    if (!first) throw new Error('no key');
    await t.redis.hset(t.keys.apiKeys, first.record.id, '{"not":"a key"}');
    expect(await store.apiKeys.authenticate(first.key)).toMatchObject({ ok: false, reason: 'unknown' });
    expect(await store.apiKeys.listKeys('acme')).toHaveLength(19);
    expect(invalid).toContain(`${t.keys.apiKeys}/${first.record.id}`);
  });
});
