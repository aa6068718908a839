import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { type Rule, rateLimitedError, rateLimitHeaders } from '../limits/rate-limit-decision.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { HubMetrics } from '../metrics/hub-metrics.js';
import type { UsageRecorder } from '../stores/usage.js';
import type { Principal } from './principal.js';

/** Ends an admitted call: frees its concurrency slot and counts it in the key's usage. Idempotent. */
export type CallDone = (ok: boolean) => void;

const NOOP: CallDone = () => {};

/** The limiter rules of a key's limits. */
export function rulesOf(limits: Extract<Principal, { kind: 'key' }>['limits']): Rule[] {
  const rules: Rule[] = [];
  if (!limits) return rules;
  if (limits.perHour) rules.push({ scope: 'key', window: 'hour', limit: limits.perHour });
  if (limits.perDay) rules.push({ scope: 'key', window: 'day', limit: limits.perDay });
  const { perServer, perTool } = limits;
  if (perServer?.perHour) rules.push({ scope: 'server', window: 'hour', limit: perServer.perHour });
  if (perServer?.perDay) rules.push({ scope: 'server', window: 'day', limit: perServer.perDay });
  if (perTool?.perHour) rules.push({ scope: 'tool', window: 'hour', limit: perTool.perHour });
  if (perTool?.perDay) rules.push({ scope: 'tool', window: 'day', limit: perTool.perDay });
  return rules;
}

/**
 * Rate limits and usage for tool calls made with an API key, on every path that calls a tool (the REST call
 * route, the per-server MCP endpoints, the aggregated one). The admin token is not limited or counted.
 */
export class CallGuard {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly usage: UsageRecorder,
    private readonly metrics?: HubMetrics,
  ) {}

  /**
   * Checks and counts one call: sets the RateLimit headers on `reply` (when given), throws `rate_limited`
   * (429, with the headers) when over a limit, else returns the function that ends the call.
   */
  async admit(principal: Principal, server: string, tool: string, reply?: FastifyReply): Promise<CallDone> {
    if (principal.kind !== 'key') return NOOP;
    const { limits, keyId } = principal;
    const rules = rulesOf(limits);
    const started = performance.now();
    let release: (() => Promise<void>) | undefined;
    if (rules.length > 0 || limits?.concurrent) {
      const decision = await this.limiter.check({
        keyId,
        server,
        tool,
        rules,
        concurrent: limits?.concurrent,
        callId: randomUUID(),
      });
      this.metrics?.rateLimit(
        decision.allowed,
        decision.rule?.scope ?? 'none',
        this.limiter.mode(),
        (performance.now() - started) / 1000,
      );
      if (reply) reply.headers(rateLimitHeaders(decision));
      if (!decision.allowed) {
        this.usage.record({ keyId, server, tool, ok: false, latencyMs: 0 });
        throw rateLimitedError(decision);
      }
      release = decision.release;
    }
    let done = false;
    return (ok: boolean) => {
      if (done) return;
      done = true;
      void release?.();
      this.usage.record({ keyId, server, tool, ok, latencyMs: performance.now() - started });
    };
  }
}
