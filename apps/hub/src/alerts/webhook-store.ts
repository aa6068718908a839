import { randomBytes, randomUUID } from 'node:crypto';
import type { RedisKeys, SecretBox } from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { z } from 'zod';

/** Webhooks registered at most: each alert is sent to every one of them. */
export const MAX_WEBHOOKS = 20;

const StoredWebhookSchema = z.object({
  id: z.string(),
  url: z.string(),
  /** Alert types this webhook wants; absent: all. */
  events: z.array(z.string()).optional(),
  /** The signing secret, sealed with HUB_SECRET_KEY when it is set. */
  secret: z.string(),
  createdAt: z.string(),
});
export type StoredWebhook = z.output<typeof StoredWebhookSchema>;
/** A webhook as answers show it: never its secret. */
export type WebhookView = Omit<StoredWebhook, 'secret'>;

export const view = ({ secret: _s, ...rest }: StoredWebhook): WebhookView => rest;

/** The alert webhooks, one Redis hash (`alert_webhooks`: id → JSON). */
export class AlertWebhookStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly secrets: SecretBox | undefined,
  ) {}

  async list(): Promise<StoredWebhook[]> {
    const all = await this.redis.hgetall(this.keys.alertWebhooks);
    const out: StoredWebhook[] = [];
    for (const value of Object.values(all)) {
      const parsed = StoredWebhookSchema.safeParse(JSON.parse(value));
      if (parsed.success) out.push(parsed.data);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Stores a new webhook; answers it with its secret in clear (shown once). Null when MAX_WEBHOOKS are there. */
  async create(url: string, events: string[] | undefined): Promise<(WebhookView & { secret: string }) | null> {
    if ((await this.redis.hlen(this.keys.alertWebhooks)) >= MAX_WEBHOOKS) return null;
    const secret = `whsec_${randomBytes(24).toString('base64url')}`;
    const stored: StoredWebhook = {
      id: `wh_${randomUUID().replaceAll('-', '').slice(0, 16)}`,
      url,
      ...(events ? { events } : {}),
      secret: this.secrets ? this.secrets.seal(secret) : secret,
      createdAt: new Date().toISOString(),
    };
    await this.redis.hset(this.keys.alertWebhooks, stored.id, JSON.stringify(stored));
    return { ...view(stored), secret };
  }

  async get(id: string): Promise<StoredWebhook | null> {
    const value = await this.redis.hget(this.keys.alertWebhooks, id);
    if (value === null) return null;
    const parsed = StoredWebhookSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : null;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys.alertWebhooks, id)) === 1;
  }

  async remove(id: string): Promise<boolean> {
    return (await this.redis.hdel(this.keys.alertWebhooks, id)) === 1;
  }

  /** The signing secret in clear. */
  async secretOf(hook: StoredWebhook): Promise<string> {
    return this.secrets ? this.secrets.open(hook.secret) : hook.secret;
  }
}
