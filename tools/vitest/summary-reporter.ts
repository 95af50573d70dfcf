import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Reporter, TestModule } from 'vitest/node';
import { conformanceGaps, type RunTest } from './conformance-count.js';

/** A run that includes this test file checks that every storage backend ran the whole suite. */
const COVERAGE_ANCHOR = 'tools/src/conformance-coverage.test.ts';
const packagesDir = fileURLToPath(new URL('../../packages/', import.meta.url));

/**
 * Prints `N passed, N failed[, N skipped]` alone on the last line of the whole run, the
 * closing line this workplace's CI reads. In a whole run (`npm test`) it also counts the
 * storage conformance tests each backend executed, and counts a shortfall as a failure.
 */
export class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const tests: RunTest[] = [];
    let anchored = false;
    for (const testModule of testModules) {
      if (testModule.moduleId.replaceAll('\\', '/').endsWith(COVERAGE_ANCHOR)) anchored = true;
      let failedHere = 0;
      for (const testCase of testModule.children.allTests()) {
        const state = testCase.result().state;
        if (state === 'passed') passed += 1;
        else if (state === 'failed') failedHere += 1;
        else skipped += 1;
        tests.push({ moduleId: testModule.moduleId, fullName: testCase.fullName, state });
      }
      // A file that failed to load, or whose beforeAll/afterAll hook threw (its tests then show
      // as skipped), must still count as a failure.
      if (testModule.state() === 'failed' && failedHere === 0) failedHere = 1;
      failed += failedHere;
    }
    failed += unhandledErrors.length;
    if (anchored) {
      const backends = readdirSync(packagesDir).filter((name) => name.startsWith('store-') && name !== 'store-conformance');
      const gaps = conformanceGaps(tests, backends);
      for (const gap of gaps) process.stdout.write(`\nconformance coverage: ${gap} (checked because ${COVERAGE_ANCHOR} ran; run the whole suite with npm test)`);
      failed += gaps.length;
    }
    const tail = skipped > 0 ? `, ${skipped} skipped` : '';
    process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`);
  }
}
