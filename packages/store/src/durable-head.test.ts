import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryLog, createMemoryStorage, createMirroredStorage, openPartition, type Partition, type PartitionStorage } from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');
const clock = (): number => 1_700_000_000_000;
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function withSync(inner: PartitionStorage, sync: (t: PartitionStorage) => Promise<unknown>): PartitionStorage {
  return overrideStorage(inner, { sync: () => sync(inner) as ReturnType<PartitionStorage['sync']> });
}
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** A location whose sync returns its own (correct) head two event-loop turns late. */
const slowSync = (s: PartitionStorage): PartitionStorage =>
  withSync(s, async (t) => {
    const head = await t.sync();
    await turn();
    await turn();
    return head;
  });
/** A sync that starts a turn late, so it covers (and names) writes made after it was called. */
const lateSync = (s: PartitionStorage): PartitionStorage =>
  withSync(s, async (t) => {
    await turn();
    return t.sync();
  });

async function waitIdle(p: Partition): Promise<void> {
  for (let i = 0; i < 1000 && p.indexStatus.busy; i++) await new Promise((r) => setTimeout(r, 5));
}

// A storage may report a durable head past the groups the engine has seen durable (a mirror of
// locations durable on write, a sync that covers later writes). The index must checkpoint at
// what the engine made durable: the commits after it are still in flight, their command ids
// not yet in the table (found in review: a checkpoint past them threw inside the engine, and
// before the command-id memtable it dropped their ids: retries were taken as new commands).
describe('an index checkpoint when the storage reports a durable head past the commits the engine made durable', () => {
  for (const mode of ['a mirror of locations durable on write', 'a late sync, then power loss and reopen'] as const) {
    it(`${mode}: every commit settles, and every command id is still known`, async () => {
      const errors: unknown[] = [];
      const onUnhandled = (e: unknown): void => void errors.push(e);
      process.on('unhandledRejection', onUnhandled);
      try {
        const log = new MemoryLog();
        const crash = mode.startsWith('a late sync');
        const storage = crash
          ? lateSync(createMemoryStorage({ log }))
          : createMirroredStorage({
              locations: [
                { storage: slowSync(createMemoryStorage({ log, fsync: 'none' })), label: 'a' },
                { storage: createMemoryStorage({ log: new MemoryLog(), fsync: 'none' }), label: 'b' },
              ],
            });
        const dir = crash ? await mkdtemp(join(tmpdir(), 'sluice-durable-head-')) : undefined;
        if (dir !== undefined) dirs.push(dir);
        const p = await openPartition({ storage, indexDirectory: dir, indexCheckpointEvents: 4, groupsInFlightMax: 8, batchBytesMax: 1024, clock, onIndexError: (e) => errors.push(e) });
        const acks = Array.from({ length: 400 }, (_, i) => p.commit({ changes: [{ streamId: `s-${i % 7}`, events: [{ type: 'E', data }] }], commandIds: [`c-${i}`] }));
        const settled = await Promise.allSettled(acks);
        expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
        expect(errors.map(String)).toEqual([]);
        expect(p.indexStatus.checkpointsStarted).toBeGreaterThan(0);
        if (!crash) {
          await p.close();
          return;
        }
        await waitIdle(p);
        log.powerLoss();
        const q = await openPartition({ storage: createMemoryStorage({ log }), indexDirectory: dir, indexCheckpointEvents: 4, clock });
        const takenAsNew: number[] = [];
        for (let i = 0; i < 400; i++) {
          const r = await q.commit({ changes: [{ streamId: 'z', events: [{ type: 'E', data }] }], commandIds: [`c-${i}`] });
          if (!r.duplicate) takenAsNew.push(i);
        }
        expect(takenAsNew).toEqual([]);
        await q.close();
        await p.close().catch(() => undefined);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  }
});
