#!/usr/bin/env node
// `pnpm seed`: registers two demo servers on a running hub, so a newcomer can call a tool at once:
// - "everything": the official MCP test server over stdio (echo, add, a long-running operation with progress…);
// - "github": a public REST API (GitHub's, no key needed; it needs internet) described as tools.
// (Not the hub's own API: a REST server pointing at the hub is refused, since its stored admin token would be lent
// to every key that may call its tools.)
// Idempotent (PUT). Reads HUB_URL (default from HUB_HOST/HUB_PORT) and the admin token from the environment or
// .env: HUB_ADMIN_TOKEN, else the file the hub generated it in (HUB_ADMIN_TOKEN_FILE, default .data/admin-token).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
if (existsSync('.env')) process.loadEnvFile('.env');

// A wildcard bind is reached on loopback: the hub refuses 0.0.0.0 as a Host name.
const bindHost = process.env.HUB_HOST || '127.0.0.1';
const hub =
  process.env.HUB_URL ??
  `http://${['0.0.0.0', '::'].includes(bindHost) ? '127.0.0.1' : bindHost}:${process.env.HUB_PORT || '8080'}`;
const tokenFile = process.env.HUB_ADMIN_TOKEN_FILE || '.data/admin-token';
const token =
  process.env.HUB_ADMIN_TOKEN || (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
if (!token && !/^none$/i.test(process.env.HUB_AUTH ?? '')) {
  console.error(`seed: no admin token: set HUB_ADMIN_TOKEN, or start the hub once (pnpm start) to create ${tokenFile}`);
  process.exit(1);
}
const auth = token ? { authorization: `Bearer ${token}` } : {};
const everythingEntry = join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

const servers = [
  {
    id: 'everything',
    name: 'MCP server-everything',
    description: 'The MCP reference test server (stdio)',
    transport: 'stdio',
    tags: ['demo'],
    config: existsSync(everythingEntry)
      ? { command: process.execPath, args: [everythingEntry, 'stdio'] }
      : { command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything', 'stdio'] },
  },
  {
    id: 'github',
    name: 'GitHub REST API',
    description: "GitHub's public REST API, described as tools (needs internet)",
    transport: 'rest',
    tags: ['demo'],
    config: {
      baseUrl: 'https://api.github.com',
      headers: { accept: 'application/vnd.github+json', 'user-agent': 'mcp-hub-seed' },
      tools: [
        {
          name: 'get_repo',
          description: 'A public repository: description, stars, default branch',
          method: 'GET',
          path: '/repos/{owner}/{repo}',
          inputSchema: {
            type: 'object',
            properties: {
              owner: { type: 'string', pattern: '^[A-Za-z0-9-]{1,39}$' },
              repo: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,100}$' },
            },
            required: ['owner', 'repo'],
          },
        },
      ],
    },
  },
];

for (const server of servers) {
  const { id, ...body } = server;
  let res;
  try {
    res = await fetch(`${hub}/api/servers/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify(body),
    });
  } catch (err) {
    console.error(
      `seed: the hub does not answer at ${hub} (${err.cause?.code ?? err.message}); start it with pnpm start`,
    );
    process.exit(1);
  }
  const answer = await res.json();
  if (!res.ok) {
    console.error(`seed: ${id}: ${res.status} ${answer.error?.message ?? JSON.stringify(answer)}`);
    process.exit(1);
  }
  console.log(`seed: ${id} ${res.status === 201 ? 'registered' : 'up to date'} (rev ${answer.rev})`);
}
// The token itself is never printed here: the shell reads it from where it is kept.
const tokenVar = process.env.HUB_ADMIN_TOKEN ? 'HUB_ADMIN_TOKEN' : 'HUB_TOKEN';
const authFlag = token ? ` -H "Authorization: Bearer $${tokenVar}"` : '';
const exportLine = token && !process.env.HUB_ADMIN_TOKEN ? `export HUB_TOKEN=$(cat ${tokenFile})\n     ` : '';
console.log(
  `\nTry: ${exportLine}curl -N -X POST ${hub}/mcp/everything/echo${authFlag} -H 'content-type: application/json' -d '{"message":"hi"}'`,
);
