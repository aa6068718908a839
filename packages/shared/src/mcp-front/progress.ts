import type { ProgressToken, ServerContext } from '@modelcontextprotocol/server';

export interface ProgressUpdate {
  progress: number;
  total?: number;
  message?: string;
}

/**
 * Sends progress as `notifications/progress` to exactly the downstream request that asked for it (the one
 * whose `_meta.progressToken` it carries); undefined when that request wants none.
 */
export function progressSender(rc: ServerContext): ((update: ProgressUpdate) => void) | undefined {
  const token: ProgressToken | undefined = rc.mcpReq._meta?.progressToken;
  if (token === undefined) return undefined;
  return (p) => {
    const params: Record<string, unknown> = { progressToken: token, progress: p.progress };
    if (p.total !== undefined) params.total = p.total;
    if (p.message !== undefined) params.message = p.message;
    rc.mcpReq.notify({ method: 'notifications/progress', params }).catch(() => {
      // The downstream went away; its call is being cancelled.
    });
  };
}
