import { decodeBatches } from '@sluice/framing';
import { describe, expect, it } from 'vitest';
import { createMemoryStorage } from './memory-storage.js';
import { openPartition, type Partition } from './partition.js';
import { TailCache } from './tail-cache.js';
import type { PartitionStorage } from './storage.js';
import type { RecordedEvent } from './types.js';
import { overrideStorage } from './storage-override.fixture.js';

const te = new TextEncoder();

/** Storage whose batch reads are counted (seqs asked for), everything else passed through. */
function countingStorage(inner: PartitionStorage): { storage: PartitionStorage; reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  const storage = overrideStorage(inner, {
    read: (fromSeq, toSeq, options) => {
      reads.push([fromSeq, toSeq]);
      return inner.read(fromSeq, toSeq, options);
    },
  });
  return { storage, reads };
}

/** Starts a subscriber from `fromSeq` that collects seqs until it has `count` of them. */
function follow(p: Partition, fromSeq: number, count: number): { seqs: number[]; done: Promise<RecordedEvent[][]> } {
  const seqs: number[] = [];
  const batches: RecordedEvent[][] = [];
  const done = (async () => {
    for await (const batch of p.subscribe({ fromSeq })) {
      batches.push(batch);
      for (const e of batch) seqs.push(e.seq);
      if (seqs.length >= count) break;
    }
    return batches;
  })();
  return { seqs, done };
}

async function appendCommits(p: Partition, commits: number, eventsPer = 3, bytes = 100): Promise<void> {
  for (let i = 0; i < commits; i++) {
    await p.append({ streamId: `s-${i % 7}`, events: Array.from({ length: eventsPer }, (_, k) => ({ type: 'Moved', data: te.encode(`${i}.${k}`.padEnd(bytes, '.')) })) });
  }
}

