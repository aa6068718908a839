import { describe, expect, it } from 'vitest';
import { boundToolList, TOOL_LIST_MAX_BYTES, TOOL_MAX_BYTES, TOOLS_MAX_PER_SERVER } from './tool-limits.js';

const tool = (name: string, descriptionBytes = 0) => ({
  name,
  description: 'd'.repeat(descriptionBytes),
  inputSchema: { type: 'object' as const },
});

describe('what a worker stores of a tools/list', () => {
  it('leaves out a tool over TOOL_MAX_BYTES and keeps the others', () => {
    const { kept, refused } = boundToolList([tool('a'), tool('huge', TOOL_MAX_BYTES), tool('b')]);
    expect(kept.map((t) => t.name)).toEqual(['a', 'b']);
    expect(refused).toEqual([expect.objectContaining({ name: 'huge', reason: 'tool_too_large' })]);
  });

  it('keeps at most TOOLS_MAX_PER_SERVER tools, in the order listed', () => {
    const tools = Array.from({ length: TOOLS_MAX_PER_SERVER + 5 }, (_, i) => tool(`t${i}`));
    const { kept, refused } = boundToolList(tools);
    expect(kept).toHaveLength(TOOLS_MAX_PER_SERVER);
    expect(refused.map((r) => r.reason)).toEqual(Array(5).fill('too_many_tools'));
  });

  it('keeps at most TOOL_LIST_MAX_BYTES in all', () => {
    const each = TOOL_MAX_BYTES - 1_000;
    const tools = Array.from({ length: Math.ceil(TOOL_LIST_MAX_BYTES / each) + 3 }, (_, i) => tool(`t${i}`, each));
    const { kept, refused } = boundToolList(tools);
    expect(kept.length * TOOL_MAX_BYTES).toBeLessThanOrEqual(TOOL_LIST_MAX_BYTES + TOOL_MAX_BYTES);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => r.reason === 'tool_list_too_large')).toBe(true);
  });
});
