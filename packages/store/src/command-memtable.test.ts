import { describe, expect, it } from 'vitest';
import { CommandHashes, CommandMemtable } from './command-memtable.js';
import { hash64 } from './hash64.js';
import { CommandIdConflictError, MemoryLog, createMemoryStorage, openPartition, type CommitResult, type PartitionOptions, type PartitionStorage } from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');
const clock = (): number => 1_700_000_000_000;

/** Every id hashes alike: each look-up in the memtable is a hash hit that only confirmation can tell apart. */
const collide = (_s: string, out: Uint32Array): void => {
  out[0] = 7;
  out[1] = 7;
};

/** Memory storage that records the seq ranges read from it. */
function countingStorage(log: MemoryLog): { storage: PartitionStorage; reads: Array<[number, number]> } {
  const inner = createMemoryStorage({ log });
  const reads: Array<[number, number]> = [];
  const storage = overrideStorage(inner, {
    read: (from: number, to: number) => {
      reads.push([from, to]);
      return inner.read(from, to);
    },
  });
  return { storage, reads };
}

describe('CommandMemtable', () => {
  it('finds every entry of a hash, oldest first, across growth and after dropping a durable prefix', () => {
    const t = new CommandMemtable<string>(16);
    const records: string[] = [];
    for (let i = 0; i < 100; i++) {
      records.push(`r${i}`);
      // Hashes 0..9 repeat: ten entries share each hash.
      t.add(i % 10, 1000 + (i % 10), i + 1, records[i]);
    }
    expect(t.size).toBe(100);
    expect(t.find(3, 1003)).toBe(10);
    expect(t.hits.map((e) => t.seq[e])).toEqual([4, 14, 24, 34, 44, 54, 64, 74, 84, 94]);
    expect(t.hits.map((e) => t.record(e))).toEqual(['r3', 'r13', 'r23', 'r33', 'r43', 'r53', 'r63', 'r73', 'r83', 'r93']);
    expect(t.find(3, 1004)).toBe(0);
    expect(t.find(11, 1011)).toBe(0);
    for (let i = 0; i < 60; i++) t.durable(records[i]);
    expect(t.durableCount).toBe(60);
    expect(t.countAtOrBelow(50)).toBe(50);
    t.drop(50);
    expect(t.size).toBe(50);
    expect(t.find(3, 1003)).toBe(5);
    expect(t.hits.map((e) => [t.seq[e], t.record(e)])).toEqual([
      [54, undefined],
      [64, 'r63'],
      [74, 'r73'],
      [84, 'r83'],
      [94, 'r93'],
    ]);
  });

  it('keeps a record only while its entry is in flight: commits made durable one by one while others are added, across the queue\'s compaction', () => {
    const t = new CommandMemtable<{ k: number }>();
    const records = Array.from({ length: 5000 }, (_, k) => ({ k }));
    let durable = 0;
    for (let k = 0; k < 5000; k++) {
      // Commit k has k % 3 + 1 ids, hashing to (k, j), and names its first id twice: noted once.
      for (let j = 0; j <= k % 3; j++) expect(t.add(k, j, k + 1, records[k])).toBe(true);
      expect(t.add(k, 0, k + 1, records[k])).toBe(false);
      // Durable commits trail the ones in flight by 700 (then all at the end).
      while (durable < k - 700 || (k === 4999 && durable < 5000)) t.durable(records[durable++]);
      if (k % 97 === 0 || k === 4999) {
        for (const probe of [0, durable - 1, durable, k]) {
          if (probe < 0 || probe > k) continue;
          for (let j = 0; j <= probe % 3; j++) {
            expect(t.find(probe, j)).toBe(1);
            expect(t.record(t.hits[0])).toBe(probe < durable ? undefined : records[probe]);
          }
        }
      }
    }
    expect(t.durableCount).toBe(t.size);
  });

  it('refuses what would corrupt it: ids out of seq order, durable out of order, dropping ids in flight (bugs, not errors)', () => {
    const t = new CommandMemtable<string>();
    t.add(1, 1, 5, 'a');
    expect(() => t.add(2, 2, 4, 'b')).toThrow(/seq 4 noted after 5/);
    expect(() => t.add(2, 2, 6, undefined)).toThrow(/durable id noted after one in flight/);
    t.add(2, 2, 6, 'b');
    expect(() => t.durable('b')).toThrow(/not the oldest in flight/);
    expect(() => t.durable('c')).toThrow(/not the oldest in flight/);
    expect(() => t.drop(1)).toThrow(/only 0 are durable/);
    t.durable('a');
    t.drop(1);
    expect(t.find(2, 2)).toBe(1);
    expect(t.record(t.hits[0])).toBe('b');
  });
});

