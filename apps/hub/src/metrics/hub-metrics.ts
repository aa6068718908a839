import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The hub's Prometheus metrics (`GET /metrics`), named after the OpenTelemetry MCP semantic conventions where
 * they exist (`mcp.server.operation.duration` → `mcp_server_operation_duration_seconds`, attributes
 * `mcp.method.name`, `gen_ai.tool.name`, `error.type` → labels with underscores); hub-specific series carry the
 * `mcp_hub_` prefix. docs/metrics.md lists every series.
 *
 * Label values that come from servers or clients are bounded (LabelBudget): server ids past MAX_SERVERS and
 * tool names past MAX_TOOLS_PER_SERVER of one server are folded into `other`, so a server with ten thousand
 * tools, or a client naming random tools, cannot grow the series without end.
 */

/** How a client reached the hub: the REST call route (JSON or SSE answer) or an MCP endpoint by era. */
export type ClientTransport = 'rest' | 'sse' | 'mcp-2025' | 'mcp-2026';

export const MAX_SERVERS = 500;
export const MAX_TOOLS_PER_SERVER = 50;
export const OTHER = 'other';

/** Seconds: from 0.5 ms (a cached hop) to a minute (a slow tool). */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Seconds a client's MCP session lasts: a second to a day. */
const SESSION_BUCKETS = [1, 10, 60, 300, 900, 1_800, 3_600, 7_200, 21_600, 86_400];

/** Caps the distinct server and tool label values; the tail is `other`. */
export class LabelBudget {
  private readonly tools = new Map<string, Set<string>>();

  constructor(
    private readonly maxServers = MAX_SERVERS,
    private readonly maxToolsPerServer = MAX_TOOLS_PER_SERVER,
  ) {}

  server(id: string): string {
    if (this.tools.has(id)) return id;
    if (this.tools.size >= this.maxServers) return OTHER;
    this.tools.set(id, new Set());
    return id;
  }

  tool(server: string, name: string): string {
    const seen = this.tools.get(server);
    if (!seen) return OTHER;
    if (seen.has(name)) return name;
    if (seen.size >= this.maxToolsPerServer) return OTHER;
    seen.add(name);
    return name;
  }
}

type OperationLabels = 'mcp_method_name' | 'gen_ai_tool_name' | 'server' | 'transport' | 'error_type';
/** No tool label on the hop: per tool and server it doubled the series (20 servers × 20 tools, `pnpm bench metrics`: 15,359 series → 8,139). */
type ClientLabels = 'mcp_method_name' | 'server' | 'error_type';

/** One finished operation at the hub's edge. */
export interface Operation {
  method: string;
  /** The tool of a `tools/call`, as the server lists it (or undefined). */
  tool?: string;
  server: string;
  transport: ClientTransport;
  /** Undefined on success; an error code, `tool_error` for a result with `isError`, or an HTTP status class. */
  errorType?: string;
  seconds: number;
}

/**
 * Observes `value` in the child of `histogram` with `labels`, kept in `cache` (one per histogram): prom-client hashes the labels
 * object on every observe otherwise, and these are observed on every call.
 */
function observeCached<L extends string>(
  histogram: Histogram<L>,
  cache: Map<string, { observe(v: number): void }>,
  value: number,
  labels: Record<L, string>,
): void {
  const key = Object.values(labels).join('\u0000');
  let child = cache.get(key);
  if (!child) {
    child = histogram.labels(labels);
    cache.set(key, child);
  }
  child.observe(value);
}

/**
 * Runs `fill` once for a scrape however many metrics ask: prom-client reads every metric of a scrape at once, so
 * each metric of a group awaits the same run (which resets and fills them all) before its values are read. A read
 * that fails leaves the group empty rather than failing the whole scrape (Redis away: the rest still answers).
 */
function oncePerScrape(fill: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= fill()
      .catch(() => {})
      .finally(() => {
        running = undefined;
      });
    return running;
  };
}

/** Adds one to `gauge` until the returned function is called (once; later calls do nothing). */
function held(gauge: Gauge): () => void {
  gauge.inc();
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    gauge.dec();
  };
}

