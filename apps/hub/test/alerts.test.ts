import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DEFAULT_WORKER_BASE_PORT,
  DEFAULT_WORKER_PORT_RANGE,
  loadHubConfig,
  type ServerSpecBody,
} from '@mcp-hub/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubApi } from '../../../test/hub-api.js';
import { echoServer, fixture, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl } from '../../../test/support.js';
import { buildHub } from '../src/index.js';
import { useHubStack } from './hub-stack.js';

// Issue 15, item 6: alert webhooks. A real supervisor runs stdio servers that die at start (a crash loop); a local
// receiver checks the signature, and one of its URLs refuses every delivery's first attempt.
const ADMIN = 'admin-token-alerts-0123456789';
const stack = useHubStack(ADMIN, { HUB_ALERT_RETRY_BASE: '100ms' });
const { t, registry } = stack;
let receiver: Server;
let receiverBase: string;

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}
const deliveries: Delivery[] = [];

const api = hubApi(() => stack.base, ADMIN);

const crashServer = (id: string) =>
  echoServer(id, {
    config: { command: process.execPath, args: [fixture('crash-server.mjs')], env: {} },
  } as Partial<ServerSpecBody>);

const alertsOf = (path: string, server: string) =>
  deliveries.filter((d) => d.path === path && (JSON.parse(d.body) as { server?: string }).server === server);

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const delivery = String(req.headers['x-mcp-hub-delivery']);
      // /fail-first refuses the first attempt of every delivery.
      const refuse =
        req.url === '/fail-first' &&
        !deliveries.some((d) => d.path === req.url && d.headers['x-mcp-hub-delivery'] === delivery);
      const answered = refuse ? 503 : 200;
      deliveries.push({ path: req.url ?? '', headers: req.headers, body, answered });
      res.writeHead(answered).end();
    });
  });
  // Any free port but the workers' range (MCP_WORKER_BASE_PORT…): webhook URLs may not aim there (403).
  for (;;) {
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const port = (receiver.address() as AddressInfo).port;
    if (port < DEFAULT_WORKER_BASE_PORT || port >= DEFAULT_WORKER_BASE_PORT + DEFAULT_WORKER_PORT_RANGE) break;
    await new Promise((r) => receiver.close(r));
  }
  receiverBase = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
}, 30_000);

afterAll(async () => {
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
});

