import { setFlagsFromString } from 'node:v8';
import type { FieldProblem, Logger } from '@mcp-hub/shared';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import addFormats from 'ajv-formats';
import isSafeRegex from 'safe-regex2';

export type ArgumentsValidator = (args: unknown) => FieldProblem[] | null;

const DRAFT_07_RE = /draft-0[4-7]/;

// Tool schemas come from upstream servers, and a `pattern` such as `^(a|aa)+$` would let one argument
// block the hub's event loop for minutes (ReDoS). V8 can switch a regular expression to its linear-time
// engine once it backtracks too much; that engine has no `u` flag, so patterns without Unicode syntax are
// compiled without it (`.` then matches a UTF-16 unit rather than a code point).
setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
const UNICODE_SYNTAX_RE = /\\[pPu]\{|\\u[dD][89a-fA-F]|[\uD800-\uDFFF]/;
const UNCHECKED: { test(value: string): boolean } = { test: () => true };

/**
 * Compiles a schema `pattern` so that no argument can make it run long: without `u` (linear fallback) when it
 * needs no Unicode syntax; with `u` only when it passes the star-height check of safe-regex2; otherwise not
 * enforced by the hub (the upstream server still validates). Calls `onUnsafe` for the last case.
 */
export function guardedRegExpEngine(onUnsafe: (pattern: string) => void): RegExpEngine {
  const engine = (pattern: string, flags: string) => {
    if (!UNICODE_SYNTAX_RE.test(pattern)) return new RegExp(pattern, flags.replace('u', ''));
    if (isSafeRegex(new RegExp(pattern, flags))) return new RegExp(pattern, flags);
    onUnsafe(pattern);
    return UNCHECKED;
  };
  return Object.assign(engine, { code: 'new RegExp' });
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
  private readonly regExp = guardedRegExpEngine((pattern) =>
    this.log.warn(
      { event: 'tool.schema.unsafe_pattern', pattern },
      'a tool schema pattern can backtrack without bound; the hub does not enforce it (the server still may)',
    ),
  );
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
    }
    return (args) => (validate(args) ? null : problemsOf(validate.errors));
  }
}
