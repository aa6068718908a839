// A stdio MCP server with TOOL_COUNT tools (default 20) named t01, t02, …, each answering its arguments as text:
// the bench's many-servers, many-tools traffic (pnpm bench metrics: series after 20 servers × 20 tools).
import { Server } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';

const count = Math.max(1, Math.min(1_000, Number(process.env.TOOL_COUNT ?? 20)));
const tools = Array.from({ length: count }, (_, i) => ({
  name: `t${String(i + 1).padStart(2, '0')}`,
  description: `tool ${i + 1}`,
  inputSchema: { type: 'object', properties: { message: { type: 'string' } } },
}));
const server = new Server({ name: 'many-tools', version: '1.0.0' }, { capabilities: { tools: {} } });
server.setRequestHandler('tools/list', async () => ({ tools }));
server.setRequestHandler('tools/call', async (request) => ({
  content: [{ type: 'text', text: `${request.params.name}: ${JSON.stringify(request.params.arguments ?? {})}` }],
}));
await server.connect(new StdioServerTransport());
