import type { FieldProblem, Logger } from '@mcp-hub/shared';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import addFormats from 'ajv-formats';
import { compileLinearPattern } from './linear-pattern.js';

export type ArgumentsValidator = (args: unknown) => FieldProblem[] | null;

const DRAFT_07_RE = /draft-0[4-7]/;

const UNCHECKED: { test(value: string): boolean } = { test: () => true };

/**
 * Tool schemas come from upstream servers (and REST tools from keys), and a `pattern` such as `^(a|aa)+$` or
 * `^(\p{L}|a)*$` would let one argument block the hub's event loop for minutes on a backtracking engine
 * (ReDoS). Every `pattern` and `patternProperties` key therefore runs on RE2 (linear in the input). A pattern
 * RE2 cannot run (lookarounds, backreferences) is not enforced by the hub — the upstream server still
 * validates — and `onUnenforced` is told, once per compiled schema.
 */
export function linearRegExpEngine(onUnenforced: (pattern: string) => void): RegExpEngine {
  const engine = (pattern: string) => {
    const compiled = compileLinearPattern(pattern);
    if (compiled) return compiled;
    onUnenforced(pattern);
    return UNCHECKED;
  };
  return Object.assign(engine, { code: 'linearPattern' });
}

function problemsOf(errors: ErrorObject[] | null | undefined): FieldProblem[] {
  return (errors ?? []).map((e) => {
    const missing =
      e.keyword === 'required' ? `/${String((e.params as { missingProperty?: string }).missingProperty)}` : '';
    const extra =
      e.keyword === 'additionalProperties'
        ? `/${String((e.params as { additionalProperty?: string }).additionalProperty)}`
        : '';
    const path = `${e.instancePath}${missing || extra}`.replace(/^\//, '').replaceAll('/', '.');
    return { path: path === '' ? '(arguments)' : path, message: e.message ?? e.keyword };
  });
}

/**
 * Compiles tools' input schemas (JSON Schema 2020-12 by default, as MCP says; draft-07 when the schema
 * names it). A schema that does not compile is logged once and not enforced: the upstream server still
 * validates, and a bad schema must not make its tool uncallable.
 */
export class ToolValidatorFactory {
  /** The tool whose schema is being compiled, for the log line of a pattern RE2 cannot run. */
  private compiling: { server: string; tool: string; logged: Set<string> } | undefined;
  private readonly regExp = linearRegExpEngine((pattern) => {
    const at = this.compiling;
    if (at?.logged.has(pattern)) return;
    at?.logged.add(pattern);
    this.log.warn(
      { event: 'tool.schema.unsafe_pattern', server: at?.server, tool: at?.tool, pattern },
      'a tool schema pattern cannot run in linear time (lookaround or backreference); the hub does not enforce it (the server still may)',
    );
  });
  private readonly modern = new Ajv2020({
    allErrors: true,
    strict: false,
    validateSchema: false,
    code: { regExp: this.regExp },
  });
  private readonly legacy = new Ajv({
    allErrors: true,
    strict: false,
    validateSchema: false,
    code: { regExp: this.regExp },
  });
  /** Compiled once per tool revision (its digest), however often the cache reloads the tool list. */
  private readonly compiled = new Map<string, ArgumentsValidator>();

  constructor(private readonly log: Logger) {
    const formats = addFormats as unknown as (ajv: Ajv | Ajv2020) => void;
    formats(this.modern);
    formats(this.legacy);
  }

  compile(serverId: string, toolName: string, digest: string, schema: Record<string, unknown>): ArgumentsValidator {
    const key = `${serverId}\u0000${toolName}\u0000${digest}`;
    let validator = this.compiled.get(key);
    if (!validator) {
      validator = this.build(serverId, toolName, schema);
      this.compiled.set(key, validator);
    }
    return validator;
  }

  /** Drops the validators of a deleted server. */
  forget(serverId: string): void {
    for (const key of this.compiled.keys()) if (key.startsWith(`${serverId}\u0000`)) this.compiled.delete(key);
  }

  private build(serverId: string, toolName: string, schema: Record<string, unknown>): ArgumentsValidator {
    const ajv = typeof schema.$schema === 'string' && DRAFT_07_RE.test(schema.$schema) ? this.legacy : this.modern;
    let validate: ValidateFunction;
    this.compiling = { server: serverId, tool: toolName, logged: new Set() };
    try {
      const { $id: _id, ...rest } = schema; // ids would collide across servers in one Ajv instance
      validate = ajv.compile(rest);
      ajv.removeSchema(rest); // Ajv caches by schema object; our own map is the cache
    } catch (err) {
      this.log.warn(
        { event: 'tool.schema.invalid', server: serverId, tool: toolName, err },
        'tool input schema does not compile; arguments are passed on unchecked',
      );
      return () => null;
    } finally {
      this.compiling = undefined;
    }
    return (args) => (validate(args) ? null : problemsOf(validate.errors));
  }
}
