import { describe, expect, it } from 'vitest';
import { toToolResult } from './rest-upstream.js';

describe('toToolResult', () => {
  it('pretty-prints a JSON object and passes it as structuredContent', () => {
    expect(toToolResult(200, 'application/json; charset=utf-8', '{"a":1}')).toEqual({
      content: [{ type: 'text', text: '{\n  "a": 1\n}' }],
      structuredContent: { a: 1 },
      isError: false,
    });
  });

  it('keeps arrays, text and broken JSON as text only', () => {
    expect(toToolResult(200, 'application/problem+json', '[1]')).toEqual({
      content: [{ type: 'text', text: '[\n  1\n]' }],
      isError: false,
    });
    expect(toToolResult(200, 'text/plain', 'hi')).toEqual({ content: [{ type: 'text', text: 'hi' }], isError: false });
    expect(toToolResult(200, 'application/json', '{oops')).toEqual({
      content: [{ type: 'text', text: '{oops' }],
      isError: false,
    });
  });

  it('marks a non-2xx answer as an error that starts with its status', () => {
    expect(toToolResult(503, undefined, '')).toEqual({ content: [{ type: 'text', text: 'HTTP 503' }], isError: true });
    expect(toToolResult(404, ['application/json'], '{"e":"x"}')).toEqual({
      content: [{ type: 'text', text: 'HTTP 404\n{\n  "e": "x"\n}' }],
      structuredContent: { e: 'x' },
      isError: true,
    });
  });
});
