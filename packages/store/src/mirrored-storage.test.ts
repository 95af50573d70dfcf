import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  MemoryLog,
  PartitionFaultedError,
  createMemoryStorage,
  createMirroredStorage,
  isStorageError,
  openPartition,
  scrubPartition,
  type MirrorRepair,
  type Partition,
  type PartitionStorage,
} from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const te = new TextEncoder();
const td = new TextDecoder();

async function fill(p: Partition, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) await p.append({ streamId: `s-${i % 3}`, commandId: `c-${i}`, events: [{ type: 'E', data: te.encode(`v${i}`) }] });
}

async function payloads(p: Partition): Promise<string[]> {
  const out: string[] = [];
  for await (const e of p.read()) out.push(td.decode(e.payload));
  return out;
}

function batchBytes(log: MemoryLog): number[][] {
  return log.batches.map((b) => Array.from(b.bytes));
}

const mirrorOf = (logs: MemoryLog[], extra: { unacknowledgedTail?: 'complete' | 'truncate'; onRepair?: (r: MirrorRepair) => void } = {}) =>
  createMirroredStorage({ locations: logs.map((log, i) => ({ storage: createMemoryStorage({ log }), label: `copy-${i}` })), ...extra });

const range = (a: number, b: number): string[] => Array.from({ length: b - a + 1 }, (_, i) => `v${a + i}`);

describe('mirrored storage: invariant 2, every location holds an acknowledged commit durably', () => {
  it('writes every batch to every location byte for byte', async () => {
    const logs = [new MemoryLog(), new MemoryLog(), new MemoryLog()];
    const p = await openPartition({ storage: mirrorOf(logs) });
    await Promise.all(Array.from({ length: 50 }, (_, i) => p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(`v${i}`) }] })));
    await p.close();
    expect(batchBytes(logs[1])).toEqual(batchBytes(logs[0]));
    expect(batchBytes(logs[2])).toEqual(batchBytes(logs[0]));
    expect(logs[0].lastSeqs.at(-1)).toBe(50);
  });

  it('fails the commit when one location fails, names it, stays readable, and cuts the healthy copy back on close', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const storage = mirrorOf(logs);
    let p = await openPartition({ storage, name: 'payments' });
    await fill(p, 1, 5);
    logs[1].failNext('sync', new Error('EIO: disk 2 on fire'));
    const failed = await p.append({ streamId: 's', commandId: 'c-6', events: [{ type: 'E', data: te.encode('v6') }] }).catch((e: unknown) => e);
    expect(isStorageError(failed)).toBe(true);
    expect((failed as Error).message).toMatch(/location "copy-1" \(memory, index 1\) sync failed: .*EIO: disk 2 on fire/);
    expect((failed as Error).message).toMatch(/read-only/);
    await expect(p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('later') }] })).rejects.toBeInstanceOf(PartitionFaultedError);
    expect(storage.locationStates().map((s) => s.healthy)).toEqual([true, false]);
    // Degraded, read-only: reads still come from the healthy location, up to the durable head.
    expect(await payloads(p)).toEqual(range(1, 5));
    await p.close();
    // Failure rule: the healthy copy held seq 6 (written and synced there); it was cut back.
    expect(logs[0].lastSeqs.at(-1)).toBe(5);
    p = await openPartition({ storage: mirrorOf(logs), name: 'payments' });
    expect(await payloads(p)).toEqual(range(1, 5));
    // The retried command is new, not a duplicate of an unacknowledged commit.
    expect((await p.append({ streamId: 's', commandId: 'c-6', events: [{ type: 'E', data: te.encode('v6') }] })).duplicate).toBe(false);
    await p.close();
    expect(batchBytes(logs[1])).toEqual(batchBytes(logs[0]));
  });

  it('returns with each acknowledgement the reliability level and the locations holding the commit', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const p = await openPartition({ storage: createMirroredStorage({ level: 'critical', locations: logs.map((log, i) => ({ storage: createMemoryStorage({ log }), label: `disk${i + 1}` })) }) });
    const r = await p.append({ streamId: 's', commandId: 'c', events: [{ type: 'E', data: te.encode('x') }] });
    expect(r.reliability).toEqual({ level: 'critical', durability: { kind: 'commit' }, locations: ['disk1', 'disk2'] });
    // A plain storage reports nothing: the field is absent, the result unchanged.
    const plain = await openPartition({ storage: createMemoryStorage() });
    expect((await plain.append({ streamId: 's', events: [{ type: 'E', data: te.encode('x') }] })).reliability).toBeUndefined();
    await plain.close();
    await p.close();
  });

  it('fails a write on one location the same way', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const p = await openPartition({ storage: mirrorOf(logs) });
    await fill(p, 1, 2);
    logs[0].failNext('write', new Error('ENOSPC'));
    await expect(fill(p, 3, 3)).rejects.toThrow(/location "copy-0" \(memory, index 0\) write failed: .*ENOSPC/);
    await p.close();
    const again = await openPartition({ storage: mirrorOf(logs) });
    expect(await payloads(again)).toEqual(range(1, 2));
    await again.close();
  });
});

