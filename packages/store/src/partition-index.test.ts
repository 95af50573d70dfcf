import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WorkerCheckpointRunner } from './index-checkpoint-runner.js';
import type { CheckpointJob } from './index-checkpoint-work.js';
import {
  MemoryLog,
  createMemoryStorage,
  openPartition,
  reindexPartition,
  type Partition,
  type PartitionOptions,
  type PartitionStorage,
} from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');
const clock = (): number => 1_700_000_000_000;
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'sluice-index-'));
  dirs.push(d);
  return d;
}

/** Memory storage that records the seq ranges read from it: what open and lookups touch. */
function countingStorage(log: MemoryLog, options: { frameReads?: boolean } = {}): { storage: PartitionStorage; reads: Array<[number, number]> } {
  const inner = createMemoryStorage({ log });
  const reads: Array<[number, number]> = [];
  const read = (from: number, to: number) => {
    reads.push([from, to]);
    return inner.read(from, to);
  };
  // Without frame reads the engine reads streams through batches: what the batch path touches.
  const capabilities = options.frameReads === false ? { ...inner.capabilities, frameReads: false } : inner.capabilities;
  const storage = overrideStorage(inner, { read, capabilities, ...(options.frameReads === false ? { readFrames: undefined } : {}) });
  return { storage, reads };
}

const STREAMS = 23;
/** Unit i: command `c-i`, 1..3 events to stream `s-(i mod 23)`, every 5th unit also to `t-i` (a new stream). */
async function appendUnits(p: Partition, from: number, to: number): Promise<void> {
  let acks: Array<Promise<unknown>> = [];
  for (let i = from; i < to; i++) {
    // Waves of a few concurrent units: many small batches, as a busy partition writes them.
    if (acks.length === 4) {
      await Promise.all(acks);
      acks = [];
    }
    const changes = [{ streamId: `s-${i % STREAMS}`, events: Array.from({ length: 1 + (i % 3) }, () => ({ type: `E${i}`, data })) }];
    if (i % 5 === 0) changes.push({ streamId: `t-${i}`, events: [{ type: `T${i}`, data }] });
    acks.push(p.commit({ changes, commandIds: [`c-${i}`] }));
  }
  await Promise.all(acks);
}

/** Everything a caller can observe through the index: versions, stream reads, command results. */
async function observe(p: Partition, units: number): Promise<unknown> {
  const streams: Record<string, unknown> = {};
  for (let s = 0; s < STREAMS; s++) {
    const id = `s-${s}`;
    const events: string[] = [];
    for await (const e of p.readStream(id)) events.push(`${e.seq}:${e.streamVersion}:${e.eventType}`);
    const tail: number[] = [];
    for await (const e of p.readStream(id, { fromVersion: 7, maxCount: 3 })) tail.push(e.streamVersion);
    streams[id] = { version: p.streamVersion(id), confirmed: await p.currentVersion(id), events, tail };
  }
  const commands: unknown[] = [];
  for (let i = 0; i < units; i += 7) commands.push(await p.commandResult(`c-${i}`));
  commands.push(await p.commandResult('never-sent'));
  return { lastSeq: p.lastSeq, streamCount: p.streamCount, streams, commands };
}

async function waitIdle(p: Partition): Promise<void> {
  for (let i = 0; i < 1000 && p.indexStatus.busy; i++) await new Promise((r) => setTimeout(r, 5));
  expect(p.indexStatus.busy).toBe(false);
}

async function waitPersisted(p: Partition): Promise<void> {
  for (let i = 0; i < 1000 && (p.indexStatus.busy || p.indexStatus.persistedSeq < p.indexStatus.checkpointSeq); i++) await new Promise((r) => setTimeout(r, 5));
  expect(p.indexStatus.busy).toBe(false);
  expect(p.indexStatus.persistedSeq).toBe(p.indexStatus.checkpointSeq);
}

