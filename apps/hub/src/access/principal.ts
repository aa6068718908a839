import type { KeyLimits } from '../stores/project-schemas.js';
import type { Role, Scope } from './roles.js';

/** Who is asking. `admin` is the bootstrap token (or anyone without credentials, when the hub runs with HUB_AUTH=none). */
export type Principal =
  | { kind: 'admin'; via: 'token' | 'open' }
  | {
      kind: 'key';
      keyId: string;
      project: string;
      role: Role;
      scopes: readonly Scope[];
      member?: string;
      limits?: KeyLimits;
      /** The key's own expiry (ISO 8601), when it has one. */
      expiresAt?: string;
    }
  | { kind: 'anonymous' };

export type KeyCheck =
  | { ok: true; principal: Extract<Principal, { kind: 'key' }>; expiresAtMs: number }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' | 'expired' };

/** The project a key acts in; admins act in every project. */
export function principalProject(principal: Principal): string | undefined {
  return principal.kind === 'key' ? principal.project : undefined;
}

/** Whether the principal may see a resource of `project` (admins see all; keys only their own project). */
export function canSee(principal: Principal, project: string | undefined): boolean {
  if (principal.kind === 'admin') return true;
  return principal.kind === 'key' && project !== undefined && project === principal.project;
}
