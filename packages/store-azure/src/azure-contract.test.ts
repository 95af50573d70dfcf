import { RestError } from '@azure/storage-blob';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter, ZERO_DIGEST, type SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, sameIdentity, type BatchIdentity, type PartitionStorage, type StorageReader } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAzureStorage, openAzureReader, type AzureStorageOptions } from './index.js';
import { createTestContainer, storedBlobs, type TestContainer } from './testing/azurite-context.fixture.js';
import { faultyContainer, type Faults } from './testing/faulty-container.fixture.js';

const te = new TextEncoder();

/** One sealed batch as the engine writes it. */
interface Batch {
  readonly bytes: Uint8Array;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly identity: BatchIdentity;
}

/** `count` chained batches of `perBatch` single-event commits after `head`. */
function batchesAfter(head: BatchIdentity, count: number, { perBatch = 2, epoch = head.epoch, tag = 'b', prevDigest }: { perBatch?: number; epoch?: number; tag?: string; prevDigest?: Uint8Array } = {}): Batch[] {
  const out: Batch[] = [];
  let prev = head;
  for (let b = 0; b < count; b++) {
    const writer = new FrameWriter();
    const firstSeq = prev.lastSeq + 1;
    for (let i = 0; i < perBatch; i++) {
      writer.appendEvent(firstSeq + i, epoch, 1000, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, `${tag}-${b}`, i + 1, 'E', undefined, undefined, te.encode(`${tag}-${b}-${i}`));
    }
    writer.seal(epoch, 1000, b === 0 && prevDigest !== undefined ? prevDigest : prev.digest);
    const identity = { lastSeq: firstSeq + perBatch - 1, epoch, digest: Uint8Array.from(writer.lastDigest) };
    out.push({ bytes: Uint8Array.from(writer.bytes()), firstSeq, lastSeq: identity.lastSeq, identity });
    prev = identity;
  }
  return out;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
    return undefined;
  } catch (error) {
    return error;
  }
}

const lastSeqs = (batches: readonly SealedBatch[]): number[] => batches.map((b) => b.lastSeq);
const networkError = (): RestError => new RestError('socket hang up', { code: 'ECONNRESET' });

