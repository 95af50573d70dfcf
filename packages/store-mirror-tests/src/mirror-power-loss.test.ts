import { spawn } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { createMirroredStorage, openPartition, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { attachImage, bundleChild, createLoopFilesystem, releaseAll, killAtAcksAndSnapshot, requireTools, type BundledChild, type LoopFilesystem } from '@sluice/store-file/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';

/**
 * Invariants 2 and 5 on a mirror under a real power loss of one location: a mirror of two file
 * locations, one on ext4 on a loop device and one on the real disk, is written by a child that
 * is SIGKILLed after a random number of acknowledged commits; the loop device's image is copied
 * at once, before the kernel writes dirty pages back (the copy is what that disk held when the
 * power went; the harness is store-file's power-loss one). The copy is fsck'd and mounted, and
 * the mirror reopened over it and the real-disk location.
 *
 * Invariant: every acknowledged commit is on both locations after reopen (and repair), with the
 * seqs it was acknowledged with; both locations hold the same bytes; no command is applied twice.
 *
 * SLUICE_MIRROR_POWER_CYCLES sets the number of power losses (default 6).
 */
const CYCLES = Number(process.env.SLUICE_MIRROR_POWER_CYCLES ?? 6);
const IMAGE_BYTES = 128 * 1024 * 1024;

let scratch: string;
let disk: LoopFilesystem;
let bundled: BundledChild | undefined;
/** Set-up problems fail the test with their reason: a fault test must never pass without running. */
let setupError: unknown;

beforeAll(async () => {
  try {
    await requireTools(['losetup', 'mkfs.ext4', 'e2fsck', 'mount', 'umount', 'cp'], 'the mirror power-loss test');
    scratch = await mkdtemp('/var/tmp/sluice-mirror-power-');
    bundled = await bundleChild(new URL('./mirror-power-writer.fixture.ts', import.meta.url), 'mirror-power-writer');
    disk = await createLoopFilesystem(join(scratch, 'disk.img'), join(scratch, 'loop'), IMAGE_BYTES);
  } catch (error) {
    setupError = error;
  }
}, 120_000);

afterAll(async () => {
  if (scratch !== undefined) await releaseAll(scratch);
  await bundled?.dispose();
});

type Range = readonly [number, number];

/** Runs the writer until it has `ackTarget` acks, SIGKILLs it and copies the loop image once it is gone. */
function killAndCopy(loopDir: string, diskDir: string, prefix: string, ackTarget: number, copy: string): Promise<Map<string, Range>> {
  const child = spawn(process.execPath, [bundled!.script, loopDir, diskDir, prefix], { stdio: ['ignore', 'pipe', 'pipe'] });
  return killAtAcksAndSnapshot(child, ackTarget, disk.image, copy);
}

/** Command id → seqs of its commit, and the raw batches, as one location holds them. */
async function contentOf(directory: string): Promise<{ commits: Map<string, Range>; batches: string[]; problems: string[] }> {
  const partition = await openPartition({ storage: createFileStorage({ directory }), name: 'check' });
  const commits = new Map<string, Range>();
  const problems: string[] = [];
  let first = 0;
  let id: string | undefined;
  try {
    for await (const e of partition.read()) {
      if (e.commitFirst) {
        first = e.seq;
        id = e.headers?.commandIds[0];
      }
      if (e.commitLast) {
        if (id === undefined) problems.push(`commit at ${first} has no command id`);
        else if (commits.has(id)) problems.push(`${id} applied twice`);
        else commits.set(id, [first, e.seq]);
      }
    }
  } finally {
    await partition.close();
  }
  const storage: PartitionStorage = createFileStorage({ directory });
  await storage.open();
  const batches: string[] = [];
  try {
    for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) batches.push(Buffer.from(b.bytes).toString('base64'));
  } finally {
    await storage.close();
  }
  return { commits, batches, problems };
}

it(`keeps every acknowledged commit on both locations across ${CYCLES} power losses of the loop-device location`, { timeout: 600_000 }, async () => {
  if (setupError !== undefined) throw setupError;
  let seed = 20261206;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const problems: string[] = [];
  let acks = 0;
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const name = `cycle-${cycle}`;
    const loopDir = join(disk.mountPoint, name);
    const diskDir = join(scratch, 'disk', name);
    await mkdir(loopDir, { recursive: true });
    await mkdir(diskDir, { recursive: true });
    const copyImage = join(scratch, `copy-${cycle}.img`);
    const acked = await killAndCopy(loopDir, diskDir, name, 1 + Math.floor(random() ** 2 * 400), copyImage);
    acks += acked.size;
    const copy = await attachImage(copyImage, join(scratch, `copy-${cycle}`), { fsck: true });
    const copiedDir = join(copy.mountPoint, name);
    // Reopen the mirror over the power-lost copy and the real-disk location: open repairs.
    const mirror = await openPartition({
      name: 'reopened',
      storage: createMirroredStorage({
        locations: [
          { storage: createFileStorage({ directory: copiedDir, fsync: 'commit' }), directory: copiedDir, label: 'loop' },
          { storage: createFileStorage({ directory: diskDir, fsync: 'commit' }), directory: diskDir, label: 'disk' },
        ],
      }),
    });
    await mirror.close();
    const loop = await contentOf(copiedDir);
    const real = await contentOf(diskDir);
    const where = `cycle ${cycle} (${acked.size} acks)`;
    problems.push(...loop.problems.map((p) => `${where} loop: ${p}`), ...real.problems.map((p) => `${where} disk: ${p}`));
    for (const [id, range] of acked) {
      for (const [label, content] of [['loop', loop], ['disk', real]] as const) {
        const found = content.commits.get(id);
        if (found?.[0] !== range[0] || found[1] !== range[1]) problems.push(`${where}: acknowledged ${id} at ${range.join('..')} is ${found === undefined ? 'missing' : `at ${found.join('..')}`} on ${label}`);
      }
    }
    if (loop.batches.join() !== real.batches.join()) problems.push(`${where}: the locations hold different bytes (${loop.batches.length} and ${real.batches.length} batches)`);
  }
  expect(problems.slice(0, 20)).toEqual([]);
  expect(acks).toBeGreaterThan(CYCLES);
});
