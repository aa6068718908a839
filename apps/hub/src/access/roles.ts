/** Roles from most to least powerful. */
export const ROLES = ['owner', 'developer', 'reporter'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a key may do. A key's scopes are a subset of its role's, and default to all of them:
 * - `servers:read`   list and read the project's servers and tools (secrets masked);
 * - `servers:write`  create, replace, delete and restart the project's servers (and groups);
 * - `tools:call`     call tools (`/mcp/...`);
 * - `usage:read`     read usage and limit counters;
 * - `audit:read`     read the project's audit log;
 * - `members:manage` add, change and remove members;
 * - `keys:manage`    create, list, rotate and revoke keys.
 */
export const SCOPES = [
  'servers:read',
  'servers:write',
  'tools:call',
  'usage:read',
  'audit:read',
  'members:manage',
  'keys:manage',
] as const;
export type Scope = (typeof SCOPES)[number];

/** The scopes each role grants: owner everything; developer servers, calls and reading; reporter read and call. */
export const ROLE_SCOPES: Readonly<Record<Role, readonly Scope[]>> = Object.freeze({
  owner: SCOPES,
  // Usage and audit are the owner's (issue 6: "GET /api/usage/:keyId (owner of the project, or admin)").
  developer: ['servers:read', 'servers:write', 'tools:call'],
  reporter: ['servers:read', 'tools:call'],
});

/** True when `role` has at least the powers of `min`. */
export function roleAtLeast(role: Role, min: Role): boolean {
  return ROLES.indexOf(role) <= ROLES.indexOf(min);
}

/** The less powerful of two roles. */
export function lesserRole(a: Role, b: Role): Role {
  return roleAtLeast(a, b) ? b : a;
}