describe('the index without a directory (in memory)', () => {
  it('hands a checkpoint\'s entries to the checkpoint runner in shared memory (posted to the worker without a copy)', async () => {
    const run = vi.spyOn(WorkerCheckpointRunner.prototype, 'run');
    try {
      const p = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 16, clock });
      await appendUnits(p, 0, 40);
      await p.close();
      const builds = run.mock.calls.map(([job]) => job).filter((job: CheckpointJob) => job.kind === 'build');
      expect(builds.length).toBeGreaterThan(0);
      for (const job of builds) {
        for (const a of [job.sHi, job.sLo, job.sVer, job.sSeq, job.sCnt, job.cHi, job.cLo, job.cSeq]) expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(job.sHi.length).toBeGreaterThan(0);
        expect(job.cHi.length).toBeGreaterThan(0);
      }
    } finally {
      run.mockRestore();
    }
  });

  for (const [cacheMax, reads] of [
    [undefined, []],
    [0, [[2, 2]]],
  ] as const) {
    it(`keeps only the first seq of a durable commit's command ids in the memtable: a duplicate gets the original result ${cacheMax === 0 ? 'read from the log (commandResultCacheMax 0)' : 'from the recent results, no read'}`, async () => {
      const log = new MemoryLog();
      const counted = countingStorage(log);
      const p = await openPartition({ storage: counted.storage, clock, commandResultCacheMax: cacheMax });
      const unit = {
        changes: [
          { streamId: 'a', events: [{ type: 'A1', data }, { type: 'A2', data }] },
          { streamId: 'b', events: [{ type: 'B1', data }] },
        ],
        commandIds: ['x', 'y'],
      };
      await p.append({ streamId: 'z', events: [{ type: 'Z', data }] });
      const original = await p.commit(unit);
      counted.reads.length = 0;
      // In the memtable, durable: answered from the recent results, or from the commit's frames.
      expect(await p.commit({ ...unit, commandIds: ['y'] })).toEqual({ ...original, duplicate: true });
      expect(counted.reads).toEqual(reads);
      expect(await p.commandResult('x')).toEqual(original);
      expect(p.lastSeq).toBe(4);
      // In flight: the duplicate waits for the original's group and gets its result, no read.
      counted.reads.length = 0;
      const [first, second] = await Promise.all([p.commit({ ...unit, commandIds: ['w'] }), p.commit({ ...unit, commandIds: ['w'] })]);
      expect(second).toEqual({ ...first, duplicate: true });
      expect(first.firstSeq).toBe(5);
      expect(counted.reads).toEqual([]);
      expect(await p.commandResult('w')).toEqual(first);
      await p.close();
    });
  }

  it("keeps its own copy of a commit's command ids: a caller that reuses its array after commit() hides no in-flight duplicate", async () => {
    let release!: () => void;
    const synced = new Promise<void>((resolve) => (release = resolve));
    const inner = createMemoryStorage();
    // Syncs wait for the test: the first commit stays in flight while its duplicate comes.
    const storage = overrideStorage(inner, { sync: async () => (await synced, inner.sync()) });
    const p = await openPartition({ storage, clock });
    const unit = { changes: [{ streamId: 's', events: [{ type: 'E', data }] }] };
    const ids = ['m-1'];
    const first = p.commit({ ...unit, commandIds: ids });
    // Encoded and written (a turn of the event loop), not durable.
    await new Promise((resolve) => setImmediate(resolve));
    ids[0] = 'm-2';
    const second = p.commit({ ...unit, commandIds: ['m-1'] });
    release();
    const [a, b] = await Promise.all([first, second]);
    expect(b).toEqual({ ...a, duplicate: true });
    expect(p.lastSeq).toBe(1);
    await p.close();
  });

  it('reads a commit back from the log once for many duplicates of its ids, the latest 64 commits read back kept', async () => {
    const counted = countingStorage(new MemoryLog());
    const p = await openPartition({ storage: counted.storage, clock, commandResultCacheMax: 0 });
    // 70 merged commits of 10 ids each (a restarted sender resends what it sent before).
    const originals = [];
    for (let c = 0; c < 70; c++) {
      const ids = Array.from({ length: 10 }, (_, i) => `c${c}-${i}`);
      originals.push(await p.commit({ changes: ids.map((id) => ({ streamId: `s-${id}`, events: [{ type: 'E', data }] })), commandIds: ids }));
    }
    counted.reads.length = 0;
    const resend = (c: number, i: number) => p.commit({ changes: [{ streamId: `s-c${c}-${i}`, events: [{ type: 'E', data }] }], commandIds: [`c${c}-${i}`] });
    // Every id of commit 0, at once and one by one: one read.
    const first = await Promise.all(Array.from({ length: 5 }, (_, i) => resend(0, i)));
    for (let i = 5; i < 10; i++) first.push(await resend(0, i));
    for (const r of first) expect(r).toEqual({ ...originals[0], duplicate: true });
    expect(counted.reads).toEqual([[1, 1]]);
    // 64 more commits read back (1..64): commit 0 is still among the latest 64 read, then it is not.
    for (let c = 1; c <= 63; c++) await resend(c, 0);
    expect(await resend(0, 3)).toEqual({ ...originals[0], duplicate: true });
    expect(counted.reads).toHaveLength(64);
    await resend(64, 0);
    await resend(0, 4);
    expect(counted.reads).toHaveLength(66);
    expect(counted.reads.at(-1)).toEqual([1, 1]);
    await p.close();
  });

  it('bounds the recent results by commandResultCacheMax: a duplicate of an older commit reads it back', async () => {
    const counted = countingStorage(new MemoryLog());
    const p = await openPartition({ storage: counted.storage, clock, commandResultCacheMax: 2 });
    const results = [];
    for (let i = 1; i <= 3; i++) results.push(await p.commit({ changes: [{ streamId: `s-${i}`, events: [{ type: 'E', data }] }], commandIds: [`c-${i}`] }));
    counted.reads.length = 0;
    expect(await p.commit({ changes: [{ streamId: 's-3', events: [{ type: 'E', data }] }], commandIds: ['c-3'] })).toEqual({ ...results[2], duplicate: true });
    expect(counted.reads).toEqual([]);
    expect(await p.commit({ changes: [{ streamId: 's-1', events: [{ type: 'E', data }] }], commandIds: ['c-1'] })).toEqual({ ...results[0], duplicate: true });
    expect(counted.reads).toEqual([[1, 1]]);
    await expect(openPartition({ storage: createMemoryStorage(), commandResultCacheMax: -1 })).rejects.toThrow(/commandResultCacheMax must be an integer from 0 to 1048576/);
    await p.close();
  });

  it('moves the memtable into tables at checkpoints: versions, reads, duplicates and commandResult are the same as from the memtable', async () => {
    const log = new MemoryLog();
    const plain = await openPartition({ storage: createMemoryStorage({ log: new MemoryLog() }), indexCheckpointEvents: 1_000_000, clock });
    const tabled = await openPartition({ storage: createMemoryStorage({ log }), indexCheckpointEvents: 16, clock });
    await appendUnits(plain, 0, 400);
    await appendUnits(tabled, 0, 400);
    expect(tabled.indexStatus.tables).toBeGreaterThan(0);
    expect(tabled.indexStatus.memtableEvents).toBeLessThan(16 + 8);
    const expected = await observe(plain, 400);
    expect(await observe(tabled, 400)).toEqual(expected);
    // A duplicate from a table: nothing written, the original result.
    const original = await tabled.commandResult('c-3');
    const again = await tabled.commit({ changes: [{ streamId: 's-3', events: [{ type: 'X', data }] }], commandIds: ['c-3'] });
    expect(again).toEqual({ ...original, duplicate: true });
    expect(tabled.lastSeq).toBe(plain.lastSeq);
    // Expected versions checked against table answers.
    await expect(tabled.append({ streamId: 's-1', expectedVersion: 1, events: [{ type: 'X', data }] })).rejects.toThrow(/expected version|version/i);
    await tabled.close();
    await plain.close();
    // Reopen without a directory: rebuilt from the whole log, same answers.
    const reopened = await openPartition({ storage: createMemoryStorage({ log }), indexCheckpointEvents: 16, clock });
    expect(reopened.indexStatus.replayedFromSeq).toBe(1);
    expect(reopened.indexStatus.tables).toBeGreaterThan(0);
    expect(await observe(reopened, 400)).toEqual(expected);
    await reopened.close();
  });

  it('resolves 64-bit hash collisions by reading frames: every id hashing alike still gives exact versions, reads and duplicates', async () => {
    const collide = (_s: string, out: Uint32Array): void => {
      out[0] = 7;
      out[1] = 7;
    };
    const plain = await openPartition({ storage: createMemoryStorage(), clock });
    const colliding = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 8, indexHash: collide, clock } as PartitionOptions);
    await appendUnits(plain, 0, 120);
    await appendUnits(colliding, 0, 120);
    expect(colliding.indexStatus.tables).toBeGreaterThan(0);
    expect(await observe(colliding, 120)).toEqual(await observe(plain, 120));
    const dup = await colliding.commit({ changes: [{ streamId: 'new', events: [{ type: 'X', data }] }], commandIds: ['c-5'] });
    expect(dup.duplicate).toBe(true);
    const fresh = await colliding.commit({ changes: [{ streamId: 's-0', expectedVersion: plain.streamVersion('s-0'), events: [{ type: 'X', data }] }], commandIds: ['c-new'] });
    expect(fresh.duplicate).toBe(false);
    expect(fresh.streams[0].firstVersion).toBe(plain.streamVersion('s-0') + 1);
    await colliding.close();
    await plain.close();
  });

  it('forgets command ids past commandIdRetention.seqs, and never by default', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 8, commandIdRetention: { seqs: 50 } });
    await appendUnits(p, 0, 100);
    expect(await p.commandResult('c-0')).toBeUndefined();
    expect(await p.commandResult('c-99')).toBeDefined();
    const again = await p.commit({ changes: [{ streamId: 'z', events: [{ type: 'X', data }] }], commandIds: ['c-0'] });
    expect(again.duplicate).toBe(false);
    await p.close();
  });

  it('merges in-memory tables from which retention drops command ids into tables of exactly their size: no index error, every lookup still answered', async () => {
    const errors: Error[] = [];
    const p = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 8, commandIdRetention: { seqs: 50 }, onIndexError: (e) => errors.push(e), clock });
    await appendUnits(p, 0, 300);
    const retry = await p.commit({ changes: [{ streamId: 'z', events: [{ type: 'X', data }] }], commandIds: ['c-299'] });
    expect(retry.duplicate).toBe(true);
    expect(await p.commandResult('c-0')).toBeUndefined();
    await p.close();
    expect(p.indexStatus.mergesStarted).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    expect(p.indexStatus.lastError).toBeUndefined();
  });
});

