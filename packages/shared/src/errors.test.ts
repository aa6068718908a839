import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, ERROR_STATUS, errorBody } from './errors.js';

describe('error codes', () => {
  it('every code has a status and a row in docs/errors.md with that status, and the doc lists no other', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const rows = new Map<string, number>();
    for (const match of doc.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|/gm))
      rows.set(match[1] as string, Number(match[2]));
    for (const code of ERROR_CODES) {
      expect(ERROR_STATUS[code], code).toBeGreaterThanOrEqual(400);
      expect(rows.get(code), `docs/errors.md row for ${code}`).toBe(ERROR_STATUS[code]);
    }
    expect([...rows.keys()].sort()).toEqual([...ERROR_CODES].sort());
  });

  it('serializes to the one error shape', () => {
    const err = new AppError('server_not_found', 'server "x" not found');
    expect(err.statusCode).toBe(404);
    expect(errorBody(err, 'req-1')).toEqual({
      error: { code: 'server_not_found', message: 'server "x" not found' },
      request_id: 'req-1',
    });
    expect(errorBody(new AppError('invalid_request', 'bad', [{ path: 'id' }]), 'r').error.details).toEqual([
      { path: 'id' },
    ]);
  });
});
