#!/usr/bin/env node
// `pnpm conformance`: the official MCP conformance suite (@modelcontextprotocol/conformance, server mode) against
// its reference server (test/conformance/everything-server.ts), once directly and once through the hub's
// per-server endpoint `/mcp/<id>` (the reference server registered as a `streamable-http` upstream), for the
// default suite and for `--requirements 2026-07-28`. Compares the two runs check by check and prints the checks
// that pass directly but not through the hub. Exit code 0 when none is lost, 1 otherwise, 2 on a bad argument.
//
// Options: --json (a machine-readable summary on stdout instead of the text report), --suite default|2026-07-28
// (one suite only), --session-mode shared|per-client (the registered server's config.sessionMode; unset: the
// hub's default), --check-proxy (also runs the suite through the auth proxy straight to the reference server:
// shows that the proxy itself loses nothing).
//
// The suite needs Node >= 22 (it uses fs.globSync): the first run installs Node 22 (the npm package
// node-<os>-<arch>@22) and the pinned suite into .data/conformance/toolchain/. Every scenario's checks.json,
// the suite's output and the logs of the hub, the supervisor (with its worker) and the reference server are kept
// in .data/conformance/last-run/ until the next run.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { waitForPort } from '../bench/harness.mjs';
import { alive, descendantsOf, freePort, ROOT, sleep, startApp, startRedis, stopProcess } from '../bench/lib.mjs';

/** The suite version the reference server was taken with (test/conformance/SOURCE); its checks change between versions. */
const CONFORMANCE_VERSION = '0.2.0-alpha.12';
const NODE_MAJOR = 22;
const CACHE_DIR = join(ROOT, '.data/conformance');
const TOOLCHAIN_DIR = join(CACHE_DIR, 'toolchain');
const RUN_DIR = join(CACHE_DIR, 'last-run');
const REFERENCE_SOURCE = join(ROOT, 'test/conformance/everything-server.ts');
/** Inside the repository, so that its imports (sdk, cors, zod) resolve from the workspace's node_modules. */
const REFERENCE_BUILT = join(CACHE_DIR, 'everything-server.mjs');
const SERVER_ID = 'conformance';
const KEY_PREFIX = 'conformance:';
const WORKER_PORT_RANGE = 50;
const READY_TIMEOUT_MS = 60_000;
const POLL_MS = 200;
const SESSION_MODES = ['shared', 'per-client'];
const USAGE =
  'pnpm conformance [--json] [--check-proxy] [--suite default|2026-07-28] [--session-mode shared|per-client]';
const SUITES = [
  { name: 'default', args: [] },
  { name: '2026-07-28', args: ['--requirements', '2026-07-28'] },
];
/** How the suite names a scenario's output directory: `server-<scenario>-<ISO time with : and . as ->`. */
const RESULT_DIR_RE = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

const say = (message) => process.stderr.write(`[conformance] ${message}\n`);

