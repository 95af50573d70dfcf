import { describe, expect, it } from 'vitest';
import {
  MemoryLog,
  PartitionFaultedError,
  PartitionOverloadedError,
  StorageError,
  createMemoryStorage,
  isStorageError,
  isWrongExpectedVersionError,
  openPartition,
  parseFsyncPolicy,
  type PartitionStorage,
} from './index.js';

const data = new TextEncoder().encode('x');

/** Memory storage whose appends can be made to fail: a disk error on demand. */
function faultyStorage(log: MemoryLog): { storage: PartitionStorage; failNext: (error: Error) => () => void } {
  const inner = createMemoryStorage({ log });
  let failure: Error | undefined;
  let gate: Promise<void> = Promise.resolve();
  const storage: PartitionStorage = {
    kind: 'faulty',
    capabilities: inner.capabilities,
    open: () => inner.open(),
    append: async (bytes, first, last) => {
      await gate;
      if (failure !== undefined) throw failure;
      return inner.append(bytes, first, last);
    },
    read: (f, t) => inner.read(f, t),
    lastSeq: () => inner.lastSeq(),
    openReader: () => inner.openReader(),
    close: () => inner.close(),
  };
  // Fails every later append once `release` is called; until then the write hangs in flight.
  const failNext = (error: Error): (() => void) => {
    failure = error;
    let release!: () => void;
    gate = new Promise((resolve) => (release = resolve));
    return release;
  };
  return { storage, failNext };
}

describe('a failed write', () => {
  it('fails the commits it carried, faults the partition, acknowledges nothing, and recovers on reopen', async () => {
    const log = new MemoryLog();
    const faulty = faultyStorage(log);
    const p = await openPartition({ storage: faulty.storage, name: 'disk' });
    await p.append({ streamId: 's', events: [{ type: 'E', data }] });
    const eio = new StorageError('Unavailable', 'EIO: disk on fire');
    const release = faulty.failNext(eio);
    const first = p.append({ streamId: 's', events: [{ type: 'E', data }] }).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve)); // the first write is in flight now
    const second = p.append({ streamId: 's', events: [{ type: 'E', data }] }).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve)); // the second is encoded, waiting
    release();
    expect(await first).toBe(eio);
    expect(await second).toBeInstanceOf(PartitionFaultedError);
    expect(p.isWritable).toBe(false);
    expect(p.lastSeq).toBe(1);
    const later = await p.append({ streamId: 's', events: [{ type: 'E', data }] }).catch((e: unknown) => e);
    expect(later).toBeInstanceOf(PartitionFaultedError);
    expect((later as Error).message).toMatch(/close and reopen/);
    expect((later as Error).cause).toBe(eio);
    await p.close();
    const reopened = await openPartition({ storage: createMemoryStorage({ log }) });
    expect(reopened.lastSeq).toBe(1);
    expect((await reopened.append({ streamId: 's', expectedVersion: 1, events: [{ type: 'E', data }] })).firstSeq).toBe(2);
    await reopened.close();
  });
});

describe('limits', () => {
  it('refuses appends beyond queueMax with a typed error and keeps serving', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), queueMax: 10 });
    const accepted = Array.from({ length: 10 }, () => p.append({ streamId: 's', events: [{ type: 'E', data }] }));
    await expect(p.append({ streamId: 's', events: [{ type: 'E', data }] })).rejects.toBeInstanceOf(PartitionOverloadedError);
    expect((await Promise.all(accepted)).at(-1)?.lastSeq).toBe(10);
    expect((await p.append({ streamId: 's', events: [{ type: 'E', data }] })).lastSeq).toBe(11);
    await p.close();
  });

  it('splits a burst into groups of at most batchBytesMax', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), batchBytesMax: 4096 });
    await Promise.all(Array.from({ length: 200 }, (_, i) => p.append({ streamId: `s${i}`, events: [{ type: 'E', data: new Uint8Array(100) }] })));
    expect(log.batches.length).toBeGreaterThan(5);
    for (const b of log.batches) expect(b.byteLength).toBeLessThan(4096 + 400);
    await p.close();
  });
});

describe('options', () => {
  it('reports every invalid option at once', async () => {
    const error = await openPartition({ storage: createMemoryStorage(), frameBytesMax: 8 * 1024 * 1024, queueMax: 0, epoch: -1 }).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/frameBytesMax must be an integer from 56 to 4194304.*queueMax.*epoch/);
  });
});

describe('errors', () => {
  it('recognises errors across package copies by code', () => {
    const foreign = Object.assign(new Error('x'), { code: 'SLUICE_WRONG_EXPECTED_VERSION' });
    expect(isWrongExpectedVersionError(foreign)).toBe(true);
    expect(isWrongExpectedVersionError(new Error('x'))).toBe(false);
    expect(isStorageError(Object.assign(new Error('y'), { code: 'SLUICE_STORAGE' }))).toBe(true);
    expect(new StorageError('Unavailable', 'm').retryable).toBe(true);
    expect(new StorageError('Corrupt', 'm').retryable).toBe(false);
  });

  it('parses fsync policies and names the accepted forms when one is wrong', () => {
    expect(parseFsyncPolicy('commit')).toEqual({ kind: 'commit' });
    expect(parseFsyncPolicy('interval:100ms')).toEqual({ kind: 'interval', intervalMs: 100 });
    expect(parseFsyncPolicy({ intervalMs: 5 })).toEqual({ kind: 'interval', intervalMs: 5 });
    expect(() => parseFsyncPolicy('interval:0ms')).toThrow(/"commit", "none" or "interval:<ms>ms"/);
    expect(() => parseFsyncPolicy('always')).toThrow(TypeError);
  });
});
