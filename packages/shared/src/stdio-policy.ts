import { realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { type CommandAllowList, matchCommandLine } from './command-allow-list.js';
import { isForbiddenEnvName } from './env-hooks.js';
import { AppError } from './errors.js';

export interface StdioPolicy {
  /** When set, the only command lines a stdio server may run. */
  allowedCommands: CommandAllowList | undefined;
  /** Hook variables (`NODE_OPTIONS`, `LD_*` …) the operator lets specs set anyway; names or `PREFIX*`. */
  allowedEnv: readonly string[];
  /** When set, `cwd` must lie inside one of these absolute directories. */
  cwdRoots: readonly string[] | undefined;
}

export interface StdioLaunch {
  command: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd?: string | undefined;
}

/**
 * Checks what a stdio spec would run on the host against the operator's policy: the whole command line,
 * the environment's hook variables and the working directory. Throws AppError('forbidden') with
 * `details.path` naming the field. The hub runs it on every write, for every caller, the admin token
 * included; the worker runs it again before spawning, so a spec that reached Redis some other way does not
 * run either.
 */
export async function checkStdioLaunch(policy: StdioPolicy, launch: StdioLaunch): Promise<void> {
  checkCommandLine(policy.allowedCommands, launch.command, launch.args);
  checkEnv(policy.allowedEnv, launch.env);
  if (launch.cwd !== undefined) await checkCwd(policy, launch.cwd);
}

function checkCommandLine(allowed: CommandAllowList | undefined, command: string, args: readonly string[]): void {
  if (allowed === undefined) return;
  const match = matchCommandLine(allowed, command, args);
  if (match.allowed) return;
  const entries = allowed.map((entry) => entry.source);
  const why = match.mismatches.map((m) => `"${m.entry}": ${m.reason}`).join('; ');
  // The entry that matched furthest says best what was wrong; its failing token is the path.
  const closest = match.mismatches.reduce((best, m) => (m.position > best.position ? m : best));
  throw new AppError(
    'forbidden',
    `this command line matches no entry of MCP_STDIO_ALLOWED_COMMANDS (${why}). Entries match token by token; a bare command allows no arguments, and only a final "**" allows more`,
    {
      path: closest.position === 0 ? 'config.command' : `config.args[${closest.position - 1}]`,
      allowed: entries,
      mismatches: match.mismatches,
    },
  );
}

function checkEnv(allowedEnv: readonly string[], env: Readonly<Record<string, string>>): void {
  const forbidden = Object.keys(env).find((name) => isForbiddenEnvName(name, allowedEnv));
  if (forbidden === undefined) return;
  throw new AppError(
    'forbidden',
    `config.env may not set ${JSON.stringify(forbidden)}: it makes the server load or run other code, or read another configuration (an operator can allow it in MCP_STDIO_ALLOWED_ENV)`,
    { path: `config.env.${forbidden}` },
  );
}

/** The real path of `path`: symlinks of its longest existing prefix resolved, the rest kept as written. */
async function realPathOf(path: string): Promise<string> {
  let existing = path;
  const rest: string[] = [];
  for (;;) {
    try {
      return join(await realpath(existing), ...rest);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const parent = dirname(existing);
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === existing) return path;
      rest.unshift(basename(existing));
      existing = parent;
    }
  }
}

const inside = (path: string, root: string): boolean =>
  path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);

async function checkCwd(policy: StdioPolicy, cwd: string): Promise<void> {
  const refuse = (reason: string) => {
    throw new AppError('forbidden', reason, { path: 'config.cwd', roots: policy.cwdRoots ?? [] });
  };
  // With neither control configured the host is trusted local use: the working directory stays free.
  if (policy.cwdRoots === undefined && policy.allowedCommands === undefined) return;
  if (!isAbsolute(cwd) || normalize(cwd) !== cwd) {
    refuse('config.cwd must be an absolute, normalised path (no "..")');
  }
  if (policy.cwdRoots === undefined || policy.cwdRoots.length === 0) {
    // A relative script path of an allowed command line (`node server.js`) would resolve anywhere.
    refuse('config.cwd is not allowed: MCP_STDIO_ALLOWED_COMMANDS is set and MCP_STDIO_CWD_ROOTS is not');
  }
  const real = await realPathOf(cwd);
  const roots = await Promise.all((policy.cwdRoots ?? []).map(realPathOf));
  if (!roots.some((root) => inside(real, root))) {
    refuse(
      `config.cwd ${JSON.stringify(cwd)}${real === cwd ? '' : ` (really ${JSON.stringify(real)})`} is outside MCP_STDIO_CWD_ROOTS`,
    );
  }
}
