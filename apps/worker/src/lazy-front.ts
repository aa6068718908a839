import type { IncomingMessage, ServerResponse } from 'node:http';
import type { McpFront } from '@mcp-hub/shared/mcp-front';

/**
 * The worker's MCP front, built (and its code loaded) at the first MCP request: until then there is no session
 * to notify, so list changes and resource updates are nothing to send. Most workers serve the hub's
 * `POST /tools/:tool` alone and never load the MCP server SDK (memory, start-up time).
 */
export class LazyFront implements McpFront {
  private loading: Promise<McpFront> | undefined;
  private loaded: McpFront | undefined;
  private closed = false;

  constructor(
    private readonly build: () => Promise<McpFront>,
    /** Told when a build failed (the request that asked for it was answered 500). */
    private readonly onBuildFailed?: (error: unknown) => void,
  ) {}

  private load(): Promise<McpFront> {
    this.loading ??= this.build().then(
      (front) => {
        this.loaded = front;
        // Closed while it loaded: closed now (close() waits for that), so that it answers 503.
        if (this.closed) return front.close().then(() => front);
        return front;
      },
      (error: unknown) => {
        // A front that could not be built is tried again by the next request.
        this.loading = undefined;
        throw error;
      },
    );
    return this.loading;
  }

  /** The front for a request, or the request answered 500 in the one error shape when it cannot be built. */
  private async front(res: ServerResponse): Promise<McpFront | undefined> {
    try {
      return await this.load();
    } catch (error) {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'internal_error', message: 'the MCP endpoint could not start' } }));
      } else res.end();
      this.onBuildFailed?.(error);
      return undefined;
    }
  }

  async handleMcp(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown): Promise<void> {
    return (await this.front(res))?.handleMcp(req, res, parsedBody, auth);
  }

  async handleSse(req: IncomingMessage, res: ServerResponse, messagesPath: string, auth?: unknown): Promise<void> {
    return (await this.front(res))?.handleSse(req, res, messagesPath, auth);
  }

  async handleMessages(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown): Promise<void> {
    return (await this.front(res))?.handleMessages(req, res, parsedBody, auth);
  }

  toolsChanged(): void {
    this.loaded?.toolsChanged();
  }

  resourcesChanged(): void {
    this.loaded?.resourcesChanged();
  }

  promptsChanged(): void {
    this.loaded?.promptsChanged();
  }

  resourceUpdated(uri: string): void {
    this.loaded?.resourceUpdated(uri);
  }

  sessionCount(): number {
    return this.loaded?.sessionCount() ?? 0;
  }

  sessionAuths(): unknown[] {
    return this.loaded?.sessionAuths() ?? [];
  }

  async closeSessions(match: (auth: unknown) => boolean, reason: string): Promise<number> {
    // A front still loading may be opening a session of that caller: wait for it.
    return this.loading ? (await this.loading).closeSessions(match, reason) : 0;
  }

  async close(): Promise<void> {
    this.closed = true;
    // A front still loading is closed by load() as soon as it is built; one built already, here.
    const front = await this.loading?.catch(() => undefined);
    await front?.close();
  }
}