describe('mirrored storage: open compares the locations by batch identity', () => {
  /** logs[0] with commits 1..a, logs[1] with the same 1..a then up to b. */
  async function uneven(a: number, b: number): Promise<MemoryLog[]> {
    const logs = [new MemoryLog(), new MemoryLog()];
    const p = await openPartition({ storage: mirrorOf(logs) });
    await fill(p, 1, a);
    await p.close();
    const q = await openPartition({ storage: createMemoryStorage({ log: logs[1] }) });
    await fill(q, a + 1, b);
    await q.close();
    return logs;
  }

  it('completes a location that lacks an unacknowledged tail by copying raw batches', async () => {
    const logs = await uneven(3, 7);
    const repairs: MirrorRepair[] = [];
    const p = await openPartition({ storage: mirrorOf(logs, { onRepair: (r) => repairs.push(r) }) });
    expect(p.lastSeq).toBe(7);
    expect(repairs).toEqual([expect.objectContaining({ location: 'copy-0', action: 'copied', fromSeq: 4, toSeq: 7, source: 'copy-1' })]);
    await p.close();
    expect(batchBytes(logs[0])).toEqual(batchBytes(logs[1]));
  });

  it('or cuts it, never below what every location holds (unacknowledgedTail: truncate)', async () => {
    const logs = await uneven(3, 7);
    const p = await openPartition({ storage: mirrorOf(logs, { unacknowledgedTail: 'truncate' }) });
    expect(p.lastSeq).toBe(3);
    expect(p.recovery.droppedSeqs).toBe(4);
    expect(await payloads(p)).toEqual(range(1, 3));
    await p.close();
    expect(batchBytes(logs[1])).toEqual(batchBytes(logs[0]));
  });

  it('rebuilds an empty (replaced) location from the others byte for byte', async () => {
    const logs = await uneven(4, 4);
    logs.push(new MemoryLog());
    const p = await openPartition({ storage: mirrorOf(logs, { unacknowledgedTail: 'truncate' }) });
    expect(p.lastSeq).toBe(4);
    await p.close();
    expect(batchBytes(logs[2])).toEqual(batchBytes(logs[0]));
  });

  it('refuses locations that differ at the same seq (Corrupt, naming both and the seq), never picking one', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    for (const [i, log] of logs.entries()) {
      const p = await openPartition({ storage: createMemoryStorage({ log }) });
      await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(`history-${i}`) }] });
      await p.close();
    }
    const error = await openPartition({ storage: mirrorOf(logs) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Corrupt' });
    expect((error as Error).message).toMatch(/locations "copy-\d" .* and "copy-\d" .* hold different logs at seq 1/);
    // Nothing was changed, and the locks were released.
    expect(logs.map((l) => l.lastSeqs.length)).toEqual([1, 1]);
    expect(logs.every((l) => l.writer === undefined)).toBe(true);
  });

  it('names the location that cannot be opened, and releases the others', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const holder = createMemoryStorage({ log: logs[1] });
    await holder.open();
    const error = await openPartition({ storage: mirrorOf(logs) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Locked' });
    expect((error as Error).message).toMatch(/location "copy-1" \(memory, index 1\) open failed/);
    expect(logs[0].writer).toBeUndefined();
    await holder.close();
  });
});

describe('mirrored storage: bad locations are refused before anything is opened', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  /** A storage that records whether it was opened. */
  function spy(): { storage: PartitionStorage; opened: () => boolean } {
    let opened = false;
    const inner = createMemoryStorage();
    const storage = overrideStorage(inner, { open: () => ((opened = true), inner.open()) });
    return { storage, opened: () => opened };
  }

  it('two locations on one folder (under two spellings)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-mirror-'));
    dirs.push(dir);
    await symlink(dir, `${dir}-link`);
    dirs.push(`${dir}-link`);
    const [a, b] = [spy(), spy()];
    const mirror = createMirroredStorage({ locations: [{ storage: a.storage, directory: dir, label: 'disk1' }, { storage: b.storage, directory: `${dir}-link`, label: 'disk2' }] });
    const error = await mirror.open().catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Invalid' });
    expect((error as Error).message).toMatch(/locations "disk1" \(index 0\) and "disk2" \(index 1\) are the same folder/);
    expect(a.opened() || b.opened()).toBe(false);
  });

  it('a folder that does not exist or is not writable', async () => {
    const [a, b] = [spy(), spy()];
    const mirror = createMirroredStorage({ locations: [{ storage: a.storage, directory: '/nonexistent/disk1' }, { storage: b.storage, directory: '/proc/1' }] });
    const error = await mirror.open().catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Invalid' });
    expect((error as Error).message).toMatch(/location "memory #0" \(memory, index 0\): \/nonexistent\/disk1 is not a writable folder \(ENOENT\)/);
    expect((error as Error).message).toMatch(/location "memory #1" \(memory, index 1\): \/proc\/1 is not a writable folder/);
    expect(a.opened() || b.opened()).toBe(false);
  });

  it('no locations, the same storage twice', () => {
    expect(() => createMirroredStorage({ locations: [] })).toThrow(/at least one/);
    const s = createMemoryStorage();
    expect(() => createMirroredStorage({ locations: [s, s] })).toThrow(/same storage object/);
  });
});

