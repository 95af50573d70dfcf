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
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');

/** Memory storage whose writes can be held in flight and made to fail: a disk error on demand. */
function faultyStorage(log: MemoryLog): { storage: PartitionStorage; failNext: (error: Error) => () => void } {
  const inner = createMemoryStorage({ log });
  let gate: Promise<void> = Promise.resolve();
  const write = async (bytes: Uint8Array, first: number, last: number): Promise<void> => {
    const held = Uint8Array.from(bytes);
    await gate;
    return inner.write(held, first, last);
  };
  const storage = overrideStorage(inner, { write });
  // Fails the next write once `release` is called; until then the write hangs in flight.
  const failNext = (error: Error): (() => void) => {
    log.failNext('write', error);
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
    expect(await first).toMatchObject({ reason: 'Unavailable', cause: eio });
    expect(await second).toBeInstanceOf(PartitionFaultedError);
    expect(p.isWritable).toBe(false);
    expect(p.lastSeq).toBe(1);
    const later = await p.append({ streamId: 's', events: [{ type: 'E', data }] }).catch((e: unknown) => e);
    expect(later).toBeInstanceOf(PartitionFaultedError);
    expect((later as Error).message).toMatch(/close and reopen/);
    expect(((later as Error).cause as Error).cause).toBe(eio);
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

  it('bounds the queue in bytes, and refuses a unit over unitBytesMax or unitEventsMax naming the option', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), queueBytesMax: 4096, unitBytesMax: 3000, unitEventsMax: 5 });
    const big = new Uint8Array(1500);
    const accepted = [p.append({ streamId: 's', events: [{ type: 'E', data: big }] }), p.append({ streamId: 's', events: [{ type: 'E', data: big }] })];
    const refused = await p.append({ streamId: 's', events: [{ type: 'E', data: big }] }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PartitionOverloadedError);
    expect((refused as Error).message).toMatch(/4096 bytes/);
    await Promise.all(accepted);
    expect((await p.append({ streamId: 's', events: [{ type: 'E', data: big }] })).lastSeq).toBe(3);
    await expect(p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(3001) }] })).rejects.toThrow(/unitBytesMax \(3000\)/);
    await expect(p.append({ streamId: 's', events: Array.from({ length: 6 }, () => ({ type: 'E', data })) })).rejects.toThrow(/unitEventsMax \(5\)/);
    expect((await p.append({ streamId: 's', events: Array.from({ length: 5 }, () => ({ type: 'E', data })) })).lastSeq).toBe(8);
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

describe('input that could not round-trip', () => {
  it('refuses lone surrogates in stream ids, types and command ids, and non-string trace ids', async () => {
    const p = await openPartition({ storage: createMemoryStorage() });
    const bad = [
      { changes: [{ streamId: 'acct-\uD800', events: [{ type: 'E', data }] }] },
      { changes: [{ streamId: 's', events: [{ type: 'E\uDC00', data }] }] },
      { commandIds: ['cmd-\uD800'], changes: [{ streamId: 's', events: [{ type: 'E', data }] }] },
      { correlationId: 42, changes: [{ streamId: 's', events: [{ type: 'E', data }] }] },
    ];
    for (const unit of bad) await expect(p.commit(unit as never)).rejects.toThrow(/well-formed|surrogate/);
    expect((await p.append({ streamId: 'acct-\uD83D\uDE00', events: [{ type: 'E', data }] })).lastSeq).toBe(1);
    await p.close();
  });
});

describe('a stream named twice in one unit of work', () => {
  it('is refused in a small unit and in a large one, and the partition keeps serving', async () => {
    const p = await openPartition({ storage: createMemoryStorage() });
    const change = (streamId: string) => ({ streamId, events: [{ type: 'E', data }] });
    await expect(p.commit({ changes: [change('a'), change('a')] })).rejects.toThrow(/stream "a" appears twice in one unit of work/);
    const large = Array.from({ length: 40 }, (_, i) => change(`s-${i}`));
    large[37] = change('s-3');
    await expect(p.commit({ changes: large })).rejects.toThrow(/stream "s-3" appears twice in one unit of work/);
    expect(p.lastSeq).toBe(0);
    large[37] = change('s-37');
    expect((await p.commit({ changes: large })).lastSeq).toBe(40);
    await p.close();
  });
});

describe('close and subscriptions', () => {
  it('returns the same close to every caller, resolved only when storage is released', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }) });
    const first = p.close();
    await p.close();
    expect(log.writer).toBeUndefined();
    await first;
  });

  it('ends a caught-up subscription with PartitionFaultedError when the writer fails', async () => {
    const faulty = faultyStorage(new MemoryLog());
    const p = await openPartition({ storage: faulty.storage });
    await p.append({ streamId: 's', events: [{ type: 'E', data }] });
    const seen: number[] = [];
    const sub = (async () => {
      for await (const batch of p.subscribe()) for (const e of batch) seen.push(e.seq);
    })().catch((e: unknown) => e);
    const release = faulty.failNext(new StorageError('Unavailable', 'EIO'));
    const failed = p.append({ streamId: 's', events: [{ type: 'E', data }] }).catch((e: unknown) => e);
    release();
    await failed;
    expect(await sub).toBeInstanceOf(PartitionFaultedError);
    expect(seen).toEqual([1]);
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
