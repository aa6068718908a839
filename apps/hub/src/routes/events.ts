import type { FastifyInstance } from 'fastify';
import type { EventFeed } from '../events/event-feed.js';

export interface EventRoutesOptions {
  feed: EventFeed;
}

/**
 * `GET /api/events`: the live status feed as Server-Sent Events (server.upsert, server.delete, server.restart,
 * tool.upsert, tool.delete, runtime.update), only of the servers the caller may see; `Last-Event-ID` resumes.
 */
export async function eventRoutes(app: FastifyInstance, opts: EventRoutesOptions): Promise<void> {
  app.get('/api/events', { config: { logRequest: false } }, async (req, reply) => {
    // HEAD: the stream's status and type, without opening one (it would never end).
    if (req.method === 'HEAD') return reply.code(200).type('text/event-stream').send();
    const last = req.headers['last-event-id'];
    const lastEventId = typeof last === 'string' && last.length <= 64 ? last : undefined;
    // Too many streams: rate_limited in the one error shape, before the stream is taken over.
    opts.feed.admit(req.principal);
    reply.hijack();
    reply.raw.setHeader('x-request-id', req.id);
    try {
      opts.feed.subscribe(reply.raw, req.principal, lastEventId);
    } catch {
      reply.raw.destroy();
    }
    return reply;
  });
}