describe('scrubPartition', () => {
  it('re-verifies every copy and repairs a damaged one from a good one', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const p = await openPartition({ storage: mirrorOf(logs) });
    await fill(p, 1, 20);
    await p.close();
    const good = batchBytes(logs[0]);
    // Bit rot in the middle of copy-1: its stored bytes no longer match the batch's digest.
    const victim = logs[1].batches[10];
    victim.bytes[40] ^= 0x55;
    const storage = mirrorOf(logs);
    await storage.open();
    const report = await scrubPartition(storage);
    expect(report.ok).toBe(true);
    expect(report.copies[0]).toMatchObject({ location: 'copy-0', batches: 20, damage: undefined, repaired: false });
    expect(report.copies[1]).toMatchObject({ location: 'copy-1', damage: { seq: victim.firstSeq }, repaired: true });
    expect(batchBytes(logs[1])).toEqual(good);
    expect((await scrubPartition(storage, { repair: false })).copies.every((c) => c.damage === undefined)).toBe(true);
    await storage.close();
  });

  it('reports damage on a single storage without repairing it', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }) });
    await fill(p, 1, 5);
    await p.close();
    log.batches[2].bytes[30] ^= 1;
    const storage = createMemoryStorage({ log });
    await storage.open();
    const report = await scrubPartition(storage);
    expect(report.ok).toBe(false);
    expect(report.copies[0]).toMatchObject({ damage: { seq: 3 }, repaired: false, batches: 2 });
    await storage.close();
  });
});

describe('mirrored storage: frame reads', () => {
  /** Memory storage whose readFrames fails after `after` frames (a location that breaks mid-read), or that has none. */
  const location = (log: MemoryLog, mode: { failAfter?: number; noFrames?: boolean }): PartitionStorage => {
    const inner = createMemoryStorage({ log });
    const capabilities = { ...inner.capabilities, frameReads: mode.noFrames !== true };
    async function* failing(seqs: readonly number[]) {
      let n = 0;
      for await (const f of (inner.readFrames as NonNullable<PartitionStorage['readFrames']>)(seqs)) {
        if (n++ === mode.failAfter) throw new Error('EIO: disk 1 on fire');
        yield f;
      }
    }
    return overrideStorage(inner, { capabilities, readFrames: mode.noFrames === true ? undefined : failing });
  };

  it('has frame reads exactly when every location has them', () => {
    const both = createMirroredStorage({ locations: [{ storage: createMemoryStorage(), label: 'a' }, { storage: createMemoryStorage(), label: 'b' }] });
    expect(both.capabilities.frameReads).toBe(true);
    expect(typeof both.readFrames).toBe('function');
    const one = createMirroredStorage({ locations: [{ storage: createMemoryStorage(), label: 'a' }, { storage: location(new MemoryLog(), { noFrames: true }), label: 'b' }] });
    expect(one.capabilities.frameReads).toBe(false);
    expect(one.readFrames).toBeUndefined();
  });

  it('reads frames from the first location and goes on from the next where one fails mid-read', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const storage = createMirroredStorage({
      locations: [
        { storage: location(logs[0], { failAfter: 3 }), label: 'copy-0' },
        { storage: location(logs[1], {}), label: 'copy-1' },
      ],
    });
    const p = await openPartition({ storage });
    await fill(p, 1, 30);
    const frames: string[] = [];
    for await (const f of (storage.readFrames as NonNullable<PartitionStorage['readFrames']>)([2, 5, 9, 10, 20, 30])) frames.push(td.decode(f.payload));
    expect(frames).toEqual(['v2', 'v5', 'v9', 'v10', 'v20', 'v30']);
    const stream: string[] = [];
    for await (const e of p.readStream('s-1')) stream.push(td.decode(e.payload));
    expect(stream).toEqual(Array.from({ length: 10 }, (_, i) => `v${1 + 3 * i}`));
    await expect(
      (async () => {
        for await (const _ of (storage.readFrames as NonNullable<PartitionStorage['readFrames']>)([31])) void _;
      })(),
    ).rejects.toMatchObject({ reason: 'Invalid' });
    await p.close();
  });
});