/** What the hub reads from elsewhere at scrape time. */
export interface MetricsSources {
  /** The workers' runtime records (one Redis read per scrape). */
  runtimes(): Promise<{ server: string; status: string; restarts: number }[]>;
  limiterMode(): 'redis' | 'memory';
  redisUp(): boolean;
  /** The counters every live supervisor wrote with its last heartbeat (one Redis read per scrape). */
  supervisors(): Promise<{ id: string; stats: SupervisorCounters }[]>;
  /** Open 2025-era sessions on the aggregated endpoint (`/mcp`, `/sse`) of this hub. */
  aggregateSessions(): number;
  /** One PING's round trip to Redis in seconds; undefined when it failed or took over a second. */
  redisPing(): Promise<number | undefined>;
}

/** What a running worker said of itself at its last health check. */
export interface WorkerFigures {
  rssBytes: number;
  cpuSeconds: number;
  mcpSessions: number;
  activeCalls: number;
}

/** What a supervisor counts since it started (apps/supervisor/src/stats.ts writes it). */
export interface SupervisorCounters {
  /** Its running workers' own figures, by server id. */
  workers: Record<string, WorkerFigures>;
  spawns: Record<string, number>;
  failures: Record<string, number>;
  healthFailures: number;
  startups: number;
  startupSeconds: number;
}