describe('CommandHashes', () => {
  it("hands back a unit's look-up hashes when its ids are noted in order, hashes anything else, and starts over with the next unit", () => {
    const calls: string[] = [];
    const hashes = new CommandHashes((s, out) => {
      calls.push(s);
      hash64(s, out);
    });
    const expected = (s: string): [number, number] => {
      const out = new Uint32Array(2);
      hash64(s, out);
      return [out[0], out[1]];
    };
    for (const id of ['a', 'b', 'c']) hashes.lookUp(id);
    for (const id of ['a', 'b', 'x', 'c']) {
      hashes.note(id);
      expect([hashes.hi, hashes.lo]).toEqual(expected(id));
    }
    expect(calls).toEqual(['a', 'b', 'c', 'x']);
    // The next unit's look-up forgets the last unit's ids.
    hashes.lookUp('d');
    hashes.note('a');
    expect([hashes.hi, hashes.lo]).toEqual(expected('a'));
    expect(calls).toEqual(['a', 'b', 'c', 'x', 'd', 'a']);
  });
});

describe('command ids in the memtable, by hash', () => {
  for (const cacheMax of [4096, 0]) {
    const confirmedBy = cacheMax === 0 ? "the commit's frames read from the log (commandResultCacheMax 0)" : "the commit's ids (in flight) or its cached result (durable)";
    it(`confirms every hash hit by ${confirmedBy}: with every id hashing alike, a new id is never a duplicate and a duplicate is never new`, async () => {
      const log = new MemoryLog();
      const counted = countingStorage(log);
      const p = await openPartition({ storage: counted.storage, indexHash: collide, indexCheckpointEvents: 1_000_000, commandResultCacheMax: cacheMax, clock } as PartitionOptions);
      const unit = (streamId: string, ...commandIds: string[]) => ({ changes: [{ streamId, events: [{ type: 'E', data }] }], commandIds });
      // In flight together (one group): b, c and d hit a's entry and each other's; a's resend does not hit only them.
      const [a, b, aAgain, c, d] = await Promise.all([p.commit(unit('s', 'a')), p.commit(unit('s', 'b')), p.commit(unit('t', 'a')), p.commit(unit('s', 'c', 'd')), p.commit(unit('u', 'd'))]);
      expect([a, b, c].map((r) => [r.firstSeq, r.duplicate])).toEqual([
        [1, false],
        [2, false],
        [3, false],
      ]);
      expect(aAgain).toEqual({ ...a, duplicate: true });
      expect(d).toEqual({ ...c, duplicate: true });
      // Durable, in the memtable: the same.
      counted.reads.length = 0;
      const e = await p.commit(unit('s', 'e'));
      expect([e.firstSeq, e.duplicate]).toEqual([4, false]);
      expect(await p.commit(unit('v', 'b'))).toEqual({ ...b, duplicate: true });
      // A new id beside a known one names two different commits: refused, as without collisions.
      await expect(p.commit(unit('v', 'x', 'c'))).rejects.toThrow(CommandIdConflictError);
      expect(await p.commandResult('a')).toEqual(a);
      expect(await p.commandResult('never')).toBeUndefined();
      // Without the cache every durable hit was read back; with it, none was.
      expect(counted.reads.length > 0).toBe(cacheMax === 0);
      expect(p.lastSeq).toBe(4);
      await p.close();
      // Open replays the ids into the memtable: still told apart.
      const reopened = await openPartition({ storage: createMemoryStorage({ log }), indexHash: collide, indexCheckpointEvents: 1_000_000, commandResultCacheMax: cacheMax, clock } as PartitionOptions);
      expect(await reopened.commit(unit('v', 'd'))).toEqual({ ...c, duplicate: true });
      const f = await reopened.commit(unit('v', 'f'));
      expect([f.firstSeq, f.duplicate]).toEqual([5, false]);
      await reopened.close();
    });
  }

  for (const [hashing, hash] of [['hash64', undefined], ['every id hashing alike', collide]] as const) {
  it(`takes units naming one id twice, or two ids hashing alike (${hashing}): each (hash, commit) noted once, so a checkpoint table takes them, and a resend is a duplicate`, async () => {
    const p = await openPartition({ storage: createMemoryStorage(), indexCheckpointEvents: 8, indexHash: hash, clock } as PartitionOptions);
    const units = await Promise.all([0, 1, 2].map((i) => p.commit({ changes: [{ streamId: `s-${i}`, events: [{ type: 'E', data }] }], commandIds: [`twice-${i}`, `twice-${i}`] })));
    // Commits until a checkpoint (built on the worker) has taken the doubled ids into a table.
    for (let round = 0; round < 1000 && p.indexStatus.checkpointsInstalled === 0; round++) {
      await p.commit({ changes: [{ streamId: 'fill', events: [{ type: 'E', data }] }], commandIds: [`fill-${round}`, `more-${round}`] });
    }
    expect(p.indexStatus.checkpointsInstalled).toBeGreaterThan(0);
    expect(p.indexStatus.lastError).toBeUndefined();
    for (let i = 0; i < 3; i++) expect(await p.commit({ changes: [{ streamId: 'x', events: [{ type: 'E', data }] }], commandIds: [`twice-${i}`] })).toEqual({ ...units[i], duplicate: true });
    expect(await p.commandResult('more-0')).toBeDefined();
    await p.close();
  });
  }

  it('hashes each command id once on the append path, and never again at a checkpoint (its hash is copied)', async () => {
    const hashed = new Map<string, number>();
    const counting = (s: string, out: Uint32Array): void => {
      if (s.startsWith('cmd-')) hashed.set(s, (hashed.get(s) ?? 0) + 1);
      hash64(s, out);
    };
    const p = await openPartition({ storage: createMemoryStorage(), indexHash: counting, indexCheckpointEvents: 64, clock } as PartitionOptions);
    const results: CommitResult[] = [];
    for (let wave = 0; wave < 20; wave++) {
      results.push(...(await Promise.all(Array.from({ length: 16 }, (_, i) => p.commit({ changes: [{ streamId: `s-${i}`, events: [{ type: 'E', data }] }], commandIds: [`cmd-${wave}-${i}`] })))));
      // And units of many ids, as a handler host commits them.
      await Promise.all(Array.from({ length: 3 }, (_, i) => p.commit({ changes: [{ streamId: `u-${i}`, events: [{ type: 'E', data }] }], commandIds: Array.from({ length: 40 }, (_, k) => `cmd-unit-${wave}-${i}-${k}`) })));
    }
    expect(p.indexStatus.checkpointsInstalled).toBeGreaterThan(2);
    expect(hashed.size).toBe(320 + 20 * 3 * 40);
    expect([...hashed.values()].every((n) => n === 1)).toBe(true);
    // Still found after the checkpoints (tables) and in the memtable.
    expect(await p.commandResult('cmd-0-0')).toEqual(results[0]);
    expect(await p.commandResult('cmd-19-15')).toEqual(results[319]);
    await p.close();
  });
});