describe('alert webhooks', () => {
  let secret = '';

  it('registers a webhook and shows its secret once; refuses the hub’s own port; 404 for an unknown id', async () => {
    const created = await api('POST', '/api/alerts/webhooks', { url: `${receiverBase}/ok` });
    expect(created.status).toBe(201);
    secret = created.json.secret as string;
    expect(secret).toMatch(/^whsec_/);
    const failing = await api('POST', '/api/alerts/webhooks', {
      url: `${receiverBase}/fail-first`,
      events: ['worker.crash_loop'],
    });
    expect(failing.status).toBe(201);
    const list = await api('GET', '/api/alerts/webhooks');
    expect((list.json.webhooks as unknown[]).length).toBe(2);
    expect(JSON.stringify(list.json)).not.toContain('whsec_');
    expect(JSON.stringify(await t.redis.hgetall(t.keys.alertWebhooks))).toContain(created.json.id as string);

    const own = await api('POST', '/api/alerts/webhooks', { url: `${stack.base}/api/servers` });
    expect(own.status).toBe(403);
    expect((await api('POST', '/api/alerts/webhooks', { url: 'file:///etc/passwd' })).status).toBe(400);
    const missing = await api('DELETE', '/api/alerts/webhooks/wh_nothing');
    expect(missing.status).toBe(404);
    expect((missing.json.error as { code: string }).code).toBe('webhook_not_found');
  });

  it('sends a test alert to one webhook on request, signed like the others', async () => {
    const hooks = (await api('GET', '/api/alerts/webhooks')).json.webhooks as { id: string; url: string }[];
    const ok = hooks.find((h) => h.url.endsWith('/ok'));
    expect((await api('POST', `/api/alerts/webhooks/${ok?.id}/test`)).status).toBe(202);
    const test = await waitFor(
      'the test alert',
      async () => deliveries.find((d) => d.headers['x-mcp-hub-event'] === 'test') ?? null,
      10_000,
    );
    expect(test.path).toBe('/ok');
    const [tPart, vPart] = String(test.headers['x-mcp-hub-signature']).split(',');
    expect(vPart?.slice(3)).toBe(
      createHmac('sha256', secret)
        .update(`${tPart?.slice(2)}.${test.body}`)
        .digest('hex'),
    );
    // Only that webhook got it.
    expect(deliveries.filter((d) => d.headers['x-mcp-hub-event'] === 'test')).toHaveLength(1);
    expect((await api('POST', '/api/alerts/webhooks/wh_nothing/test')).status).toBe(404);
  });

  it('keeps a retry in Redis: a hub that stops after a failed attempt leaves it to another hub', async () => {
    const hook = await api('POST', '/api/alerts/webhooks', { url: `${receiverBase}/fail-first`, events: ['test'] });
    expect(hook.status).toBe(201);
    const hookId = hook.json.id as string;
    const other = await buildHub({
      config: loadHubConfig({
        REDIS_URL: redisUrl(),
        KEY_PREFIX: t.prefix,
        HUB_PORT: '0',
        HUB_ADMIN_TOKEN: ADMIN,
        HUB_ALERT_RETRY_BASE: '1s',
      }),
      log: captureLogger('hub').log,
    });
    const otherBase = await other.listen({ host: '127.0.0.1', port: 0 });
    try {
      const res = await hubApi(() => otherBase, ADMIN)('POST', `/api/alerts/webhooks/${hookId}/test`);
      expect(res.status).toBe(202);
      await waitFor(
        'the retry queued',
        async () => ((await t.redis.zcard(t.keys.alertRetries)) === 1 ? true : null),
        10_000,
      );
    } finally {
      await other.close();
    }
    // The hub of this file (which never had the alert) sends the second attempt when it is due.
    const attempts = await waitFor(
      'the second attempt',
      async () => {
        const got = deliveries.filter((d) => d.path === '/fail-first' && d.headers['x-mcp-hub-event'] === 'test');
        return got.length >= 2 ? got : null;
      },
      15_000,
    );
    expect(attempts.map((d) => d.answered)).toEqual([503, 200]);
    expect(new Set(attempts.map((d) => d.headers['x-mcp-hub-delivery'])).size).toBe(1);
    // Its queue entry goes once the attempt that claimed it ended (a moment after the receiver answered).
    await waitFor(
      'the queue empty',
      async () => ((await t.redis.zcard(t.keys.alertRetries)) === 0 ? true : null),
      5_000,
    );
    expect((await api('DELETE', `/api/alerts/webhooks/${hookId}`)).status).toBe(204);
  });

  it('fires one signed alert for a crash loop, and sends it again to a receiver that failed the first attempt', async () => {
    await registry.upsertServer(crashServer('crashing'), 'create');
    const first = await waitFor(
      'a crash-loop alert',
      async () => alertsOf('/ok', 'crashing').find((d) => d.headers['x-mcp-hub-event'] === 'worker.crash_loop') ?? null,
      30_000,
    );
    // Signed: t=<seconds>,v1=HMAC-SHA256(secret, "<t>.<body>").
    const [tPart, vPart] = String(first.headers['x-mcp-hub-signature']).split(',');
    const ts = tPart?.slice(2) ?? '';
    expect(vPart?.slice(3)).toBe(createHmac('sha256', secret).update(`${ts}.${first.body}`).digest('hex'));
    expect(JSON.parse(first.body)).toMatchObject({ type: 'worker.crash_loop', server: 'crashing' });

    // The receiver that refused the first attempt got the same delivery again, and took it.
    const retried = await waitFor(
      'the retry',
      async () => {
        const got = alertsOf('/fail-first', 'crashing');
        return got.length >= 2 ? got : null;
      },
      15_000,
    );
    expect(retried.map((d) => d.answered)).toEqual([503, 200]);
    expect(new Set(retried.map((d) => d.headers['x-mcp-hub-delivery'])).size).toBe(1);

    // The loop goes on (more backoff rounds), but the alert fired once.
    await waitFor(
      'more failures recorded',
      async () => ((await registry.listFailures('crashing')).length >= 3 ? true : null),
      30_000,
    );
    expect(
      alertsOf('/ok', 'crashing').filter((d) => d.headers['x-mcp-hub-event'] === 'worker.crash_loop'),
    ).toHaveLength(1);
    await registry.deleteServer('crashing');
  }, 60_000);
});
