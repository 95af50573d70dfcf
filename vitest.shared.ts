import { defineConfig } from 'vitest/config';

/**
 * The one base config every package merges. Tests run against sources (the
 * `@sluice/source` export condition), so no build is needed before `npm test`.
 */
export const sharedConfig = defineConfig({
  ssr: { resolve: { conditions: ['@sluice/source'] } },
  resolve: { conditions: ['@sluice/source'] },
  test: {
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    setupFiles: [new URL('./tools/vitest/no-console.ts', import.meta.url).pathname],
  },
});
