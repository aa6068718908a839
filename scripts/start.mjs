#!/usr/bin/env node
// Runs the whole stack in the foreground: Redis (found or started), the hub and a supervisor.
// Ctrl-C (or SIGTERM) stops everything it started, in order, and leaves no process behind.
// `--private-redis` skips the look for a Redis on 127.0.0.1:6379 and always starts the private one.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
if (existsSync('.env')) process.loadEnvFile('.env');

const STOP_GRACE_MS = 15_000;
const DATA_DIR = '.data';
const REDIS_DIR = join(DATA_DIR, 'redis');
const REDIS_PASSWORD_FILE = join(DATA_DIR, 'redis-password');
const REDIS_PASSWORD_BYTES = 32;
/** A password we can put in a URL and a redis.conf line as it is. */
const REDIS_PASSWORD_RE = /^[A-Za-z0-9._~-]{16,}$/;
const say = (message) => process.stderr.write(`[start] ${message}\n`);

/**
 * What something at host:port answers to a Redis PING without credentials: 'open' (+PONG), 'auth' (an error
 * such as NOAUTH: a Redis that wants a password), or undefined when nothing answers like Redis.
 */
function redisReply(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (reply) => {
      socket.destroy();
      resolve(reply);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      const text = data.toString();
      done(text.startsWith('+') ? 'open' : text.startsWith('-') ? 'auth' : undefined);
    });
  });
}

/**
 * A directory only this user can enter. mkdir's mode applies to new directories only, so an existing one is
 * tightened too; one owned by another user is refused (they could read or swap what we put in it).
 */
function privateDir(dir) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (process.getuid && statSync(dir).uid !== process.getuid()) {
    say(`${dir} belongs to another user: remove it or run from a checkout you own`);
    process.exit(1);
  }
  chmodSync(dir, 0o700);
}

/** The private Redis's password: read from REDIS_PASSWORD_FILE (0600), or made and kept there on first start. */
function redisPassword() {
  try {
    const kept = readFileSync(REDIS_PASSWORD_FILE, 'utf8').trim();
    if (REDIS_PASSWORD_RE.test(kept)) {
      chmodSync(REDIS_PASSWORD_FILE, 0o600);
      return kept;
    }
    say(`${REDIS_PASSWORD_FILE} does not hold a usable password (16+ of A-Z a-z 0-9 . _ ~ -): making a new one`);
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
  }
  const password = randomBytes(REDIS_PASSWORD_BYTES).toString('hex');
  writeFileSync(REDIS_PASSWORD_FILE, `${password}\n`, { mode: 0o600 });
  chmodSync(REDIS_PASSWORD_FILE, 0o600); // writeFile keeps the mode of a file that existed
  return password;
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
  if (!process.argv.includes('--private-redis')) {
    const found = await redisReply('127.0.0.1', 6379);
    if (found === 'open') {
      say('using the Redis that answers on 127.0.0.1:6379');
      say('  warning: it has no password: every local user can read worker tokens and secrets and make the');
      say('  supervisor run commands. Give it a password (REDIS_URL=redis://:<password>@…) or stop it and');
      say('  let this script start its own (or run it with --private-redis)');
      return 'redis://127.0.0.1:6379';
    }
    if (found === 'auth') {
      say('the Redis on 127.0.0.1:6379 wants a password (to use it: REDIS_URL=redis://:<password>@127.0.0.1:6379)');
    }
  }
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    say('no Redis found: set REDIS_URL, run one on 127.0.0.1:6379, or install redis-server');
    say('  Debian/Ubuntu: sudo apt-get install redis-server    macOS: brew install redis');
    say('  Docker:        docker run -d -p 6379:6379 redis:7');
    process.exit(1);
  }
  // Only this user may read the data (worker tokens, unsealed secrets) or the password.
  privateDir(DATA_DIR);
  privateDir(REDIS_DIR);
  const password = redisPassword();
  const port = await freePort();
  // The configuration goes in on stdin: on the command line the password would show in every user's `ps`.
  // umask 077 while forking: Redis creates its AOF and RDB files 0600 rather than 0644.
  const umask = process.umask(0o077);
  let redis;
  try {
    redis = spawn('redis-server', ['-'], { stdio: ['pipe', 'ignore', 'inherit'] });
  } finally {
    process.umask(umask);
  }
  redis.stdin.end(
    [
      'bind 127.0.0.1',
      `port ${port}`,
      `dir ${JSON.stringify(join(root, REDIS_DIR))}`,
      'appendonly yes',
      'save 60 1',
      `requirepass ${password}`,
      '',
    ].join('\n'),
  );
  children.push({ name: 'redis', child: redis, last: true });
  for (let i = 0; i < 100 && !(await redisReply('127.0.0.1', port)); i++) await new Promise((r) => setTimeout(r, 50));
  say(`started a private redis-server on 127.0.0.1:${port} (data in ${REDIS_DIR}, password in ${REDIS_PASSWORD_FILE})`);
  return `redis://:${password}@127.0.0.1:${port}`;
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
