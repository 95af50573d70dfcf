import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMirroredStorage, openPartition, scrubPartition, type MirrorRepair, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { afterEach, beforeEach, expect, it } from 'vitest';

const te = new TextEncoder();
let root: string;
let fileDir: string;
let lmdbDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-mirror-mixed-'));
  fileDir = join(root, 'disk1');
  lmdbDir = join(root, 'disk2');
  await mkdir(fileDir);
  await mkdir(lmdbDir);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const mirror = (onRepair?: (r: MirrorRepair) => void) =>
  createMirroredStorage({
    level: 'critical',
    onRepair,
    locations: [
      { storage: createFileStorage({ directory: fileDir, segmentBytes: 64 * 1024 }), directory: fileDir, label: 'disk1' },
      { storage: createLmdbStorage({ directory: lmdbDir }), directory: lmdbDir, label: 'disk2' },
    ],
  });

async function rawBatches(storage: PartitionStorage): Promise<number[][]> {
  await storage.open();
  try {
    const out: number[][] = [];
    for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) out.push(Array.from(b.bytes));
    return out;
  } finally {
    await storage.close();
  }
}

// Invariant 2 and 10 across backends: a file and an LMDB location hold the same log byte for
// byte; a replaced LMDB location is rebuilt from the file location on open; the scrubber
// verifies both copies with the chain.
it('keeps a file and an LMDB location identical, rebuilds a replaced one byte for byte, and scrubs both', async () => {
  let p = await openPartition({ storage: mirror(), name: 'payments' });
  for (let i = 0; i < 30; i++) {
    const r = await p.append({ streamId: `a-${i % 3}`, commandId: `c-${i}`, events: [{ type: 'E', data: te.encode(`v${i}`.padEnd(3000, '.')) }] });
    expect(r.reliability).toEqual({ level: 'critical', durability: { kind: 'commit' }, locations: ['disk1', 'disk2'] });
  }
  await p.close();
  const original = await rawBatches(createFileStorage({ directory: fileDir }));
  expect(await rawBatches(createLmdbStorage({ directory: lmdbDir }))).toEqual(original);

  // The LMDB disk is replaced by an empty one.
  await rm(lmdbDir, { recursive: true });
  await mkdir(lmdbDir);
  const repairs: MirrorRepair[] = [];
  p = await openPartition({ storage: mirror((r) => repairs.push(r)), name: 'payments' });
  expect(p.lastSeq).toBe(30);
  expect(repairs).toEqual([expect.objectContaining({ location: 'disk2', action: 'copied', fromSeq: 1, toSeq: 30, source: 'disk1' })]);
  await p.close();
  expect(await rawBatches(createLmdbStorage({ directory: lmdbDir }))).toEqual(original);

  const storage = mirror();
  await storage.open();
  const report = await scrubPartition(storage, { repair: false });
  await storage.close();
  expect(report.ok).toBe(true);
  expect(report.copies.map((c) => [c.location, c.batches, c.damage])).toEqual([
    ['disk1', original.length, undefined],
    ['disk2', original.length, undefined],
  ]);
});