/** Memory storage whose syncs return only once released while held, and which tells when it has taken `n` writes. */
function gatedStorage(log: MemoryLog): { storage: PartitionStorage; hold(): void; release(): void; written(n: number): Promise<void> } {
  const inner = createMemoryStorage({ log });
  let gate: Promise<void> | undefined;
  let open = (): void => undefined;
  let writes = 0;
  const waiters: Array<[number, () => void]> = [];
  const storage = overrideStorage(inner, {
    write: async (bytes, firstSeq, lastSeq) => {
      await inner.write(bytes, firstSeq, lastSeq);
      writes++;
      for (const [n, resolve] of waiters) if (writes >= n) resolve();
    },
    sync: async () => {
      // Durable at the call (what was written before it), acknowledged once released.
      const held = gate;
      const head = await inner.sync();
      await held;
      return head;
    },
  });
  return {
    storage,
    hold: () => {
      gate = new Promise((resolve) => (open = resolve));
    },
    release: () => {
      gate = undefined;
      open();
    },
    written: (n) => new Promise<void>((resolve) => (writes >= n ? resolve() : waiters.push([n, resolve]))),
  };
}

/** Holds the first checkpoint build until `release()`, then runs it (or fails it); later builds run at once. */
function holdFirstBuild(outcome: 'installed' | 'failed'): { builds: CheckpointJob[]; release: () => void; run: { mockRestore(): void } } {
  const orig = WorkerCheckpointRunner.prototype.run;
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const builds: CheckpointJob[] = [];
  const run = vi.spyOn(WorkerCheckpointRunner.prototype, 'run').mockImplementation(function (this: WorkerCheckpointRunner, job: CheckpointJob) {
    if (job.kind !== 'build') return orig.call(this, job);
    builds.push(job);
    if (builds.length > 1) return orig.call(this, job);
    return held.then(() => (outcome === 'failed' ? Promise.reject(new Error('injected')) : orig.call(this, job)));
  } as typeof orig);
  return { builds, release, run };
}

