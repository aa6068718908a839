import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { AppError } from '@mcp-hub/shared';
import { z } from 'zod';
import { deniedUrlReason, type LocalDoors, localDoorReason } from '../access/url-guard.js';
import { ALERT_TYPES, type Alerter } from '../alerts/alerter.js';
import { type AlertWebhookStore, MAX_WEBHOOKS, view } from '../alerts/webhook-store.js';
import type { AuditTrail } from '../stores/audit-trail.js';
import { errorResponses } from './schemas.js';

export interface AlertRoutesOptions {
  webhooks: AlertWebhookStore;
  alerter: Alerter;
  audit: AuditTrail;
  localDoors(): LocalDoors;
  denyPrivateUrls: boolean;
}

const WebhookInputSchema = z.strictObject({
  url: z
    .url({ protocol: /^https?$/, error: 'url must be an http(s) URL' })
    .max(2048, 'url must be at most 2048 characters'),
  /** The alert types to send; absent: all. */
  events: z.array(z.enum(ALERT_TYPES)).min(1).max(ALERT_TYPES.length).optional(),
});

const WebhookViewSchema = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.string()).optional(),
  createdAt: z.string(),
});

const WebhookParamsSchema = z.strictObject({ webhookId: z.string().min(1).max(64) });

/**
 * Alert webhooks (admin token only): `POST /api/alerts/webhooks` registers one and answers its signing secret
 * once, `GET` lists them (never a secret), `DELETE …/:id` removes one. A webhook URL follows the rules of a remote
 * server's URL: never the hub's or a worker's port; no private network when HUB_DENY_PRIVATE_URLS is on.
 */
export const alertRoutes: FastifyPluginAsyncZod<AlertRoutesOptions> = async (app, opts) => {
  const { webhooks, audit } = opts;

  app.post(
    '/api/alerts/webhooks',
    {
      schema: {
        body: WebhookInputSchema,
        response: { 201: WebhookViewSchema.extend({ secret: z.string() }), ...errorResponses },
      },
    },
    async (req, reply) => {
      const { url, events } = req.body;
      const door = await localDoorReason(url, opts.localDoors());
      if (door) throw new AppError('forbidden', `webhook URLs may not point at the hub or its workers: ${door}`);
      if (opts.denyPrivateUrls) {
        const reason = await deniedUrlReason(url);
        if (reason) throw new AppError('forbidden', `webhook URLs may not point at private networks: ${reason}`);
      }
      const created = await webhooks.create(url, events);
      if (!created) throw new AppError('invalid_request', `at most ${MAX_WEBHOOKS} webhooks; delete one first`);
      const { secret: _secret, ...shown } = created;
      await audit.record(
        req,
        'alert_webhook.create',
        { type: 'alert_webhook', id: created.id },
        undefined,
        null,
        shown,
      );
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/api/alerts/webhooks',
    { schema: { response: { 200: z.object({ webhooks: z.array(WebhookViewSchema) }), ...errorResponses } } },
    async () => ({ webhooks: (await webhooks.list()).map(view) }),
  );

  app.post(
    '/api/alerts/webhooks/:webhookId/test',
    {
      config: { bodyless: true },
      schema: {
        params: WebhookParamsSchema,
        response: { 202: z.object({ sent: z.literal(true) }), ...errorResponses },
      },
    },
    async (req, reply) => {
      if (!(await webhooks.exists(req.params.webhookId))) {
        throw new AppError('webhook_not_found', `webhook "${req.params.webhookId}" not found`);
      }
      // Delivered like any alert (signed, retried), to this webhook only and whatever the deduplication window.
      opts.alerter.fire({ type: 'test', message: 'a test alert from MCP Hub' }, req.params.webhookId);
      return reply.status(202).send({ sent: true });
    },
  );

  app.delete(
    '/api/alerts/webhooks/:webhookId',
    { schema: { params: WebhookParamsSchema, response: { 204: z.undefined(), ...errorResponses } } },
    async (req, reply) => {
      if (!(await webhooks.remove(req.params.webhookId))) {
        throw new AppError('webhook_not_found', `webhook "${req.params.webhookId}" not found`);
      }
      await audit.record(
        req,
        'alert_webhook.delete',
        { type: 'alert_webhook', id: req.params.webhookId },
        undefined,
        null,
        null,
      );
      return reply.status(204).send();
    },
  );
};
