import { canonicalJson, DEFAULT_TOOL_VALIDATORS_MAX, type FieldProblem, type Logger } from '@mcp-hub/shared';
import {
  Ajv,
  type ErrorObject,
  type FuncKeywordDefinition,
  type SchemaValidateFunction,
  type ValidateFunction,
} from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import addFormats from 'ajv-formats';
import { compileLinearPattern } from './linear-pattern.js';
import { budgetSchema, LINEAR_UNIQUE_ITEMS_KEYWORD } from './schema-budget.js';

export type ArgumentsValidator = (args: unknown) => FieldProblem[] | null;

const DRAFT_07_RE = /draft-0[4-7]/;

const UNCHECKED: { test(value: string): boolean } = { test: () => true };

/**
 * Pattern matching one call may do, in units of about 80 ns (one character of the slowest RE2 match measured; a
 * test costs PATTERN_TEST_UNITS more): about 20 ms. RE2 is linear, but a schema within budget may still apply many
 * patterns to every string or key of a 1 MiB argument (16 patternProperties × 60,000 keys: 0.5 s); past this
 * the remaining pattern checks of the call pass, left to the upstream.
 */
export const PATTERN_UNITS_PER_CALL = 262_144;
const PATTERN_TEST_UNITS = 12;

/** What is left of the current call's pattern work; reset before each validation. */
export interface PatternMeter {
  left: number;
  spent: boolean;
}

/**
 * Tool schemas come from upstream servers (and REST tools from keys), and a \`pattern\` such as \`^(a|aa)+$\` or
 * \`^(\p{L}|a)*$\` would let one argument block the hub's event loop for minutes on a backtracking engine
 * (ReDoS). Every \`pattern\` and \`patternProperties\` key therefore runs on RE2 (linear in the input), metered by
 * \`meter\` when given. A pattern RE2 cannot run (lookarounds, backreferences) is not enforced by the hub — the
 * upstream server still validates — and \`onUnenforced\` is told, once per compiled schema.
 */