function parseArgs(argv) {
  const opts = { json: false, checkProxy: false, suites: SUITES, sessionMode: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') continue;
    if (arg === '--json') opts.json = true;
    else if (arg === '--check-proxy') opts.checkProxy = true;
    else if (arg === '--suite' && SUITES.some((s) => s.name === argv[i + 1])) {
      opts.suites = SUITES.filter((s) => s.name === argv[i + 1]);
      i++;
    } else if (arg === '--session-mode' && SESSION_MODES.includes(argv[i + 1])) {
      opts.sessionMode = argv[i + 1];
      i++;
    } else {
      say(`unknown argument ${arg}; usage: ${USAGE}`);
      process.exit(2);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------------------------
// Teardown: one stack of stops, run once in reverse order, each in its own try/catch, also on Ctrl-C.

const stops = [];
let stopping;
const defer = (label, fn) => stops.push({ label, fn });

function stopAll() {
  stopping ??= (async () => {
    while (stops.length > 0) {
      const { label, fn } = stops.pop();
      try {
        await fn();
      } catch (err) {
        say(`stopping ${label} failed: ${err.message}`);
      }
    }
  })();
  return stopping;
}

/** Announces the next step, unless Ctrl-C came: the suite in flight exits with it, and nothing new may start. */
function step(message) {
  if (stopping) throw new Error('stopped');
  say(message);
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    say(`${signal}: stopping everything`);
    void stopAll().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Toolchain: Node 22 and the suite, installed once into the cache directory with npm.

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.error) throw new Error(`${command} could not run: ${result.error.message}`);
  return result;
}

/** The installed package's version, or undefined. */
function installedVersion(name) {
  try {
    return JSON.parse(readFileSync(join(TOOLCHAIN_DIR, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** Installs what is missing; returns { node, cli }: the Node >= 22 to run the suite with and the suite's entry. */
function ensureToolchain() {
  // Node publishes its binaries on npm as node-<os>-<arch> (os: linux, darwin, win).
  const nodePackage = `node-${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;
  const needNode = Number(process.versions.node.split('.')[0]) < NODE_MAJOR;
  const wanted = [];
  if (installedVersion('@modelcontextprotocol/conformance') !== CONFORMANCE_VERSION) {
    wanted.push(`@modelcontextprotocol/conformance@${CONFORMANCE_VERSION}`);
  }
  if (needNode && !installedVersion(nodePackage)?.startsWith(`${NODE_MAJOR}.`)) {
    wanted.push(`${nodePackage}@${NODE_MAJOR}`);
  }
  if (wanted.length > 0) {
    say(`installing ${wanted.join(' and ')} into ${relative(ROOT, TOOLCHAIN_DIR)} (first run only)`);
    mkdirSync(TOOLCHAIN_DIR, { recursive: true });
    const manifest = join(TOOLCHAIN_DIR, 'package.json');
    if (!existsSync(manifest)) writeFileSync(manifest, '{ "private": true }\n');
    // The suite declares Node >= 22 while npm runs on the Node at hand: engine-strict would refuse it.
    const npm = run('npm', ['install', '--no-audit', '--no-fund', '--engine-strict=false', ...wanted], {
      cwd: TOOLCHAIN_DIR,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (npm.status !== 0) throw new Error(`npm install ${wanted.join(' ')} failed (exit ${npm.status})`);
  }
  const node = needNode ? join(TOOLCHAIN_DIR, 'node_modules', nodePackage, 'bin/node') : process.execPath;
  const cli = join(TOOLCHAIN_DIR, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
  const version = run(node, ['--version']).stdout.trim();
  say(`suite @modelcontextprotocol/conformance@${CONFORMANCE_VERSION} on Node ${version}`);
  return { node, cli };
}

// ---------------------------------------------------------------------------------------------------------------
// The processes: reference server, private Redis, supervisor, hub, and the proxy that adds the admin token.

/** Ports for the workers that cannot hold `avoid`: the hub refuses upstream URLs aimed at a worker port. */
async function workerBasePort(avoid) {
  for (;;) {
    const base = await freePort();
    if (avoid < base || avoid >= base + WORKER_PORT_RANGE) return base;
  }
}

/** How the reference server starts listening (on every interface), and the same on loopback only. */
const REFERENCE_LISTEN = 'app.listen(PORT,';
const REFERENCE_LISTEN_LOOPBACK = "app.listen(PORT, '127.0.0.1',";

/**
 * Strips the reference server's types with the workspace's TypeScript (no type check: it is third-party code
 * written for other compiler settings) into the cache directory, where Node 20 runs it. The one change: it
 * listens on loopback, as nothing but this machine needs to reach it.
 */
function buildReferenceServer() {
  const original = readFileSync(REFERENCE_SOURCE, 'utf8');
  if (!original.includes(REFERENCE_LISTEN)) {
    throw new Error(`${relative(ROOT, REFERENCE_SOURCE)} no longer calls ${REFERENCE_LISTEN}: update the script`);
  }
  const source = original.replace(REFERENCE_LISTEN, REFERENCE_LISTEN_LOOPBACK);
  const { outputText } = ts.transpileModule(source, {
    fileName: REFERENCE_SOURCE,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  writeFileSync(REFERENCE_BUILT, outputText);
}

/** An output file descriptor for a process's log in the run directory (the child keeps its own copy). */
function logFile(name) {
  return openSync(join(RUN_DIR, 'logs', `${name}.log`), 'w');
}

async function startReferenceServer() {
  buildReferenceServer();
  const port = await freePort();
  const log = logFile('reference-server');
  const child = spawn(process.execPath, [REFERENCE_BUILT], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  defer('reference server', () => stopProcess(child, 5_000));
  await waitForPort(port, 'the reference server');
  return { port, url: `http://127.0.0.1:${port}/mcp` };
}

/** Redis, a supervisor and a hub with an admin token; returns { origin, port, token }. */
async function startHubStack(referencePort) {
  const redis = await startRedis();
  defer('redis', () => redis.stop());
  const token = randomBytes(32).toString('hex');
  const hubPort = await freePort();
  const common = {
    REDIS_URL: redis.url,
    KEY_PREFIX,
    LOG_LEVEL: 'info',
    // Nothing secret is registered here, but without a key the hub warns at every start.
    HUB_SECRET_KEY: randomBytes(32).toString('hex'),
    MCP_WORKER_BASE_PORT: String(await workerBasePort(referencePort)),
    MCP_WORKER_PORT_RANGE: String(WORKER_PORT_RANGE),
  };

  const supervisorLog = logFile('supervisor'); // its workers inherit its stdout
  const supervisor = startApp('supervisor', common, { stdout: supervisorLog });
  closeSync(supervisorLog);
  defer('supervisor and its worker', async () => {
    const descendants = descendantsOf(supervisor.child.pid);
    await supervisor.stop();
    // A worker that outlived its supervisor (it should not) would keep a port and the reference server's sessions.
    for (const pid of descendants) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  const hubLog = logFile('hub');
  const hub = startApp(
    'hub',
    {
      ...common,
      HUB_HOST: '127.0.0.1',
      HUB_PORT: String(hubPort),
      HUB_AUTH: 'token',
      HUB_ADMIN_TOKEN: token,
      // The hub has no allow-list of upstream hosts: loopback upstreams pass while this is off (its default, set
      // here so that an operator's environment cannot turn it on), and only the hub's and the workers' own ports
      // stay refused (the reference server's port is kept out of the worker range above).
      HUB_DENY_PRIVATE_URLS: 'false',
    },
    { stdout: hubLog },
  );
  closeSync(hubLog);
  defer('hub', () => hub.stop());
  await waitForPort(hubPort, 'the hub');
  return { origin: `http://127.0.0.1:${hubPort}`, port: hubPort, token };
}

async function hubApi(hub, method, path, body) {
  const res = await fetch(`${hub.origin}${path}`, {
    method,
    headers: { authorization: `Bearer ${hub.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${answer.error?.message ?? JSON.stringify(answer)}`);
  return answer;
}

/** Registers the reference server as a streamable-http upstream and waits until its worker runs. */
async function registerReferenceServer(hub, url, sessionMode) {
  await hubApi(hub, 'POST', '/api/servers', {
    id: SERVER_ID,
    name: 'MCP conformance reference server',
    transport: 'streamable-http',
    config: sessionMode ? { url, sessionMode } : { url },
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let runtime;
  while (Date.now() < deadline) {
    ({ runtime } = await hubApi(hub, 'GET', `/api/servers/${SERVER_ID}`));
    if (runtime?.status === 'running') return;
    await sleep(POLL_MS);
  }
  throw new Error(
    `the worker of ${SERVER_ID} is not running after ${READY_TIMEOUT_MS} ms (status ${runtime?.status}, ` +
      `last error ${runtime?.lastError}); see ${relative(ROOT, join(RUN_DIR, 'logs'))}`,
  );
}

/**
 * A reverse proxy on loopback that adds `Authorization: Bearer <token>` to every request and changes nothing
 * else: the suite has no option for request headers. Host and Origin go on as the suite sent them, so that the
 * hub's DNS-rebinding and Origin checks judge the suite's own values; answers (SSE included) stream back as they
 * come, and a client that hangs up closes the request upstream too.
 */
async function startAuthProxy(target, token) {
  const server = createHttpServer((req, res) => {
    const upstream = httpRequest(
      {
        host: '127.0.0.1',
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, authorization: `Bearer ${token}` },
      },
      (answer) => {
        res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      if (res.headersSent) res.destroy(err);
      else res.writeHead(502, { 'content-type': 'text/plain' }).end(`conformance proxy: ${err.message}`);
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  defer(`auth proxy to port ${target.port}`, async () => {
    server.closeAllConnections();
    server.close();
  });
  return server.address().port;
}

// ---------------------------------------------------------------------------------------------------------------
// Running the suite and reading its checks.

/** Runs one suite against `url`, keeping each scenario's checks.json under `outDir` and the output in suite.log. */
async function runSuite(toolchain, suite, url, outDir) {
  mkdirSync(outDir, { recursive: true });
  const log = openSync(join(outDir, 'suite.log'), 'w');
  const child = spawn(toolchain.node, [toolchain.cli, 'server', '--url', url, ...suite.args, '-o', outDir], {
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  defer(`suite ${suite.name}`, () => stopProcess(child, 5_000));
  // Its exit code only says whether some check failed; the checks themselves are what is compared.
  await once(child, 'exit');
}

/** Every checks.json below `dir` (a scenario's name may hold `/`), with the scenario named by its directory. */
function readChecks(dir) {
  const checks = [];
  for (const entry of readdirSync(dir, { recursive: true })) {
    if (!entry.endsWith('checks.json')) continue;
    const scenarioDir = relative(dir, join(dir, entry, '..'));
    const scenario = RESULT_DIR_RE.exec(scenarioDir)?.[1] ?? scenarioDir;
    const seen = new Map();
    for (const check of JSON.parse(readFileSync(join(dir, entry), 'utf8'))) {
      // One scenario may record the same id (even the same name) several times, once per case it tries: the
      // n-th occurrence is compared with the n-th.
      const base = `${scenario} / ${check.id} (${check.name})`;
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      checks.push({ key: n > 1 ? `${base} #${n}` : base, scenario, ...check });
    }
  }
  if (checks.length === 0) throw new Error(`the suite left no checks in ${relative(ROOT, dir)}: see its suite.log`);
  return checks;
}

/** Counts by status: { passed, total, failed, warnings, other }. */
function tally(checks) {
  const count = (status) => checks.filter((c) => c.status === status).length;
  const passed = count('SUCCESS');
  const failed = count('FAILURE');
  const warnings = count('WARNING');
  return { passed, total: checks.length, failed, warnings, other: checks.length - passed - failed - warnings };
}

/** Checks that pass in `reference` but not in `other` (failed, warned, skipped or absent there). */
function lostChecks(reference, other) {
  const byKey = new Map(other.map((c) => [c.key, c]));
  return reference
    .filter((c) => c.status === 'SUCCESS' && byKey.get(c.key)?.status !== 'SUCCESS')
    .map((c) => {
      const seen = byKey.get(c.key);
      return {
        scenario: c.scenario,
        id: c.id,
        name: c.name,
        key: c.key,
        status: seen?.status ?? 'ABSENT',
        message: seen ? (seen.errorMessage ?? seen.description) : 'the check was not recorded',
      };
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Report.

const counts = (t) =>
  `${t.passed} passed / ${t.total} (${t.failed} failed, ${t.warnings} warnings, ${t.other} info or skipped)`;
const lostLine = (l) => `  - ${l.key}: ${l.status}: ${l.message.replace(/\s+/g, ' ').slice(0, 400)}`;

function printReport(results) {
  for (const r of results) {
    console.log(`\nsuite ${r.suite}`);
    console.log(`  direct:       ${counts(r.direct)}`);
    if (r.proxy) console.log(`  direct+proxy: ${counts(r.proxy)} (lost by the proxy alone: ${r.lostByProxy.length})`);
    console.log(`  through hub:  ${counts(r.hub)}`);
    if (r.gained.length > 0) console.log(`  passing through the hub only: ${r.gained.length}`);
    console.log(`  lost through the hub: ${r.lost.length}`);
    for (const l of r.lostByProxy ?? []) console.log(lostLine({ ...l, key: `[proxy] ${l.key}` }));
    for (const l of r.lost) console.log(lostLine(l));
  }
  const lost = results.reduce((n, r) => n + r.lost.length, 0);
  const sum = (side) => results.map((r) => r[side].passed).join(' + ');
  console.log(`\ndirect ${sum('direct')}; through the hub ${sum('hub')}; lost ${lost}`);
  console.log(`checks.json of every scenario and the logs: ${relative(ROOT, RUN_DIR)}/`);
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  for (const app of ['hub', 'supervisor', 'worker']) {
    if (!existsSync(join(ROOT, `apps/${app}/dist/main.js`))) throw new Error(`apps/${app}/dist is missing: pnpm build`);
  }
  const toolchain = ensureToolchain();
  rmSync(RUN_DIR, { recursive: true, force: true });
  mkdirSync(join(RUN_DIR, 'logs'), { recursive: true });

  const reference = await startReferenceServer();
  const hub = await startHubStack(reference.port);
  await registerReferenceServer(hub, reference.url, opts.sessionMode);
  const hubProxyPort = await startAuthProxy(hub, hub.token);
  const hubUrl = `http://127.0.0.1:${hubProxyPort}/mcp/${SERVER_ID}`;
  const controlUrl = opts.checkProxy ? `http://127.0.0.1:${await startAuthProxy(reference, hub.token)}/mcp` : undefined;
  say(
    `reference server ${reference.url}; through the hub ${hub.origin}/mcp/${SERVER_ID} (via the auth proxy ${hubUrl})`,
  );

  const results = [];
  for (const suite of opts.suites) {
    const dir = (side) => join(RUN_DIR, suite.name, side);
    step(`suite ${suite.name}: direct…`);
    await runSuite(toolchain, suite, reference.url, dir('direct'));
    step(`suite ${suite.name}: through the hub…`);
    await runSuite(toolchain, suite, hubUrl, dir('hub'));
    const direct = readChecks(dir('direct'));
    const hubChecks = readChecks(dir('hub'));
    const result = {
      suite: suite.name,
      direct: tally(direct),
      hub: tally(hubChecks),
      lost: lostChecks(direct, hubChecks),
      gained: lostChecks(hubChecks, direct),
    };
    if (controlUrl) {
      step(`suite ${suite.name}: direct through the auth proxy…`);
      await runSuite(toolchain, suite, controlUrl, dir('proxy'));
      const proxied = readChecks(dir('proxy'));
      Object.assign(result, { proxy: tally(proxied), lostByProxy: lostChecks(direct, proxied) });
    }
    results.push(result);
  }
  const summary = {
    conformance: CONFORMANCE_VERSION,
    sessionMode: opts.sessionMode ?? 'default',
    runDir: relative(ROOT, RUN_DIR),
    suites: results,
  };
  writeFileSync(join(RUN_DIR, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  if (opts.json) console.log(JSON.stringify(summary, null, 2));
  else printReport(results);
  return results.some((r) => r.lost.length > 0 || (r.lostByProxy?.length ?? 0) > 0) ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  if (!stopping) say(err.message);
} finally {
  await stopAll();
}
process.exit(code);
