#!/usr/bin/env node
// Runs the whole stack in the foreground: Redis (found or started), the hub and a supervisor.
// Ctrl-C (or SIGTERM) stops everything it started, in order, and leaves no process behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
if (existsSync('.env')) process.loadEnvFile('.env');

const STOP_GRACE_MS = 15_000;
const say = (message) => process.stderr.write(`[start] ${message}\n`);

/** Resolves true when something at host:port answers a Redis PING (even with an auth error). */
function redisAnswers(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(/^[+-]/.test(data.toString())));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const children = [];

async function ensureRedis() {
  if (process.env.REDIS_URL) {
    say(`using REDIS_URL=${process.env.REDIS_URL.replace(/\/\/[^@]*@/, '//***@')}`);
    return process.env.REDIS_URL;
  }
  if (await redisAnswers('127.0.0.1', 6379)) {
    say('using the Redis that answers on 127.0.0.1:6379');
    return 'redis://127.0.0.1:6379';
  }
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    say('no Redis found: set REDIS_URL, run one on 127.0.0.1:6379, or install redis-server');
    say('  Debian/Ubuntu: sudo apt-get install redis-server    macOS: brew install redis');
    say('  Docker:        docker run -d -p 6379:6379 redis:7');
    process.exit(1);
  }
  const dir = join(root, '.data', 'redis');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const redis = spawn(
    'redis-server',
    ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--appendonly', 'yes', '--save', '60 1'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  children.push({ name: 'redis', child: redis, last: true });
  for (let i = 0; i < 100 && !(await redisAnswers('127.0.0.1', port)); i++) await new Promise((r) => setTimeout(r, 50));
  say(`started a private redis-server on 127.0.0.1:${port} (data in .data/redis)`);
  return `redis://127.0.0.1:${port}`;
}

let stopping = false;
async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  const order = [...children.filter((c) => !c.last), ...children.filter((c) => c.last)];
  const force = setTimeout(() => {
    for (const { child } of order) if (child.exitCode === null) child.kill('SIGKILL');
  }, STOP_GRACE_MS);
  for (const { child } of order) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  clearTimeout(force);
  process.exit(code);
}

const redisUrl = await ensureRedis();
const env = { ...process.env, REDIS_URL: redisUrl };
const apps = [['hub', 'apps/hub/dist/main.js']];
if (!/^(0|false|no|off)$/i.test(env.MCP_SUPERVISOR_ENABLED ?? '')) {
  apps.push(['supervisor', 'apps/supervisor/dist/main.js']);
}
for (const [name, entry] of apps) {
  if (!existsSync(entry)) {
    say(`${entry} is missing: run pnpm build first`);
    await stopAll(1);
  }
  const child = spawn(process.execPath, [entry], { env, stdio: 'inherit' });
  child.once('exit', (code, signal) => {
    if (stopping) return;
    say(`${name} exited (${signal ?? code}); stopping the rest`);
    void stopAll(code || 1);
  });
  children.push({ name, child, last: false });
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

/**
 * How to call the hub: the admin token's file and a ready curl line. This terminal message is the one place
 * the generated token is shown (the hub logs only the file's path).
 */
function sayHowToAuthenticate(url) {
  if (/^none$/i.test(env.HUB_AUTH ?? '')) {
    say('HUB_AUTH=none: requests without credentials act as admin (this machine only)');
    return;
  }
  if (env.HUB_ADMIN_TOKEN) {
    say('admin token: HUB_ADMIN_TOKEN from your environment or .env');
    say(`  curl -s ${url}/api/servers -H "Authorization: Bearer $HUB_ADMIN_TOKEN"`);
    return;
  }
  const file = env.HUB_ADMIN_TOKEN_FILE || '.data/admin-token';
  let token;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch {
    say(`admin token: not readable at ${file} (see the hub's auth.* log lines)`);
    return;
  }
  say(`admin token (kept in ${file}, mode 0600; delete the file and restart for a new one):`);
  say(`  ${token}`);
  say('use it:');
  say(`  export HUB_TOKEN=$(cat ${file})`);
  say(`  curl -s ${url}/api/servers -H "Authorization: Bearer $HUB_TOKEN"`);
}

const host = env.HUB_HOST || '127.0.0.1';
const port = env.HUB_PORT || '8080';
for (let i = 0; i < 200 && !stopping; i++) {
  try {
    const res = await fetch(`http://${host}:${port}/healthz`);
    if (res.ok) {
      say(`MCP Hub is listening on http://${host}:${port}  (Ctrl-C stops everything)`);
      sayHowToAuthenticate(`http://${['0.0.0.0', '::'].includes(host) ? '127.0.0.1' : host}:${port}`);
      break;
    }
  } catch {}
  await new Promise((r) => setTimeout(r, 100));
}
