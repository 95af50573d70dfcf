import { createHash } from 'node:crypto';
import { FrameWriter, MARKER_BYTES, MARKER_DIGEST_OFFSET } from '@sluice/framing';
import { describe, expect, it, vi } from 'vitest';
import { InvalidRequestError, MemoryLog, PartitionFaultedError, createMemoryStorage, openPartition, sameIdentity, type PartitionStorage } from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');

/** Memory storage whose syncs wait for `release()`, counting writes and syncs. */
function gatedSyncs(log: MemoryLog): { storage: PartitionStorage; writes: () => number; syncs: () => number; release: () => void } {
  const inner = createMemoryStorage({ log });
  let writes = 0;
  let syncs = 0;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const storage = overrideStorage(inner, {
    write: (bytes, firstSeq, lastSeq) => {
      writes++;
      return inner.write(bytes, firstSeq, lastSeq);
    },
    sync: async () => {
      syncs++;
      await gate;
      return inner.sync();
    },
  });
  return { storage, writes: () => writes, syncs: () => syncs, release: open };
}

describe('several groups in flight', () => {
  it('writes group N+1 while group N syncs, and acknowledges strictly in seq order', async () => {
    const log = new MemoryLog();
    const gated = gatedSyncs(log);
    const p = await openPartition({ storage: gated.storage, batchBytesMax: 4096 });
    const order: number[] = [];
    const appends = Array.from({ length: 400 }, (_, i) =>
      p.append({ streamId: `s${i % 7}`, events: [{ type: 'E', data: new Uint8Array(100) }] }).then((r) => {
        order.push(r.firstSeq);
        return r;
      }),
    );
    // Wait until the writer has filled its pipeline: the first sync hangs, later groups are still written.
    while (gated.writes() < 3) await new Promise((resolve) => setImmediate(resolve));
    expect(gated.syncs()).toBe(1);
    expect(order).toEqual([]);
    expect(p.lastSeq).toBe(0);
    gated.release();
    const results = await Promise.all(appends);
    expect(order).toEqual(results.map((r) => r.firstSeq).sort((a, b) => a - b));
    expect(order).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(gated.syncs()).toBeLessThan(gated.writes());
    await p.close();
  });

  it('with the disk idle, starts writing after one slice instead of encoding the whole queue first', async () => {
    const log = new MemoryLog();
    const sizes: number[] = [];
    const inner = createMemoryStorage({ log });
    const storage = overrideStorage(inner, {
      write: (bytes, firstSeq, lastSeq) => {
        sizes.push(lastSeq - firstSeq + 1);
        return inner.write(bytes, firstSeq, lastSeq);
      },
    });
    const p = await openPartition({ storage });
    // Four appenders of 1000 events (~77 KiB each) queued at once, as after one sync acknowledged them all.
    const events = Array.from({ length: 1000 }, () => ({ type: 'E', data: new Uint8Array(20) }));
    await Promise.all(Array.from({ length: 4 }, (_, i) => p.append({ streamId: `s${i}`, events })));
    // The first group holds the first unit alone (one slice is 64 KiB): the disk starts while the rest is encoded.
    expect(sizes[0]).toBe(1000);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(4000);
    await p.close();
  });

  it('chains every batch to the one before it, across reopening', async () => {
    const log = new MemoryLog();
    let p = await openPartition({ storage: createMemoryStorage({ log }), batchBytesMax: 2048 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => p.append({ streamId: `s${i}`, events: [{ type: 'E', data: new Uint8Array(50) }] })));
    p = await reopen(p, log);
    await Promise.all(Array.from({ length: 100 }, (_, i) => p.append({ streamId: `s${i}`, events: [{ type: 'E', data: new Uint8Array(50) }] })));
    expect(log.batches.length).toBeGreaterThan(4);
    expect(Array.from(log.batches[0].marker.prevDigest ?? [1])).toEqual(new Array(20).fill(0));
    for (let i = 1; i < log.batches.length; i++) {
      expect(Array.from(log.batches[i].marker.prevDigest ?? [])).toEqual(Array.from(log.batches[i - 1].marker.digest));
    }
    expect(sameIdentity(p.head, { lastSeq: 200, epoch: 0, digest: log.batches.at(-1)?.marker.digest as Uint8Array })).toBe(true);
    await p.close();
  });
});

