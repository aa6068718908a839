import type { ServerSpec, Tool } from '@mcp-hub/shared';
import { describe, expect, it } from 'vitest';
import { Catalog, exposedName, MAX_TOOL_NAME } from '../src/aggregate/catalog.js';

function spec(id: string, namespace = id): ServerSpec {
  return {
    id,
    name: id,
    namespace,
    tags: [],
    enabled: true,
    timeoutMs: 1000,
    rev: 1,
    createdAt: '',
    updatedAt: '',
    transport: 'stdio',
    config: { command: 'x', args: [], env: {} },
  } as ServerSpec;
}

function tool(name: string): Tool {
  return { name, inputSchema: { type: 'object' }, rev: 1, digest: name };
}

describe('aggregated tool names', () => {
  it('prefixes tools with the namespace and the separator', () => {
    const catalog = new Catalog([{ spec: spec('everything'), tools: [tool('echo'), tool('add')] }], '__');
    expect(catalog.entries.map((e) => e.name)).toEqual(['everything__add', 'everything__echo']);
    expect(catalog.resolve('everything__echo')?.tool.name).toBe('echo');
    // `namespace.tool` resolves too.
    expect(catalog.resolve('everything.echo')?.serverId).toBe('everything');
    expect(catalog.resolve('echo')).toBeUndefined();
  });

  it('keeps names within 64 characters with a stable hash suffix, and resolves the long name as an alias', () => {
    const long = 'a'.repeat(70);
    const name = exposedName('srv', long, '__');
    expect(name.length).toBe(MAX_TOOL_NAME);
    expect(name).toMatch(/^srv__a+_[0-9a-f]{8}$/);
    expect(exposedName('srv', long, '__')).toBe(name);
    expect(exposedName('srv', `${'a'.repeat(69)}b`, '__')).not.toBe(name);
    const catalog = new Catalog([{ spec: spec('srv'), tools: [tool(long)] }], '__');
    expect(catalog.resolve(name)?.tool.name).toBe(long);
    expect(catalog.resolve(`srv__${long}`)?.tool.name).toBe(long);
  });

  it('gives a name two tools answer to to neither, whatever the order (no first-by-id capture)', () => {
    const servers = [
      { spec: spec('zeta', 'shared'), tools: [tool('echo')] },
      { spec: spec('alpha', 'shared'), tools: [tool('echo'), tool('only-alpha')] },
    ];
    for (const order of [servers, [...servers].reverse()]) {
      const catalog = new Catalog(order, '__');
      expect(catalog.entries.map((e) => `${e.serverId}:${e.name}`)).toEqual(['alpha:shared__only-alpha']);
      expect(catalog.resolve('shared__echo')).toBeUndefined();
      expect(catalog.resolve('shared.echo')).toBeUndefined();
      expect(catalog.resolve('shared.only-alpha')?.serverId).toBe('alpha');
      expect(catalog.suppressed).toEqual([
        { name: 'shared__echo', serverIds: ['alpha', 'zeta'] },
        { name: 'shared.echo', serverIds: ['alpha', 'zeta'] },
      ]);
    }
  });

  it('drops a name that two namespaces split differently (written before the separator rule)', () => {
    const catalog = new Catalog(
      [
        { spec: spec('one', 'a__b'), tools: [tool('c')] },
        { spec: spec('two', 'a'), tools: [tool('b__c'), tool('d')] },
      ],
      '__',
    );
    expect(catalog.entries.map((e) => e.name)).toEqual(['a__d']);
    expect(catalog.resolve('a__b__c')).toBeUndefined();
  });

  it('uses the configured separator', () => {
    const catalog = new Catalog([{ spec: spec('mem', 'memory'), tools: [tool('read_graph')] }], '-');
    expect(catalog.entries[0]?.name).toBe('memory-read_graph');
  });
});
