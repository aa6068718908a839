import type { FastifyRequest } from 'fastify';
import type { Principal } from '../access/principal.js';
import type { AuditActor, AuditStream } from './audit-stream.js';

/** The actor of an audit entry: the key (and its member), or the admin token. */
export function actorOf(principal: Principal): AuditActor {
  if (principal.kind === 'key') return { keyId: principal.keyId, member: principal.member };
  return { admin: true };
}

/** Appends audit entries for the admin routes, taking who and the request id from the request. */
export class AuditTrail {
  constructor(private readonly stream: AuditStream) {}

  async record(
    req: FastifyRequest,
    action: string,
    resource: { type: string; id: string },
    project: string | undefined,
    before: unknown,
    after: unknown,
  ): Promise<void> {
    await this.stream.append({
      actor: actorOf(req.principal),
      action,
      resource,
      project,
      requestId: req.id,
      before: before ?? undefined,
      after: after ?? undefined,
    });
  }
}
