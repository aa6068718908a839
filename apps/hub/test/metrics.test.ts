import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { echoServer, waitFor } from '../../../test/processes.js';
import { parsePrometheusText, type Sample, sampleValue } from '../../../test/prometheus-text.js';
import { openSession } from '../../../test/raw-mcp.js';
import { useHubStack } from './hub-stack.js';

// Issue 15, item 1: Prometheus metrics at GET /metrics. Known traffic through a real hub, supervisor, worker and
// stdio server, then the exact changes of the counters it should move; every scrape goes through a strict reader
// of the text format (test/prometheus-text.ts).
const ADMIN = 'admin-token-metrics-0123456789';
const METRICS_TOKEN = 'metrics-only-token-0123456789';
const stack = useHubStack(ADMIN, { HUB_METRICS_TOKEN: METRICS_TOKEN });
const { registry } = stack;
const SERVER = 'm-echo';
const PROJECT = 'mp';
let limitedKey: string;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function scrape(token = METRICS_TOKEN): Promise<Sample[]> {
  const res = await request(`${stack.base}/metrics`, { headers: bearer(token) });
  expect(res.statusCode).toBe(200);
  expect(String(res.headers['content-type'])).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.body.text());
}

async function call(tool: string, args: unknown, headers: Record<string, string> = bearer(ADMIN), server = SERVER) {
  const res = await request(`${stack.base}/mcp/${server}/${tool}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify(args),
  });
  await res.body.text();
  return res.statusCode;
}

const op = (labels: Record<string, string>) => ({ method: 'tools/call', ...labels });
/** The count of edge operations with these labels. */
function ops(samples: Sample[], labels: Record<string, string>): number {
  const { method, ...rest } = labels;
  return sampleValue(samples, 'mcp_server_operation_duration_seconds_count', {
    mcp_method_name: method as string,
    ...rest,
  });
}

beforeAll(async () => {
  const admin = { 'content-type': 'application/json', ...bearer(ADMIN) };
  const project = await request(`${stack.base}/api/projects`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ id: PROJECT, name: PROJECT }),
  });
  expect(project.statusCode).toBe(201);
  await project.body.text();
  const key = await request(`${stack.base}/api/projects/${PROJECT}/keys`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ name: 'one-an-hour', role: 'reporter', limits: { perHour: 1 } }),
  });
  expect(key.statusCode).toBe(201);
  limitedKey = ((await key.body.json()) as { key: string }).key;
  await registry.upsertServer(echoServer(SERVER, { project: PROJECT }), 'create');
  await waitFor(
    `${SERVER} answers`,
    async () => ((await call('echo', { message: 'up' })) === 200 ? true : null),
    30_000,
  );
}, 60_000);

describe('GET /metrics', () => {
  it('answers the metrics token and the admin token, and no one else', async () => {
    expect((await request(`${stack.base}/metrics`)).statusCode).toBe(401);
    expect((await request(`${stack.base}/metrics`, { headers: bearer(limitedKey) })).statusCode).toBe(403);
    await scrape(METRICS_TOKEN);
    await scrape(ADMIN);
    // The metrics token opens nothing else.
    expect((await request(`${stack.base}/api/servers`, { headers: bearer(METRICS_TOKEN) })).statusCode).toBe(401);
  });

  it('counts calls at the edge and on the hop by outcome: success, tool error, invalid arguments, unknown tool', async () => {
    const before = await scrape();
    expect(await call('echo', { message: 'a' })).toBe(200);
    expect(await call('echo', { message: 'b' })).toBe(200);
    expect(await call('tool-error', {})).toBe(200);
    expect(await call('echo', { message: 42 })).toBe(400);
    expect(await call('no-such-tool', {})).toBe(404);
    const sse = await request(`${stack.base}/mcp/${SERVER}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...bearer(ADMIN) },
      body: JSON.stringify({ message: 'streamed' }),
    });
    expect(await sse.body.text()).toContain('event: result');
    const after = await scrape();
    // Gauges come back down: only the scrape itself is in flight, and no stream is left open.
    expect(sampleValue(after, 'mcp_hub_http_requests_in_flight')).toBe(1);
    expect(sampleValue(after, 'mcp_hub_sse_streams_open')).toBe(0);
    const delta = (labels: Record<string, string>) => ops(after, labels) - ops(before, labels);
    const edge = { server: SERVER, transport: 'rest' };
    expect(delta(op({ ...edge, gen_ai_tool_name: 'echo', error_type: '' }))).toBe(3);
    expect(delta(op({ ...edge, gen_ai_tool_name: 'tool-error', error_type: 'tool_error' }))).toBe(1);
    expect(delta(op({ ...edge, gen_ai_tool_name: 'echo', error_type: 'invalid_arguments' }))).toBe(1);
    expect(delta(op({ ...edge, gen_ai_tool_name: '(unknown)', error_type: 'tool_not_found' }))).toBe(1);
    const hop = (labels: Record<string, string>) =>
      sampleValue(after, 'mcp_client_operation_duration_seconds_count', labels) -
      sampleValue(before, 'mcp_client_operation_duration_seconds_count', labels);
    // Only the calls that reached the worker cross the hop.
    expect(hop({ server: SERVER, error_type: '' })).toBe(3);
    expect(hop({ server: SERVER, error_type: 'tool_error' })).toBe(1);
    // An unknown server is one label value, whatever the id.
    expect(await call('echo', {}, bearer(ADMIN), 'not-a-server-1')).toBe(404);
    expect(await call('echo', {}, bearer(ADMIN), 'not-a-server-2')).toBe(404);
    const unknown = await scrape();
    expect(ops(unknown, op({ server: '(unknown)', error_type: 'server_not_found' }))).toBe(2);
    expect(unknown.some((s) => s.labels.server?.startsWith('not-a-server'))).toBe(false);
  });

  it('counts rate-limit decisions by outcome and scope, and the 429 as an edge error', async () => {
    const before = await scrape();
    expect(await call('echo', { message: 'first' }, bearer(limitedKey))).toBe(200);
    expect(await call('echo', { message: 'second' }, bearer(limitedKey))).toBe(429);
    const after = await scrape();
    const decisions = (outcome: string) =>
      sampleValue(after, 'mcp_hub_rate_limit_decisions_total', { outcome, scope: 'key' }) -
      sampleValue(before, 'mcp_hub_rate_limit_decisions_total', { outcome, scope: 'key' });
    expect(decisions('allowed')).toBe(1);
    expect(decisions('denied')).toBe(1);
    expect(
      ops(after, op({ server: SERVER, gen_ai_tool_name: 'echo', error_type: 'rate_limited' })) -
        ops(before, op({ server: SERVER, gen_ai_tool_name: 'echo', error_type: 'rate_limited' })),
    ).toBe(1);
    expect(sampleValue(after, 'mcp_hub_rate_limiter_mode', { mode: 'redis' })).toBe(1);
    // The key was checked against Redis once, then answered from the cache.
    expect(sampleValue(after, 'mcp_hub_api_key_lookups_total', { result: 'hit' })).toBeGreaterThanOrEqual(1);
  });

  it('counts an MCP request under its method and era', async () => {
    const before = await scrape();
    await openSession(`${stack.base}/mcp/${SERVER}`, bearer(ADMIN));
    const after = await scrape();
    const labels = { method: 'initialize', server: SERVER, transport: 'mcp-2025', error_type: '' };
    expect(ops(after, labels) - ops(before, labels)).toBe(1);
  });

  it("gathers each worker's own figures (memory, CPU, MCP sessions) and the aggregated endpoint's sessions", async () => {
    // The previous test left a 2025 session open on the server's worker; its supervisor hands the worker's
    // /healthz figures to Redis with each heartbeat.
    const samples = await waitFor(
      "the worker's figures",
      async () => {
        const s = await scrape();
        return sampleValue(s, 'mcp_worker_mcp_sessions', { server: SERVER }) >= 1 ? s : null;
      },
      20_000,
    );
    expect(sampleValue(samples, 'mcp_worker_resident_memory_bytes', { server: SERVER })).toBeGreaterThan(10 * 2 ** 20);
    expect(sampleValue(samples, 'mcp_worker_cpu_seconds_total', { server: SERVER })).toBeGreaterThan(0);
    expect(sampleValue(samples, 'mcp_worker_calls_in_flight', { server: SERVER })).toBe(0);
    expect(sampleValue(samples, 'mcp_hub_redis_ping_seconds')).toBeGreaterThan(0);

    const durations = (s: Sample[]) =>
      sampleValue(s, 'mcp_server_session_duration_seconds_count', { transport: 'streamable-http' });
    const before = await scrape();
    const url = `${stack.base}/mcp`;
    const session = await openSession(url, bearer(ADMIN));
    const open = await scrape();
    expect(sampleValue(open, 'mcp_hub_mcp_sessions_open')).toBe(sampleValue(before, 'mcp_hub_mcp_sessions_open') + 1);
    const closed = await request(url, { method: 'DELETE', headers: { ...bearer(ADMIN), 'mcp-session-id': session } });
    await closed.body.text();
    expect(closed.statusCode).toBe(200);
    const after = await scrape();
    expect(sampleValue(after, 'mcp_hub_mcp_sessions_open')).toBe(sampleValue(before, 'mcp_hub_mcp_sessions_open'));
    expect(durations(after)).toBe(durations(before) + 1);
  });

  it('shows a killed worker coming back: the restart, and the worker up again', async () => {
    const before = await scrape();
    expect(sampleValue(before, 'mcp_hub_worker_up', { server: SERVER })).toBe(1);
    expect(sampleValue(before, 'mcp_hub_workers', { status: 'running' })).toBe(1);
    const runtime = await registry.getRuntime(SERVER);
    const restarts = sampleValue(before, 'mcp_hub_worker_restarts', { server: SERVER });
    process.kill(runtime?.pid as number, 'SIGKILL');
    await waitFor(
      'a new worker running',
      async () => {
        const r = await registry.getRuntime(SERVER);
        return r?.status === 'running' && r.pid !== runtime?.pid ? r : null;
      },
      30_000,
    );
    const after = await scrape();
    expect(sampleValue(after, 'mcp_hub_worker_restarts', { server: SERVER })).toBe(restarts + 1);
    expect(sampleValue(after, 'mcp_hub_worker_up', { server: SERVER })).toBe(1);
    // The supervisor's own counters (written with its heartbeats): the spawns, the killed run, startup time.
    const counted = await waitFor(
      "the supervisor's counters",
      async () => {
        const samples = await scrape();
        const total = (name: string) => samples.filter((x) => x.name === name).reduce((n, x) => n + x.value, 0);
        const exited = sampleValue(samples, 'mcp_supervisor_worker_failures_total', { reason: 'exited' });
        return exited >= 1 && total('mcp_supervisor_worker_startups_total') >= 2 ? samples : null;
      },
      20_000,
    );
    const sum = (name: string) => counted.filter((x) => x.name === name).reduce((n, x) => n + x.value, 0);
    expect(sum('mcp_supervisor_worker_spawns_total')).toBeGreaterThanOrEqual(2);
    expect(sum('mcp_supervisor_worker_startups_total')).toBeGreaterThanOrEqual(2);
    expect(sum('mcp_supervisor_worker_startup_seconds_total')).toBeGreaterThan(0);
    // Process metrics come with every scrape.
    expect(sampleValue(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(sampleValue(after, 'mcp_hub_redis_up')).toBe(1);
  });
});
