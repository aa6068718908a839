// `pnpm bench [suite…]`: runs the named benchmark suites and prints their tables. Without a name, the default
// suites run (about 6 minutes on 2 cores); `mcp` (about 1 minute), `auth` (about 1 minute) and `idle` (300
// servers, a few minutes) run only when named, e.g. `pnpm bench mcp auth`, so that the default run stays near
// the 5 minutes it was meant to take.
const DEFAULT_SUITES = ['supervisor', 'calls'];
const SUITES = [...DEFAULT_SUITES, 'mcp', 'auth', 'supervisor-redis', 'idle', 'metrics', 'tracing', 'groups'];
const wanted = process.argv.slice(2).filter((a) => a !== '--');
const unknown = wanted.filter((s) => !SUITES.includes(s));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; known: ${SUITES.join(', ')}`);
  process.exit(2);
}
for (const suite of wanted.length > 0 ? wanted : DEFAULT_SUITES) await import(`./${suite}.mjs`);
