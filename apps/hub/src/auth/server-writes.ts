import {
  AppError,
  keepMaskedSecrets,
  MASK,
  type Registry,
  type SecretBox,
  type ServerSpec,
  type ServerSpecBody,
  sealSpecSecrets,
} from '@mcp-hub/shared';
import type { Principal } from '../plugins/auth.js';
import { deniedUrlReason, type LocalDoors, localDoorReason } from '../security/url-guard.js';

export interface ServerWriteGuardOptions {
  registry: Registry;
  /** Whether a project exists (the admin names one in the body). */
  projectExists(id: string): Promise<boolean>;
  /** Encrypts `env` and `headers` values at rest; undefined: stored as given. */
  secrets: SecretBox | undefined;
  /** When set, the only commands a stdio server may run, compared exactly (`npx`, `/usr/local/bin/uvx`). */
  stdioAllowedCommands: readonly string[] | undefined;
  /** Refuse remote URLs that are or resolve to private, loopback or link-local addresses. */
  denyPrivateUrls: boolean;
  /** The hub's and the workers' ports on this host, refused as upstream URLs whatever denyPrivateUrls says. */
  localDoors(): LocalDoors;
}

/** Where a server's secrets go: its transport and URL, or its command line. */
function destination(spec: ServerSpecBody | ServerSpec): string {
  const c = spec.config as Record<string, unknown>;
  return JSON.stringify([spec.transport, c.url, c.baseUrl, c.command, c.args, c.cwd]);
}

function sendsMaskedSecrets(spec: ServerSpecBody): boolean {
  const c = spec.config as Record<string, unknown>;
  return ['env', 'headers'].some((field) => Object.values((c[field] as Record<string, string>) ?? {}).includes(MASK));
}

/**
 * The rules of a server write beyond its shape: which project it lands in, who may run host commands,
 * where remote servers may point, unique names per project, and secrets sealed before they are stored.
 */
export class ServerWriteGuard {
  constructor(private readonly opts: ServerWriteGuardOptions) {}

  /** The body to store, or an AppError (403 for powers the caller lacks, 404/409 for projects and names). */
  async prepare(principal: Principal, body: ServerSpecBody, before: ServerSpec | null): Promise<ServerSpecBody> {
    const project = await this.projectOf(principal, body, before);
    const next = { ...body, project } as ServerSpecBody;
    if (project === undefined) delete (next as { project?: string }).project;

    if (next.transport === 'stdio') this.checkStdio(principal, next.config.command);
    else await this.checkUrl(principal, next);
    await this.checkUniqueName(next);

    if (before && sendsMaskedSecrets(next) && destination(next) !== destination(before)) {
      // "***" keeps a stored secret; it must not follow the server to a new URL or command it was not meant for.
      throw new AppError(
        'invalid_request',
        'the server now points elsewhere (transport, URL or command changed): send its env and headers values again instead of "***"',
        [{ path: 'config', message: 'masked secrets with a new destination' }],
      );
    }
    const kept = keepMaskedSecrets(next, before ?? undefined);
    return this.opts.secrets ? sealSpecSecrets(kept, this.opts.secrets, before ?? undefined) : kept;
  }

  private async projectOf(
    principal: Principal,
    body: ServerSpecBody,
    before: ServerSpec | null,
  ): Promise<string | undefined> {
    if (principal.kind === 'key') {
      if (body.project !== undefined && body.project !== principal.project) {
        throw new AppError(
          'forbidden',
          `a key of project "${principal.project}" registers servers in that project only`,
        );
      }
      return principal.project;
    }
    const project = body.project ?? before?.project;
    if (project !== undefined && !(await this.opts.projectExists(project))) {
      throw new AppError('project_not_found', `project "${project}" not found`, { path: 'project' });
    }
    return project;
  }

  /**
   * A worker port is never an upstream (it would borrow another server's worker, the hub's own credential
   * included); nor is the hub's own port, except for the admin, whom it gives nothing new (`pnpm seed`'s
   * demo REST server is the hub's admin API). Private networks only when HUB_DENY_PRIVATE_URLS is on.
   */
  private async checkUrl(principal: Principal, spec: ServerSpecBody): Promise<void> {
    if (spec.transport === 'stdio') return;
    const url = spec.transport === 'rest' ? spec.config.baseUrl : spec.config.url;
    const path = spec.transport === 'rest' ? 'config.baseUrl' : 'config.url';
    const doors = this.opts.localDoors();
    const reason = await localDoorReason(url, principal.kind === 'admin' ? { ...doors, hubPorts: [] } : doors);
    if (reason) {
      throw new AppError('forbidden', `remote server URLs may not point at the hub or its workers: ${reason}`, {
        path,
      });
    }
    if (!this.opts.denyPrivateUrls) return;
    const privateReason = await deniedUrlReason(url);
    if (privateReason) {
      throw new AppError('forbidden', `remote server URLs may not point at private networks: ${privateReason}`, {
        path,
      });
    }
  }

  private checkStdio(principal: Principal, command: string): void {
    if (principal.kind === 'key' && principal.role !== 'owner') {
      throw new AppError(
        'forbidden',
        'stdio servers run a command on the host: only owner keys may register or change them',
      );
    }
    const allowed = this.opts.stdioAllowedCommands;
    // Exact match only: a basename match would let /tmp/anything/npx pass for "npx".
    if (allowed !== undefined && !allowed.includes(command)) {
      throw new AppError('forbidden', `command "${command}" is not in MCP_STDIO_ALLOWED_COMMANDS`, {
        path: 'config.command',
        allowed,
      });
    }
  }

  private async checkUniqueName(body: ServerSpecBody): Promise<void> {
    const clash = (await this.opts.registry.listServers()).find(
      (s) => s.id !== body.id && s.project === body.project && s.name === body.name,
    );
    if (clash) {
      throw new AppError(
        'server_exists',
        `a server named "${body.name}" already exists in ${body.project ? `project "${body.project}"` : 'the hub'}`,
        { path: 'name' },
      );
    }
  }
}
