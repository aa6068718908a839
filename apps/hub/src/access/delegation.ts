import { AppError } from '@mcp-hub/shared';
import type { ApiKeyInfo, CreateKeyBody, KeyLimits } from '../stores/project-schemas.js';
import type { Principal } from './principal.js';
import { ROLE_SCOPES, roleAtLeast } from './roles.js';

type KeyPrincipal = Extract<Principal, { kind: 'key' }>;

const WINDOWS = ['perHour', 'perDay'] as const;

function forbidden(message: string, path: string): AppError {
  return new AppError('forbidden', `a key cannot give more than it has: ${message}`, { path });
}

/** Whether `next` limits at least as tightly as `own`: every limit `own` sets, `next` sets no higher. */
function limitsWithin(next: KeyLimits | undefined, own: KeyLimits | undefined): string | undefined {
  if (!own) return undefined;
  const check = (a: number | undefined, b: number | undefined, name: string) =>
    b !== undefined && (a === undefined || a > b) ? `limits.${name} must be set to at most ${b}` : undefined;
  for (const w of [...WINDOWS, 'concurrent'] as const) {
    const problem = check(next?.[w], own[w], w);
    if (problem) return problem;
  }
  for (const group of ['perServer', 'perTool'] as const) {
    for (const w of WINDOWS) {
      const problem = check(next?.[group]?.[w], own[group]?.[w], `${group}.${w}`);
      if (problem) return problem;
    }
  }
  return undefined;
}

/**
 * A key that creates a key can only hand on what it has: a role no higher, scopes it holds, an expiry no
 * later than its own, limits no looser, and its own member binding. (The admin token is not limited.)
 */
export function checkKeyCreation(principal: Principal, body: CreateKeyBody): void {
  if (principal.kind !== 'key') return;
  const caller: KeyPrincipal = principal;
  if (!roleAtLeast(caller.role, body.role)) throw forbidden(`the key is a ${caller.role}`, 'role');
  const scopes = body.scopes ?? ROLE_SCOPES[body.role];
  const extra = scopes.filter((s) => !caller.scopes.includes(s));
  if (extra.length > 0) throw forbidden(`the key lacks ${extra.join(', ')}`, 'scopes');
  if (caller.expiresAt !== undefined) {
    if (body.expiresAt === undefined || Date.parse(body.expiresAt) > Date.parse(caller.expiresAt)) {
      throw forbidden(`expiresAt must be set, no later than ${caller.expiresAt}`, 'expiresAt');
    }
  }
  const limits = limitsWithin(body.limits, caller.limits);
  if (limits) throw forbidden(limits, 'limits');
  if (caller.member !== undefined && body.member !== caller.member) {
    throw forbidden(`the key belongs to member "${caller.member}", and so must the new one`, 'member');
  }
}

/** Rotating hands out a new secret for `target`: only a key holding at least its powers may. */
export function checkKeyRotation(principal: Principal, target: ApiKeyInfo): void {
  if (principal.kind !== 'key') return;
  checkKeyCreation(principal, {
    name: target.name,
    role: target.role,
    scopes: target.scopes,
    expiresAt: target.expiresAt,
    limits: target.limits,
    member: target.member,
  });
}