describe('stream runs (events of one stream at consecutive seqs are one index entry)', () => {
  it('checkpoints a batch of 1000 events to one stream as one entry, and a read from any version finds its seqs', async () => {
    const run = vi.spyOn(WorkerCheckpointRunner.prototype, 'run');
    try {
      const p = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 500, clock });
      for (let i = 0; i < 4; i++) {
        await p.append({ streamId: 'big', events: Array.from({ length: 1000 }, () => ({ type: 'E', data })) });
        await p.append({ streamId: `small-${i}`, events: [{ type: 'S', data }] });
      }
      expect(p.indexStatus.tables).toBeGreaterThan(0);
      const builds = run.mock.calls.map(([job]) => job).filter((job: CheckpointJob) => job.kind === 'build');
      let entries = 0;
      let events = 0;
      for (const job of builds) {
        if (job.kind !== 'build') continue;
        entries += job.sCnt.length;
        for (const c of job.sCnt) events += c;
      }
      expect(events).toBeGreaterThanOrEqual(3000);
      expect(entries).toBeLessThanOrEqual(2 * builds.length + 8);
      for (const from of [1, 2, 999, 1000, 1001, 2500, 4000]) {
        const seen: number[] = [];
        for await (const e of p.readStream('big', { fromVersion: from, maxCount: 3 })) seen.push(e.streamVersion);
        expect(seen).toEqual([from, from + 1, from + 2].filter((v) => v <= 4000));
      }
      expect(await p.currentVersion('big')).toBe(4000);
      await p.close();
    } finally {
      run.mockRestore();
    }
  });

  it('splits a run at a checkpoint while the rest of it is in flight: versions and reads stay exact, before and after reopen', async () => {
    const run = vi.spyOn(WorkerCheckpointRunner.prototype, 'run');
    try {
      const log = new MemoryLog();
      const dir = await tempDir();
      const gated = gatedStorage(log);
      const plain = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 1_000_000, clock });
      const p = await openPartition({ storage: gated.storage, indexDirectory: dir, indexCheckpointEvents: 4, groupsInFlightMax: 2, clock });
      const events = (n: number) => ({ streamId: 'a', events: Array.from({ length: n }, () => ({ type: 'E', data })) });
      await p.append(events(3));
      await plain.append(events(3));
      // Group 1 (seqs 4-5) waits in its sync while group 2 (seqs 6-7) is written: both extend the
      // memtable's run of "a" (seqs 1-7). Once group 1 is durable, the checkpoint at seq 5 cuts it.
      gated.hold();
      const first = p.append(events(2));
      await gated.written(2);
      const second = p.append(events(2));
      await gated.written(3);
      gated.release();
      await Promise.all([first, second]);
      await plain.append(events(2));
      await plain.append(events(2));
      const builds = run.mock.calls.map(([job]) => job).filter((job: CheckpointJob) => job.kind === 'build');
      expect(builds.length).toBe(1);
      const cut = builds[0];
      if (cut.kind !== 'build') throw new Error('unreachable');
      expect(cut.meta.toSeq).toBe(5);
      expect([...cut.sVer, ...cut.sSeq, ...cut.sCnt]).toEqual([5, 5, 5]);
      await waitIdle(p);
      for (let i = 0; i < 3; i++) {
        await p.append(events(1));
        await plain.append(events(1));
      }
      const reads = async (q: Partition) => {
        const out: number[][] = [];
        for (let from = 1; from <= 11; from++) {
          const seqs: number[] = [];
          for await (const e of q.readStream('a', { fromVersion: from })) seqs.push(e.seq);
          out.push(seqs);
        }
        return { version: q.streamVersion('a'), confirmed: await q.currentVersion('a'), out };
      };
      const expected = await reads(plain);
      expect(expected.version).toBe(10);
      expect(await reads(p)).toEqual(expected);
      await waitIdle(p);
      expect(p.indexStatus.checkpointsInstalled).toBeGreaterThan(1);
      expect(await reads(p)).toEqual(expected);
      await p.close();
      const reopened = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 4, clock });
      expect(reopened.indexStatus.replayedFrames).toBe(0);
      expect(await reads(reopened)).toEqual(expected);
      await reopened.close();
      await plain.close();
    } finally {
      run.mockRestore();
    }
  });

  for (const outcome of ['installed', 'failed'] as const) {
    it(`while a checkpoint is built, its runs still answer reads and a stream whose run it took whole starts a new one; then the build is ${outcome}`, async () => {
      const { builds, release: gate, run } = holdFirstBuild(outcome);
      try {
        const plain = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 1_000_000, clock });
        const p = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 8, clock, onIndexError: () => undefined });
        const both = async (streamId: string, n: number) => {
          const events = Array.from({ length: n }, () => ({ type: 'E', data }));
          await p.append({ streamId, events });
          await plain.append({ streamId, events });
        };
        const reads = async (q: Partition) => {
          const out: Record<string, number[][]> = {};
          for (const id of ['a', 'b', 'c']) {
            out[id] = [];
            for (let from = 1; from <= q.streamVersion(id) + 1; from++) {
              const seqs: number[] = [];
              for await (const e of q.readStream(id, { fromVersion: from })) seqs.push(e.seq);
              out[id].push(seqs);
            }
          }
          return out;
        };
        // Interleaved runs a, b, a, c, b, then a run of "c" that ends at the checkpoint (8 events).
        for (const [id, n] of [['a', 2], ['b', 1], ['a', 1], ['c', 1], ['b', 1], ['c', 2]] as const) await both(id, n);
        expect(builds.length).toBe(1);
        expect(p.indexStatus.busy).toBe(true);
        // "c" goes on at the next seq: its memtable run was frozen whole, so this is a run of its own.
        for (const [id, n] of [['c', 2], ['a', 1], ['b', 2], ['a', 1]] as const) await both(id, n);
        expect(p.indexStatus.busy).toBe(true);
        const expected = await reads(plain);
        expect(await reads(p)).toEqual(expected);
        gate();
        await waitIdle(p);
        expect(p.indexStatus.checkpointsInstalled).toBe(outcome === 'installed' ? 1 : 0);
        expect(await reads(p)).toEqual(expected);
        for (const [id, n] of [['c', 1], ['b', 3], ['a', 2]] as const) await both(id, n);
        await waitIdle(p);
        expect(await reads(p)).toEqual(await reads(plain));
        for (const id of ['a', 'b', 'c']) expect(await p.currentVersion(id)).toBe(plain.streamVersion(id));
        expect(p.indexStatus.memtableEvents).toBe(p.lastSeq - p.indexStatus.checkpointSeq);
        await p.close();
        await plain.close();
      } finally {
        run.mockRestore();
      }
    });

    it(`while a checkpoint is built, a run it splits answers reads and goes on growing; then the build is ${outcome}`, async () => {
      const { builds, release: gate, run } = holdFirstBuild(outcome);
      try {
        const gated = gatedStorage(new MemoryLog());
        const plain = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 1_000_000, clock });
        const p = await openPartition({ storage: gated.storage, indexCheckpointEvents: 4, groupsInFlightMax: 2, clock, onIndexError: () => undefined });
        const events = (streamId: string, n: number) => ({ streamId, events: Array.from({ length: n }, () => ({ type: 'E', data })) });
        const reads = async (q: Partition) => {
          const out: number[][] = [];
          for (const id of ['a', 'b']) {
            for (let from = 1; from <= q.streamVersion(id) + 1; from++) {
              const seqs: number[] = [];
              for await (const e of q.readStream(id, { fromVersion: from })) seqs.push(e.seq);
              out.push(seqs);
            }
          }
          return out;
        };
        await p.append(events('a', 3));
        await plain.append(events('a', 3));
        // Seqs 4-5 wait in their sync while 6-7 are written: one run of "a" (seqs 1-7) that the
        // checkpoint at seq 5 splits once 4-5 are durable.
        gated.hold();
        const first = p.append(events('a', 2));
        await gated.written(2);
        const second = p.append(events('a', 2));
        await gated.written(3);
        gated.release();
        await Promise.all([first, second]);
        await plain.append(events('a', 2));
        await plain.append(events('a', 2));
        expect(builds.map((job) => (job.kind === 'build' ? [job.meta.toSeq, ...job.sCnt] : []))).toEqual([[5, 5]]);
        expect(p.indexStatus.busy).toBe(true);
        expect(await reads(p)).toEqual(await reads(plain));
        // The split run grows at seq 8, then another stream starts.
        for (const [id, n] of [['a', 1], ['b', 2]] as const) {
          await p.append(events(id, n));
          await plain.append(events(id, n));
        }
        expect(await reads(p)).toEqual(await reads(plain));
        gate();
        await waitIdle(p);
        expect(p.indexStatus.checkpointsInstalled).toBeGreaterThanOrEqual(outcome === 'installed' ? 1 : 0);
        expect(await reads(p)).toEqual(await reads(plain));
        expect(p.indexStatus.memtableEvents).toBe(p.lastSeq - p.indexStatus.checkpointSeq);
        expect(p.streamVersion('a')).toBe(8);
        await p.close();
        await plain.close();
      } finally {
        run.mockRestore();
      }
    });
  }
});

