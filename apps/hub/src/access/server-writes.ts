import {
  AppError,
  checkStdioLaunch,
  keepMaskedSecrets,
  MASK,
  moveUrlCredentials,
  type Registry,
  type SecretBox,
  type ServerSpec,
  type ServerSpecBody,
  type StdioPolicy,
  sealSpecSecrets,
} from '@mcp-hub/shared';
import { SHORTENED_NAME_KEEPS } from '../aggregate/catalog.js';
import type { Principal } from './principal.js';
import { deniedUrlReason, type LocalDoors, localDoorReason } from './url-guard.js';

export interface ServerWriteGuardOptions {
  registry: Registry;
  /** Whether a project exists (the admin names one in the body). */
  projectExists(id: string): Promise<boolean>;
  /** Encrypts `env` and `headers` values at rest; undefined: stored as given. */
  secrets: SecretBox | undefined;
  /** What stdio servers may run: command lines, hook variables in `env`, working directories. */
  stdio: StdioPolicy;
  /** Refuse remote URLs that are or resolve to private, loopback or link-local addresses. */
  denyPrivateUrls: boolean;
  /** MCP_TOOL_SEPARATOR: a namespace may not contain it nor end with its start, so that `<namespace><sep><tool>` splits one way only. */
  toolSeparator: string;
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
    // Credentials in a URL are a header in disguise: sealed, masked and never logged like one.
    const next = moveUrlCredentials({ ...body, project } as ServerSpecBody);
    if (project === undefined) delete (next as { project?: string }).project;
    this.checkNamespace(next);

    if (next.transport === 'stdio') {
      this.checkStdioRole(principal);
      // A "***" value keeps a stored one; only the names matter to the env check, so the merged spec is not needed.
      await checkStdioLaunch(this.opts.stdio, next.config);
    } else await this.checkUrl(next);
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
   * Neither a worker port (it would borrow another server's worker) nor the hub's own port (a server whose
   * headers carry a credential would lend it to everyone who may call its tools) is ever an upstream, for
   * anyone. Private networks only when HUB_DENY_PRIVATE_URLS is on.
   */
  private async checkUrl(spec: ServerSpecBody): Promise<void> {
    if (spec.transport === 'stdio') return;
    const url = spec.transport === 'rest' ? spec.config.baseUrl : spec.config.url;
    const path = spec.transport === 'rest' ? 'config.baseUrl' : 'config.url';
    const doors = this.opts.localDoors();
    const reason = await localDoorReason(url, doors);
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

  private checkStdioRole(principal: Principal): void {
    if (principal.kind === 'key' && principal.role !== 'owner') {
      throw new AppError(
        'forbidden',
        'stdio servers run a command on the host: only owner keys may register or change them',
      );
    }
  }

  /**
   * Uniqueness across the hub is the registry's atomic check; the separator is known only here. A namespace
   * may neither contain the separator nor end with the start of it: `evrest_` + `__` + `echo` and `evrest` +
   * `__` + `_echo` are both `evrest___echo`. With both rules, `<namespace><sep><tool>` splits one way only
   * (at the first separator), so one name can never belong to two namespaces. It must also fit, with the
   * separator, in what a shortened name keeps: else a shortened name could split into a shorter namespace
   * that another server holds.
   */
  private checkNamespace(body: ServerSpecBody): void {
    const sep = this.opts.toolSeparator;
    const ns = body.namespace;
    const partial = Array.from({ length: sep.length - 1 }, (_, i) => sep.slice(0, i + 1)).find((p) => ns.endsWith(p));
    const maxLength = SHORTENED_NAME_KEEPS - sep.length;
    const problem = ns.includes(sep)
      ? `contains the tool separator "${sep}"`
      : partial !== undefined
        ? `ends with "${partial}", the start of the tool separator "${sep}"`
        : ns.length > maxLength
          ? `is longer than ${maxLength} characters (with the tool separator "${sep}", it must fit in a shortened tool name)`
          : undefined;
    if (problem === undefined) return;
    const from = ns === body.id ? ' (it defaults to the id: set a namespace)' : '';
    throw new AppError('invalid_request', `invalid body: namespace: "${ns}" ${problem}${from}`, [
      {
        path: 'namespace',
        message: `must not contain the tool separator "${sep}" nor end with the start of it, and be at most ${maxLength} characters`,
      },
    ]);
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