export function linearRegExpEngine(onUnenforced: (pattern: string) => void, meter?: PatternMeter): RegExpEngine {
  const engine = (pattern: string) => {
    const compiled = compileLinearPattern(pattern);
    if (!compiled) {
      onUnenforced(pattern);
      return UNCHECKED;
    }
    if (!meter) return compiled;
    return {
      test(value: string) {
        meter.left -= PATTERN_TEST_UNITS + value.length;
        if (meter.left >= 0) return compiled.test(value);
        meter.spent = true;
        return true;
      },
    };
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
 * Compiles after which the Ajv instances are replaced: Ajv keeps every compiled schema's values in its own scope
 * (removeSchema does not free them), so one instance would grow with every schema change of every server.
 * Validators already compiled keep working; they hold what they need.
 */
const COMPILES_PER_AJV = 100;

/**
 * Ajv's keyword for `uniqueItems: true` (renamed by budgetSchema): one canonical-JSON key per item in a set, so
 * linear in the array instead of Ajv's comparison of every pair.
 */
function linearUniqueItems(): FuncKeywordDefinition {
  const validate: SchemaValidateFunction = (enabled: unknown, data: unknown) => {
    validate.errors = undefined;
    if (enabled !== true || !Array.isArray(data)) return true;
    const seen = new Map<string, number>();
    for (let i = 0; i < data.length; i++) {
      const key = canonicalJson(data[i]);
      const j = seen.get(key);
      if (j !== undefined) {
        validate.errors = [
          {
            keyword: 'uniqueItems',
            message: `must NOT have duplicate items (items ## ${j} and ${i} are identical)`,
            params: { i: j, j: i },
          },
        ];
        return false;
      }
      seen.set(key, i);
    }
    return true;
  };
  return { keyword: LINEAR_UNIQUE_ITEMS_KEYWORD, type: 'array', schemaType: 'boolean', errors: true, validate };
}

interface CompiledTool {
  digest: string;
  validate: ArgumentsValidator;
}

/**
 * Compiles tools' input schemas (JSON Schema 2020-12 by default, as MCP says; draft-07 when the schema
 * names it). A schema over the compile budget (validation/schema-budget.ts) or that does not compile is logged once per
 * tool revision and not enforced: the upstream server still validates, and a schema must neither stall the hub
 * nor make its tool uncallable.
 */
export class ToolValidatorFactory {
  /** The tool whose schema is being compiled, for the log line of a pattern RE2 cannot run. */
  private compiling: { server: string; tool: string; logged: Set<string> } | undefined;
  private readonly meter: PatternMeter = { left: PATTERN_UNITS_PER_CALL, spent: false };
  private readonly regExp = linearRegExpEngine((pattern) => {
    const at = this.compiling;
    if (at?.logged.has(pattern)) return;
    at?.logged.add(pattern);
    this.log.warn(
      { event: 'tool.schema.unsafe_pattern', server: at?.server, tool: at?.tool, pattern },
      'a tool schema pattern cannot run in linear time (lookaround or backreference); the hub does not enforce it (the server still may)',
    );
  }, this.meter);
  private modern!: Ajv2020;
  private legacy!: Ajv;
  private compilesLeft = 0;
  /**
   * The latest revision of each tool, by `server\0tool`, in least-recently-used order (a Map iterates in
   * insertion order; a hit is moved to the end).
   */
  private readonly compiled = new Map<string, CompiledTool>();

  constructor(
    private readonly log: Logger,
    private readonly maxValidators: number = DEFAULT_TOOL_VALIDATORS_MAX,
  ) {}

  /** How many validators are held (at most one per tool, at most `maxValidators`). */
  get size(): number {
    return this.compiled.size;
  }

  compile(serverId: string, toolName: string, digest: string, schema: Record<string, unknown>): ArgumentsValidator {
    const key = `${serverId}\u0000${toolName}`;
    const hit = this.compiled.get(key);
    this.compiled.delete(key);
    if (hit?.digest === digest) {
      this.compiled.set(key, hit);
      return hit.validate;
    }
    const validate = this.build(serverId, toolName, schema);
    this.compiled.set(key, { digest, validate });
    for (const oldest of this.compiled.keys()) {
      if (this.compiled.size <= this.maxValidators) break;
      this.compiled.delete(oldest);
    }
    return validate;
  }

  /** Drops the validators of a deleted server. */
  forget(serverId: string): void {
    for (const key of this.compiled.keys()) if (key.startsWith(`${serverId}\u0000`)) this.compiled.delete(key);
  }

  private ajvFor(schema: Record<string, unknown>): Ajv | Ajv2020 {
    if (this.compilesLeft-- <= 0) {
      const options = {
        allErrors: true,
        strict: false,
        validateSchema: false,
        code: { regExp: this.regExp, optimize: false },
      };
      const formats = addFormats as unknown as (ajv: Ajv | Ajv2020) => void;
      this.modern = new Ajv2020(options);
      this.legacy = new Ajv(options);
      for (const ajv of [this.modern, this.legacy]) {
        formats(ajv);
        ajv.addKeyword(linearUniqueItems());
      }
      this.compilesLeft = COMPILES_PER_AJV - 1;
    }
    return typeof schema.$schema === 'string' && DRAFT_07_RE.test(schema.$schema) ? this.legacy : this.modern;
  }

  private build(serverId: string, toolName: string, schema: Record<string, unknown>): ArgumentsValidator {
    const { $id: _id, ...withoutId } = schema; // ids would collide across servers in one Ajv instance
    const verdict = budgetSchema(withoutId);
    if (!verdict.ok) {
      const { reason, limit, found } = verdict;
      this.log.warn(
        { event: 'tool.schema.not_enforced', server: serverId, tool: toolName, reason, limit, found },
        'tool input schema is over the compile budget; arguments are passed on unchecked (the server still validates)',
      );
      return () => null;
    }
    const ajv = this.ajvFor(withoutId);
    let validate: ValidateFunction;
    this.compiling = { server: serverId, tool: toolName, logged: new Set() };
    try {
      validate = ajv.compile(verdict.schema);
      ajv.removeSchema(verdict.schema); // Ajv caches by schema object; our own map is the cache
    } catch (err) {
      this.log.warn(
        { event: 'tool.schema.invalid', server: serverId, tool: toolName, err },
        'tool input schema does not compile; arguments are passed on unchecked',
      );
      return () => null;
    } finally {
      this.compiling = undefined;
    }
    return (args) => {
      // Validation is synchronous, so one meter serves every call: each starts with the whole allowance.
      this.meter.left = PATTERN_UNITS_PER_CALL;
      this.meter.spent = false;
      const valid = validate(args);
      if (this.meter.spent) {
        this.log.info(
          { event: 'tool.args.patterns_unchecked', server: serverId, tool: toolName, units: PATTERN_UNITS_PER_CALL },
          'the call used up its pattern-matching allowance; its remaining pattern checks are left to the server',
        );
      }
      return valid ? null : problemsOf(validate.errors);
    };
  }
}
