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

  constructor(private readonly build: () => Promise<McpFront>) {}

  private load(): Promise<McpFront> {
    this.loading ??= this.build().then((front) => {
      this.loaded = front;
      // Closed while it loaded: closed now, so that it answers 503 like a front closed in place.
      if (this.closed) void front.close();
      return front;
    });
    return this.loading;
  }

  async handleMcp(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown): Promise<void> {
    return (await this.load()).handleMcp(req, res, parsedBody, auth);
  }

  async handleSse(req: IncomingMessage, res: ServerResponse, messagesPath: string, auth?: unknown): Promise<void> {
    return (await this.load()).handleSse(req, res, messagesPath, auth);
  }

  async handleMessages(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, auth?: unknown): Promise<void> {
    return (await this.load()).handleMessages(req, res, parsedBody, auth);
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
    if (this.loading) await (await this.loading).close();
  }
}
