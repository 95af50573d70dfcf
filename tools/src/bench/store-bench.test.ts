import { tmpdir } from 'node:os';
import { expect, it } from 'vitest';
import { formatStoreRows, runStoreBench } from './store-bench.js';

// Smoke mode only: proves the benchmark runs end to end. No timing assertions anywhere.
it('runs every store benchmark scenario in smoke mode', { timeout: 120_000 }, async () => {
  const rows = await runStoreBench({ smoke: true, directory: tmpdir() });
  expect(rows.map((r) => r.name)).toEqual([
    'raw writeSync+fdatasyncSync, 1000 event(s) per write',
    'raw write+fdatasync, 1000 event(s) per write',
    'sluice file store, batches of 1000',
    'sluice file store, batches of 1000, one group in flight',
    'raw write+fdatasync, 1 event(s) per write',
    'sluice file store, 1000 concurrent single-event appends',
    'sluice file store, sequential single-event appends',
    '100-event stream among 20,000 events, memory, frame reads',
    '100-event stream among 20,000 events, memory, batch reads',
    '100-event stream among 20,000 events, file, frame reads',
    '100-event stream among 20,000 events, file, batch reads',
    '100-event stream among 20,000 events, lmdb, frame reads',
    '100-event stream among 20,000 events, lmdb, batch reads',
  ]);
  for (const r of rows) {
    expect(r.events).toBeGreaterThan(0);
    expect(r.eventsPerSecond).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  }
  const table = formatStoreRows(rows);
  expect(table.split('\n')).toHaveLength(rows.length + 2);
  expect(table).toMatch(/% of raw single fdatasync/);
  expect(table).toMatch(/% of the synchronous raw limit/);
});
