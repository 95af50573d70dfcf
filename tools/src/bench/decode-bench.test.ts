import { expect, it } from 'vitest';
import { formatDecodeRows, runDecodeBench } from './decode-bench.js';

// Smoke mode only: proves the benchmark runs and decodes its log cleanly. No timing assertions.
it('measures the decoder and the scanner on 100 B and 1 KiB payloads in smoke mode', () => {
  const rows = runDecodeBench({ smoke: true });
  expect(rows).toHaveLength(6);
  for (const r of rows) {
    expect(r.events).toBe(3000);
    expect(r.nsPerEvent).toBeGreaterThanOrEqual(0);
  }
  expect(formatDecodeRows(rows).split('\n')).toHaveLength(rows.length + 2);
});
