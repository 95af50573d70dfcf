import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { WorkerCheckpointRunner } from './index-checkpoint-runner.js';
import { runCheckpointJob, type BuildJob } from './index-checkpoint-work.js';
import { BufferSource, IndexTable } from './index-table.js';

/** A checkpoint of 1000 stream entries (10 streams × 100 versions) and 100 command ids, in memory. */
function job(): BuildJob {
  const n = 1000;
  const sHi = new Uint32Array(n);
  const sLo = new Uint32Array(n);
  const sVer = new Float64Array(n);
  const sSeq = new Float64Array(n);
  const sCnt = new Uint32Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    sHi[i] = (i % 10) * 0x1000193;
    sLo[i] = (i % 10) * 7 + 1;
    sVer[i] = Math.floor(i / 10) + 1;
    sSeq[i] = i + 1;
  }
  const cHi = Uint32Array.from({ length: 100 }, (_, i) => 1000 - i);
  const cLo = Uint32Array.from({ length: 100 }, (_, i) => i);
  const cSeq = Float64Array.from({ length: 100 }, (_, i) => i * 10 + 1);
  return {
    kind: 'build',
    meta: { level: 0, fromSeq: 1, toSeq: n, identity: { lastSeq: n, epoch: 1, digest: new Uint8Array(20).fill(3) }, partitionDigest: new Uint8Array(20).fill(1) },
    path: undefined,
    directory: undefined,
    where: '[sluice/store] partition "t" index',
    sHi,
    sLo,
    sVer,
    sSeq,
    sCnt,
    cHi,
    cLo,
    cSeq,
  };
}

function table(bytes: SharedArrayBuffer | undefined): IndexTable {
  return IndexTable.open(new BufferSource(Buffer.from(bytes as SharedArrayBuffer)), 'test table', false);
}

describe('checkpoint runner', () => {
  const expected = Buffer.from(runCheckpointJob(job()).bytes as SharedArrayBuffer);

  it('builds on a worker thread the same table as inline', async () => {
    const runner = new WorkerCheckpointRunner();
    const result = await runner.run(job());
    expect(runner.thread).toBe('worker');
    expect(Buffer.from(result.bytes as SharedArrayBuffer).equals(expected)).toBe(true);
    expect(table(result.bytes).streamLast(3 * 0x1000193, 22)).toEqual({ version: 100, seq: 994 });
  });

  it('runs the job inline when the worker dies with it, and every job after', async () => {
    const runner = new WorkerCheckpointRunner(() => new Worker('process.exit(3)', { eval: true }));
    const first = await runner.run(job());
    expect(runner.thread).toBe('inline');
    expect(Buffer.from(first.bytes as SharedArrayBuffer).equals(expected)).toBe(true);
    const second = await runner.run(job());
    expect(Buffer.from(second.bytes as SharedArrayBuffer).equals(expected)).toBe(true);
  });

  it('runs inline when no worker can start (e.g. a bundle without index-checkpoint-worker.js)', async () => {
    const runner = new WorkerCheckpointRunner(() => {
      throw new Error('Cannot find module index-checkpoint-worker.js');
    });
    const result = await runner.run(job());
    expect(runner.thread).toBe('inline');
    expect(table(result.bytes).meta.streamCount).toBe(1000);
    expect(table(result.bytes).meta.commandCount).toBe(100);
  });

  it('rejects with a StorageError naming the index when the job itself fails on the worker', async () => {
    const runner = new WorkerCheckpointRunner();
    await expect(
      runner.run({ kind: 'merge', meta: job().meta, path: undefined, directory: undefined, where: '[sluice/store] partition "t" index', a: { path: '/nonexistent/a.sxi' }, b: { path: '/nonexistent/b.sxi' }, commandSeqFloor: 0 }),
    ).rejects.toMatchObject({ name: 'StorageError' });
    expect(runner.thread).toBe('worker');
  });
});
