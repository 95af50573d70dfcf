import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleChild, type BundledChild } from './testing/bundle-child.fixture.js';
import { openPartition, type Partition } from '@sluice/store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileStorage } from './index.js';
import { attachImage, createLoopFilesystem, detach, killAtAcksAndSnapshot, releaseAll, requireTools, type LoopFilesystem } from './testing/loop-device.fixture.js';

/**
 * Power loss, simulated on a real disk: the partition lives on ext4 on a loop device; the writer
 * (a child process) is SIGKILLed after a random number of acknowledged commits and the image
 * behind the loop device is copied at once, before the kernel writes dirty pages back, so the
 * copy holds exactly what the disk held when the "power went". The copy is checked, mounted
 * (after `e2fsck -fy`) and opened with the same fsync policy. Then the writer carries on with
 * the original, which never lost power.
 *
 * Invariants:
 * - `commit`: every acknowledged commit is in the copy with its seqs and command ids, a retry of
 *   an acknowledged command id answers `duplicate: true` with the same seqs, and the whole log
 *   reads back.
 * - `interval:100ms` and `none`: the copy opens (a torn or holed tail is cut, never refused), and
 *   it holds a gapless prefix of the history the writer acknowledged: whole commits, each
 *   command once, each at the seqs it was acknowledged with.
 *
 * SLUICE_POWER_CYCLES sets the number of `commit` cycles (default 20); `interval` and `none`
 * get a quarter of that, at least 5. SLUICE_POWER_REPORT names a file that gets one summary line
 * per policy (cycles, acks, acknowledged commits lost, copies refused), e.g. to see that the
 * lossy policies really lose unsynced commits in the copies.
 */
type Preallocate = 'sparse' | 'zero-fill';
const COMMIT_CYCLES = Number(process.env.SLUICE_POWER_CYCLES ?? 20);
const LOSSY_CYCLES = Math.max(5, Math.ceil(COMMIT_CYCLES / 4));
const IMAGE_BYTES = 256 * 1024 * 1024;
// Small segments, so cycles also cross segment rolls and preallocation.
const SEGMENT_BYTES = 1024 * 1024;

let scratch: string;
let writerScript: string;
let bundled: BundledChild | undefined;
let disk: LoopFilesystem;
/** Writers still running (a timed-out test): killed before the disk is unmounted. */
const writers = new Set<ReturnType<typeof spawn>>();

/**
 * Set-up problems (a missing tool, no root, no loop device) fail every test with the reason,
 * rather than failing beforeAll: a failed beforeAll reports the tests as skipped, and a fault
 * test must never look skipped or passed when it could not run.
 */
let setupError: unknown;
function ready(): void {
  if (setupError !== undefined) throw setupError;
}

beforeAll(async () => {
  try {
    await requireTools(['losetup', 'mkfs.ext4', 'e2fsck', 'mount', 'umount', 'cp'], 'the power-loss test');
    // On the real disk, not a tmpfs: the image's size is mostly holes.
    scratch = await mkdtemp('/var/tmp/sluice-power-');
    bundled = await bundleChild(new URL('./power-loss-writer.fixture.ts', import.meta.url), 'power-loss-writer');
    writerScript = bundled.script;
    disk = await createLoopFilesystem(join(scratch, 'disk.img'), join(scratch, 'disk'), IMAGE_BYTES);
  } catch (error) {
    setupError = error;
  }
});

afterAll(async () => {
  await Promise.all(
    [...writers].map((writer) => {
      const gone = new Promise((resolve) => writer.once('close', resolve));
      writer.kill('SIGKILL');
      return gone;
    }),
  );
  if (scratch !== undefined) await releaseAll(scratch);
});

type Range = readonly [number, number];

/**
 * Runs the writer on the original disk until it has acknowledged `ackTarget` commits, SIGKILLs
 * it, and copies the image as soon as it is gone (so the copy is of one moment, not of a dying
 * process). Every ack the writer printed, also after the kill was sent, came before its death
 * and so before the copy.
 */