// Invariants: storage refuses what would break the log (a fenced epoch, a broken chain) before
// anything reaches Azure; a cut (truncate, failed write) is a seal and a roll that survives
// reopening; readers in other processes see the same identities as the writer; after a failed
// write nothing written since the last sync is ever served again.
describe('storage contract v2 on Azure', () => {
  let container: TestContainer;
  const storages: PartitionStorage[] = [];
  const readers: StorageReader[] = [];

  beforeEach(async () => {
    container = await createTestContainer();
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) await r.close();
    for (const s of storages.splice(0)) await s.close();
    await container.destroy();
  });

  const options = (extra: Partial<AzureStorageOptions> = {}): AzureStorageOptions => ({
    connectionString: container.connectionString,
    container: container.name,
    prefix: 'log',
    ...extra,
  });
  const open = async (extra: Partial<AzureStorageOptions> = {}): Promise<PartitionStorage> => {
    const storage = createAzureStorage(options(extra));
    storages.push(storage);
    await storage.open();
    return storage;
  };
  const reader = async (): Promise<StorageReader> => {
    const r = await openAzureReader(options());
    readers.push(r);
    return r;
  };
  const writeAll = async (storage: PartitionStorage, batches: readonly Batch[]): Promise<BatchIdentity> => {
    for (const b of batches) await storage.write(b.bytes, b.firstSeq, b.lastSeq);
    return storage.sync();
  };
  const blobLengths = async (): Promise<number[]> => (await storedBlobs(container.client, 'log')).map((b) => b.length);

  it('says what it is: cross-process readers, commit durability, seal-and-roll truncate', async () => {
    const storage = createAzureStorage(options({ fsync: 'interval:100ms' }));
    expect(storage.capabilities).toEqual({ crossProcessReaders: true, durability: { kind: 'commit' }, truncate: 'seal-and-roll', frameReads: false });
    expect(() => createAzureStorage(options({ fsync: 'sometimes' as never }))).toThrow(/fsync "sometimes" is not a policy/);
  });

  it('refuses a batch sealed with a lower epoch at storage, before it reaches the blob, even though this writer holds the lease', async () => {
    const storage = await open();
    const [first] = batchesAfter(EMPTY_IDENTITY, 1, { epoch: 5 });
    await writeAll(storage, [first]);
    const lengths = await blobLengths();
    const [stale] = batchesAfter(first.identity, 1, { epoch: 4 });
    const fenced = await failure(() => storage.write(stale.bytes, stale.firstSeq, stale.lastSeq));
    expect(fenced).toMatchObject({ reason: 'Conflict', message: expect.stringMatching(/epoch 4, lower than epoch 5.*fenced/) });
    expect(await blobLengths()).toEqual(lengths);
    // Refused, not failed: the writer goes on with a valid batch.
    const [next] = batchesAfter(first.identity, 1, { epoch: 5 });
    expect(sameIdentity(await writeAll(storage, [next]), next.identity)).toBe(true);
    await storage.close();
    const again = await open();
    expect(sameIdentity(await again.head(), next.identity)).toBe(true);
  });

  it('refuses a batch that does not chain to the head, before it reaches the blob', async () => {
    const storage = await open();
    const [first] = batchesAfter(EMPTY_IDENTITY, 1);
    await writeAll(storage, [first]);
    const lengths = await blobLengths();
    const [foreign] = batchesAfter(first.identity, 1, { prevDigest: new Uint8Array(20).fill(7) });
    expect(await failure(() => storage.write(foreign.bytes, foreign.firstSeq, foreign.lastSeq))).toMatchObject({
      reason: 'Conflict',
      message: expect.stringMatching(/does not chain to the stored head/),
    });
    expect(await blobLengths()).toEqual(lengths);
    expect(await storage.lastSeq()).toBe(2);
  });

  it('verifies the chain across blobs at open: a foreign batch at the tail is dropped, one followed by another blob is Corrupt', async () => {
    const storage = await open({ blobBlocksMax: 1 });
    const batches = batchesAfter(EMPTY_IDENTITY, 2); // blob 1: seq 1-2, blob 2: seq 3-4
    await writeAll(storage, batches);
    await storage.close();
    // A well-formed batch of seq 5..6 from another history, after the last one.
    const [foreign] = batchesAfter(batches[1].identity, 1, { prevDigest: ZERO_DIGEST, tag: 'foreign' });
    await container.client.getAppendBlobClient('log/00000002.log').appendBlock(foreign.bytes, foreign.bytes.length);
    const again = createAzureStorage(options());
    storages.push(again);
    const recovery = await again.open();
    expect(recovery).toMatchObject({ lastSeq: 4, droppedBytes: foreign.bytes.length, droppedSeqs: 0, droppedReason: expect.stringMatching(/^broken-chain/) });
    expect(sameIdentity(recovery.head, batches[1].identity)).toBe(true);
    await again.close();
    const blobs = await storedBlobs(container.client, 'log');
    expect(blobs.map((b) => b.metadata.sluicesealedbytes)).toEqual([String(batches[0].bytes.length), String(batches[1].bytes.length), undefined]);
    expect(decodeURIComponent(blobs[1].metadata.sluicesealreason)).toMatch(/^recovery: broken-chain at offset \d+$/);

    // The same foreign batch inside the log (blob 2 unsealed, blob 3 after it) is not a tail: Corrupt.
    await container.client.getAppendBlobClient('log/00000002.log').setMetadata({ sluicefirstseq: '3' });
    const damaged = createAzureStorage(options());
    const error = await failure(() => damaged.open());
    await damaged.close();
    expect(error).toMatchObject({ reason: 'Corrupt', message: expect.stringMatching(/00000002\.log" is damaged at offset \d+ \(broken-chain: .* follows it/) });
  });

  it('truncates by sealing and rolling, recording the operator\'s reason; the log goes on and survives reopening', async () => {
    const storage = await open({ blobBlocksMax: 2 });
    const batches = batchesAfter(EMPTY_IDENTITY, 5); // blobs 1 (seq 1-4), 2 (5-8), 3 (9-10)
    await writeAll(storage, batches);
    const watcher = await reader();
    expect(await watcher.lastSeq()).toBe(10);
    expect(await failure(() => storage.truncate(3, { operatorReason: 'x' }))).toMatchObject({ reason: 'Invalid', message: expect.stringMatching(/not the end of a stored batch/) });
    expect(await failure(() => storage.truncate(2))).toMatchObject({ reason: 'Invalid', message: expect.stringMatching(/operatorReason/) });
    expect(await blobLengths()).toHaveLength(3);

    const head = await storage.truncate(2, { operatorReason: 'ops: restore from archive 2026-12-05' });
    expect(sameIdentity(head, batches[0].identity)).toBe(true);
    expect(sameIdentity(storage.durableHead(), head)).toBe(true);
    expect(await storage.identityAt(3)).toBeUndefined();
    const blobs = await storedBlobs(container.client, 'log');
    expect(blobs.map((b) => [b.name, b.metadata.sluicefirstseq, b.metadata.sluicesealedbytes])).toEqual([
      ['log/00000001.log', '1', String(batches[0].bytes.length)],
      ['log/00000002.log', '5', '0'],
      ['log/00000003.log', '9', '0'],
      ['log/00000004.log', '3', undefined],
    ]);
    for (const b of blobs.slice(0, 3)) expect(decodeURIComponent(b.metadata.sluicesealreason)).toMatch(/^truncate after seq 2 .*: ops: restore from archive 2026-12-05$/);
    // A reader that had seen the cut seqs is told so, not fed the other history.
    expect(await failure(() => watcher.lastSeq())).toMatchObject({ reason: 'Conflict', message: expect.stringMatching(/cut .* open a new reader/) });

    const replacement = batchesAfter(head, 3, { tag: 'new' });
    expect(sameIdentity(await writeAll(storage, replacement), replacement[2].identity)).toBe(true);
    expect(lastSeqs(await collect(storage.read(1, 100)))).toEqual([2, 4, 6, 8]);
    await storage.close();

    const again = await open({ blobBlocksMax: 2 });
    expect(sameIdentity(await again.head(), replacement[2].identity)).toBe(true);
    const read = await collect(again.read(1, 100));
    expect(read.map((b) => Array.from(b.bytes))).toEqual([batches[0], ...replacement].map((b) => Array.from(b.bytes)));
    for (const b of [batches[0], ...replacement]) expect(sameIdentity((await again.identityAt(b.lastSeq)) as BatchIdentity, b.identity)).toBe(true);
    const fresh = await reader();
    expect(sameIdentity(await fresh.head(), replacement[2].identity)).toBe(true);
  });

  it('refuses truncate while a write is in flight, and a write while truncate runs, with Invalid', async () => {
    const storage = await open();
    const [a, b, c] = batchesAfter(EMPTY_IDENTITY, 3);
    await writeAll(storage, [a]);
    const writing = storage.write(b.bytes, b.firstSeq, b.lastSeq);
    expect(await failure(() => storage.truncate(2))).toMatchObject({ reason: 'Invalid', message: expect.stringMatching(/in flight/) });
    await writing;
    const truncating = storage.truncate(2);
    expect(await failure(() => storage.write(c.bytes, 5, 6))).toMatchObject({ reason: 'Invalid', message: expect.stringMatching(/truncate\(\) runs/) });
    expect(sameIdentity(await truncating, a.identity)).toBe(true);
    // Neither refusal failed the storage.
    const [again] = batchesAfter(a.identity, 1, { tag: 'again' });
    expect(sameIdentity(await writeAll(storage, [again]), again.identity)).toBe(true);
  });

  it('truncates to empty and starts the log again', async () => {
    const storage = await open();
    await writeAll(storage, batchesAfter(EMPTY_IDENTITY, 2));
    expect(sameIdentity(await storage.truncate(0, { operatorReason: 'test: start over' }), EMPTY_IDENTITY)).toBe(true);
    const other = batchesAfter(EMPTY_IDENTITY, 1, { tag: 'other' });
    await writeAll(storage, other);
    await storage.close();
    const again = await open();
    expect(sameIdentity(await again.head(), other[0].identity)).toBe(true);
    expect((await collect(again.read(1, 10))).map((b) => b.frames[0].streamId)).toEqual(['other-0']);
  });

  it('gives a reader in another process the writer\'s head, identities and a tail that follows rolls', async () => {
    const storage = await open({ blobBlocksMax: 2 });
    const batches = batchesAfter(EMPTY_IDENTITY, 6);
    await writeAll(storage, batches.slice(0, 1));
    const r = await reader();
    expect(sameIdentity(await r.head(), batches[0].identity)).toBe(true);
    const seen: number[] = [];
    const tail = (async () => {
      for await (const batch of r.tail(1)) seen.push(batch.lastSeq);
    })();
    for (const b of batches.slice(1)) await writeAll(storage, [b]);
    await expect.poll(() => seen, { timeout: 10_000, interval: 20 }).toEqual([2, 4, 6, 8, 10, 12]);
    expect(sameIdentity(await r.head(), storage.durableHead())).toBe(true);
    for (const b of batches) {
      expect(sameIdentity((await r.identityAt(b.firstSeq)) as BatchIdentity, b.identity)).toBe(true);
      expect(sameIdentity((await r.identityAt(b.lastSeq)) as BatchIdentity, (await storage.identityAt(b.lastSeq)) as BatchIdentity)).toBe(true);
    }
    expect(await r.identityAt(0)).toBeUndefined();
    expect(await r.identityAt(13)).toBeUndefined();
    await r.close(); // ends the tail
    await tail;
    expect(await failure(() => r.head())).toMatchObject({ reason: 'Closed' });
  });

  it('ends an in-process tail when the storage closes', async () => {
    const storage = await open();
    await writeAll(storage, batchesAfter(EMPTY_IDENTITY, 1));
    const seen: number[] = [];
    const tail = (async () => {
      for await (const batch of storage.tail(1)) seen.push(batch.lastSeq);
    })();
    await expect.poll(() => seen).toEqual([2]);
    await storage.close();
    await tail;
  });

  it('after a failed write serves nothing written since the last sync, now or after reopening, even what reached the blob', async () => {
    let failing = false;
    const faults: Faults = {
      appendBlock: async (call) => {
        if (!failing) return call.real();
        if (call.options?.conditions?.appendPosition !== undefined && call.index >= 0 && !landed) {
          landed = true;
          await call.real(); // Azure stores the block, but the answer is lost...
        }
        throw networkError(); // ...and every retry fails before reaching it.
      },
    };
    let landed = false;
    const storage = createAzureStorage({ containerClient: faultyContainer(container.client, faults), prefix: 'log', attemptsMax: 2, retryDelayMs: 1 });
    storages.push(storage);
    await storage.open();
    const [a, b, c] = batchesAfter(EMPTY_IDENTITY, 3);
    await writeAll(storage, [a]);
    await storage.write(b.bytes, b.firstSeq, b.lastSeq); // written, never synced
    failing = true;
    const error = await failure(() => storage.write(c.bytes, c.firstSeq, c.lastSeq));
    expect(error).toMatchObject({ reason: 'Unavailable' });
    expect(landed).toBe(true);
    // Failed: later writes and syncs reject with the same error; readers stay at the durable head.
    expect(await failure(() => storage.sync())).toBe(error);
    expect(await failure(() => storage.write(c.bytes, c.firstSeq, c.lastSeq))).toBe(error);
    expect(sameIdentity(await storage.head(), a.identity)).toBe(true);
    expect(lastSeqs(await collect(storage.read(1, 100)))).toEqual([2]);
    expect(await storage.identityAt(3)).toBeUndefined();
    await storage.close(); // waits for the seal at the durable head

    const [blob] = await storedBlobs(container.client, 'log');
    expect(blob.metadata.sluicesealedbytes).toBe(String(a.bytes.length));
    expect(blob.length).toBe(a.bytes.length + b.bytes.length + c.bytes.length);
    const again = createAzureStorage(options());
    storages.push(again);
    const recovery = await again.open();
    expect(recovery).toMatchObject({ lastSeq: 2, droppedSeqs: 4, droppedBytes: 0, droppedReason: expect.stringMatching(/a write failed after seq 2/) });
    expect(sameIdentity(recovery.head, a.identity)).toBe(true);
    expect(lastSeqs(await collect(again.read(1, 100)))).toEqual([2]);
    // The log goes on from the durable head, in a new blob.
    const [b2] = batchesAfter(a.identity, 1, { tag: 'retry' });
    expect(sameIdentity(await writeAll(again, [b2]), b2.identity)).toBe(true);
    expect((await storedBlobs(container.client, 'log')).map((x) => [x.name, x.metadata.sluicefirstseq])).toEqual([
      ['log/00000001.log', '1'],
      ['log/00000002.log', '3'],
    ]);
    expect(sameIdentity(await (await reader()).head(), b2.identity)).toBe(true);
  });
});