export class HubMetrics {
  readonly registry = new Registry();
  readonly labels = new LabelBudget();
  private readonly serverOps: Histogram<OperationLabels>;
  private readonly clientOps: Histogram<ClientLabels>;
  private readonly inFlight: Gauge;
  private readonly streams: Gauge;
  private readonly rateDecisions: Counter<'outcome' | 'scope'>;
  private readonly keyLookups: Counter<'result'>;
  private readonly limiterCheck: Histogram<'mode'>;
  private readonly sessionDuration: Histogram<'transport'>;
  private readonly redisErrors: Counter<'client'>;
  /** Histogram children by label values, one map per histogram (bounded by LabelBudget's caps). */
  private readonly serverOpChildren = new Map<string, { observe(v: number): void }>();
  private readonly clientOpChildren = new Map<string, { observe(v: number): void }>();

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.serverOps = new Histogram({
      name: 'mcp_server_operation_duration_seconds',
      help: 'MCP operations answered at the hub edge, from request to last byte (tool results with isError count as errors)',
      labelNames: ['mcp_method_name', 'gen_ai_tool_name', 'server', 'transport', 'error_type'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.clientOps = new Histogram({
      name: 'mcp_client_operation_duration_seconds',
      help: 'Operations the hub sent to a worker (and on to the upstream), from request to answer, by server',
      labelNames: ['mcp_method_name', 'server', 'error_type'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.sessionDuration = new Histogram({
      name: 'mcp_server_session_duration_seconds',
      help: 'How long clients kept their MCP sessions open on the aggregated endpoint, by transport (streamable-http, sse)',
      labelNames: ['transport'],
      buckets: SESSION_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'mcp_hub_mcp_sessions_open',
      help: "Clients' open sessionful MCP sessions (2025-era Streamable HTTP, legacy SSE) on the aggregated endpoint",
      registers,
      collect() {
        this.set(sources.aggregateSessions());
      },
    });
    this.redisErrors = new Counter({
      name: 'mcp_hub_redis_errors_total',
      help: 'Errors of the Redis connections by client (request, subscriber, limiter): refused, reset, timed out',
      labelNames: ['client'],
      registers,
    });
    new Gauge({
      name: 'mcp_hub_redis_ping_seconds',
      help: 'Round trip of one Redis PING at scrape time (absent when it failed or took over a second)',
      registers,
      async collect() {
        this.reset();
        const seconds = await sources.redisPing();
        if (seconds !== undefined) this.set(seconds);
      },
    });
    this.inFlight = new Gauge({
      name: 'mcp_hub_http_requests_in_flight',
      help: 'HTTP requests being answered (event streams included)',
      registers,
    });
    this.streams = new Gauge({
      name: 'mcp_hub_sse_streams_open',
      help: 'Event streams open to clients (tool-call answers and relayed MCP streams)',
      registers,
    });
    this.rateDecisions = new Counter({
      name: 'mcp_hub_rate_limit_decisions_total',
      help: 'Rate-limit checks of API-key calls by outcome (allowed, denied) and the deciding rule scope',
      labelNames: ['outcome', 'scope'],
      registers,
    });
    this.keyLookups = new Counter({
      name: 'mcp_hub_api_key_lookups_total',
      help: 'API-key checks answered from the in-process cache (hit) or from Redis (miss)',
      labelNames: ['result'],
      registers,
    });
    this.limiterCheck = new Histogram({
      name: 'mcp_hub_rate_limit_check_duration_seconds',
      help: 'One rate-limit check (a Redis round trip in redis mode)',
      labelNames: ['mode'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'mcp_hub_rate_limiter_mode',
      help: 'The rate limiter mode: 1 for the current one (redis, or memory while Redis is unreachable)',
      labelNames: ['mode'],
      registers,
      collect() {
        const mode = sources.limiterMode();
        this.set({ mode: 'redis' }, mode === 'redis' ? 1 : 0);
        this.set({ mode: 'memory' }, mode === 'memory' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'mcp_hub_redis_up',
      help: '1 while the hub can read Redis',
      registers,
      collect() {
        this.set(sources.redisUp() ? 1 : 0);
      },
    });
    this.supervisorSeries(sources, registers);
    const labels = this.labels;
    let byStatus: Gauge<'status'> | undefined;
    let up: Gauge<'server'> | undefined;
    let restarts: Gauge<'server'> | undefined;
    const refresh = oncePerScrape(async () => {
      const runtimes = await sources.runtimes();
      for (const g of [byStatus, up, restarts]) g?.reset();
      const counts = new Map<string, number>();
      for (const r of runtimes) {
        counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
        const server = labels.server(r.server);
        restarts?.inc({ server }, r.restarts);
        up?.inc({ server }, r.status === 'running' ? 1 : 0);
      }
      for (const [status, n] of counts) byStatus?.set({ status }, n);
    });
    const collect = () => refresh();
    byStatus = new Gauge({
      name: 'mcp_hub_workers',
      help: 'Workers by runtime status, as their records in Redis say',
      labelNames: ['status'],
      registers,
      collect,
    });
    up = new Gauge({
      name: 'mcp_hub_worker_up',
      help: '1 when the worker of a server is running',
      labelNames: ['server'],
      registers,
      collect,
    });
    restarts = new Gauge({
      name: 'mcp_hub_worker_restarts',
      help: 'Restarts of the worker of a server since it was registered (its runtime record)',
      labelNames: ['server'],
      registers,
      collect,
    });
  }

  /**
   * The supervisors' own counters, read at scrape time: each supervisor counts from its start (a restarted one
   * starts again from zero, which Prometheus reads as a counter reset).
   */
  private supervisorSeries(sources: MetricsSources, registers: Registry[]): void {
    const labels = this.labels;
    const all: (Counter<string> | Gauge<string>)[] = [];
    const refresh = oncePerScrape(async () => {
      const supervisors = await sources.supervisors();
      for (const m of all) m.reset();
      // A server reported by two supervisors (a takeover while the silent one's record lives) counts once: the
      // later record (supervisors come oldest heartbeat first) wins.
      const figures = new Map<string, WorkerFigures>();
      for (const { id, stats } of supervisors) {
        for (const [name, f] of Object.entries(stats.workers)) figures.set(name, f);
        const supervisor = { supervisor: id };
        startupSeconds.inc(supervisor, stats.startupSeconds);
        startups.inc(supervisor, stats.startups);
        healthFailures.inc(supervisor, stats.healthFailures);
        for (const [reason, n] of Object.entries(stats.spawns)) spawns.inc({ ...supervisor, reason }, n);
        for (const [reason, n] of Object.entries(stats.failures)) failures.inc({ ...supervisor, reason }, n);
      }
      for (const [name, f] of figures) {
        const server = { server: labels.server(name) };
        // Gauges are added (servers past the label cap share `other`); CPU time is a counter, and a sum of
        // several workers' could fall when one restarts (a false reset): `other` has none.
        rss.inc(server, f.rssBytes);
        sessions.inc(server, f.mcpSessions);
        calls.inc(server, f.activeCalls);
        if (server.server !== OTHER) cpu.inc(server, f.cpuSeconds);
      }
    });
    const collect = () => refresh();
    const counter = (name: string, help: string, labelNames: string[]) => {
      const made = new Counter({ name, help, labelNames, registers, collect });
      all.push(made);
      return made;
    };
    const gauge = (name: string, help: string) => {
      const made = new Gauge({ name, help, labelNames: ['server'], registers, collect });
      all.push(made);
      return made;
    };
    const spawns = counter(
      'mcp_supervisor_worker_spawns_total',
      'Worker processes a supervisor started, by reason (start, wake from idle, takeover, restart, health, …)',
      ['supervisor', 'reason'],
    );
    const failures = counter(
      'mcp_supervisor_worker_failures_total',
      'Failed worker runs by reason (exited, start_timeout, unhealthy, no_free_port)',
      ['supervisor', 'reason'],
    );
    const healthFailures = counter(
      'mcp_supervisor_health_check_failures_total',
      'Failed health checks of running workers',
      ['supervisor'],
    );
    const startups = counter(
      'mcp_supervisor_worker_startups_total',
      'Workers that became healthy after a spawn (with mcp_supervisor_worker_startup_seconds_total: the mean spawn-to-healthy time)',
      ['supervisor'],
    );
    const startupSeconds = counter(
      'mcp_supervisor_worker_startup_seconds_total',
      'Seconds from spawn to healthy, summed over the workers that became healthy',
      ['supervisor'],
    );
    const rss = gauge('mcp_worker_resident_memory_bytes', 'Resident memory of the worker process of a server');
    const cpu = counter(
      'mcp_worker_cpu_seconds_total',
      'CPU seconds (user + system) the worker process of a server used since it started (resets with a new worker)',
      ['server'],
    );
    const sessions = gauge(
      'mcp_worker_mcp_sessions',
      'Open sessionful MCP sessions (2025-era Streamable HTTP and legacy SSE) on the worker of a server',
    );
    const calls = gauge('mcp_worker_calls_in_flight', 'Tool calls the worker of a server is running');
  }

  /** One operation answered at the edge. */
  operation(op: Operation): void {
    const server = this.labels.server(op.server);
    observeCached(this.serverOps, this.serverOpChildren, op.seconds, {
      mcp_method_name: op.method,
      gen_ai_tool_name: op.tool === undefined ? '' : this.labels.tool(server, op.tool),
      server,
      transport: op.transport,
      error_type: op.errorType ?? '',
    });
  }

  /** One operation the hub sent to a worker. */
  clientOperation(method: string, server: string, seconds: number, errorType?: string) {
    observeCached(this.clientOps, this.clientOpChildren, seconds, {
      mcp_method_name: method,
      server: this.labels.server(server),
      error_type: errorType ?? '',
    });
  }

  /** Counts a request in flight; the function it returns (idempotent) ends it. */
  requestStarted(): () => void {
    return held(this.inFlight);
  }

  /** Counts an open event stream; the function it returns (idempotent) ends it. */
  streamOpened(): () => void {
    return held(this.streams);
  }

  rateLimit(allowed: boolean, scope: string, mode: string, seconds: number): void {
    this.rateDecisions.inc({ outcome: allowed ? 'allowed' : 'denied', scope });
    this.limiterCheck.observe({ mode }, seconds);
  }

  /** A client's MCP session on the aggregated endpoint closed after `seconds`. */
  sessionClosed(seconds: number, transport: string): void {
    this.sessionDuration.observe({ transport }, seconds);
  }

  /** An error event of one of the hub's Redis connections. */
  redisError(client: 'request' | 'subscriber' | 'limiter'): void {
    this.redisErrors.inc({ client });
  }

  keyLookup(hit: boolean): void {
    this.keyLookups.inc({ result: hit ? 'hit' : 'miss' });
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The MCP methods a label may name; anything else a client sends is `other`. */
const MCP_METHODS = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
  'subscriptions/listen',
  'server/discover',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
]);

/** The method label of a JSON-RPC body: a known MCP method, `batch`, `response` (a client's answer), or `other`. */
export function methodLabel(body: unknown): string {
  if (Array.isArray(body)) return 'batch';
  if (!body || typeof body !== 'object') return 'other';
  const method = (body as { method?: unknown }).method;
  if (typeof method !== 'string') return 'result' in body || 'error' in body ? 'response' : 'other';
  return MCP_METHODS.has(method) ? method : 'other';
}

/** The client-side transport of a request on an MCP endpoint: the legacy SSE transport, or the era it speaks. */
export function mcpTransport(headers: Record<string, string | string[] | undefined>, legacy: boolean): ClientTransport {
  if (legacy) return 'sse';
  const version = headers['mcp-protocol-version'];
  return typeof version === 'string' && version >= '2026' ? 'mcp-2026' : 'mcp-2025';
}

/** The error label of an HTTP answer: none below 400, else `http_<status>`. */
export function statusError(status: number): string | undefined {
  return status >= 400 || status === 0 ? `http_${status}` : undefined;
}
