import { describe, expect, it } from 'vitest';
import { conformanceGaps, type RunTest } from '../vitest/conformance-count.js';

// Running this file makes the summary reporter (tools/vitest/summary-reporter.ts) count, from
// the run itself, the storage conformance tests every packages/store-* backend executed; a
// backend that runs fewer than the reference run, or skips any, fails `npm test`.
describe('conformance coverage counted from the run', () => {
  const suite = (pkg: string, n: number, state: RunTest['state'] = 'passed'): RunTest[] =>
    Array.from({ length: n }, (_, i) => ({ moduleId: `/repo/packages/${pkg}/src/x.test.ts`, fullName: `storage conformance: ${pkg} > t${i}`, state }));

  it('accepts backends that executed the whole suite', () => {
    expect(conformanceGaps([...suite('store-conformance', 5), ...suite('store-file', 5), ...suite('store-lmdb', 6)], ['store-file', 'store-lmdb'])).toEqual([]);
  });

  it('names a backend that never ran the suite, ran part of it, or skipped tests', () => {
    const tests = [...suite('store-conformance', 5), ...suite('store-file', 3), ...suite('store-azure', 5), ...suite('store-azure', 1, 'skipped')];
    expect(conformanceGaps(tests, ['store-file', 'store-lmdb', 'store-azure'])).toEqual([
      'store-file executed 3 of the 5 storage conformance tests',
      'store-lmdb executed 0 of the 5 storage conformance tests',
      'store-azure skipped 1 storage conformance tests',
    ]);
  });

  it('fails when the reference run itself executed nothing', () => {
    expect(conformanceGaps([], [])).toEqual(['the reference run of the conformance suite (packages/store-conformance) executed no test']);
  });

  it('ignores tests outside the suite', () => {
    const other: RunTest = { moduleId: '/repo/packages/store-file/src/y.test.ts', fullName: 'file storage > something', state: 'skipped' };
    expect(conformanceGaps([...suite('store-conformance', 1), ...suite('store-file', 1), other], ['store-file'])).toEqual([]);
  });
});
