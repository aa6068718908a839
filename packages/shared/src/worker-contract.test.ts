import { describe, expect, it } from 'vitest';
import { AppError, errorHeaders } from './errors.js';
import { isRequestId } from './ids.js';
import { parseToolCallFrame, toolCallFrame, WORKER_ROUTES, workerToolPath } from './worker-contract.js';

describe('the tool-call stream', () => {
  it('reads back every event the worker writes', () => {
    const progress = { request_id: 'r-1', progress: 2, total: 5, message: 'half' };
    const result = { request_id: 'r-1', content: [{ type: 'text', text: 'hi' }], isError: false };
    const error = { request_id: 'r-1', code: 'tool_timeout', message: 'too slow' };
    for (const [event, data] of [
      ['progress', progress],
      ['result', result],
      ['error', error],
    ] as const) {
      const frame = toolCallFrame(event, data as never);
      expect(frame.endsWith('\n\n')).toBe(true);
      expect(parseToolCallFrame(frame.slice(0, -2))).toEqual({ event, data });
    }
  });

  it('skips keep-alive comments and unknown events, and refuses a malformed known one', () => {
    expect(parseToolCallFrame(': keep-alive')).toBeUndefined();
    expect(parseToolCallFrame('event: other\ndata: {}')).toBeUndefined();
    expect(() => parseToolCallFrame('event: result\ndata: {"request_id":"r","content":"x"}')).toThrow();
    expect(() => parseToolCallFrame('event: progress\ndata: not json')).toThrow(SyntaxError);
  });

  it('escapes tool names in the call path', () => {
    expect(workerToolPath('a/b c')).toBe('/tools/a%2Fb%20c');
    expect(WORKER_ROUTES.toolCall).toBe('/tools/:tool');
  });
});

describe('error headers, declared once with their code', () => {
  it('Retry-After is 1 s on the retryable 503s, the limiter figure on 429, absent elsewhere', () => {
    expect(errorHeaders(new AppError('worker_unavailable', 'x'))).toEqual({ 'retry-after': '1' });
    expect(errorHeaders(new AppError('redis_unavailable', 'x'))).toEqual({ 'retry-after': '1' });
    expect(errorHeaders(new AppError('rate_limited', 'x', { retryAfterS: 42 }))).toEqual({ 'retry-after': '42' });
    expect(errorHeaders(new AppError('unauthorized', 'x'))).toEqual({ 'www-authenticate': 'Bearer realm="mcp-hub"' });
    expect(errorHeaders(new AppError('server_not_found', 'x'))).toEqual({});
  });
});

describe('request ids', () => {
  it('takes header-safe ids and refuses others', () => {
    expect(isRequestId('a6d9-01.x:y_z')).toBe(true);
    expect(isRequestId('')).toBe(false);
    expect(isRequestId('has space')).toBe(false);
    expect(isRequestId('x'.repeat(129))).toBe(false);
  });
});
