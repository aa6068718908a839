import { describe, expect, it } from 'vitest';
import { metaTraceparent, otelEnv, spanName, tracingEnabled, validTraceparent } from './tracing.js';
import { parseHeaders, tracesUrl } from './tracing-sdk.js';

const VALID = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('traceparent', () => {
  it('takes a valid W3C traceparent and nothing else', () => {
    expect(validTraceparent(VALID)).toBe(VALID);
    expect(validTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00')).toBeDefined();
    for (const bad of [
      undefined,
      42,
      '',
      `${VALID} `,
      VALID.toUpperCase(),
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      `${VALID}-more`,
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      '00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01',
      `00-${'a'.repeat(10_000)}-b7ad6b7169203331-01`,
    ]) {
      expect(validTraceparent(bad), String(bad).slice(0, 60)).toBeUndefined();
    }
  });

  it('reads a later version by its first 55 characters, as version 00', () => {
    const later = '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    expect(validTraceparent(later)).toBe(VALID);
    expect(validTraceparent(`${later}-extra`)).toBe(VALID);
    expect(validTraceparent(`${later}extra`)).toBeUndefined();
  });

  it('reads params._meta.traceparent of an MCP request', () => {
    expect(metaTraceparent({ name: 'x', _meta: { traceparent: VALID } })).toBe(VALID);
    expect(metaTraceparent({ _meta: { traceparent: 'nope' } })).toBeUndefined();
    expect(metaTraceparent({ _meta: 'x' })).toBeUndefined();
    expect(metaTraceparent(undefined)).toBeUndefined();
  });

  it('names spans `{method} {target}`', () => {
    expect(spanName('tools/call', 'echo')).toBe('tools/call echo');
    expect(spanName('initialize')).toBe('initialize');
  });
});

describe('configuration', () => {
  it('is on only with an OTLP endpoint, and not when the SDK or the trace exporter is off', () => {
    expect(tracingEnabled({})).toBe(false);
    expect(tracingEnabled({ OTEL_SERVICE_NAME: 'x' })).toBe(false);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBe(true);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' })).toBe(true);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
  });

  it('keeps the OTEL_ variables that have a value', () => {
    expect(otelEnv({ OTEL_A: '1', OTEL_B: '', PATH: '/bin', XOTEL_C: '2' })).toEqual({ OTEL_A: '1' });
  });

  it('sends to the traces endpoint as the specification derives it', () => {
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBe('http://c:4318/v1/traces');
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/base/' })).toBe('http://c:4318/base/v1/traces');
    expect(
      tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t/x' }),
    ).toBe('http://t/x');
  });

  it('reads OTEL_EXPORTER_OTLP_HEADERS pairs, URL-decoded, skipping malformed ones', () => {
    expect(parseHeaders('api-key=a%20b, x-tenant = t1,broken,=v,bad=%E0%A4%A')).toEqual({
      'api-key': 'a b',
      'x-tenant': 't1',
    });
    expect(parseHeaders(undefined)).toBeUndefined();
  });
});
