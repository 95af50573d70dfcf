import { describe, expect, it } from 'vitest';
import { MemoryLog, createMemoryStorage, openPartition, type Partition, type PartitionOptions, type PartitionStorage } from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');

/** Memory storage that counts `read` and `readFrames` calls; `frameReads: false` hides the capability. */
function countingStorage(log: MemoryLog, frameReads: boolean): { storage: PartitionStorage; reads: number[][]; frameCalls: number[][] } {
  const inner = createMemoryStorage({ log });
  const reads: number[][] = [];
  const frameCalls: number[][] = [];
  const capabilities = { ...inner.capabilities, frameReads };
  const read = (from: number, to: number) => {
    reads.push([from, to]);
    return inner.read(from, to);
  };
  const readFrames = (seqs: readonly number[]) => {
    frameCalls.push([...seqs]);
    return (inner.readFrames as NonNullable<PartitionStorage['readFrames']>)(seqs);
  };
  const storage = overrideStorage(inner, { capabilities, read, readFrames: frameReads ? readFrames : undefined });
  return { storage, reads, frameCalls };
}

/** 100 events of `target`, one per commit, each among 9 events of other streams: spread over 100+ batches. */
async function spreadStream(p: Partition): Promise<void> {
  for (let v = 0; v < 100; v++) {
    await p.append({ streamId: 'target', events: [{ type: `T${v + 1}`, data }] });
    await p.append({ streamId: `other-${v % 7}`, events: Array.from({ length: 9 }, () => ({ type: 'O', data })) });
  }
}

async function versions(p: Partition, streamId: string, options?: { fromVersion?: number; maxCount?: number }): Promise<number[]> {
  const out: number[] = [];
  for await (const e of p.readStream(streamId, options)) {
    expect(e.streamId).toBe(streamId);
    out.push(e.streamVersion);
  }
  return out;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('readStream through frame reads', () => {
  it('reads a 100-event stream spread over 200 batches with one readFrames call and no batch read', async () => {
    const log = new MemoryLog();
    const counting = countingStorage(log, true);
    const p = await openPartition({ storage: counting.storage });
    await spreadStream(p);
    expect(log.batches.length).toBe(200);
    counting.reads.length = 0;
    expect(await versions(p, 'target')).toEqual(range(1, 100));
    expect(counting.reads).toEqual([]);
    expect(counting.frameCalls).toHaveLength(1);
    expect(counting.frameCalls[0]).toEqual(range(0, 99).map((v) => 1 + v * 10));
    await p.close();
  });

  it('reads in bounded chunks of streamReadFramesMax seqs, and asks for no more than maxCount', async () => {
    const log = new MemoryLog();
    const counting = countingStorage(log, true);
    const p = await openPartition({ storage: counting.storage, streamReadFramesMax: 30 });
    await spreadStream(p);
    counting.reads.length = 0;
    expect(await versions(p, 'target')).toEqual(range(1, 100));
    expect(counting.frameCalls.map((c) => c.length)).toEqual([30, 30, 30, 10]);
    counting.frameCalls.length = 0;
    expect(await versions(p, 'target', { fromVersion: 50, maxCount: 10 })).toEqual(range(50, 59));
    expect(counting.frameCalls).toEqual([range(49, 58).map((v) => 1 + v * 10)]);
    expect(counting.reads).toEqual([]);
    await p.close();
  });

  it('falls back to batch reads when the backend has no frame reads', async () => {
    const log = new MemoryLog();
    const counting = countingStorage(log, false);
    const p = await openPartition({ storage: counting.storage });
    await spreadStream(p);
    counting.reads.length = 0;
    expect(await versions(p, 'target')).toEqual(range(1, 100));
    expect(counting.frameCalls).toEqual([]);
    expect(counting.reads.length).toBeGreaterThanOrEqual(100);
    await p.close();
  });

  it('drops frames of streams whose ids hash alike (64-bit collisions in the index tables)', async () => {
    const collide = (_s: string, out: Uint32Array): void => {
      out[0] = 7;
      out[1] = 7;
    };
    const log = new MemoryLog();
    const counting = countingStorage(log, true);
    const p = await openPartition({ storage: counting.storage, indexCheckpointEvents: 8, indexHash: collide } as PartitionOptions);
    await spreadStream(p);
    expect(p.indexStatus.tables).toBeGreaterThan(0);
    counting.frameCalls.length = 0;
    counting.reads.length = 0; // appends confirmed colliding versions against the log
    expect(await versions(p, 'target')).toEqual(range(1, 100));
    expect(await versions(p, 'other-3', { fromVersion: 40 })).toEqual(range(40, 14 * 9));
    // The collisions made the index name other streams' seqs too; the stream id check dropped them.
    expect(counting.frameCalls.flat().length).toBeGreaterThan(100 + 14 * 9 - 39);
    expect(counting.reads).toEqual([]);
    await p.close();
  });

  it('refuses an invalid streamReadFramesMax', async () => {
    await expect(openPartition({ storage: createMemoryStorage(), streamReadFramesMax: 0 })).rejects.toThrow(/streamReadFramesMax must be an integer from 1 to 65536/);
  });
});