describe('stream reads', () => {
  it("without frame reads, touch only the batches holding the stream's events, found through the index (tables and memtable), never a scan", async () => {
    const log = new MemoryLog();
    const counting = countingStorage(log, { frameReads: false });
    const p = await openPartition({ storage: counting.storage, indexCheckpointEvents: 64, clock });
    await appendUnits(p, 0, 400); // stream s-k gets an event every 23 units: in every few batches
    const holding = (streamId: string): Set<number> => {
      const batches = new Set<number>();
      for (const b of log.batches) if (b.frames.some((f) => f.streamId === streamId)) batches.add(b.lastSeq);
      return batches;
    };
    for (const streamId of ['s-4', 't-395', 's-22']) {
      counting.reads.length = 0;
      const seen = new Set<number>();
      const events: number[] = [];
      for await (const e of p.readStream(streamId)) events.push(e.streamVersion);
      for (const [from, to] of counting.reads) for (const b of log.batches) if (b.lastSeq >= from && b.firstSeq <= to) seen.add(b.lastSeq);
      expect(events).toEqual(Array.from({ length: p.streamVersion(streamId) }, (_, i) => i + 1));
      expect([...seen].sort()).toEqual([...holding(streamId)].sort());
    }
    expect(log.batches.length).toBeGreaterThan(50);
    await p.close();
  });
});

