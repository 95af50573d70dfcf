import { expect, it } from 'vitest';
import { formatAzureRows, runAzureBench } from './azure-bench.js';

// Smoke mode only: proves the Azure benchmark runs end to end against its own Azurite. No
// timing assertions anywhere.
it('runs every Azure benchmark scenario in smoke mode', { timeout: 120_000 }, async () => {
  const rows = await runAzureBench({ smoke: true });
  expect(rows).toHaveLength(3);
  for (const r of rows) {
    expect(r.name).toBe('sluice azure store (Azurite), batches of 1000');
    expect(r.events).toBeGreaterThan(0);
    expect(r.eventsPerSecond).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  }
  expect(formatAzureRows(rows).split('\n')).toHaveLength(rows.length + 2);
});
