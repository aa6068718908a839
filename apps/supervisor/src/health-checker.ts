import { WORKER_ROUTES, WORKER_TOKEN_HEADER, type WorkerHealth, WorkerHealthSchema } from '@mcp-hub/shared';
import { Agent, request } from 'undici';

export interface HealthResult {
  ok: boolean;
  /** HTTP status, or 0 when nothing answered. */
  status: number;
  health?: WorkerHealth;
  error?: string;
}

/** Polls workers' `/healthz` over one keep-alive pool, with each worker's credential. */
export class HealthChecker {
  private readonly agent = new Agent({ keepAliveTimeout: 10_000, connections: 2 });

  constructor(private readonly timeoutMs: number) {}

  async check(host: string, port: number, token: string): Promise<HealthResult> {
    try {
      const res = await request(`http://${host.includes(':') ? `[${host}]` : host}:${port}${WORKER_ROUTES.health}`, {
        dispatcher: this.agent,
        headers: { [WORKER_TOKEN_HEADER]: token },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const body = await res.body.json().catch(() => undefined);
      const parsed = WorkerHealthSchema.safeParse(body);
      return {
        ok: res.statusCode === 200 && parsed.success,
        status: res.statusCode,
        ...(parsed.success ? { health: parsed.data } : {}),
      };
    } catch (err) {
      return { ok: false, status: 0, error: (err as Error).message };
    }
  }

  /** True when a live worker at host:port is the given server and instance. */
  async isSameWorker(host: string, port: number, serverId: string, instance: string, token: string): Promise<boolean> {
    const result = await this.check(host, port, token);
    return result.health?.serverId === serverId && result.health.instance === instance;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