/** Lets every subscriber take what was committed (they run on promise callbacks). */
async function settle(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('shared tail cache', () => {
  it('serves N live subscribers from memory: no storage reads for recently committed batches', async () => {
    const { storage, reads } = countingStorage(createMemoryStorage());
    const p = await openPartition({ storage, name: 'tail' });
    await appendCommits(p, 2); // seqs 1..6, before anyone subscribes
    const subscribers = Array.from({ length: 5 }, () => follow(p, 7, 60));
    await settle();
    const before = reads.length;
    await appendCommits(p, 20); // seqs 7..66
    const batches = await Promise.all(subscribers.map((s) => s.done));
    for (const s of subscribers) expect(s.seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 7));
    // Every batch came from the cache: storage was not read once for seqs 7..66.
    expect(reads.slice(before)).toEqual([]);
    expect(p.tailCacheStatus.decoded).toBeLessThanOrEqual(20); // each batch decoded once, for all five
    // Each subscriber got its own arrays (the cached one is shared): changing one harms no other.
    batches[0][0].length = 0;
    expect(batches[1][0].length).toBeGreaterThan(0);
    await p.close();
  });

  it('reads storage for every live batch when the cache is off (the control)', async () => {
    const { storage, reads } = countingStorage(createMemoryStorage());
    const p = await openPartition({ storage, name: 'tail', tailCacheBytes: 0 });
    const subscribers = Array.from({ length: 5 }, () => follow(p, 1, 30));
    await settle();
    await appendCommits(p, 10);
    await Promise.all(subscribers.map((s) => s.done));
    // Each of the five read each of the 30 seqs from storage.
    expect(reads.reduce((n, [from, to]) => n + to - from + 1, 0)).toBeGreaterThanOrEqual(5 * 30);
    await p.close();
  });

  it('stays within tailCacheBytes; a subscriber behind the cache reads storage up to it, then the cache', async () => {
    const { storage, reads } = countingStorage(createMemoryStorage());
    const limit = 8 * 1024;
    const p = await openPartition({ storage, name: 'tail', tailCacheBytes: limit });
    const live = follow(p, 1, 300);
    let maxHeld = 0;
    for (let i = 0; i < 100; i++) {
      await appendCommits(p, 1);
      maxHeld = Math.max(maxHeld, p.tailCacheStatus.bytes);
    }
    await live.done;
    expect(live.seqs).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(maxHeld).toBeGreaterThan(0);
    expect(maxHeld).toBeLessThanOrEqual(limit);
    const status = p.tailCacheStatus;
    expect(status.batches).toBeLessThan(100); // the oldest were evicted
    // A late subscriber: storage for what the cache no longer holds, the cache for the rest.
    const readsBefore = reads.length;
    const keepLive = follow(p, 301, 3); // keeps the cache filled while the late one catches up
    const late = follow(p, 1, 300);
    await late.done;
    expect(late.seqs).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    const lateReads = reads.slice(readsBefore);
    expect(lateReads.length).toBeGreaterThan(0);
    for (const [, to] of lateReads) expect(to).toBeLessThan(status.firstSeq);
    await appendCommits(p, 1);
    await keepLive.done;
    await p.close();
  });

  it('serves partition.read() of recent seqs from it while subscribers run', async () => {
    const { storage, reads } = countingStorage(createMemoryStorage());
    const p = await openPartition({ storage, name: 'tail' });
    const live = follow(p, 1, 30);
    await appendCommits(p, 10);
    await live.done;
    const before = reads.length;
    const second = follow(p, 31, 3); // a running subscriber keeps the cache
    const events: number[] = [];
    for await (const e of p.read({ fromSeq: 4, toSeq: 30 })) events.push(e.seq);
    expect(events).toEqual(Array.from({ length: 27 }, (_, i) => i + 4));
    expect(reads.slice(before)).toEqual([]);
    await appendCommits(p, 1);
    await second.done;
    await p.close();
  });

  it('keeps its own copy of each batch: commits made while a subscriber is busy come out intact', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'tail' });
    const sub = p.subscribe({ fromSeq: 1 });
    const first = sub.next(); // waits for the first commit
    await appendCommits(p, 1);
    expect((await first).value?.map((e: RecordedEvent) => e.seq)).toEqual([1, 2, 3]);
    // The subscriber is busy (not pulling): these go to the cache undecoded while the writer's
    // buffers are reused for the next groups.
    await appendCommits(p, 10);
    const seqs: number[] = [];
    const payloads: string[] = [];
    while (seqs.length < 30) {
      const { value } = await sub.next();
      for (const e of value ?? []) {
        seqs.push(e.seq);
        payloads.push(new TextDecoder().decode(e.payload).replace(/\.+$/, ''));
      }
    }
    expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => i + 4));
    expect(payloads.slice(0, 3)).toEqual(['0.0', '0.1', '0.2']);
    expect(payloads.slice(-3)).toEqual(['9.0', '9.1', '9.2']);
    await sub.return(undefined);
    await p.close();
  });

  it('refuses a bad tailCacheBytes', async () => {
    await expect(openPartition({ storage: createMemoryStorage(), tailCacheBytes: -1 })).rejects.toThrow(/tailCacheBytes must be an integer from 0/);
  });

  it('checks the CRC-32C of every frame of a cached batch before findSealed hands its bytes out (readers of sealed bytes build no frames to check them)', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'crc' });
    await appendCommits(p, 1);
    let sealed: { firstSeq: number; lastSeq: number; bytes: Uint8Array } | undefined;
    for await (const batch of p.subscribeSealed({ fromSeq: 1 })) {
      sealed = { firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, bytes: Uint8Array.from(batch.bytes) };
      break;
    }
    await p.close();
    const good = new TailCache(1 << 20);
    good.add(sealed!.firstSeq, sealed!.lastSeq, sealed!.bytes);
    expect(good.findSealed(sealed!.firstSeq)?.bytes).toEqual(sealed!.bytes);
    const corrupt = Uint8Array.from(sealed!.bytes);
    corrupt[60] ^= 0x01; // inside the first frame's stream id
    const bad = new TailCache(1 << 20);
    bad.add(sealed!.firstSeq, sealed!.lastSeq, corrupt);
    expect(() => bad.findSealed(sealed!.firstSeq)).toThrow(/does not check \(bad-checksum/);
  });

  it('subscribeSealed hands over the stored bytes of each batch: history from storage, live batches from the cache undecoded', async () => {
    const { storage, reads } = countingStorage(createMemoryStorage());
    const p = await openPartition({ storage, name: 'tail' });
    await appendCommits(p, 4); // seqs 1..12 before the subscriber: read from storage
    const expected: string[] = [];
    const got: string[] = [];
    const done = (async () => {
      let chain: Uint8Array | undefined;
      for await (const batch of p.subscribeSealed({ fromSeq: 5 })) {
        // The bytes are whole sealed batches: they decode (CRCs and digest checked) to the batch's frames.
        const { batches, report } = decodeBatches(batch.bytes, { firstSeq: batch.firstSeq, prevDigest: chain });
        expect(report.reason).toBe('end');
        expect(batches).toHaveLength(1);
        expect(batches[0].lastSeq).toBe(batch.lastSeq);
        chain = batches[0].marker.digest;
        for (const e of batches[0].frames) if (e.seq >= 5) got.push(`${e.seq}:${e.streamId}:${new TextDecoder().decode(e.payload)}`);
        if (batch.lastSeq >= 66) break;
      }
    })();
    await settle();
    const before = reads.length;
    const decodedBefore = p.tailCacheStatus.decoded;
    await appendCommits(p, 18); // seqs 13..66, live
    await done;
    expect(p.tailCacheStatus.decoded).toBe(decodedBefore); // nobody decoded the live batches
    for await (const e of p.read({ fromSeq: 5, toSeq: 66 })) expected.push(`${e.seq}:${e.streamId}:${new TextDecoder().decode(e.payload)}`);
    expect(got).toEqual(expected);
    expect(reads.slice(before).filter(([from]) => from > 12)).toEqual([]); // live batches: the cache, not storage
    await p.close();
  });
});
