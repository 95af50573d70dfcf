import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { expect, it } from 'vitest';
import { formatScaleRows, runScaleBench } from './scale-bench.js';

// Smoke mode only: proves the benchmark runs end to end (children, kill -9, reopen). No timing assertions.
it('runs the scale benchmark in smoke mode', { timeout: 180_000 }, async () => {
  // Children run a bundle of this module, inside the workspace (the writer lock's native addon loads from node_modules).
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  const bundleDir = await mkdtemp(join(cache, 'sluice-scale-bench-'));
  const script = join(bundleDir, 'scale-bench.mjs');
  try {
    await build({
      entryPoints: [fileURLToPath(new URL('./scale-bench.ts', import.meta.url))],
      outfile: script,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      conditions: ['@sluice/source'],
      logLevel: 'silent',
    });
    const rows = await runScaleBench({ events: 20_000, directory: tmpdir(), childScript: script, killAfterMs: 200 });
    const names = rows.map((r) => r.name);
    expect(names.some((n) => n.startsWith('storage open after clean close'))).toBe(true);
    expect(names.some((n) => n.startsWith('storage open after kill -9'))).toBe(true);
    expect(names.some((n) => n.startsWith('openPartition after kill -9 of an engine appending'))).toBe(true);
    expect(names.some((n) => n.startsWith('storage.readFrames of the 100-event stream'))).toBe(true);
    expect(names.some((n) => n.startsWith('partition.readStream of the 100-event stream'))).toBe(true);
    for (const r of rows) expect(Number.isFinite(r.value)).toBe(true);
    expect(formatScaleRows(rows).split('\n')).toHaveLength(rows.length + 2);
  } finally {
    await rm(bundleDir, { recursive: true, force: true });
  }
});
