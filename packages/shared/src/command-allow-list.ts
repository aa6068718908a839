/**
 * MCP_STDIO_ALLOWED_COMMANDS as whole command lines. Each entry is a command followed by argument
 * patterns, separated by whitespace; a spec's `[command, ...args]` must match one entry token by token:
 * - a literal token matches exactly;
 * - `*` inside a token matches a run of one or more characters other than `/`, whitespace and `:`, so
 *   `@modelcontextprotocol/server-*` cannot become `…@file:/tmp/x` or climb out of a directory; a `*` that
 *   starts a token does not match a leading `-` either, so `node *` cannot become `node --eval=…`;
 * - a final token `**` allows any further arguments (none included).
 * A bare command (`npx`) therefore allows that command with no arguments at all.
 */

/** The one wildcard that ends an entry and allows any further arguments. */
export const ANY_FURTHER_ARGS = '**';
/** What a `*` may stand for: never a path separator, whitespace, or the `:` of `file:`/`git:` specs. */
const STAR_CLASS = '[^/\\s:]';

export interface CompiledToken {
  readonly source: string;
  readonly literal: boolean;
  readonly re: RegExp;
}

export interface CommandAllowEntry {
  /** The entry as the operator wrote it, whitespace normalised. */
  readonly source: string;
  readonly tokens: readonly CompiledToken[];
  /** Whether the entry ends with `**`. */
  readonly anyFurther: boolean;
}

export type CommandAllowList = readonly CommandAllowEntry[];

export interface CommandAllowProblem {
  /** The entry's index in the comma-separated list. */
  index: number;
  message: string;
}

export class CommandAllowListError extends Error {
  constructor(readonly problems: CommandAllowProblem[]) {
    super(problems.map((p) => `entry ${p.index + 1}: ${p.message}`).join('; '));
    this.name = 'CommandAllowListError';
  }
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function compileToken(source: string): CompiledToken {
  if (!source.includes('*')) return { source, literal: true, re: new RegExp(`^${escapeRegExp(source)}$`) };
  const parts = source.split('*').map(escapeRegExp);
  // A leading star must not swallow the dash of an option: `python *` must not match `-cimport os…`.
  const body = parts
    .map((part, i) =>
      i === 0 ? part : `${i === 1 && parts[0] === '' ? `(?!-)${STAR_CLASS}+` : `${STAR_CLASS}+`}${part}`,
    )
    .join('');
  return { source, literal: false, re: new RegExp(`^${body}$`) };
}

/**
 * Compiles the entries of MCP_STDIO_ALLOWED_COMMANDS once; throws CommandAllowListError naming every bad
 * entry (empty, `**` anywhere but as the last token, `**` as the command).
 */
export function compileCommandAllowList(entries: readonly string[]): CommandAllowList {
  const problems: CommandAllowProblem[] = [];
  const compiled: CommandAllowEntry[] = [];
  entries.forEach((entry, index) => {
    const tokens = entry.trim().split(/\s+/).filter(Boolean);
    if (tokens.length === 0) {
      problems.push({ index, message: 'is empty' });
      return;
    }
    const doubleStar = tokens.findIndex((token) => token.includes('**'));
    if (doubleStar === 0) {
      problems.push({ index, message: `"${entry.trim()}": the command cannot be "**"` });
      return;
    }
    if (doubleStar > 0 && (doubleStar !== tokens.length - 1 || tokens[doubleStar] !== ANY_FURTHER_ARGS)) {
      problems.push({
        index,
        message: `"${entry.trim()}": "**" may only be the whole last token (any further arguments)`,
      });
      return;
    }
    const anyFurther = doubleStar > 0;
    const patterns = anyFurther ? tokens.slice(0, -1) : tokens;
    compiled.push(
      Object.freeze({ source: tokens.join(' '), tokens: Object.freeze(patterns.map(compileToken)), anyFurther }),
    );
  });
  if (problems.length > 0) throw new CommandAllowListError(problems);
  return Object.freeze(compiled);
}

export interface CommandMismatch {
  entry: string;
  /** 0 = the command, 1.. = args[position - 1]; the first token that failed. */
  position: number;
  reason: string;
}

export type CommandMatch = { allowed: true; entry: string } | { allowed: false; mismatches: CommandMismatch[] };

const MAX_SHOWN_CHARS = 60;
const show = (value: string): string =>
  JSON.stringify(value.length > MAX_SHOWN_CHARS ? `${value.slice(0, MAX_SHOWN_CHARS)}…` : value);

function mismatchOf(entry: CommandAllowEntry, line: readonly string[]): CommandMismatch | undefined {
  const { tokens } = entry;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as CompiledToken;
    const value = line[i];
    const what = i === 0 ? 'the command' : `argument ${i}`;
    if (value === undefined)
      return { entry: entry.source, position: i, reason: `${what} is missing (needs ${show(token.source)})` };
    if (!token.re.test(value)) {
      return {
        entry: entry.source,
        position: i,
        reason: `${what} ${show(value)} does not match ${show(token.source)}`,
      };
    }
  }
  if (line.length > tokens.length && !entry.anyFurther) {
    return {
      entry: entry.source,
      position: tokens.length,
      reason: `argument ${tokens.length} ${show(line[tokens.length] as string)} is one too many (the entry does not end with "**")`,
    };
  }
  return undefined;
}

/** Whether `[command, ...args]` matches an entry; when not, the first failing token of every entry. */
export function matchCommandLine(list: CommandAllowList, command: string, args: readonly string[]): CommandMatch {
  const line = [command, ...args];
  const mismatches: CommandMismatch[] = [];
  for (const entry of list) {
    const mismatch = mismatchOf(entry, line);
    if (!mismatch) return { allowed: true, entry: entry.source };
    mismatches.push(mismatch);
  }
  return { allowed: false, mismatches };
}
