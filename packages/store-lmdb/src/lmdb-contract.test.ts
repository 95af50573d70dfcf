import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter } from '@sluice/framing';
import {
  EMPTY_IDENTITY,
  PartitionFaultedError,
  openPartition,
  sameIdentity,
  type BatchIdentity,
  type CommitResult,
  type PartitionStorage,
  type StorageReader,
} from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TRUNCATIONS_KEY } from './batch-log.js';
import { createLmdbStorage, openLmdbReader } from './index.js';
import { openWriterEnv } from './lmdb-env.js';
import { createLmdbStorageWithFaults } from './lmdb-storage.js';

let directory: string;
const opened: Array<{ close(): Promise<void> }> = [];

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-lmdb-'));
});

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await rm(directory, { recursive: true, force: true });
});

const te = new TextEncoder();

interface Batch {
  readonly bytes: Uint8Array;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly identity: BatchIdentity;
}

/** `count` sealed batches of `perBatch` one-event commits after `prev`, as the engine seals them. */
function batches(prev: BatchIdentity, count: number, perBatch = 2, epoch = prev.epoch): Batch[] {
  const out: Batch[] = [];
  for (let b = 0; b < count; b++) {
    const writer = new FrameWriter();
    const firstSeq = prev.lastSeq + 1;
    for (let i = 0; i < perBatch; i++) {
      writer.appendEvent(firstSeq + i, epoch, 1, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', firstSeq + i, 'E', undefined, undefined, te.encode(`e${firstSeq + i}`));
    }
    writer.seal(epoch, 1, prev.digest);
    const identity = { lastSeq: firstSeq + perBatch - 1, epoch, digest: Uint8Array.from(writer.lastDigest) };
    out.push({ bytes: Uint8Array.from(writer.bytes()), firstSeq, lastSeq: identity.lastSeq, identity });
    prev = identity;
  }
  return out;
}

async function openStorage(storage: PartitionStorage): Promise<PartitionStorage> {
  await storage.open();
  opened.push(storage);
  return storage;
}

async function seqs(reader: StorageReader, from = 1, to = Number.MAX_SAFE_INTEGER): Promise<number[]> {
  const out: number[] = [];
  for await (const batch of reader.read(from, to)) for (const f of batch.frames) out.push(f.seq);
  return out;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('write and sync under fsync commit', () => {
  it('lets the next write go to LMDB while the previous sync runs; each sync covers exactly the writes before it; reads stop at the durable head', async () => {
    const storage = await openStorage(createLmdbStorage({ directory }));
    const [b1, b2, b3] = batches(EMPTY_IDENTITY, 3);
    await storage.write(b1.bytes, b1.firstSeq, b1.lastSeq);
    const sync1 = storage.sync();
    // Concurrency rule: one sync at a time, a write may overlap it.
    await expect(storage.sync()).rejects.toMatchObject({ reason: 'Invalid' });
    await storage.write(b2.bytes, b2.firstSeq, b2.lastSeq);
    b2.bytes.fill(0); // the caller reuses its buffer once write resolves
    expect(sameIdentity(await sync1, b1.identity)).toBe(true);
    expect(sameIdentity(storage.durableHead(), b1.identity)).toBe(true);
    expect(await seqs(storage)).toEqual(range(1, 2)); // b2 is written, not durable: not served
    expect(await storage.identityAt(3)).toBeUndefined();
    const sync2 = storage.sync();
    await storage.write(b3.bytes, b3.firstSeq, b3.lastSeq);
    expect(sameIdentity(await sync2, b2.identity)).toBe(true);
    expect(sameIdentity(await storage.sync(), b3.identity)).toBe(true);
    expect(await seqs(storage)).toEqual(range(1, 6));
    expect(sameIdentity((await storage.identityAt(3)) as BatchIdentity, b2.identity)).toBe(true);
  });

  it('keeps many pipelined writes in seq order through a partition, each acknowledged only once durable', async () => {
    const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
    opened.push(partition);
    const results = await Promise.all(range(1, 200).map((i) => partition.append({ streamId: `s-${i % 7}`, events: [{ type: 'E', data: te.encode(`v${i}`) }] })));
    expect(results.map((r) => r.firstSeq)).toEqual(range(1, 200));
    await partition.close();
    const again = await openPartition({ storage: createLmdbStorage({ directory }) });
    opened.push(again);
    expect(again.lastSeq).toBe(200);
    expect(again.recovery).toMatchObject({ droppedBytes: 0, droppedSeqs: 0 });
  });
});

describe('writes that do not continue the log', () => {
  it('refuses a write sealed with a lower epoch than the head (a fenced writer) with Conflict, and keeps working', async () => {
    const storage = await openStorage(createLmdbStorage({ directory }));
    const [b1] = batches(EMPTY_IDENTITY, 1, 2, 3);
    await storage.write(b1.bytes, b1.firstSeq, b1.lastSeq);
    await storage.sync();
    const [stale] = batches(b1.identity, 1, 2, 2);
    await expect(storage.write(stale.bytes, stale.firstSeq, stale.lastSeq)).rejects.toMatchObject({ reason: 'Conflict', message: expect.stringMatching(/fenced/) });
    const [next] = batches(b1.identity, 1, 2, 4);
    await storage.write(next.bytes, next.firstSeq, next.lastSeq);
    expect(sameIdentity(await storage.sync(), next.identity)).toBe(true);
  });

  it('refuses a batch that does not chain to the head with Conflict, and keeps working', async () => {
    const storage = await openStorage(createLmdbStorage({ directory }));
    const [b1] = batches(EMPTY_IDENTITY, 1);
    await storage.write(b1.bytes, b1.firstSeq, b1.lastSeq);
    const [foreign] = batches({ lastSeq: 2, epoch: 0, digest: new Uint8Array(20).fill(9) }, 1);
    await expect(storage.write(foreign.bytes, foreign.firstSeq, foreign.lastSeq)).rejects.toMatchObject({ reason: 'Conflict', message: expect.stringMatching(/chain/) });
    const [b2] = batches(b1.identity, 1);
    await storage.write(b2.bytes, b2.firstSeq, b2.lastSeq);
    expect(sameIdentity(await storage.sync(), b2.identity)).toBe(true);
  });
});

describe('truncate', () => {
  it('cuts inside a multi-batch write, refuses below the durable head without an operator reason, and records the reason in LMDB', async () => {
    let storage = await openStorage(createLmdbStorage({ directory }));
    const [b1, b2, b3, b4] = batches(EMPTY_IDENTITY, 4);
    const joined = new Uint8Array([...b1.bytes, ...b2.bytes, ...b3.bytes]); // one write, one LMDB entry
    await storage.write(joined, 1, 6);
    await storage.sync();
    await storage.write(b4.bytes, b4.firstSeq, b4.lastSeq); // written, not synced
    await expect(storage.truncate(5)).rejects.toMatchObject({ reason: 'Invalid', message: expect.stringMatching(/not the end of a stored batch/) });
    expect(sameIdentity(await storage.truncate(6), b3.identity)).toBe(true); // the unsynced tail: no reason needed
    await expect(storage.truncate(2)).rejects.toMatchObject({ reason: 'Invalid', message: expect.stringMatching(/operatorReason/) });
    expect(sameIdentity(await storage.truncate(2, { operatorReason: 'ops: test restore' }), b1.identity)).toBe(true);
    expect(sameIdentity(storage.durableHead(), b1.identity)).toBe(true);
    const [c2] = batches(b1.identity, 1);
    await storage.write(c2.bytes, c2.firstSeq, c2.lastSeq);
    await storage.sync();
    await storage.close();

    storage = await openStorage(createLmdbStorage({ directory }));
    expect(sameIdentity(await storage.head(), c2.identity)).toBe(true);
    expect(await seqs(storage)).toEqual(range(1, 4));
    await storage.close();
    const env = openWriterEnv(directory, { kind: 'commit' }, 1 << 20);
    try {
      const records = new TextDecoder().decode(env.meta.getBinary(TRUNCATIONS_KEY)).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records).toEqual([expect.objectContaining({ afterSeq: 2, removedThroughSeq: 6, durableSeq: 6, operatorReason: 'ops: test restore', at: expect.any(String) })]);
    } finally {
      await env.close();
    }
  });

  it('refuses a write or sync while a truncate runs with Invalid', async () => {
    const storage = await openStorage(createLmdbStorage({ directory }));
    const [b1, b2] = batches(EMPTY_IDENTITY, 2);
    await storage.write(b1.bytes, 1, 2);
    await storage.sync();
    const truncating = storage.truncate(2);
    await expect(storage.write(b2.bytes, 3, 4)).rejects.toMatchObject({ reason: 'Invalid' });
    await expect(storage.sync()).rejects.toMatchObject({ reason: 'Invalid' });
    await truncating;
    await storage.write(b2.bytes, 3, 4);
    expect(sameIdentity(await storage.sync(), b2.identity)).toBe(true);
  });

  it('truncates to empty', async () => {
    const storage = await openStorage(createLmdbStorage({ directory }));
    const [b1] = batches(EMPTY_IDENTITY, 1);
    await storage.write(b1.bytes, 1, 2);
    await storage.sync();
    expect(await storage.truncate(0, { operatorReason: 'ops: wipe' })).toMatchObject({ lastSeq: 0 });
    expect(await seqs(storage)).toEqual([]);
    const [again] = batches(EMPTY_IDENTITY, 1, 3);
    await storage.write(again.bytes, 1, 3);
    expect(sameIdentity(await storage.sync(), again.identity)).toBe(true);
  });
});

/**
 * Invariant 9: after a failed write or sync, nothing written since the last successful sync is
 * ever served as committed, not even after a reopen, though LMDB had committed it.
 */
describe('a failed sync', () => {
  it('fails the storage for good, and a reopen cuts what was written after the last successful sync although LMDB committed it', async () => {
    let failNext = false;
    const storage = await openStorage(createLmdbStorageWithFaults({ directory }, { syncFault: () => (failNext ? new Error('EIO: injected fsync failure') : undefined) }));
    const [b1, b2, b3] = batches(EMPTY_IDENTITY, 3);
    await storage.write(b1.bytes, 1, 2);
    await storage.sync();
    await storage.write(b2.bytes, 3, 4);
    await storage.write(b3.bytes, 5, 6);
    failNext = true;
    const failure = await storage.sync().catch((e: unknown) => e);
    expect(failure).toMatchObject({ reason: 'Unavailable', message: expect.stringMatching(/injected fsync failure/) });
    const [b4] = batches(b3.identity, 1);
    await expect(storage.write(b4.bytes, 7, 8)).rejects.toBe(failure);
    await expect(storage.sync()).rejects.toBe(failure);
    expect(sameIdentity(storage.durableHead(), b1.identity)).toBe(true);
    expect(await seqs(storage)).toEqual(range(1, 2));
    await storage.close();

    const fresh = createLmdbStorage({ directory });
    const found = await fresh.open();
    opened.push(fresh);
    expect(found).toMatchObject({ lastSeq: 2, droppedSeqs: 4, droppedBytes: 0, droppedReason: expect.stringMatching(/failed after seq 2/) });
    expect(sameIdentity(found.head, b1.identity)).toBe(true);
    expect(await seqs(fresh)).toEqual(range(1, 2));
    await fresh.close();
    const third = createLmdbStorage({ directory });
    expect(await third.open()).toMatchObject({ lastSeq: 2, droppedSeqs: 0 }); // the failure record was cleared
    await third.close();
  });

  it('through a partition: the failed commit is rejected, the partition faults, and a reopen never reports it (nor takes its command id as applied)', async () => {
    let fail = false;
    const partition = await openPartition({ storage: createLmdbStorageWithFaults({ directory }, { syncFault: () => (fail ? new Error('injected') : undefined) }) });
    opened.push(partition);
    const acked: CommitResult[] = [];
    for (let i = 0; i < 5; i++) acked.push(await partition.append({ streamId: 's', commandId: `c-${i}`, events: [{ type: 'E', data: te.encode(`ok-${i}`) }] }));
    fail = true;
    await expect(partition.append({ streamId: 's', commandId: 'c-lost', events: [{ type: 'E', data: te.encode('lost') }] })).rejects.toThrow(/injected/);
    await expect(partition.append({ streamId: 's', events: [{ type: 'E', data: te.encode('after') }] })).rejects.toBeInstanceOf(PartitionFaultedError);
    await partition.close();

    const again = await openPartition({ storage: createLmdbStorage({ directory }) });
    opened.push(again);
    expect(again.lastSeq).toBe(5);
    expect(again.recovery).toMatchObject({ droppedSeqs: 1 });
    const retried = await again.append({ streamId: 's', commandId: 'c-lost', events: [{ type: 'E', data: te.encode('lost') }] });
    expect(retried).toMatchObject({ duplicate: false, firstSeq: 6 });
    expect((await again.append({ streamId: 's', commandId: 'c-4', events: [{ type: 'E', data: te.encode('ok-4') }] })).duplicate).toBe(true);
  });
});

describe('a version 1 partition (no head record)', () => {
  it('is opened by the writer, which records its head and upgrades the layout', async () => {
    const [b1, b2] = batches(EMPTY_IDENTITY, 2);
    const env = openWriterEnv(directory, { kind: 'commit' }, 1 << 20);
    await env.batches.put(1, b1.bytes);
    await env.batches.put(3, b2.bytes);
    await env.root.transaction(() => env.meta.putSync('layout', te.encode('sluice-lmdb/1 key=firstSeq value=append-bytes')));
    await env.close();
    const reader = await openLmdbReader({ directory });
    expect(sameIdentity(await reader.head(), b2.identity)).toBe(true); // readers find its head by decoding
    expect(await seqs(reader)).toEqual(range(1, 4));
    await reader.close();
    const storage = createLmdbStorage({ directory });
    const recovery = await storage.open();
    opened.push(storage);
    expect(sameIdentity(recovery.head, b2.identity)).toBe(true);
    await storage.close();
    const reopened = openWriterEnv(directory, { kind: 'commit' }, 1 << 20);
    try {
      expect(new TextDecoder().decode(reopened.meta.getBinary('layout'))).toMatch(/^sluice-lmdb\/2/);
      expect(reopened.meta.getBinary('head')).toBeDefined();
    } finally {
      await reopened.close();
    }
  });
});
