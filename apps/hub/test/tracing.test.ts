import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mcpClients, textOf } from '../../../test/mcp-clients.js';
import { echoServer, waitFor } from '../../../test/processes.js';
import { useHubStack } from './hub-stack.js';

// Issue 15, item 2: OpenTelemetry traces. A real hub (in this process) and a real supervisor, workers and stdio
// server export spans over OTLP/HTTP to a receiver in this test; a call's trace must run unbroken from the
// client's traceparent through the hub and the worker to what the upstream received.

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  service: string;
  resource: Record<string, unknown>;
  attributes: Record<string, unknown>;
  status: { code?: number };
}

const SPAN_KIND = { server: 2, client: 3 } as const;
const STATUS_ERROR = 2;

/** An OTLP/HTTP receiver (JSON): every span posted to /v1/traces, flattened with its service name. */
function otlpReceiver() {
  const spans: OtlpSpan[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= 8 * 1024 * 1024) chunks.push(chunk);
    });
    req.on('end', () => {
      if (req.url !== '/v1/traces' || !String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(415).end();
        return;
      }
      collect(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  function collect(body: {
    resourceSpans?: { resource?: { attributes?: Attr[] }; scopeSpans?: { spans?: RawSpan[] }[] }[];
  }) {
    for (const rs of body.resourceSpans ?? []) {
      const resource = attributes(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          spans.push({
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: hex(s.parentSpanId),
            name: s.name,
            kind: s.kind,
            service: String(resource['service.name']),
            resource,
            attributes: attributes(s.attributes),
            status: s.status ?? {},
          });
        }
      }
    }
  }
  return { server, spans };
}

type Attr = { key: string; value: Record<string, unknown> };
type RawSpan = {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Attr[];
  status?: { code?: number };
};

function attributes(list: Attr[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) out[key] = Object.values(value)[0];
  return out;
}

/** OTLP/JSON ids are hex; base64 (protobuf-JSON style) is turned into hex too. */
function hex(id: string | undefined): string {
  if (!id) return '';
  return /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex');
}

const receiver = otlpReceiver();
await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
const OTEL = {
  OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`,
  OTEL_BSP_SCHEDULE_DELAY: '50',
};

const ADMIN = 'admin-token-tracing-0123456789';
const stack = useHubStack(ADMIN, OTEL, OTEL);
const SERVER = 't-echo';
const API = 't-api';
const bearer = { authorization: `Bearer ${ADMIN}` };
const clients = mcpClients({ name: 'tracing-test', version: '1.0.0' });
const restHeaders: IncomingHttpHeaders[] = [];
const restApi = createServer((req, res) => {
  restHeaders.push(req.headers);
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
});

afterEach(() => clients.closeAll());
afterAll(async () => {
  restApi.close();
  receiver.server.close();
});

const newTraceId = () => randomBytes(16).toString('hex');
const newSpanId = () => randomBytes(8).toString('hex');

async function call(server: string, tool: string, args: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${stack.base}/mcp/${server}/${tool}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...bearer, ...headers },
    body: JSON.stringify(args),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

/** The traceparent the upstream received, as the fixture's `meta` tool answered it. */
function upstreamTraceparent(result: unknown): string {
  const meta = JSON.parse(textOf(result)) as { traceparent?: string };
  expect(meta.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  return meta.traceparent as string;
}

/** Waits until the receiver holds `count` spans of the trace (exports are batched), and returns them. */
async function traceSpans(traceId: string, count: number): Promise<OtlpSpan[]> {
  return waitFor(
    `${count} spans of trace ${traceId}`,
    async () => {
      const found = receiver.spans.filter((s) => s.traceId === traceId);
      return found.length >= count ? found : null;
    },
    15_000,
  );
}

/**
 * The four spans of one call, checked as one chain: hub server → hub client → worker server → worker client, each
 * the parent of the next, the first a child of `rootParent` ('' for a new trace), and the upstream's traceparent
 * naming the last as its parent.
 */
function expectChain(spans: OtlpSpan[], rootParent: string, upstream: string, name: string, workerName = name) {
  const hubServer = spans.find((s) => s.service === 'mcp-hub' && s.kind === SPAN_KIND.server);
  expect(hubServer, 'the hub server span').toBeDefined();
  const hubClient = spans.find((s) => s.parentSpanId === hubServer?.spanId);
  const workerServer = spans.find((s) => s.parentSpanId === hubClient?.spanId);
  const workerClient = spans.find((s) => s.parentSpanId === workerServer?.spanId);
  expect(hubServer?.parentSpanId).toBe(rootParent);
  expect(hubServer?.name).toBe(name);
  expect(hubClient).toMatchObject({ service: 'mcp-hub', kind: SPAN_KIND.client });
  expect(workerServer).toMatchObject({ service: 'mcp-hub-worker', kind: SPAN_KIND.server, name: workerName });
  expect(workerClient).toMatchObject({ service: 'mcp-hub-worker', kind: SPAN_KIND.client });
  expect(workerServer?.resource['mcp_hub.server.id']).toBe(SERVER);
  expect(hubServer?.attributes['mcp.method.name']).toBe('tools/call');
  const [, traceId, parentId] = upstream.split('-');
  expect(traceId).toBe(hubServer?.traceId);
  expect(parentId).toBe(workerClient?.spanId);
  return { hubServer, hubClient, workerServer, workerClient } as Record<string, OtlpSpan>;
}

beforeAll(async () => {
  await new Promise<void>((resolve) => restApi.listen(0, '127.0.0.1', resolve));
  const restBase = `http://127.0.0.1:${(restApi.address() as AddressInfo).port}`;
  await stack.registry.upsertServer(echoServer(SERVER), 'create');
  await stack.registry.upsertServer(
    {
      id: API,
      name: API,
      namespace: API,
      transport: 'rest',
      tags: [],
      enabled: true,
      timeoutMs: 5_000,
      config: {
        baseUrl: restBase,
        headers: {},
        tools: [
          {
            name: 'ping',
            description: 'Pings',
            method: 'GET',
            path: '/ping',
            inputSchema: { type: 'object', properties: {} },
            argLocations: {},
          },
        ],
      },
    },
    'create',
  );
  for (const [server, tool] of [
    [SERVER, 'echo'],
    [API, 'ping'],
  ] as const) {
    await waitFor(
      `${server} answers`,
      async () => ((await call(server, tool, { message: 'up' })).status === 200 ? true : null),
      30_000,
    );
  }
}, 60_000);

