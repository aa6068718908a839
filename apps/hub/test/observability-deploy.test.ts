import { readFileSync } from 'node:fs';
import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parsePrometheusText } from '../../../test/prometheus-text.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

// Issue 15, item 7: the Grafana dashboard and the Prometheus config under deploy/ stay true to what the hub
// exposes: every series a dashboard query names is one a real hub serves at /metrics, and Prometheus scrapes
// that route with the metrics token. (docker compose and Prometheus themselves do not run on this machine kind.)
const ROOT = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, ROOT), 'utf8');
const ADMIN = 'admin-token-deploy-0123456789';
const t = testRedis();
const logs = captureLogger('hub');
let hub: FastifyInstance;
let base: string;

beforeAll(async () => {
  hub = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_PORT: '0', HUB_ADMIN_TOKEN: ADMIN }),
    log: logs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  // One call, so that the operation histograms have a series.
  await (
    await request(`${base}/mcp/nothing/here`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })
  ).body.text();
});

afterAll(async () => {
  await hub?.close();
  await t.cleanup();
});

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

describe('deploy/ observability files', () => {
  it('the dashboard queries only series the hub exposes', async () => {
    const res = await request(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const text = await res.body.text();
    parsePrometheusText(text);
    // Every family the hub declares (a labelled family with no series yet still has its TYPE line).
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));
    const dashboard = JSON.parse(read('deploy/grafana/dashboards/mcp-hub.json')) as {
      panels: Panel[];
      templating: { list: { query: { query: string } }[] };
    };
    const exprs = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr)),
      ...dashboard.templating.list.map((v) => v.query.query),
    ];
    expect(exprs.length).toBeGreaterThan(15);
    const unknown: string[] = [];
    for (const expr of exprs) {
      // Series names (a label matcher, `name="…"`, is not one).
      for (const [name] of expr.matchAll(/\b(?:mcp|process|nodejs)_[a-z0-9_]+\b(?!\s*(?:=|!=|=~|!~))/g)) {
        if (!families.has(name.replace(/_(bucket|sum|count)$/, ''))) unknown.push(`${name} in ${expr}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('Prometheus scrapes the hub’s /metrics with the metrics token, and Grafana is wired to it', () => {
    const prom = parseYaml(read('deploy/prometheus/prometheus.yml')) as {
      scrape_configs: {
        metrics_path: string;
        authorization: { credentials_file: string };
        static_configs: { targets: string[] }[];
      }[];
    };
    const job = prom.scrape_configs[0];
    expect(job?.metrics_path).toBe('/metrics');
    expect(job?.authorization.credentials_file).toBe('/tmp/metrics-token');
    expect(job?.static_configs[0]?.targets).toEqual(['hub:8080']);
    const compose = parseYaml(read('docker-compose.yml')) as {
      services: Record<string, { profiles?: string[]; command?: string[]; environment?: Record<string, string> }>;
    };
    expect(compose.services.prometheus?.profiles).toEqual(['observability']);
    expect(compose.services.prometheus?.command?.join(' ')).toContain('/tmp/metrics-token');
    expect(compose.services.hub?.environment?.HUB_METRICS_TOKEN).toBeDefined();
    const datasource = parseYaml(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { uid: string; url: string }[];
    };
    expect(datasource.datasources[0]).toMatchObject({ uid: 'prometheus', url: 'http://prometheus:9090' });
  });
});
