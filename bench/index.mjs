// `pnpm bench [suite…]`: runs the named benchmark suites (all when none is named) and prints their tables.
const SUITES = ['supervisor', 'calls', 'mcp', 'auth'];
const wanted = process.argv.slice(2).filter((a) => a !== '--');
const unknown = wanted.filter((s) => !SUITES.includes(s));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; known: ${SUITES.join(', ')}`);
  process.exit(2);
}
for (const suite of wanted.length > 0 ? wanted : SUITES) await import(`./${suite}.mjs`);
