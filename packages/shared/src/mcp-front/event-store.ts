import type { EventId, EventStore, JSONRPCMessage, StreamId } from '@modelcontextprotocol/server';

/** Events kept per 2025 session for `Last-Event-ID` resumption, by default. */
export const DEFAULT_MAX_EVENTS = 1_000;

interface StoredEvent {
  streamId: StreamId;
  message: JSONRPCMessage;
}

/**
 * An in-memory event store for one Streamable HTTP session: the last `maxEvents` messages sent on any of its
 * streams, so a client that lost a stream can resume it with `Last-Event-ID`. Older events are dropped;
 * resuming from a dropped event replays nothing.
 */
export class BoundedEventStore implements EventStore {
  // Map iteration order is insertion order, so the first key is always the oldest event.
  private readonly events = new Map<EventId, StoredEvent>();
  private sequence = 0;

  constructor(private readonly maxEvents: number = DEFAULT_MAX_EVENTS) {}

  get size(): number {
    return this.events.size;
  }

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const eventId = String(++this.sequence);
    this.events.set(eventId, { streamId, message });
    while (this.events.size > this.maxEvents) {
      const oldest = this.events.keys().next().value;
      if (oldest === undefined) break;
      this.events.delete(oldest);
    }
    return eventId;
  }

  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const last = this.events.get(lastEventId);
    if (!last) return '';
    let after = false;
    for (const [eventId, event] of this.events) {
      if (eventId === lastEventId) {
        after = true;
        continue;
      }
      if (after && event.streamId === last.streamId) await send(eventId, event.message);
    }
    return last.streamId;
  }
}
