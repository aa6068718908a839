import { parseOrThrow } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';

/**
 * Validates request parts with their zod schemas and throws AppError(invalid_request) naming every bad
 * field, so validation failures come out in the one error shape like every other error.
 */
export function registerZodValidation(app: FastifyInstance): void {
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const what = httpPart === 'body' ? 'body' : httpPart === 'querystring' ? 'query string' : (httpPart ?? 'input');
    return (data: unknown) => {
      try {
        return { value: parseOrThrow(schema as z.ZodType, data, what) };
      } catch (error) {
        return { error: error as Error };
      }
    };
  });
}
