import { FailureRecordSchema, PublicRuntimeSchema, ServerSpecSchema, ToolSchema } from '@mcp-hub/shared';
import { z } from 'zod';

export const ErrorResponseSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
  request_id: z.string(),
});

export const errorResponses = { '4xx': ErrorResponseSchema, '5xx': ErrorResponseSchema } as const;

export const ServerIdParamsSchema = z.strictObject({ id: z.string().min(1).max(128) });

export const ServerViewSchema = z.intersection(
  ServerSpecSchema,
  z.object({
    runtime: PublicRuntimeSchema.optional(),
    /** `GET /api/servers/:id` only: the worker's last failures, newest first. */
    failures: z.array(FailureRecordSchema).optional(),
  }),
);

export const FailureListSchema = z.object({ failures: z.array(FailureRecordSchema) });

export const ServerListSchema = z.object({ servers: z.array(ServerViewSchema) });
export const ToolListSchema = z.object({ tools: z.array(ToolSchema) });
export const RestartAcceptedSchema = z.object({
  id: z.string(),
  restartRequests: z.number().int(),
  rev: z.number().int(),
});