async function killWriterAndCopy(directory: string, fsync: string, first: number, ackTarget: number, copy: string, preallocate: Preallocate): Promise<Map<string, Range>> {
  const child = spawn(process.execPath, [writerScript, directory, fsync, String(SEGMENT_BYTES), String(first), preallocate], { stdio: ['ignore', 'pipe', 'pipe'] });
  writers.add(child);
  child.on('close', () => writers.delete(child));
  return killAtAcksAndSnapshot(child, ackTarget, disk.image, copy);
}

interface CopyContent {
  /** Command id → seqs of its commit. */
  readonly commits: Map<string, Range>;
  readonly lastSeq: number;
  readonly problems: string[];
}

/** Reads the whole log: checks seqs are gapless, commits whole, payloads their command's, ids unique. */
async function readLog(partition: Partition): Promise<CopyContent> {
  const problems: string[] = [];
  const commits = new Map<string, Range>();
  const decoder = new TextDecoder();
  let expectSeq = 1;
  let commitFirst = 0;
  let commitId: string | undefined;
  let open = false;
  for await (const event of partition.read()) {
    if (event.seq !== expectSeq) problems.push(`seq ${event.seq} where ${expectSeq} was expected`);
    expectSeq = event.seq + 1;
    if (event.commitFirst) {
      if (open) problems.push(`commit of ${commitId} at seq ${commitFirst} has no last frame`);
      commitFirst = event.seq;
      commitId = event.headers?.commandIds[0];
      open = true;
    } else if (!open) problems.push(`seq ${event.seq} is not inside a commit`);
    if (decoder.decode(event.payload) !== `payload-of-${commitId}`.padEnd(200, '.')) problems.push(`seq ${event.seq}: payload is not ${commitId}'s`);
    if (event.commitLast) {
      open = false;
      if (commitId === undefined) problems.push(`commit at seq ${commitFirst} has no command id`);
      else if (commits.has(commitId)) problems.push(`command ${commitId} applied twice`);
      else commits.set(commitId, [commitFirst, event.seq]);
    }
  }
  if (open) problems.push(`the log ends inside the commit of ${commitId} at seq ${commitFirst}`);
  if (expectSeq - 1 !== partition.lastSeq) problems.push(`read ended at seq ${expectSeq - 1}, lastSeq is ${partition.lastSeq}`);
  return { commits, lastSeq: partition.lastSeq, problems };
}

interface PolicyRun {
  cycles: number;
  acked: number;
  /** Acknowledged commits missing from the copy (allowed only without `commit`). */
  lost: number;
  /** Cycles whose copy lacks acknowledged commits. */
  cyclesWithLoss: number;
  /** Copies that refused to open. */
  refused: number;
  problems: string[];
}

/**
 * `cycles` power losses of a writer with `fsync`; returns what went wrong (a list, so one run
 * reports every failed cycle, and how often, instead of stopping at the first).
 */
