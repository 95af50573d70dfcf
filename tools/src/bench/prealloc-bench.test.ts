import { tmpdir } from 'node:os';
import { expect, it } from 'vitest';
import { PREALLOC_METHODS, formatPreallocRows, runPreallocBench } from './prealloc-bench.js';

// Smoke mode only: proves every preallocation method runs end to end. No timing assertions.
it('measures every segment preallocation method in smoke mode', { timeout: 120_000 }, async () => {
  const rows = await runPreallocBench({ smoke: true, directory: tmpdir() });
  expect(rows.map((r) => r.method)).toEqual(PREALLOC_METHODS);
  for (const r of rows) {
    expect(r.commits).toBeGreaterThan(0);
    expect(r.commitsPerSecond).toBeGreaterThan(0);
  }
  expect(formatPreallocRows(rows).split('\n')).toHaveLength(rows.length + 2);
});
