import { tmpdir } from 'node:os';
import { bundleChild } from '@sluice/store-file/testing';
import { expect, it } from 'vitest';
import { formatScaleRows, runScaleBench } from './scale-bench.js';

// Smoke mode only: proves the benchmark runs end to end (children, kill -9, reopen). No timing assertions.
it('runs the scale benchmark in smoke mode', { timeout: 180_000 }, async () => {
  // Children run a bundle of this module, inside the workspace (the writer lock's native addon loads from node_modules).
  const bundled = await bundleChild(new URL('./scale-bench.ts', import.meta.url), 'scale-bench');
  try {
    const rows = await runScaleBench({ events: 20_000, directory: tmpdir(), childScript: bundled.script, killAfterMs: 200 });
    const names = rows.map((r) => r.name);
    expect(names.some((n) => n.startsWith('storage open after clean close'))).toBe(true);
    expect(names.some((n) => n.startsWith('storage open after kill -9'))).toBe(true);
    expect(names.some((n) => n.startsWith('openPartition after kill -9 of an engine appending'))).toBe(true);
    expect(names.some((n) => n.startsWith('storage.readFrames of the 100-event stream'))).toBe(true);
    expect(names.some((n) => n.startsWith('partition.readStream of the 100-event stream'))).toBe(true);
    for (const r of rows) expect(Number.isFinite(r.value)).toBe(true);
    expect(formatScaleRows(rows).split('\n')).toHaveLength(rows.length + 2);
  } finally {
    await bundled.dispose();
  }
});
