import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMirroredStorage, openPartition, scrubPartition } from '@sluice/store';
import { SEGMENT_HEADER_BYTES, createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { afterEach, beforeEach, expect, it } from 'vitest';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-scrub-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

// Invariant 10 on real files: a flipped byte deep inside an acknowledged batch of the file copy
// (bit rot that open does not look at) is found by the scrubber and repaired from the LMDB copy.
it('finds bit rot in the middle of a file location and repairs it from the LMDB location', async () => {
  const fileDir = join(root, 'file');
  const lmdbDir = join(root, 'lmdb');
  await mkdir(fileDir);
  await mkdir(lmdbDir);
  const mirror = () =>
    createMirroredStorage({
      locations: [
        { storage: createFileStorage({ directory: fileDir, segmentBytes: 64 * 1024 }), label: 'file' },
        { storage: createLmdbStorage({ directory: lmdbDir }), label: 'lmdb' },
      ],
    });
  const p = await openPartition({ storage: mirror() });
  for (let i = 0; i < 40; i++) await p.append({ streamId: 's', events: [{ type: 'E', data: new TextEncoder().encode(`v${i}`.padEnd(3000, '.')) }] });
  await p.close();
  const storage = mirror();
  await storage.open();
  // The bit flips while the partition is open (open scans the files and would refuse it).
  const [first] = (await readdir(fileDir)).filter((f) => f.endsWith('.seg')).sort();
  const handle = await open(join(fileDir, first), 'r+');
  const at = SEGMENT_HEADER_BYTES + 10_000;
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, at);
  byte[0] ^= 0x20;
  await handle.write(byte, 0, 1, at);
  await handle.close();
  const report = await scrubPartition(storage);
  expect(report.copies[1]).toMatchObject({ location: 'lmdb', damage: undefined });
  expect(report.copies[0]).toMatchObject({ location: 'file', repaired: true });
  // The file reader reads in chunks: the damage is reported from the first seq its failed read
  // covered, and the copy is repaired from the last batch verified before it.
  expect(report.copies[0].damage?.detail).toMatch(/bad-checksum/);
  expect(report.ok).toBe(true);
  const again = await scrubPartition(storage, { repair: false });
  expect(again.copies.map((c) => c.damage)).toEqual([undefined, undefined]);
  await storage.close();
  // And the repaired file copy opens on its own again, holding every commit.
  const alone = await openPartition({ storage: createFileStorage({ directory: fileDir, segmentBytes: 64 * 1024 }) });
  expect(alone.lastSeq).toBe(40);
  await alone.close();
});
