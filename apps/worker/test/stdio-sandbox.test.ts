import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../../test/processes.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { createBwrapLauncher } from '../src/upstream/stdio-sandbox.js';
import { callJson, FIXTURES, registerServer, startTestWorker } from './helpers.js';

/**
 * MCP_STDIO_SANDBOX=bwrap proven on a real worker: the same fixture server, started by a worker with the
 * sandbox and by one without, tries to read a secret outside its directory, write outside it and list the
 * host's processes. Unconfined it can; confined it cannot, and it still writes in its own directory.
 * Needs bubblewrap (`.ci/run` installs it).
 */

const t = testRedis();
const captured = captureLogger('worker');
/** A secret outside /tmp (the sandbox's /tmp is private, which alone would hide a secret there). */
mkdirSync(join(ROOT, '.data'), { recursive: true });
const secretDir = mkdtempSync(join(ROOT, '.data', 'sandbox-secret-'));
const secretFile = join(secretDir, 'secret.txt');
const SECRET = `secret-${process.pid}-${Date.now()}`;
/** A secret in the host's /tmp. */
const tmpSecretDir = mkdtempSync(join(tmpdir(), 'sandbox-tmp-secret-'));
const tmpSecretFile = join(tmpSecretDir, 'secret.txt');
const sandboxDir = mkdtempSync(join(tmpdir(), 'sandbox-dirs-'));
const fixturesDir = dirname(FIXTURES.confinement);
const workers: Worker[] = [];
let confined: number;
let open: number;

const SANDBOX_ENV = {
  MCP_STDIO_SANDBOX: 'bwrap',
  MCP_STDIO_SANDBOX_DIR: sandboxDir,
  MCP_STDIO_SANDBOX_READ_ONLY_PATHS: fixturesDir,
};

async function tool(port: number, name: string, args: Record<string, unknown> = {}): Promise<string> {
  const { status, body } = await callJson(port, name, args);
  expect(status, JSON.stringify(body)).toBe(200);
  return (body.content as { text: string }[])[0]?.text ?? '';
}

async function start(id: string, env: Record<string, string>): Promise<number> {
  const port = await getPort();
  const worker = await startTestWorker({ serverId: id, prefix: t.prefix, port, log: captured.log, env });
  workers.push(worker);
  await worker.ready;
  return port;
}

beforeAll(async () => {
  writeFileSync(secretFile, SECRET);
  writeFileSync(tmpSecretFile, SECRET);
  for (const id of ['confined', 'open']) {
    await registerServer(t.redis, t.keys, {
      id,
      transport: 'stdio',
      config: { command: process.execPath, args: [FIXTURES.confinement], env: { FIXTURE_VALUE: SECRET } },
    });
  }
  confined = await start('confined', SANDBOX_ENV);
  open = await start('open', {});
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  await t.cleanup();
  for (const dir of [secretDir, tmpSecretDir, sandboxDir]) rmSync(dir, { recursive: true, force: true });
});

describe('a stdio server in the bwrap sandbox', () => {
  it('cannot read files outside its directory that the same server reads unconfined', async () => {
    for (const path of [secretFile, tmpSecretFile]) {
      expect(await tool(open, 'read-file', { path })).toBe(SECRET);
      expect(await tool(confined, 'read-file', { path })).toMatch(/^error: /);
    }
    // The sandbox may run as root: /etc is bound piece by piece, never its secrets (not even there to refuse, so
    // this holds whether or not this user could read the file unconfined).
    expect(await tool(confined, 'read-file', { path: '/etc/shadow' })).toBe('error: ENOENT');
  });

  it('cannot write outside its directory, and writes inside it', async () => {
    const outside = join(secretDir, 'planted.txt');
    expect(await tool(confined, 'write-file', { path: outside, text: 'x' })).toMatch(/^error: /);
    expect(existsSync(outside)).toBe(false);
    const intoFixtures = join(fixturesDir, `planted-${process.pid}.txt`);
    expect(await tool(confined, 'write-file', { path: intoFixtures, text: 'x' })).toMatch(/^error: E(ROFS|ACCES|PERM)/);
    expect(existsSync(intoFixtures)).toBe(false);
    // The control: unconfined, the same call plants the file.
    expect(await tool(open, 'write-file', { path: outside, text: 'x' })).toBe('written');
    expect(existsSync(outside)).toBe(true);

    const own = join(sandboxDir, 'confined');
    const where = JSON.parse(await tool(confined, 'where')) as { cwd: string; home: string };
    expect(where).toMatchObject({ cwd: own, home: own });
    expect(await tool(confined, 'write-file', { path: 'note.txt', text: 'kept' })).toBe('written');
    expect(readFileSync(join(own, 'note.txt'), 'utf8')).toBe('kept');
  });

  it('gets its env values, which never appear on the sandbox command line', async () => {
    const where = JSON.parse(await tool(confined, 'where')) as { value: string };
    expect(where.value).toBe(SECRET);
    const pid = workers[0]?.upstreamPid as number;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline[0]).toMatch(/bwrap$/);
    expect(cmdline.join(' ')).not.toContain(SECRET);
  });

  it('sees only its own processes', async () => {
    const unconfinedPids = JSON.parse(await tool(open, 'list-pids')) as number[];
    expect(unconfinedPids).toContain(process.pid);
    const pids = JSON.parse(await tool(confined, 'list-pids')) as number[];
    expect(pids).not.toContain(process.pid);
    expect(pids.length).toBeLessThanOrEqual(3);
  });

  it('logs that the worker runs its server sandboxed', () => {
    const sandboxes = captured.lines.filter((l) => l.event === 'worker.listening').map((l) => l.sandbox);
    expect(sandboxes).toEqual(expect.arrayContaining(['bwrap', 'none']));
  });
});

describe('a sandbox that cannot run', () => {
  it('fails the worker with the reason, and the command never runs unconfined', async () => {
    const marker = join(secretDir, 'ran-unconfined.txt');
    await registerServer(t.redis, t.keys, {
      id: 'unrunnable',
      transport: 'stdio',
      config: {
        command: process.execPath,
        args: ['-e', `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x'); setInterval(() => {}, 1000)`],
      },
    });
    const fatal: Error[] = [];
    const port = await getPort();
    const worker = await startTestWorker({
      serverId: 'unrunnable',
      prefix: t.prefix,
      port,
      log: captured.log,
      // bubblewrap fails on a read-only path that does not exist, like on a host without user namespaces.
      env: { ...SANDBOX_ENV, MCP_STDIO_SANDBOX_READ_ONLY_PATHS: join(secretDir, 'missing') },
      onFatal: (error) => fatal.push(error),
    });
    workers.push(worker);
    await expect(worker.ready).rejects.toThrow(/MCP_STDIO_SANDBOX=bwrap, but bubblewrap cannot run here: .*missing/);
    expect(fatal[0]?.message).toMatch(/not started unconfined/);
    expect(worker.upstreamPid).toBeUndefined();
    expect(existsSync(marker)).toBe(false);
  });

  it('names a missing bubblewrap binary', async () => {
    const launcher = createBwrapLauncher({
      serverId: 'x',
      sandboxDir,
      readOnlyPaths: [],
      bwrapPath: join(secretDir, 'no-such-bwrap'),
    });
    await expect(launcher.prepare({ command: 'true', args: [], env: {} })).rejects.toThrow(
      /is not installed \(Debian\/Ubuntu: apt-get install bubblewrap\)/,
    );
  });
});
