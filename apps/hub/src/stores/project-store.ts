import { AppError, defineScripts, type InvalidRecordHandler, parseOrThrow, type RedisKeys } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import type { Role } from '../access/roles.js';
import { ApiKeyStore } from './api-key-store.js';
import {
  type AddMemberBody,
  AddMemberBodySchema,
  type CreateProjectBody,
  CreateProjectBodySchema,
  type Member,
  MemberSchema,
  type Project,
  ProjectSchema,
} from './project-schemas.js';
import { projectNotFound, RedisRecordStore, sortById } from './store-records.js';

/**
 * KEYS[1] projects hash, KEYS[2] members hash of the project
 * ARGV[1] project id, ARGV[2] member id, ARGV[3] expected member JSON ('' = absent), ARGV[4] new member JSON
 * Returns ok | no_project | changed (the member was written by someone else since it was read).
 */
const PUT_MEMBER = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'no_project' end
local current = redis.call('HGET', KEYS[2], ARGV[2]) or ''
if current ~= ARGV[3] then return 'changed' end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
return 'ok'
`;

type PutMemberStatus = 'ok' | 'no_project' | 'changed';

interface ProjectCommands {
  mcpPutMember(...args: string[]): Promise<PutMemberStatus>;
}

/**
 * Projects and their members; their API keys are `apiKeys`. Every write that touches more than one key, or
 * reads before it writes, is one Lua script (compare-and-set on the JSON read), so concurrent hub replicas
 * never lose an update. `clock` returns epoch milliseconds.
 */
export class ProjectStore extends RedisRecordStore {
  private readonly redis: Redis & ProjectCommands;
  /** The projects' API keys (removing a member revokes theirs). */
  readonly apiKeys: ApiKeyStore;

  constructor(
    redis: Redis,
    readonly keys: RedisKeys,
    clock: () => number = Date.now,
    onInvalid: InvalidRecordHandler = () => {},
  ) {
    super(clock, onInvalid);
    this.redis = defineScripts<ProjectCommands>(redis, { mcpPutMember: { numberOfKeys: 2, lua: PUT_MEMBER } });
    this.apiKeys = new ApiKeyStore(redis, keys, this, clock, onInvalid);
  }

  // ---- projects -------------------------------------------------------------------------------------------

  /** Creates a project; throws invalid_request, project_exists. */
  async createProject(input: CreateProjectBody): Promise<Project> {
    const body = parseOrThrow(CreateProjectBodySchema, input, 'project');
    const project: Project = { id: body.id, name: body.name, createdAt: this.nowIso() };
    const created = await this.redis.hsetnx(this.keys.projects, project.id, JSON.stringify(project));
    if (created === 0) throw new AppError('project_exists', `project "${project.id}" already exists`);
    return project;
  }

  /** All projects, sorted by id. */
  async listProjects(): Promise<Project[]> {
    const all = await this.redis.hgetall(this.keys.projects);
    return sortById(this.parseAll(this.keys.projects, all, ProjectSchema));
  }

  async getProject(id: string): Promise<Project | null> {
    const json = await this.redis.hget(this.keys.projects, id);
    return json === null ? null : this.parse(this.keys.projects, id, json, ProjectSchema);
  }

  /** Like getProject, but throws project_not_found. */
  async requireProject(id: string): Promise<Project> {
    const project = await this.getProject(id);
    if (!project) throw projectNotFound(id);
    return project;
  }

  /** The projects `memberId` belongs to, with the role in each, sorted by project id. */
  async projectsOfMember(memberId: string): Promise<{ project: Project; role: Role }[]> {
    const projects = await this.listProjects();
    if (projects.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const project of projects) pipeline.hget(this.keys.members(project.id), memberId);
    const replies = (await pipeline.exec()) ?? [];
    const out: { project: Project; role: Role }[] = [];
    projects.forEach((project, i) => {
      const json = replies[i]?.[1];
      if (typeof json !== 'string') return;
      const member = this.parse(this.keys.members(project.id), memberId, json, MemberSchema);
      if (member) out.push({ project, role: member.role });
    });
    return out;
  }

  // ---- members --------------------------------------------------------------------------------------------

  /** Adds a member or changes their role; throws invalid_request, project_not_found. */
  async addMember(projectId: string, input: AddMemberBody): Promise<Member> {
    const body = parseOrThrow(AddMemberBodySchema, input, 'member');
    return this.retry(async () => {
      const key = this.keys.members(projectId);
      const currentJson = (await this.redis.hget(key, body.id)) ?? '';
      const current = currentJson === '' ? null : this.parse(key, body.id, currentJson, MemberSchema);
      const now = this.nowIso();
      const member: Member = current
        ? { id: body.id, role: body.role, addedAt: current.addedAt, updatedAt: now }
        : { id: body.id, role: body.role, addedAt: now };
      const status = await this.redis.mcpPutMember(
        this.keys.projects,
        key,
        projectId,
        body.id,
        currentJson,
        JSON.stringify(member),
      );
      if (status === 'no_project') throw projectNotFound(projectId);
      return status === 'ok' ? member : undefined;
    });
  }

  /**
   * Removes a member and revokes their keys; throws project_not_found, member_not_found. Authentication
   * already refuses a key whose member is gone, so the revocations that follow only make that visible.
   */
  async removeMember(projectId: string, memberId: string): Promise<void> {
    await this.requireProject(projectId);
    if ((await this.redis.hdel(this.keys.members(projectId), memberId)) === 0) {
      throw new AppError('member_not_found', `project "${projectId}" has no member "${memberId}"`);
    }
    for (const key of await this.apiKeys.listKeys(projectId)) {
      if (key.member === memberId && !key.revokedAt) await this.apiKeys.revokeKey(projectId, key.id);
    }
  }

  /** The members of a project, sorted by id; throws project_not_found. */
  async listMembers(projectId: string): Promise<Member[]> {
    await this.requireProject(projectId);
    const key = this.keys.members(projectId);
    return sortById(this.parseAll(key, await this.redis.hgetall(key), MemberSchema));
  }

  async getMember(projectId: string, memberId: string): Promise<Member | null> {
    const key = this.keys.members(projectId);
    const json = await this.redis.hget(key, memberId);
    return json === null ? null : this.parse(key, memberId, json, MemberSchema);
  }
}