describe('the persisted index (indexDirectory)', () => {
  it('survives close and reopen: a clean close checkpoints at the head, so open reads nothing from the log', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    await appendUnits(p, 0, 600);
    const before = await observe(p, 600);
    await p.close();
    expect(p.indexStatus.persistedSeq).toBe(p.lastSeq);

    const counting = countingStorage(log);
    const q = await openPartition({ storage: counting.storage, indexDirectory: dir, indexCheckpointEvents: 64 });
    expect(counting.reads).toEqual([]);
    expect(q.indexStatus).toMatchObject({ replayedFrames: 0, replayedFromSeq: q.lastSeq + 1, discarded: [] });
    expect(await observe(q, 600)).toEqual(before);
    await q.close();
  });

  it('after a crash, open replays only the log after the last persisted checkpoint', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    await appendUnits(p, 0, 500);
    await waitPersisted(p);
    const checkpoint = p.indexStatus.persistedSeq;
    expect(checkpoint).toBeGreaterThan(p.lastSeq / 2);
    const before = await observe(p, 500);
    log.powerLoss(); // kill -9: no close, no last checkpoint (everything acknowledged was synced)

    const counting = countingStorage(log);
    const q = await openPartition({ storage: counting.storage, indexDirectory: dir, indexCheckpointEvents: 64 });
    const openReads = [...counting.reads];
    expect(openReads.length).toBeGreaterThan(0);
    for (const [from] of openReads) expect(from).toBeGreaterThan(checkpoint);
    expect(q.indexStatus.replayedFromSeq).toBe(checkpoint + 1);
    expect(q.indexStatus.replayedFrames).toBe(q.lastSeq - checkpoint);
    expect(await observe(q, 500)).toEqual(before);
    // Duplicates from before the crash are still recognised.
    expect((await q.commit({ changes: [{ streamId: 'q', events: [{ type: 'X', data }] }], commandIds: ['c-1'] })).duplicate).toBe(true);
    await q.close();
  });

  it('a corrupt or truncated index file is discarded and rebuilt from the log, with identical results; the log is untouched', async () => {
    for (const damage of ['flip', 'truncate', 'garbage'] as const) {
      const dir = await tempDir();
      const log = new MemoryLog();
      const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
      await appendUnits(p, 0, 300);
      const before = await observe(p, 300);
      await p.close();
      const logBytes = log.batches.map((b) => Buffer.from(b.bytes).toString('hex')).join('');
      const files = (await readdir(dir)).filter((f) => f.endsWith('.sxi'));
      expect(files.length).toBeGreaterThan(0);
      const victim = join(dir, files[0]);
      if (damage === 'flip') {
        const bytes = await readFile(victim);
        bytes[100] ^= 0x40;
        await writeFile(victim, bytes);
      } else if (damage === 'truncate') {
        await truncate(victim, (await readFile(victim)).length - 50);
      } else {
        await writeFile(join(dir, '0000000000000001-0000000000000009.sxi'), 'not an index');
      }
      const q = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64, indexVerifyOnOpen: 'full' });
      expect(q.indexStatus.discarded.join('\n')).toMatch(/checksum|truncated|sizes|magic/);
      if (damage !== 'garbage') expect(q.indexStatus.replayedFromSeq).toBe(1);
      expect(await observe(q, 300)).toEqual(before);
      await q.close();
      expect(log.batches.map((b) => Buffer.from(b.bytes).toString('hex')).join('')).toBe(logBytes);
    }
  });

  it('by default open checks footers only; a damaged block found later rejects that lookup, is reported and deleted, and the next open rebuilds', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64, clock });
    await appendUnits(p, 0, 300);
    const before = await observe(p, 300);
    await p.close();
    const files = (await readdir(dir)).filter((f) => f.endsWith('.sxi')).sort();
    const victim = join(dir, files[0]);
    const bytes = await readFile(victim);
    bytes[100] ^= 0x40; // an entry in the first stream block
    await writeFile(victim, bytes);

    const errors: Error[] = [];
    const q = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64, onIndexError: (e) => errors.push(e), clock });
    expect(q.indexStatus.discarded).toEqual([]);
    const streams = [...Array.from({ length: STREAMS }, (_, s) => `s-${s}`), ...Array.from({ length: 60 }, (_, i) => `t-${i * 5}`)];
    const failures: unknown[] = [];
    for (const id of streams) {
      try {
        for await (const _ of q.readStream(id)) void _;
      } catch (error) {
        failures.push(error);
      }
    }
    expect(failures.length).toBeGreaterThan(0);
    expect(String(failures[0])).toMatch(/checksum mismatch.*reindex/s);
    expect(errors.length).toBe(1);
    expect((await readdir(dir)).includes(files[0])).toBe(false);
    await q.close();

    const r = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64, clock });
    expect(r.indexStatus.replayedFromSeq).toBe(1);
    expect(await observe(r, 300)).toEqual(before);
    await r.close();
  });

  it('an index from another partition is discarded and rebuilt', async () => {
    const dir = await tempDir();
    const other = await openPartition({ storage: createMemoryStorage(), indexDirectory: dir, indexCheckpointEvents: 64 });
    await other.append({ streamId: 'elsewhere', events: [{ type: 'X', data }] });
    await appendUnits(other, 0, 200);
    await other.close();
    const log = new MemoryLog();
    const mine = await openPartition({ storage: createMemoryStorage({ log }) });
    await appendUnits(mine, 0, 250);
    const before = await observe(mine, 250);
    await mine.close();
    const q = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    expect(q.indexStatus.discarded.join('\n')).toMatch(/another partition/);
    expect(q.indexStatus.replayedFromSeq).toBe(1);
    expect(await observe(q, 250)).toEqual(before);
    expect(q.streamVersion('elsewhere')).toBe(0);
    await q.close();
  });

  it('a checkpoint whose digest does not match the log (truncated by an operator and rewritten) is discarded and rebuilt', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    await appendUnits(p, 0, 300);
    await p.close();
    // The operator cuts the log back to an early batch and new history is written after it.
    const storage = createMemoryStorage({ log });
    await storage.open();
    const cut = log.batches[3].lastSeq;
    await storage.truncate(cut, { operatorReason: 'test: restore from archive' });
    await storage.close();
    const rewrite = await openPartition({ storage: createMemoryStorage({ log }) });
    await appendUnits(rewrite, 1000, 1300); // same shape, different history, past the old checkpoints
    const expected = await observe(rewrite, 0);
    await rewrite.close();
    expect(log.batches.at(-1)!.lastSeq).toBeGreaterThan(p.lastSeq);

    const q = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    expect(q.indexStatus.discarded.join('\n')).toMatch(/does not match the log/);
    expect(q.indexStatus.replayedFromSeq).toBe(1);
    expect(await observe(q, 0)).toEqual(expected);
    expect(await q.commandResult('c-1000')).toBeDefined();
    expect(await q.commandResult('c-290')).toBeUndefined(); // cut away with its commit
    await q.close();
  });

  it('reindexPartition rebuilds the index from the log and checkpoints at the head', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    await appendUnits(p, 0, 200);
    const before = await observe(p, 200);
    await p.close();
    const report = await reindexPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 64 });
    expect(report.lastSeq).toBe(p.lastSeq);
    expect(report.discarded.length).toBeGreaterThan(0);
    expect(report.index.persistedSeq).toBe(p.lastSeq);
    const counting = countingStorage(log);
    const q = await openPartition({ storage: counting.storage, indexDirectory: dir, indexCheckpointEvents: 64 });
    expect(counting.reads).toEqual([]);
    expect(await observe(q, 200)).toEqual(before);
    await q.close();
  });
});

