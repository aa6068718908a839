import {
  type Context,
  DiagLogLevel,
  diag,
  type Span as OtelSpan,
  type Tracer as OtelTracer,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { Logger } from './logger.js';
import {
  type AttributeValue,
  type SpanAttributes,
  type SpanKindName,
  TRACE_ATTR,
  type Tracer,
  type TraceSpan,
  type TracingOptions,
  validTraceparent,
} from './tracing.js';

/**
 * The OpenTelemetry SDK behind tracing.ts, imported only when tracing is on. Configured from the standard
 * variables (the trace SDK reads none itself): OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS and _TIMEOUT,
 * OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and _ARG, OTEL_BSP_*. Spans go out over
 * OTLP/HTTP (JSON) in batches.
 */
let diagSet = false;

export function createTracer(options: TracingOptions): Tracer {
  const { env, log } = options;
  // Process-wide (the API's one slot): the first tracer's logger stays (one per process outside tests).
  if (!diagSet) diag.setLogger(diagLogger(log), DiagLogLevel.WARN);
  diagSet = true;
  // OTEL_RESOURCE_ATTRIBUTES (read from the process environment); its service.name counts like OTEL_SERVICE_NAME.
  const detected = detectResources({ detectors: [envDetector] });
  const named = env.OTEL_SERVICE_NAME ?? detected.attributes['service.name'];
  const serviceName =
    typeof named === 'string' && named !== ''
      ? options.service === 'mcp-hub-worker'
        ? `${named}-worker`
        : named
      : options.service;
  const resource = detected.merge(resourceFromAttributes({ 'service.name': serviceName, ...options.resource }));
  const exporter = new OTLPTraceExporter({
    url: tracesUrl(env),
    headers: parseHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS ?? env.OTEL_EXPORTER_OTLP_HEADERS),
    timeoutMillis: positive(env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? env.OTEL_EXPORTER_OTLP_TIMEOUT, 10_000),
  });
  const processor = new BatchSpanProcessor({
    exporter,
    scheduledDelayMillis: positive(env.OTEL_BSP_SCHEDULE_DELAY, 5_000),
    exportTimeoutMillis: positive(env.OTEL_BSP_EXPORT_TIMEOUT, 30_000),
    maxQueueSize: positive(env.OTEL_BSP_MAX_QUEUE_SIZE, 2_048),
    maxExportBatchSize: positive(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512),
  });
  const provider = new TracerProvider({
    resource,
    sampler: sampler(env),
    spanProcessors: [processor],
    // Attribute values come from clients (session ids, request ids): bounded.
    spanLimits: { attributeValueLengthLimit: 1_024, attributeCountLimit: 64 },
  });
  const tracer = provider.getTracer('mcp-hub');
  log.info(
    { event: 'tracing.started', service_name: serviceName, endpoint: redactedUrl(tracesUrl(env)) },
    'exporting traces over OTLP',
  );

  return {
    start(name, kind, attributes, traceparent) {
      return new SdkSpan(tracer, name, kind, attributes, remoteParent(traceparent));
    },
    async shutdown(timeoutMs = 2_000) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([provider.shutdown().catch(() => {}), deadline]);
      clearTimeout(timer);
    },
  };
}

class SdkSpan implements TraceSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly traceparent: string;
  private readonly span: OtelSpan;
  private ended = false;

  constructor(
    private readonly tracer: OtelTracer,
    name: string,
    kind: SpanKindName,
    attributes: SpanAttributes | undefined,
    parent: Context,
  ) {
    this.span = tracer.startSpan(
      name,
      { kind: kind === 'server' ? SpanKind.SERVER : SpanKind.CLIENT, attributes: defined(attributes) },
      parent,
    );
    const context = this.span.spanContext();
    this.traceId = context.traceId;
    this.spanId = context.spanId;
    this.traceparent = `00-${context.traceId}-${context.spanId}-${
      context.traceFlags & TraceFlags.SAMPLED ? '01' : '00'
    }`;
  }

  set(key: string, value: AttributeValue | undefined): void {
    if (value !== undefined) this.span.setAttribute(key, value);
  }

  rename(name: string): void {
    this.span.updateName(name);
  }

  child(name: string, kind: SpanKindName, attributes?: SpanAttributes): TraceSpan {
    return new SdkSpan(this.tracer, name, kind, attributes, trace.setSpan(ROOT_CONTEXT, this.span));
  }

  end(errorType?: string, message?: string): void {
    if (this.ended) return;
    this.ended = true;
    if (errorType !== undefined) {
      this.span.setAttribute(TRACE_ATTR.errorType, errorType);
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: message ?? errorType });
    }
    this.span.end();
  }
}

/** The context of a remote parent named by a valid traceparent; the root context (a new trace) otherwise. */
function remoteParent(traceparent: string | undefined): Context {
  const valid = validTraceparent(traceparent);
  if (!valid) return ROOT_CONTEXT;
  const [, traceId = '', spanId = '', flags = '00'] = valid.split('-');
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  });
}

function defined(attributes: SpanAttributes | undefined): Record<string, AttributeValue> | undefined {
  if (!attributes) return undefined;
  const out: Record<string, AttributeValue> = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}

/** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, else OTEL_EXPORTER_OTLP_ENDPOINT with `/v1/traces` (the spec's rule). */
export function tracesUrl(env: Readonly<Record<string, string>>): string {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4318';
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** A URL for a log line: without credentials or query (a collector's token may sit in either). */
function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

/** `k1=v1,k2=v2` (values URL-encoded), as OTEL_EXPORTER_OTLP_HEADERS holds them; malformed pairs are skipped. */
export function parseHeaders(value: string | undefined): Record<string, string> | undefined {
  if (!value) return undefined;
  const out: Record<string, string> = {};
  for (const pair of value.split(',')) {
    const at = pair.indexOf('=');
    if (at <= 0) continue;
    try {
      out[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      // not URL-encoded properly: skipped
    }
  }
  return out;
}

function positive(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
}

/** OTEL_TRACES_SAMPLER (and _ARG, a ratio) as the spec names them; parent-based always-on by default. */
function sampler(env: Readonly<Record<string, string>>): Sampler {
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG);
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  switch (env.OTEL_TRACES_SAMPLER?.toLowerCase()) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** The SDK's own complaints (an exporter that cannot reach its collector) as warn lines, bounded. */
function diagLogger(log: Logger) {
  const warn = (message: string, ...args: unknown[]) =>
    log.warn(
      { event: 'tracing.problem', error: [message, ...args.map(String)].join(' ').slice(0, 1_000) },
      'tracing problem',
    );
  const ignore = () => {};
  return { error: warn, warn, info: ignore, debug: ignore, verbose: ignore };
}