describe('the batch digest of large groups', () => {
  it('is fed in steps as the group is encoded, and every stored batch digest verifies', async () => {
    const log = new MemoryLog();
    const stepped = vi.spyOn(FrameWriter.prototype, 'digestWritten');
    try {
      const p = await openPartition({ storage: createMemoryStorage({ log }), batchBytesMax: 512 * 1024 });
      const big = Array.from({ length: 100 }, () => ({ type: 'E', data: new Uint8Array(1000).fill(7) }));
      // Units of ~100 KiB, several per group; unit 5 fails half-way through its encoding (its
      // last event type is too long), so the writer rolls back after digested bytes.
      const bad = [...big.slice(1), { type: 'x'.repeat(70_000), data: new Uint8Array(1) }];
      const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => p.append({ streamId: `s${i % 3}`, events: i === 5 ? bad : big })));
      expect(results.map((r) => r.status)).toEqual(Array.from({ length: 12 }, (_, i) => (i === 5 ? 'rejected' : 'fulfilled')));
      expect((results[5] as PromiseRejectedResult).reason).toBeInstanceOf(InvalidRequestError);
      expect(stepped).toHaveBeenCalled();
      expect(p.lastSeq).toBe(1100);
      await p.close();
    } finally {
      stepped.mockRestore();
    }
    for (const batch of log.batches) {
      const bytes = batch.bytes;
      const digested = createHash('sha1').update(bytes.subarray(0, bytes.length - MARKER_BYTES + MARKER_DIGEST_OFFSET)).digest();
      expect(Buffer.from(batch.marker.digest).equals(digested)).toBe(true);
    }
    const reopened = await openPartition({ storage: createMemoryStorage({ log }) });
    expect(reopened.lastSeq).toBe(1100);
    await reopened.close();
  });
});

describe('after a failed write or sync (invariant 9)', () => {
  for (const op of ['write', 'sync'] as const) {
    it(`a failed ${op} is never acknowledged, never served as committed or as a duplicate after reopening, and its retry applies once`, async () => {
      const log = new MemoryLog();
      let p = await openPartition({ storage: createMemoryStorage({ log }), name: 'disk' });
      await p.append({ streamId: 'acct', commandId: 'deposit-1', events: [{ type: 'Deposited', data }] });
      log.failNext(op, new Error('EIO: fdatasync failed'));
      const failed = await p.append({ streamId: 'acct', commandId: 'deposit-2', events: [{ type: 'Deposited', data }] }).catch((e: unknown) => e);
      expect(failed).toMatchObject({ reason: 'Unavailable' });
      const refused = await p.append({ streamId: 'acct', commandId: 'deposit-3', events: [{ type: 'Deposited', data }] }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(PartitionFaultedError);
      expect((refused as Error).message).toMatch(/seq 1, the last durable seq/);
      expect(p.lastSeq).toBe(1);
      p = await reopen(p, log);
      expect(p.lastSeq).toBe(1);
      expect(p.recovery.droppedSeqs).toBe(op === 'sync' ? 1 : 0);
      const retry = await p.append({ streamId: 'acct', commandId: 'deposit-2', events: [{ type: 'Deposited', data }] });
      expect(retry).toMatchObject({ duplicate: false, firstSeq: 2 });
      expect((await p.append({ streamId: 'acct', commandId: 'deposit-2', events: [{ type: 'Deposited', data }] })).duplicate).toBe(true);
      expect(p.streamVersion('acct')).toBe(2);
      await p.close();
    });
  }
});

describe('power loss (memory simulation of a disk)', () => {
  it('under commit, keeps every acknowledged commit', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log, fsync: 'commit' }) });
    const acked = await Promise.all(Array.from({ length: 300 }, (_, i) => p.append({ streamId: `s${i % 5}`, commandId: `c${i}`, events: [{ type: 'E', data }] })));
    log.powerLoss();
    const after = await openPartition({ storage: createMemoryStorage({ log, fsync: 'commit' }) });
    expect(after.lastSeq).toBe(Math.max(...acked.map((r) => r.lastSeq)));
    await after.close();
  });

  it('under none, opens with a gapless prefix', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log, fsync: 'none' }) });
    await Promise.all(Array.from({ length: 50 }, (_, i) => p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array([i]) }] })));
    log.powerLoss();
    const after = await openPartition({ storage: createMemoryStorage({ log, fsync: 'none' }) });
    expect(after.lastSeq).toBe(0);
    expect((await after.append({ streamId: 's', expectedVersion: 0, events: [{ type: 'E', data }] })).firstSeq).toBe(1);
    await after.close();
  });
});

async function reopen(p: Awaited<ReturnType<typeof openPartition>>, log: MemoryLog) {
  await p.close();
  return openPartition({ storage: createMemoryStorage({ log }), name: p.name });
}
