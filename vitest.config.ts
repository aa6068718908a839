import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through a project-specific export condition, so
// tests never run against a stale build. (Not plain "source": some dependencies, e.g. eventsource, publish
// TypeScript under that name, and Vitest hands the conditions to Node.)
const conditions = ['@mcp-hub/source', 'module', 'node', 'development|production'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['{apps,packages}/*/{src,test}/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most test files wait on processes, sockets and timers rather than compute: three files at a time on this
    // project's 2-core machines took the suite from 406 s to 169 s (four: 190 s and less stable). Vitest's
    // default here would be one (cores - 1).
    maxWorkers: 3,
    // Each of the three forks imports the SDKs, Fastify and the sources once for all its files instead of once per
    // file: Vitest's fork processes took 186 s of CPU over a run with isolation, 88 s without. No test file mocks
    // modules or changes process-wide state (environment, umask, global dispatcher) — keep it that way.
    isolate: false,
  },
});
