/** One event of a server-sent event stream: its `id:` and its `data:` lines joined. */
export interface StreamEvent {
  id?: string;
  data: string;
}

/** Reads SSE events from a response until one matches, then stops reading (the stream may stay open). */
export async function readSseUntil(res: Response, done: (event: StreamEvent) => boolean): Promise<StreamEvent[]> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const events: StreamEvent[] = [];
  let buffer = '';
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) return events;
    buffer += decoder.decode(value, { stream: true });
    let cut = buffer.indexOf('\n\n');
    while (cut >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      cut = buffer.indexOf('\n\n');
      const event: StreamEvent = { data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('id:')) event.id = line.slice(3).trim();
        else if (line.startsWith('data:')) event.data += line.slice(5).trim();
      }
      if (event.id === undefined && event.data === '') continue;
      events.push(event);
      if (done(event)) {
        await reader.cancel().catch(() => {});
        return events;
      }
    }
  }
}
