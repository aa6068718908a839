import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isEnvHook, type StdioSandbox } from '@mcp-hub/shared';

const execFileAsync = promisify(execFile);

/** What a stdio server is started with. */
export interface StdioLaunch {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string | undefined;
}

/** Turns a spec's command line into the one the worker spawns; rejects when it cannot be run as asked. */
export interface StdioLauncher {
  readonly kind: StdioSandbox;
  prepare(launch: StdioLaunch): Promise<StdioLaunch>;
}

export interface BwrapOptions {
  serverId: string;
  /** Absolute; the server's writable directory is `<dir>/<serverId>`. */
  sandboxDir: string;
  /** Extra absolute paths bound read-only. */
  readOnlyPaths: readonly string[];
  /** The bubblewrap binary (found on PATH by default). */
  bwrapPath?: string;
}

/** How long the start-up probe of bubblewrap may take. */
const PROBE_TIMEOUT_MS = 10_000;

/** Top-level system directories, bound read-only; on merged-/usr systems most are symlinks into /usr. */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/**
 * The parts of /etc that programs need to resolve names, verify TLS, find users and shared libraries —
 * and not the rest: the sandbox may run as root, and /etc holds secrets (shadow, ssh host keys, …).
 */
const ETC_FILES = [
  '/etc/alternatives',
  '/etc/ca-certificates',
  '/etc/ca-certificates.conf',
  '/etc/crypto-policies',
  '/etc/gai.conf',
  '/etc/group',
  '/etc/host.conf',
  '/etc/hosts',
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
  '/etc/localtime',
  '/etc/mime.types',
  '/etc/nsswitch.conf',
  '/etc/os-release',
  '/etc/passwd',
  '/etc/pki',
  '/etc/resolv.conf',
  '/etc/ssl',
  '/etc/timezone',
];

/** Runs the command as given: no confinement beyond the worker's own user. */
export const UNCONFINED: StdioLauncher = Object.freeze({
  kind: 'none' as const,
  prepare: async (launch: StdioLaunch) => launch,
});

/**
 * The project's node_modules (servers installed with the hub, e.g. server-everything): beside the workspace's
 * pnpm-workspace.yaml, found upwards from this code's place (dist/upstream/ or the bundle's dist/bundle/).
 */
function projectNodeModules(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 6; up++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'pnpm-workspace.yaml'))) return join(dir, 'node_modules');
  }
  // Both places are four levels below the root: apps/worker/dist/{upstream,bundle}.
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../../../node_modules');
}

/** The Node.js install holding the running binary, unless it is under /usr already. */
function nodeInstallDir(): string | undefined {
  const prefix = dirname(dirname(realpathSync(process.execPath)));
  return prefix === '/usr' || prefix.startsWith('/usr/') ? undefined : prefix;
}

function systemBinds(): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    try {
      const stat = lstatSync(dir);
      if (stat.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
      else if (stat.isDirectory()) args.push('--ro-bind', dir, dir);
    } catch {
      // Not on this system.
    }
  }
  for (const path of ETC_FILES) args.push('--ro-bind-try', path, path);
  return args;
}

/**
 * Builds bubblewrap's arguments for a server (everything before the command). Exported for tests and the
 * probe; the order matters: /tmp is a fresh tmpfs before the binds that may lie under it.
 */
export function bwrapArgs(options: BwrapOptions, serverDir: string, cwd: string | undefined): string[] {
  const args = [
    '--unshare-all',
    '--share-net',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    ...systemBinds(),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--tmpfs',
    '/tmp',
  ];
  const node = nodeInstallDir();
  if (node) args.push('--ro-bind', node, node);
  const modules = projectNodeModules();
  args.push('--ro-bind-try', modules, modules);
  for (const path of options.readOnlyPaths) args.push('--ro-bind', path, path);
  args.push('--bind', serverDir, serverDir, '--chdir', cwd ?? serverDir);
  return args;
}

/**
 * Runs each stdio server inside bubblewrap: read-only system directories, the Node install and the
 * project's node_modules, the operator's read-only paths, a private /tmp, /proc and /dev, no home, and one
 * writable directory `<sandboxDir>/<server id>` (its cwd and HOME); every namespace but the network is
 * new, all capabilities dropped, and it dies with the worker. `prepare` rejects (the worker then fails,
 * `last_error` says why) when bubblewrap cannot run here: never a silent fallback to unconfined.
 */
export function createBwrapLauncher(options: BwrapOptions): StdioLauncher {
  const bwrap = options.bwrapPath ?? 'bwrap';
  const serverDir = join(options.sandboxDir, options.serverId);
  let probed: Promise<void> | undefined;

  async function probe(): Promise<void> {
    try {
      mkdirSync(serverDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new Error(
        `MCP_STDIO_SANDBOX=bwrap: cannot create the server's directory ${serverDir}: ${(error as Error).message}`,
      );
    }
    try {
      await execFileAsync(bwrap, [...bwrapArgs(options, serverDir, undefined), '--', 'true'], {
        timeout: PROBE_TIMEOUT_MS,
        // biome-ignore lint/style/noProcessEnv: the OS search path for bwrap, not config; only PATH reaches the probe.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      });
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { stderr?: string };
      const reason =
        e.code === 'ENOENT'
          ? `"${bwrap}" is not installed (Debian/Ubuntu: apt-get install bubblewrap)`
          : (e.stderr?.trim() || e.message).slice(0, 500);
      throw new Error(
        `MCP_STDIO_SANDBOX=bwrap, but bubblewrap cannot run here: ${reason}. The stdio server is not started unconfined; fix the host or set MCP_STDIO_SANDBOX=none`,
      );
    }
  }

  return Object.freeze({
    kind: 'bwrap' as const,
    async prepare(launch: StdioLaunch): Promise<StdioLaunch> {
      probed ??= probe();
      try {
        await probed;
      } catch (error) {
        probed = undefined; // the next start (after a fix on the host) probes again
        throw error;
      }
      // Values reach the server through bwrap's own environment rather than `--setenv`, which would show
      // them (API keys) to every local user in /proc/<pid>/cmdline. Only the hook variables an operator
      // allowed go as `--setenv`: in the environment they would act on bwrap itself, outside the sandbox.
      const env: Record<string, string> = { HOME: serverDir, TMPDIR: '/tmp' };
      const hooks: string[] = [];
      for (const [name, value] of Object.entries(launch.env)) {
        if (isEnvHook(name)) hooks.push('--setenv', name, value);
        else env[name] = value;
      }
      return {
        command: bwrap,
        args: [...bwrapArgs(options, serverDir, launch.cwd), ...hooks, '--', launch.command, ...launch.args],
        env,
      };
    },
  });
}
