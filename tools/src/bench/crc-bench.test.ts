import { expect, it } from 'vitest';
import { CRC_CASES, formatCrcRows, runCrcBench } from './crc-bench.js';

// Smoke mode only: proves the benchmark runs and every implementation agrees. No timing assertions.
it('measures every CRC-32C implementation on every case in smoke mode', () => {
  const rows = runCrcBench({ smoke: true });
  expect(rows.length).toBeGreaterThanOrEqual(3);
  for (const r of rows) {
    expect(r.mbPerSecond).toHaveLength(CRC_CASES.length * 2);
    for (const v of r.mbPerSecond) expect(v).toBeGreaterThan(0);
  }
  expect(formatCrcRows(rows).split('\n')).toHaveLength(rows.length + 2);
});
