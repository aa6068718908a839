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
  },
});
