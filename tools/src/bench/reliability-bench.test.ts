import { tmpdir } from 'node:os';
import { expect, it } from 'vitest';
import { formatVerdicts, reliabilityVerdicts, runReliabilityBench } from './reliability-bench.js';

// Smoke mode only: proves every reliability scenario (mirrors, ring, raw limits, shipping to
// Azurite, steady lag) runs end to end and yields its targets summary. No timing assertions.
it('runs every reliability scenario in smoke mode and computes the targets summary', { timeout: 300_000 }, async () => {
  const rows = await runReliabilityBench(true, tmpdir());
  const names = rows.map((r) => r.name);
  for (const config of ['file', 'lmdb', 'mirror(file, file)', 'mirror(file, lmdb)', 'ring(acknowledge) → file', 'file, fsync none']) {
    for (const scenario of ['batches of 1000', '1000 concurrent commits', '16 concurrent commits', 'sequential commits']) expect(names).toContain(`${config}: ${scenario}`);
  }
  expect(names).toContain('raw write+fdatasync to 2 files in parallel, 1 event(s) per write');
  for (const scenario of ['16 concurrent commits', 'sequential commits']) expect(names).toContain(`lmdb-js alone: ${scenario}`);
  expect(names.filter((n) => n.startsWith('lag at'))).toHaveLength(2);
  for (const r of rows) expect(r.eventsPerSecond).toBeGreaterThan(0);
  const verdicts = reliabilityVerdicts(rows);
  // 4 scenarios × 5 ratios (the last against the file with fsync none), lmdb-js alone vs file for the 2 scenarios
  // it runs, the disk's own ratio, shipping, two lag rows.
  expect(verdicts).toHaveLength(4 * 5 + 2 + 1 + 1 + 2);
  expect(formatVerdicts(verdicts).split('\n')).toHaveLength(verdicts.length + 2);
});
