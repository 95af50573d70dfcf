import { defineConfig } from 'vitest/config';
import { SummaryReporter } from './tools/vitest/summary-reporter.js';

/** `npm test`: every project's tests in one run, closed by one `N passed, N failed` line. */
export default defineConfig({
  test: {
    projects: ['packages/*/vitest.config.ts', 'apps/*/vitest.config.ts', 'tools/vitest.config.ts'],
    reporters: ['default', new SummaryReporter()],
  },
});