async function powerCycles(fsync: 'commit' | 'none' | `interval:${number}ms`, cycles: number, seed: number, preallocate: Preallocate = 'sparse'): Promise<PolicyRun> {
  const name = `${fsync.replace(/[^a-z0-9]/g, '-')}-${preallocate}`;
  const directory = join(disk.mountPoint, name);
  const everAcked = new Map<string, Range>();
  const run: PolicyRun = { cycles, acked: 0, lost: 0, cyclesWithLoss: 0, refused: 0, problems: [] };
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let cycle = 0; cycle < cycles; cycle++) {
    // Mostly short runs (the power goes during the first group commits), some long ones.
    const ackTarget = 1 + Math.floor(random() ** 2 * 600);
    const copyImage = join(scratch, `copy-${name}.img`);
    const acked = await killWriterAndCopy(directory, fsync, cycle * 1_000_000, ackTarget, copyImage, preallocate);
    for (const [id, range] of acked) everAcked.set(id, range);
    run.acked += acked.size;

    const copy = await attachImage(copyImage, join(scratch, `copy-${name}`), { fsck: true });
    const where = `${fsync} cycle ${cycle} (${acked.size} acks this cycle)`;
    try {
      let partition: Partition;
      try {
        partition = await openPartition({
          storage: createFileStorage({ directory: join(copy.mountPoint, name), fsync, segmentBytes: SEGMENT_BYTES, preallocate }),
          name: `copy-${name}`,
        });
      } catch (error) {
        run.refused++;
        run.problems.push(`${where}: the copy does not open: ${(error as Error).message}`);
        continue;
      }
      try {
        const content = await readLog(partition);
        run.problems.push(...content.problems.slice(0, 5).map((p) => `${where}: ${p}`));
        let lostNow = 0;
        for (const [id, range] of everAcked) {
          const found = content.commits.get(id);
          if (found === undefined && range[0] > content.lastSeq) {
            lostNow++;
            continue;
          }
          // Whatever the copy holds is the acknowledged history: same seqs, nothing missing below its end.
          if (found?.[0] !== range[0] || found[1] !== range[1]) {
            run.problems.push(`${where}: acknowledged command ${id} at seqs ${range.join('..')} is ${found === undefined ? 'missing' : `at ${found.join('..')}`} in the copy`);
          }
        }
        run.lost += lostNow;
        if (lostNow > 0) run.cyclesWithLoss++;
        if (fsync === 'commit') {
          if (lostNow > 0) run.problems.push(`${where}: ${lostNow} acknowledged commits are missing from the copy (log ends at seq ${content.lastSeq})`);
          // A retry of an acknowledged command must get its original commit, not a second one.
          const ids = [...everAcked.keys()];
          const answers = await Promise.all(
            ids.map((id) => partition.commit({ commandIds: [id], changes: [{ streamId: 'retry', events: [{ type: 'Retry', data: new Uint8Array(1) }] }] })),
          );
          const wrong = answers.flatMap((answer, i) => {
            const range = everAcked.get(ids[i]) as Range;
            const ok = answer.duplicate && answer.firstSeq === range[0] && answer.lastSeq === range[1];
            return ok ? [] : [`retry of ${ids[i]} answered ${JSON.stringify(answer)}, expected a duplicate of seqs ${range.join('..')}`];
          });
          if (wrong.length > 0) run.problems.push(`${where}: ${wrong.length} retries of acknowledged commands were not their duplicates, e.g. ${wrong[0]}`);
        }
      } finally {
        await partition.close();
      }
    } finally {
      await detach(copy);
      await rm(copyImage, { force: true });
    }
  }
  return run;
}

function summary(fsync: string, run: PolicyRun): string {
  return `${fsync}: ${run.cycles} cycles, ${run.acked} acks, ${run.lost} acknowledged commits lost in ${run.cyclesWithLoss} cycles, ${run.refused} copies refused to open, ${run.problems.length} problems`;
}

async function report(fsync: string, run: PolicyRun): Promise<void> {
  const file = process.env.SLUICE_POWER_REPORT;
  if (file !== undefined && file !== '') await appendFile(file, `${summary(fsync, run)}\n`);
}

describe('file store on ext4 survives power loss', () => {
  it(`commit: every acknowledged commit survives ${COMMIT_CYCLES} power losses`, { timeout: 60_000 + COMMIT_CYCLES * 6_000 }, async () => {
    ready();
    const run = await powerCycles('commit', COMMIT_CYCLES, 4242);
    await report('commit', run);
    expect(run.problems.slice(0, 15), summary('commit', run)).toEqual([]);
    expect(run.acked, 'the writer acknowledged commits').toBeGreaterThan(COMMIT_CYCLES);
  });

  it(`commit, zero-filled segments: every acknowledged commit survives ${LOSSY_CYCLES} power losses`, { timeout: 60_000 + LOSSY_CYCLES * 6_000 }, async () => {
    ready();
    const run = await powerCycles('commit', LOSSY_CYCLES, 4343, 'zero-fill');
    await report('commit, zero-fill', run);
    expect(run.problems.slice(0, 15), summary('commit, zero-fill', run)).toEqual([]);
    expect(run.acked, 'the writer acknowledged commits').toBeGreaterThan(LOSSY_CYCLES);
  });

  for (const fsync of ['interval:100ms', 'none'] as const) {
    it(`${fsync}: every copy opens and holds a gapless prefix of the acknowledged history (${LOSSY_CYCLES} power losses)`, { timeout: 60_000 + LOSSY_CYCLES * 6_000 }, async () => {
      ready();
      const run = await powerCycles(fsync, LOSSY_CYCLES, fsync === 'none' ? 777 : 99);
      await report(fsync, run);
      expect(run.problems.slice(0, 15), summary(fsync, run)).toEqual([]);
    });
  }
});