// Needs root to mount a small tmpfs: the real ENOSPC from a real file system.
describe.runIf(process.getuid?.() === 0)('a full disk under indexDirectory (tmpfs)', () => {
  it('keeps the partition working, reports the error, loses nothing acknowledged, and persists the index once space is back', async () => {
    const base = await tempDir();
    const mnt = join(base, 'mnt');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
    try {
      const dir = join(mnt, 'index');
      const filler = join(mnt, 'filler');
      // Leave about one page free: the first table fits, the next ones do not.
      await writeFile(filler, Buffer.alloc(248 * 1024));
      const errors: Error[] = [];
      const log = new MemoryLog();
      const p = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 32, onIndexError: (e) => errors.push(e), clock });
      await appendUnits(p, 0, 400);
      for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0].message).toMatch(/could not write .*ENOSPC.*free space in/s);
      expect((errors[0] as { reason?: string }).reason).toBe('Full');
      expect(p.indexStatus.lastError).toBeDefined();
      expect(p.indexStatus.persistedSeq).toBeLessThan(p.indexStatus.checkpointSeq);
      // Appends and duplicates still work from the tables held in memory.
      await appendUnits(p, 400, 450);
      expect((await p.commit({ changes: [{ streamId: 'q', events: [{ type: 'X', data }] }], commandIds: ['c-2'] })).duplicate).toBe(true);
      const before = await observe(p, 450);

      // A crash while the disk is full: open replays from the last table that made it to disk.
      const persisted = p.indexStatus.persistedSeq;
      log.powerLoss();
      const crashed = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 32, onIndexError: (e) => errors.push(e), clock });
      expect(crashed.indexStatus.replayedFromSeq).toBe(persisted + 1);
      expect(await observe(crashed, 450)).toEqual(before);

      // Space is back: the next checkpoint (here: close) writes everything held in memory.
      await unlink(filler);
      await crashed.close();
      expect(crashed.indexStatus.persistedSeq).toBe(crashed.lastSeq);
      const counting = countingStorage(log);
      const q = await openPartition({ storage: counting.storage, indexDirectory: dir, indexCheckpointEvents: 32, clock });
      expect(counting.reads).toEqual([]);
      expect(await observe(q, 450)).toEqual(before);
      await q.close();
    } finally {
      // Lazy: the partition abandoned by the simulated crash still holds its table files open.
      execFileSync('umount', ['-l', mnt]);
    }
  });
});

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

type Model = Map<string, number[]>; // stream -> seq of version i+1

async function drive(p: Partition, model: Model, seed: number, units: number, streams: number): Promise<void> {
  const r = rng(seed);
  let wave: Array<Promise<void>> = [];
  let last = 's-0';
  for (let u = 0; u < units; u++) {
    const changes: Array<{ streamId: string; events: Array<{ type: string; data: Uint8Array }> }> = [];
    const nChanges = r() < 0.2 ? 2 : 1;
    const used = new Set<string>();
    for (let c = 0; c < nChanges; c++) {
      let id = r() < 0.6 ? last : `s-${Math.floor(r() * streams)}`;
      if (used.has(id)) id = `s-x${u}`;
      used.add(id);
      last = id;
      changes.push({ streamId: id, events: Array.from({ length: 1 + Math.floor(r() * 4) }, () => ({ type: 'E', data })) });
    }
    wave.push(
      p.commit({ changes }).then((res) => {
        let seq = res.firstSeq;
        for (const s of res.streams) {
          const arr = model.get(s.streamId) ?? [];
          model.set(s.streamId, arr);
          for (let v = s.firstVersion; v <= s.version; v++) {
            expect(arr.length).toBe(v - 1);
            arr.push(seq++);
          }
        }
      }),
    );
    if (wave.length >= 1 + Math.floor(r() * 12)) {
      await Promise.all(wave);
      wave = [];
    }
  }
  await Promise.all(wave);
}

