import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through a project-specific export condition, so
// tests never run against a stale build. (Not plain "source": some dependencies, e.g. eventsource, publish
// TypeScript under that name, and Vitest hands the conditions to Node.)
const conditions = ['@mcp-hub/source', 'module', 'node', 'development|production'];
// Test files run server-side, and Vitest hands these to Node (`--conditions`) for the dependencies it does not
// transform: without "module", Node resolves packages as it does in production. (The OpenTelemetry packages publish
// "module" builds with extension-less imports that Node cannot load.)
const ssrConditions = conditions.filter((c) => c !== 'module');

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions: ssrConditions } },
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['{apps,packages}/*/{src,test}/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most test files wait on processes, sockets and timers rather than compute. Without per-file isolation each
    // fork imports the SDKs, Fastify and the sources once for all its files instead of once per file (the forks'
    // CPU over a run: 182 s isolated, 76 s not), which leaves room for a fourth fork on this project's 2-core
    // machines: one after the other on the same code, isolated with 3 forks 274 s, not isolated with 4 forks
    // 196 s. No test file mocks modules or changes process-wide state (environment, umask, global dispatcher),
    // and none leaves a loop running after its last hook — keep it that way (CONTRIBUTING, Tests).
    maxWorkers: 4,
    isolate: false,
  },
});
