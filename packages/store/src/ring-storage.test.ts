import { MARKER_BYTES, readU53 } from '@sluice/framing';
import { describe, expect, it } from 'vitest';
import { MemoryLog, createMemoryStorage, createRingStorage, openPartition, type PartitionStorage } from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const te = new TextEncoder();
const td = new TextDecoder();

/** A memory location that counts reads and can hold its syncs (a slow disk). */
function slowDurable(log: MemoryLog): { storage: PartitionStorage; reads: () => number; hold: () => () => void } {
  const inner = createMemoryStorage({ log });
  let reads = 0;
  let gate: Promise<void> = Promise.resolve();
  const storage = overrideStorage(inner, {
    read: (fromSeq, toSeq, options) => (reads++, inner.read(fromSeq, toSeq, options)),
    sync: async () => (await gate, inner.sync()),
  });
  const hold = (): (() => void) => {
    let release!: () => void;
    gate = new Promise((resolve) => (release = resolve));
    return release;
  };
  return { storage, reads: () => reads, hold };
}

describe('ring location, acknowledge mode', () => {
  it('acknowledges from memory, drains in order, and loses exactly the undrained window on a crash', async () => {
    const log = new MemoryLog();
    const durable = slowDurable(log);
    const ring = createRingStorage({ mode: 'acknowledge', durable: durable.storage, capacityBytes: 1 << 20 });
    const p = await openPartition({ storage: ring, name: 'fast' });
    for (let i = 1; i <= 10; i++) await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(`v${i}`) }] });
    await ring.drained();
    expect(ring.ringState()).toMatchObject({ drainedSeq: 10, undrainedSeqs: 0 });
    const release = durable.hold(); // the disk stalls: acknowledgements go on from the ring
    for (let i = 11; i <= 30; i++) await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(`v${i}`) }] });
    expect(p.lastSeq).toBe(30);
    const state = ring.ringState();
    expect(state.undrainedSeqs).toBeGreaterThanOrEqual(19);
    expect(state.drainedSeq).toBeLessThanOrEqual(11);
    // The process dies now: what the disk holds is what was drained; the rest, acknowledged
    // from the ring, is the documented loss window, and no more than that.
    log.powerLoss();
    const kept = log.lastSeqs.at(-1) ?? 0;
    expect(kept).toBe(state.drainedSeq);
    expect(30 - kept).toBe(state.undrainedSeqs);
    void release;
    const reopened = await openPartition({ storage: createMemoryStorage({ log }) });
    expect(reopened.lastSeq).toBe(kept);
    await reopened.close();
  });

  it("drains the engine's batches one write each (a marker check), not joined (a full re-verification), while the ring wraps and compacts", async () => {
    const log = new MemoryLog();
    const durable = slowDurable(log);
    const writes: Array<[number, number]> = [];
    let joined = 0;
    const counting = overrideStorage(durable.storage, {
      write: (bytes, first, last) => {
        writes.push([first, last]);
        // One batch: its marker (the last bytes) starts at the write's first seq.
        if (readU53(bytes, bytes.length - MARKER_BYTES + 8) !== first) joined++;
        return durable.storage.write(bytes, first, last);
      },
    });
    const ring = createRingStorage({ mode: 'acknowledge', durable: counting, capacityBytes: 64 * 1024 });
    const p = await openPartition({ storage: ring, name: 'drain' });
    let release = durable.hold();
    // One append at a time: a batch each, acknowledged from the ring while the disk's syncs are
    // held, so each drain finds many batches waiting.
    for (let i = 1; i <= 3000; i++) {
      await p.append({ streamId: `s-${i % 5}`, events: [{ type: 'E', data: te.encode(`v${i}`) }] });
      if (i % 100 === 0) {
        // A sync completes per period, covering what was written when it started: at most two
        // periods (~30 KB) are undrained, and the 64 KiB ring wraps about seven times.
        release();
        release = durable.hold();
      }
    }
    release();
    await ring.drained();
    // Every write names one batch of the engine, in order, without a gap.
    let next = 1;
    for (const [first, last] of writes) {
      expect(first).toBe(next);
      next = last + 1;
    }
    expect(next).toBe(3001);
    expect(joined).toBe(0);
    expect(writes.length).toBe(3000);
    await p.close();
    const reopened = await openPartition({ storage: createMemoryStorage({ log }) });
    const seen: string[] = [];
    for await (const e of reopened.read()) seen.push(td.decode(e.payload));
    expect(seen).toEqual(Array.from({ length: 3000 }, (_, i) => `v${i + 1}`));
    await reopened.close();
  });

  it('makes a writer wait while the ring is full of undrained batches (bounded bytes), then goes on', async () => {
    const log = new MemoryLog();
    const durable = slowDurable(log);
    const ring = createRingStorage({ mode: 'acknowledge', durable: durable.storage, capacityBytes: 64 * 1024 });
    const p = await openPartition({ storage: ring, name: 'bounded', batchBytesMax: 4096 });
    const release = durable.hold();
    const appends = Array.from({ length: 40 }, (_, i) => p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(3000).fill(i) }] }));
    let acknowledged = 0;
    for (const a of appends) void a.then(() => acknowledged++);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // 40 × 3 KB does not fit in 64 KiB: part is acknowledged, the rest waits for the disk.
    expect(acknowledged).toBeGreaterThan(5);
    expect(acknowledged).toBeLessThan(40);
    expect(ring.ringState().usedBytes).toBeLessThanOrEqual(64 * 1024);
    release();
    await Promise.all(appends);
    await p.close();
    expect(log.lastSeqs.at(-1)).toBe(40);
  });

  it('serves readers of recent data from the ring, older data from the durable location', async () => {
    const log = new MemoryLog();
    const durable = slowDurable(log);
    const ring = createRingStorage({ mode: 'acknowledge', durable: durable.storage, capacityBytes: 64 * 1024 });
    const p = await openPartition({ storage: ring, name: 'reads' });
    for (let i = 1; i <= 200; i++) await p.append({ streamId: `s-${i % 2}`, events: [{ type: 'E', data: te.encode(`v${i}`.padEnd(500, '.')) }] });
    await ring.drained();
    const [first] = ring.ringState().seqs as [number, number];
    expect(first).toBeGreaterThan(1); // the oldest were evicted once drained
    const before = durable.reads();
    const recent: string[] = [];
    for await (const e of p.read({ fromSeq: first })) recent.push(td.decode(e.payload).replace(/\.+$/, ''));
    expect(durable.reads()).toBe(before);
    expect(recent).toEqual(Array.from({ length: 200 - first + 1 }, (_, i) => `v${first + i}`));
    const all: number[] = [];
    for await (const e of p.read()) all.push(e.seq);
    expect(all).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(durable.reads()).toBeGreaterThan(before);
    await p.close();
  });
});

describe('ring location, cache mode', () => {
  it('acknowledges only what the durable location holds durably', async () => {
    const log = new MemoryLog();
    const durable = slowDurable(log);
    const ring = createRingStorage({ mode: 'cache', durable: durable.storage });
    const p = await openPartition({ storage: ring, name: 'cached' });
    await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('1') }] });
    const release = durable.hold();
    let acknowledged = false;
    const pending = p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('2') }] }).then(() => (acknowledged = true));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(acknowledged).toBe(false);
    release();
    await pending;
    expect(log.syncedCount).toBe(2);
    await p.close();
  });
});
