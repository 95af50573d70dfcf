import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryLog, createMemoryStorage, openPartition, type EventData } from './index.js';

const data = new Uint8Array(16);
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'sluice-checkpoint-'));
  dirs.push(d);
  return d;
}
/** One turn of the event loop (what a blocked main thread cannot give). */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('index checkpoints off the main thread', () => {
  it('appends keep being acknowledged while a large checkpoint is built, and the checkpoint then answers like the memtable', { timeout: 120_000 }, async () => {
    const checkpointEvents = 262_144;
    const p = await openPartition({ storage: createMemoryStorage(), name: 'big', indexDirectory: await tempDir(), indexCheckpointEvents: checkpointEvents });
    try {
      const batch: EventData[] = Array.from({ length: 1024 }, () => ({ type: 'E', data }));
      // 50,000 streams: the checkpoint sorts 262,144 entries of many different hashes.
      let lastFill = 0;
      while (p.indexStatus.checkpointsStarted === 0) {
        const i = lastFill++;
        await p.append({ streamId: `s-${i % 50_000}`, events: batch.slice(0, 1 + (i % 7)) });
        if (i % 64 === 0 && p.indexStatus.checkpointsStarted === 0) await p.append({ streamId: `bulk-${i}`, events: batch });
      }
      expect(p.indexStatus.checkpointsInstalled).toBe(0);
      expect(p.indexStatus.checkpointThread).toBe('worker');
      // Single appends, one at a time, each followed by one turn of the event loop, until the checkpoint is in.
      let acks = 0;
      while (p.indexStatus.checkpointsInstalled === 0) {
        const r = await p.append({ streamId: `live-${acks % 10}`, events: [{ type: 'L', data }], expectedVersion: Math.floor(acks / 10) });
        expect(r.lastSeq).toBeGreaterThan(checkpointEvents);
        acks++;
        await turn();
      }
      // Inline (on the main thread) the checkpoint runs at the first turn and installs before a second ack.
      expect(acks).toBeGreaterThan(10);
      expect(p.indexStatus.checkpointSeq).toBeGreaterThanOrEqual(checkpointEvents);
      expect(p.indexStatus.tables).toBe(1);
      // Answers now come from the table (confirmed against the log) and the memtable alike.
      expect(await p.currentVersion('s-1')).toBe(countOf(1));
      expect(await p.currentVersion('live-3')).toBe(Math.floor((acks - 1 - 3) / 10) + 1);
      await expect(p.append({ streamId: 's-1', events: [{ type: 'E', data }], expectedVersion: 0 })).rejects.toThrow(/version/i);

      function countOf(stream: number): number {
        // s-k received 1 + (i % 7) events for every i ≡ k (mod 50,000) appended before the checkpoint started.
        let n = 0;
        for (let i = stream; i < lastFill; i += 50_000) n += 1 + (i % 7);
        return n;
      }
    } finally {
      await p.close();
    }
  });

  it('bounds the memtable: beyond twice indexCheckpointEvents, appends wait for the checkpoint in flight (back-pressure)', { timeout: 120_000 }, async () => {
    const checkpointEvents = 2_000;
    const unit = 500;
    const p = await openPartition({ storage: createMemoryStorage(), name: 'bp', indexCheckpointEvents: checkpointEvents, batchBytesMax: 64 * 1024, groupsInFlightMax: 2 });
    try {
      const events: EventData[] = Array.from({ length: unit }, () => ({ type: 'E', data }));
      let memtableMax = 0;
      // A flood: 400 units of 500 events submitted at once, far faster than a worker round trip
      // (without back-pressure the memtable reaches about 76,000 events here).
      await Promise.all(
        Array.from({ length: 400 }, (_, i) =>
          p.append({ streamId: `s-${i}`, events }).then(() => {
            memtableMax = Math.max(memtableMax, p.indexStatus.memtableEvents);
          }),
        ),
      );
      expect(p.indexStatus.checkpointWaits).toBeGreaterThan(0);
      // The memtable never held more than twice the checkpoint size plus the unit admitted last.
      expect(memtableMax).toBeLessThanOrEqual(2 * checkpointEvents + unit);
      expect(p.indexStatus.checkpointsInstalled).toBeGreaterThan(10);
      for (const i of [0, 199, 399]) expect(await p.currentVersion(`s-${i}`)).toBe(unit);
      expect(p.streamCount).toBe(400);
    } finally {
      await p.close();
    }
  });

  it('open replays the log after the last checkpoint without merging tables meanwhile; merges follow once it is open', { timeout: 120_000 }, async () => {
    const log = new MemoryLog();
    const indexDirectory = await tempDir();
    const options = { name: 'replay', indexDirectory, indexCheckpointEvents: 256 };
    const events: EventData[] = Array.from({ length: 128 }, () => ({ type: 'E', data }));
    // A log whose last 8,192 events were appended by a partition without the index directory:
    // the next open with it replays them, checkpointing every 256 events (32 tables to merge).
    const first = await openPartition({ storage: createMemoryStorage({ log }), ...options });
    for (let i = 0; i < 16; i++) await first.append({ streamId: `a-${i}`, events });
    await first.close();
    const unindexed = await openPartition({ storage: createMemoryStorage({ log }), name: 'replay' });
    for (let i = 0; i < 64; i++) await unindexed.append({ streamId: `b-${i}`, events });
    await unindexed.close();
    const p = await openPartition({ storage: createMemoryStorage({ log }), ...options });
    try {
      expect(p.indexStatus.replayedFrames).toBe(64 * 128);
      expect(p.indexStatus.checkpointsInstalled).toBeGreaterThan(8);
      // Merges of equal-level tables would have run between those checkpoints, and open waited for them.
      expect(p.indexStatus.mergesDuringReplay).toBe(0);
      for (const i of [0, 63]) expect(await p.currentVersion(`b-${i}`)).toBe(128);
      // Held-back merges start once open is done: the next checkpoint's maintenance runs them.
      await p.append({ streamId: 'c', events: Array.from({ length: 300 }, () => ({ type: 'E', data })) });
      while (p.indexStatus.mergesStarted === 0) await turn();
      expect(p.indexStatus.mergesDuringReplay).toBe(0);
    } finally {
      await p.close();
    }
  });

  it('a stream the checkpoint takes out of the memtable goes on counting versions from the checkpoint', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'retire', indexCheckpointEvents: 8 });
    try {
      const one: EventData[] = [{ type: 'E', data }];
      await p.append({ streamId: 'x', events: one, expectedVersion: 'no-stream' });
      for (let i = 0; i < 6; i++) await p.append({ streamId: `f-${i}`, events: one });
      // The memtable's entry for x is the one last looked up when the checkpoint (8 events, x's
      // among them) installs and moves x out of the memtable: the engine must not go on updating it.
      await p.append({ streamId: 'x', events: one, expectedVersion: 1 });
      while (p.indexStatus.checkpointsInstalled === 0) await turn();
      await p.append({ streamId: 'x', events: one, expectedVersion: 2 });
      await p.append({ streamId: 'x', events: one, expectedVersion: 3 });
      expect(await p.currentVersion('x')).toBe(4);
      await expect(p.append({ streamId: 'x', events: one, expectedVersion: 3 })).rejects.toThrow(/version/i);
      const versions: number[] = [];
      for await (const e of p.read()) if (e.streamId === 'x') versions.push(e.streamVersion);
      expect(versions).toEqual([1, 2, 3, 4]);
    } finally {
      await p.close();
    }
  });
});
