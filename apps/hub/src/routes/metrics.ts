import type { FastifyInstance } from 'fastify';
import type { HubMetrics } from '../metrics/hub-metrics.js';

export interface MetricsRoutesOptions {
  metrics: HubMetrics;
}

/**
 * `GET /metrics`: the Prometheus text exposition of the hub (admin token or HUB_METRICS_TOKEN; see
 * ROUTE_POLICIES). Worker runtime gauges are read from Redis at scrape time.
 */
export async function metricsRoutes(app: FastifyInstance, opts: MetricsRoutesOptions): Promise<void> {
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await opts.metrics.exposition();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