async function check(p: Partition, model: Model, label: string): Promise<void> {
  expect(p.streamCount, `${label} streamCount`).toBe(model.size);
  for (const [id, seqs] of model) {
    expect(await p.currentVersion(id), `${label} ${id} version`).toBe(seqs.length);
    for (const from of [1, 2, Math.max(1, seqs.length - 3), seqs.length, seqs.length + 1]) {
      const got: Array<[number, number]> = [];
      for await (const e of p.readStream(id, { fromVersion: from })) got.push([e.streamVersion, e.seq]);
      const want = seqs.map((s, i) => [i + 1, s] as [number, number]).slice(from - 1);
      expect(got, `${label} ${id} from ${from}`).toEqual(want);
    }
  }
  expect(await p.currentVersion('never')).toBe(0);
  const st = p.indexStatus;
  if (!st.busy) expect(st.memtableEvents, `${label} memtableEvents`).toBe(p.lastSeq - st.checkpointSeq);
}

function slowStorage(log: MemoryLog, seed: number): PartitionStorage {
  const inner = createMemoryStorage({ log });
  const r = rng(seed);
  const pause = async () => {
    // Syncs that return a few turns of the event loop late: later groups of a stream are in the memtable when a checkpoint cuts.
    for (let i = Math.floor(r() * 3); i > 0; i--) await new Promise((res) => setImmediate(res));
  };
  return overrideStorage(inner, {
    sync: async () => {
      const head = await inner.sync();
      await pause();
      return head;
    },
  });
}

const hashes: Record<string, ((s: string, out: Uint32Array) => void) | undefined> = {
  real: undefined,
  all: (_s, out) => {
    out[0] = 7;
    out[1] = 7;
  },
  two: (s, out) => {
    let h = 0;
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
    out[0] = 5;
    out[1] = h % 2;
  },
};

describe('stream runs against a model: random units (one or two streams, 1-4 events each, a stream often continued), up to 8 groups in flight, late syncs', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });
  for (const [hash, failEvery, cpe, mode] of [
    ['real', 0, 7, 'dir'],
    ['real', 3, 4, 'crash'],
    ['all', 3, 7, 'crash'],
    ['two', 0, 16, 'memory'],
  ] as const) {
    {
      {
        it(`hash ${hash}, a checkpoint every ${cpe} events, ${failEvery > 0 ? `every ${failEvery}rd checkpoint build failing` : 'no build failing'}, ${mode === 'crash' ? 'power loss and reopen' : mode === 'dir' ? 'close and reopen' : 'in memory'}`, async () => {
          const jobs: CheckpointJob[] = [];
          {
            const orig = WorkerCheckpointRunner.prototype.run;
            let n = 0;
            vi.spyOn(WorkerCheckpointRunner.prototype, 'run').mockImplementation(function (this: WorkerCheckpointRunner, job: CheckpointJob) {
              if (job.kind === 'build') jobs.push(job);
              if (failEvery > 0 && job.kind === 'build' && ++n % failEvery === 0) return Promise.reject(new Error('injected'));
              return orig.call(this, job);
            } as typeof orig);
          }
          const log = new MemoryLog();
          const dir = await tempDir();
          const model: Model = new Map();
          const opts = { indexDirectory: mode === 'memory' ? undefined : dir, indexCheckpointEvents: cpe, groupsInFlightMax: 8, clock, indexHash: hashes[hash], onIndexError: () => undefined } as Omit<PartitionOptions, 'storage'>;
          const p = await openPartition({ ...opts, storage: slowStorage(log, cpe) } as PartitionOptions);
          await drive(p, model, cpe * 7 + failEvery, 150, 6);
          await check(p, model, 'live');
          await waitIdle(p);
          await check(p, model, 'idle');
          await drive(p, model, cpe * 11 + 1, 60, 6);
          await check(p, model, 'live2');
          if (mode === 'crash') log.powerLoss();
          else await p.close();
          {
            const owner = new Map<number, [string, number]>();
            for (const [id, seqs] of model) seqs.forEach((s, i) => owner.set(s, [id, i + 1]));
            let splits = 0;
            for (const j of jobs) {
              if (j.kind !== 'build') continue;
              const at = owner.get(j.meta.toSeq), next = owner.get(j.meta.toSeq + 1);
              if (at && next && at[0] === next[0] && j.sSeq.includes(j.meta.toSeq)) splits++;
            }
            if (splits === 0) throw new Error(`no split among ${jobs.length} builds`);
          }
          if (mode === 'memory') return;
          const q = await openPartition({ ...opts, storage: slowStorage(log, cpe + 100) } as PartitionOptions);
          await check(q, model, 'reopened');
          await drive(q, model, cpe * 13 + 2, 60, 6);
          await check(q, model, 'reopened live');
          await waitIdle(q);
          await check(q, model, 'reopened idle');
          await q.close();
          // The partition whose power was lost is closed last (its index files land in a directory no one reads again).
          if (mode === 'crash') await p.close().catch(() => undefined);
        });
      }
    }
  }
});
