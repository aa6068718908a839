import type { z } from 'zod';
import { AppError } from './errors.js';

export interface FieldProblem {
  path: string;
  message: string;
}

function pathOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => {
    if (typeof part === 'number') return `${out}[${part}]`;
    return out === '' ? String(part) : `${out}.${String(part)}`;
  }, '');
}

/** Flattens zod issues into `{ path, message }` pairs, naming unknown keys one by one. */
export function zodProblems(error: z.ZodError): FieldProblem[] {
  const problems: FieldProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({ path: pathOf([...issue.path, key]), message: `unknown field "${key}"` });
      }
    } else {
      problems.push({ path: pathOf(issue.path), message: issue.message });
    }
  }
  return problems;
}

/** One readable line: `config.url: url must be an absolute http:// or https:// URL; tags: …`. */
export function describeProblems(problems: FieldProblem[]): string {
  return problems.map((p) => (p.path === '' ? p.message : `${p.path}: ${p.message}`)).join('; ');
}

/** Parses `data` with `schema` or throws AppError(code) naming every bad field. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  data: unknown,
  what: string,
  code: 'invalid_request' | 'invalid_arguments' = 'invalid_request',
): z.output<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const problems = zodProblems(result.error);
  throw new AppError(code, `invalid ${what}: ${describeProblems(problems)}`, problems);
}
