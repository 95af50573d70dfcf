import { tmpdir } from 'node:os';
import { expect, it } from 'vitest';
import { runLmdbBench } from './lmdb-bench.js';

// Smoke mode only: proves the LMDB benchmark runs end to end. No timing assertions.
it('runs the raw lmdb-js and the sluice LMDB store scenarios in smoke mode', { timeout: 120_000 }, async () => {
  const rows = await runLmdbBench({ smoke: true, directory: tmpdir() });
  expect(rows.map((r) => r.name)).toEqual(['raw lmdb-js, 1000 values per transaction', 'sluice lmdb store, batches of 1000']);
  for (const r of rows) {
    expect(r.events).toBe(10_000);
    expect(r.eventsPerSecond).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  }
});
