import { describe, expect, it } from 'vitest';
import { runtimeFromHash, runtimeToHash, ServerInputSchema, specBodyFromInput } from './schemas.js';
import { describeProblems, zodProblems } from './validation.js';

function problems(input: unknown): string {
  const result = ServerInputSchema.safeParse(input);
  if (result.success) return '';
  return describeProblems(zodProblems(result.error));
}

describe('server specs', () => {
  it('fills defaults: name and namespace from id, enabled, tags, timeout, args, env', () => {
    const parsed = ServerInputSchema.parse({ id: 'fs', transport: 'stdio', config: { command: 'npx' } });
    expect(specBodyFromInput(parsed)).toEqual({
      id: 'fs',
      name: 'fs',
      namespace: 'fs',
      transport: 'stdio',
      config: { command: 'npx', args: [], env: {} },
      tags: [],
      enabled: true,
      timeoutMs: 60_000,
    });
  });

  it('names the bad field for each transport', () => {
    expect(problems({ id: 'x', transport: 'stdio', config: { command: '' } })).toBe(
      'config.command: command must not be empty',
    );
    expect(problems({ id: 'x', transport: 'sse', config: { url: 'ftp://host' } })).toBe(
      'config.url: url must be an absolute http:// or https:// URL',
    );
    expect(problems({ id: 'x', transport: 'streamable-http', config: { url: 'https://h', headers: { a: 1 } } })).toBe(
      'config.headers.a: every value of headers must be a string',
    );
    expect(problems({ id: 'x', transport: 'carrier-pigeon', config: {} })).toBe(
      'transport: transport must be one of stdio, sse, streamable-http, rest',
    );
    expect(problems({ id: 'Bad Id', transport: 'stdio', config: { command: 'a' } })).toMatch(/^id: id must be/);
    expect(problems({ id: 'x', transport: 'stdio', config: { command: 'a' }, colour: 'red' })).toBe(
      'colour: unknown field "colour"',
    );
    expect(problems({ id: 'x', transport: 'stdio', config: { command: 'a', shell: true } })).toBe(
      'config.shell: unknown field "shell"',
    );
  });

  it('validates rest tools: methods, paths, placeholders and duplicate names', () => {
    const base = { id: 'api', transport: 'rest' };
    expect(problems({ ...base, config: { baseUrl: 'http://localhost:1', tools: [] } })).toBe(
      'config.tools: a rest server needs at least one tool',
    );
    const tool = { name: 'get_user', method: 'GET', path: '/users/{id}' };
    expect(problems({ ...base, config: { baseUrl: 'http://localhost:1', tools: [tool] } })).toBe('');
    expect(
      problems({ ...base, config: { baseUrl: 'http://l', tools: [{ ...tool, argLocations: { id: 'query' } }] } }),
    ).toBe('config.tools[0].argLocations.id: "id" is a placeholder in path, so its location must be "path"');
    expect(problems({ ...base, config: { baseUrl: 'http://l', tools: [tool, tool] } })).toBe(
      'config.tools[1].name: duplicate tool name "get_user"',
    );
    expect(problems({ ...base, config: { baseUrl: 'http://l', tools: [{ ...tool, method: 'TRACE' }] } })).toMatch(
      /^config.tools\[0\].method: method must be one of/,
    );
    expect(
      problems({ ...base, config: { baseUrl: 'http://l', tools: [{ ...tool, inputSchema: { type: 'array' } }] } }),
    ).toBe('config.tools[0].inputSchema.type: inputSchema.type must be "object"');
  });
});

describe('runtime records', () => {
  it('round-trips through Redis hash fields in snake_case', () => {
    const hash = runtimeToHash({
      status: 'running',
      pid: 42,
      port: 41000,
      startedAt: '2026-01-01T00:00:00Z',
      restarts: 2,
    });
    expect(hash).toEqual({
      status: 'running',
      pid: '42',
      port: '41000',
      started_at: '2026-01-01T00:00:00Z',
      restarts: '2',
    });
    expect(runtimeFromHash(hash)).toEqual({
      status: 'running',
      pid: 42,
      port: 41000,
      startedAt: '2026-01-01T00:00:00Z',
      restarts: 2,
    });
    expect(runtimeFromHash({})).toBeNull();
  });
});