describe('traces (OTEL_EXPORTER_OTLP_ENDPOINT set)', () => {
  it('REST call: one trace from the client through the hub and the worker to the upstream, ids in the logs', async () => {
    const traceId = newTraceId();
    const clientSpan = newSpanId();
    const res = await call(
      SERVER,
      'meta',
      {},
      { traceparent: `00-${traceId}-${clientSpan}-01`, 'x-request-id': 'tr-rest-1' },
    );
    expect(res.status).toBe(200);
    const upstream = upstreamTraceparent(res.body);
    const chain = expectChain(await traceSpans(traceId, 4), clientSpan, upstream, 'tools/call meta');
    expect(chain.hubServer?.attributes).toMatchObject({
      'gen_ai.tool.name': 'meta',
      'gen_ai.operation.name': 'execute_tool',
      'mcp_hub.server.id': SERVER,
      'mcp_hub.request_id': 'tr-rest-1',
    });
    expect(chain.hubServer?.status.code).not.toBe(STATUS_ERROR);
    // The log lines of the call carry the trace: the hub's with its server span, the worker's with its own.
    const accepted = stack.hubLogs.lines.find((l) => l.event === 'tool.call.accepted' && l.request_id === 'tr-rest-1');
    expect(accepted).toMatchObject({ trace_id: traceId, span_id: chain.hubServer?.spanId });
    const done = await waitFor(
      'the worker logged the call',
      async () => stack.processLines.find((l) => l.event === 'tool.call.done' && l.request_id === 'tr-rest-1') ?? null,
      5_000,
    );
    expect(done).toMatchObject({ trace_id: traceId, span_id: chain.workerServer?.spanId });
  });

  it('per-server MCP endpoint: the parent comes from params._meta.traceparent', async () => {
    const traceId = newTraceId();
    const clientSpan = newSpanId();
    const client = await clients.modern(`${stack.base}/mcp/${SERVER}`, bearer);
    const result = await client.callTool({
      name: 'meta',
      arguments: {},
      _meta: { traceparent: `00-${traceId}-${clientSpan}-01` },
    });
    const spans = await traceSpans(traceId, 4);
    expectChain(spans, clientSpan, upstreamTraceparent(result), 'tools/call meta');
  });

  it('aggregated endpoint: the namespaced call is one trace down to the upstream', async () => {
    const traceId = newTraceId();
    const clientSpan = newSpanId();
    const client = await clients.modern(`${stack.base}/mcp`, bearer);
    const result = await client.callTool({
      name: `${SERVER}__meta`,
      arguments: {},
      _meta: { traceparent: `00-${traceId}-${clientSpan}-01` },
    });
    const spans = await traceSpans(traceId, 4);
    // The hub names the call as the client did; the worker, as its server knows the tool.
    expectChain(spans, clientSpan, upstreamTraceparent(result), `tools/call ${SERVER}__meta`, 'tools/call meta');
  });

  it('a call without a traceparent starts a trace at the hub; a malformed one is ignored the same way', async () => {
    for (const headers of [{}, { traceparent: '00-not-a-trace-01' }] as Record<string, string>[]) {
      const res = await call(SERVER, 'meta', {}, headers);
      expect(res.status).toBe(200);
      const upstream = upstreamTraceparent(res.body);
      const traceId = upstream.split('-')[1] as string;
      expectChain(await traceSpans(traceId, 4), '', upstream, 'tools/call meta');
    }
  });

  it('a tool error marks the spans failed with error.type tool_error', async () => {
    const traceId = newTraceId();
    const res = await call(SERVER, 'tool-error', { message: 'no' }, { traceparent: `00-${traceId}-${newSpanId()}-01` });
    expect(res.body.isError).toBe(true);
    const spans = await traceSpans(traceId, 4);
    for (const span of spans) {
      expect(span.status.code, span.name).toBe(STATUS_ERROR);
      expect(span.attributes['error.type'], span.name).toBe('tool_error');
    }
  });

  it('a REST upstream gets the worker span as its parent in the traceparent header', async () => {
    const traceId = newTraceId();
    restHeaders.length = 0;
    const res = await call(API, 'ping', {}, { traceparent: `00-${traceId}-${newSpanId()}-01` });
    expect(res.status).toBe(200);
    const spans = await traceSpans(traceId, 4);
    const sent = String(restHeaders[0]?.traceparent);
    const workerClient = spans.find((s) => s.service === 'mcp-hub-worker' && s.kind === SPAN_KIND.client);
    expect(sent).toBe(`00-${traceId}-${workerClient?.spanId}-01`);
  });
});
