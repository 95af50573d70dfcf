import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter, ZERO_DIGEST, type EventFrame, type SealedBatch } from '@sluice/framing';
import {
  CommandIdConflictError,
  InvalidRequestError,
  PartitionClosedError,
  StorageError,
  WrongExpectedVersionError,
  identityOf,
  isStorageError,
  openPartition,
  sameIdentity,
  type BatchIdentity,
  type CommitResult,
  type FsyncPolicyInput,
  type Partition,
  type PartitionOptions,
  type PartitionStorage,
  type RecordedEvent,
  type StorageReader,
} from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/** One isolated place a backend stores a partition: a temp folder, an LMDB file, a container. */
export interface ConformanceLocation {
  /**
   * A new storage object on this location; calling it again "reopens" the same data. `fsync`
   * is the policy to open it with (a backend with a single durability may ignore it).
   */
  storage(options?: { readonly fsync?: FsyncPolicyInput }): PartitionStorage;
  /**
   * Appends raw bytes after everything stored, bypassing the engine, as a crash in the middle
   * of a write would leave them. Called only while no storage of the location is open.
   */
  appendRaw(bytes: Uint8Array): Promise<void>;
  /** Removes everything the location holds. */
  destroy(): Promise<void>;
}

/** A backend under test. */
export interface ConformanceTarget {
  /** Shown in test names. */
  readonly name: string;
  /** A fresh, isolated, empty location for one test. */
  createLocation(): Promise<ConformanceLocation>;
  /**
   * Longest a single test may take, for backends behind a network.
   * @default 30000
   */
  readonly testTimeoutMs?: number;
}

const te = new TextEncoder();
const td = new TextDecoder();
const bytes = (s: string): Uint8Array => te.encode(s);
const text = (b: Uint8Array): string => td.decode(b);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/**
 * Encodes `count` frames (seq from `firstSeq`) as one commit, optionally sealed and chained
 * to `prevDigest` (the digest of the batch before it).
 */
function rawCommit(firstSeq: number, count: number, sealed: boolean, streamId = 'raw', prevDigest: Uint8Array = ZERO_DIGEST, epoch = 0): Uint8Array {
  const writer = new FrameWriter();
  for (let i = 0; i < count; i++) {
    const flags = (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === count - 1 ? FLAG_COMMIT_LAST : 0);
    writer.appendEvent(firstSeq + i, epoch, 1, flags, streamId, i + 1, 'Raw', undefined, undefined, bytes(`raw-${i}`));
  }
  if (sealed) writer.seal(epoch, 1, prevDigest);
  return Uint8Array.from(writer.bytes());
}

/** One sealed batch of `count` single-event commits after `head`, as the engine would write it. */
interface RawBatch {
  readonly bytes: Uint8Array;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly identity: BatchIdentity;
}

/** `batches` chained batches of `perBatch` frames each, following `head`. */
function chainedBatches(head: BatchIdentity, batches: number, perBatch = 2, epoch = head.epoch, tag = 'b'): RawBatch[] {
  const out: RawBatch[] = [];
  let prev = head;
  for (let b = 0; b < batches; b++) {
    const writer = new FrameWriter();
    const firstSeq = prev.lastSeq + 1;
    for (let i = 0; i < perBatch; i++) {
      writer.appendEvent(firstSeq + i, epoch, 1000 + b, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, `${tag}-${b}`, i + 1, 'Raw', undefined, undefined, bytes(`${tag}-${b}-${i}`));
    }
    writer.seal(epoch, 1000 + b, prev.digest);
    const identity = { lastSeq: firstSeq + perBatch - 1, epoch, digest: Uint8Array.from(writer.lastDigest) };
    out.push({ bytes: Uint8Array.from(writer.bytes()), firstSeq, lastSeq: identity.lastSeq, identity });
    prev = identity;
  }
  return out;
}

/** Joins several batches into one write. */
function joined(batches: readonly RawBatch[]): Uint8Array {
  const out = new Uint8Array(batches.reduce((n, b) => n + b.bytes.length, 0));
  let at = 0;
  for (const b of batches) {
    out.set(b.bytes, at);
    at += b.bytes.length;
  }
  return out;
}

/** Wraps a storage to count its writes: group commit is visible as fewer writes than commits. */
function countingStorage(inner: PartitionStorage): { storage: PartitionStorage; writes: () => number } {
  let writes = 0;
  const storage = new Proxy(inner, {
    get: (target, key) => {
      const value = Reflect.get(target, key) as unknown;
      if (typeof value !== 'function') return value;
      const bound = (value as (...a: unknown[]) => unknown).bind(target);
      if (key !== 'write') return bound;
      return (...args: unknown[]) => {
        writes++;
        return bound(...args);
      };
    },
  });
  return { storage, writes: () => writes };
}

/** Writes batches one write each, then syncs: the new durable head. */
async function writeAll(storage: PartitionStorage, batches: readonly RawBatch[]): Promise<BatchIdentity> {
  for (const b of batches) await storage.write(b.bytes, b.firstSeq, b.lastSeq);
  return storage.sync();
}

/** Rejection of a promise-returning call, or undefined when it resolved. */
async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
    return undefined;
  } catch (error) {
    return error;
  }
}

const POLICIES: readonly FsyncPolicyInput[] = ['commit', 'interval:50ms', 'none'];

/**
 * Registers the storage conformance suite for a backend. Every `@sluice/store-*` package
 * calls it unchanged from its own tests; the in-memory backend is the reference.
 *
 * @example
 * // packages/store-lmdb/src/lmdb-storage.test.ts
 * describeStorageConformance({
 *   name: 'lmdb',
 *   createLocation: async () => {
 *     const dir = await mkdtemp(join(tmpdir(), 'sluice-lmdb-'));
 *     return {
 *       storage: () => createLmdbStorage({ path: dir }),
 *       appendRaw: (b) => appendRawLmdb(dir, b),
 *       destroy: () => rm(dir, { recursive: true, force: true }),
 *     };
 *   },
 * });
 */
export function describeStorageConformance(target: ConformanceTarget): void {
  describe(`storage conformance: ${target.name}`, { timeout: target.testTimeoutMs ?? 30_000 }, () => {
    let location: ConformanceLocation;
    const open: Partition[] = [];

    const openOn = async (options: Partial<PartitionOptions> = {}, storage = location.storage()): Promise<Partition> => {
      const partition = await openPartition({ name: `conformance-${target.name}`, ...options, storage });
      open.push(partition);
      return partition;
    };
    const reopen = async (partition: Partition, options: Partial<PartitionOptions> = {}): Promise<Partition> => {
      await partition.close();
      return openOn(options);
    };

    beforeEach(async () => {
      location = await target.createLocation();
    });

    afterEach(async () => {
      for (const p of open.splice(0)) await p.close();
      await location.destroy();
    });

    describe('append', () => {
      it('starts empty', async () => {
        const p = await openOn();
        expect(p.lastSeq).toBe(0);
        expect(await collect(p.read())).toEqual([]);
        expect(p.streamVersion('none')).toBe(0);
      });

      it('appends an event and reads it back byte for byte', async () => {
        const p = await openOn();
        const data = Uint8Array.from([0, 1, 2, 255, 254]);
        const r = await p.append({ streamId: 'account-1', expectedVersion: 0, events: [{ type: 'Opened', data, metadata: bytes('m') }] });
        expect(r).toMatchObject({ firstSeq: 1, lastSeq: 1, duplicate: false, streams: [{ streamId: 'account-1', firstVersion: 1, version: 1 }] });
        expect(p.lastSeq).toBe(1);
        const [e] = await collect(p.read());
        expect(e.seq).toBe(1);
        expect(e.streamId).toBe('account-1');
        expect(e.streamVersion).toBe(1);
        expect(e.eventType).toBe('Opened');
        expect([...e.payload]).toEqual([...data]);
        expect(text(e.metadata)).toBe('m');
        expect(e.commitFirst && e.commitLast).toBe(true);
        expect(e.timestamp).toBe(r.timestamp);
      });

      it('numbers frames gaplessly across streams and appends', async () => {
        const p = await openOn();
        for (let i = 0; i < 30; i++) {
          await p.append({ streamId: `s-${i % 4}`, events: Array.from({ length: (i % 3) + 1 }, (_, k) => ({ type: 'E', data: bytes(`${i}.${k}`) })) });
        }
        const events = await collect(p.read());
        expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
        expect(p.lastSeq).toBe(events.length);
        for (let s = 0; s < 4; s++) {
          const versions = events.filter((e) => e.streamId === `s-${s}`).map((e) => e.streamVersion);
          expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
        }
      });

      it('checks expected versions', async () => {
        const p = await openOn();
        await p.append({ streamId: 'a', expectedVersion: 'no-stream', events: [{ type: 'E', data: bytes('1') }] });
        await p.append({ streamId: 'a', expectedVersion: 1, events: [{ type: 'E', data: bytes('2') }] });
        await p.append({ streamId: 'a', expectedVersion: 'exists', events: [{ type: 'E', data: bytes('3') }] });
        await p.append({ streamId: 'a', expectedVersion: 'any', events: [{ type: 'E', data: bytes('4') }] });
        const conflict = await p.append({ streamId: 'a', expectedVersion: 2, events: [{ type: 'E', data: bytes('x') }] }).catch((e: unknown) => e);
        expect(conflict).toBeInstanceOf(WrongExpectedVersionError);
        expect(conflict).toMatchObject({ streamId: 'a', actualVersion: 4, expectedVersion: 2 });
        await expect(p.append({ streamId: 'a', expectedVersion: 'no-stream', events: [{ type: 'E', data: bytes('x') }] })).rejects.toBeInstanceOf(WrongExpectedVersionError);
        await expect(p.append({ streamId: 'b', expectedVersion: 'exists', events: [{ type: 'E', data: bytes('x') }] })).rejects.toBeInstanceOf(WrongExpectedVersionError);
        expect(p.streamVersion('a')).toBe(4);
        expect(p.lastSeq).toBe(4);
      });

      it('refuses malformed requests and keeps serving', async () => {
        const p = await openOn();
        const bad = [
          { streamId: '', events: [{ type: 'E', data: bytes('x') }] },
          { streamId: 's', events: [] },
          { streamId: 's', events: [{ type: '', data: bytes('x') }] },
          { streamId: 's', events: [{ type: 'E', data: 'not bytes' }] },
          { streamId: 's', expectedVersion: -1, events: [{ type: 'E', data: bytes('x') }] },
        ];
        for (const request of bad) {
          await expect(p.append(request as never)).rejects.toBeInstanceOf(InvalidRequestError);
        }
        await expect(p.commit({ changes: [] })).rejects.toBeInstanceOf(InvalidRequestError);
        await expect(
          p.commit({ changes: [{ streamId: 'x', events: [{ type: 'E', data: bytes('1') }] }, { streamId: 'x', events: [{ type: 'E', data: bytes('2') }] }] }),
        ).rejects.toBeInstanceOf(InvalidRequestError);
        const ok = await p.append({ streamId: 's', events: [{ type: 'E', data: bytes('fine') }] });
        expect(ok.firstSeq).toBe(1);
      });

      it('refuses a frame over frameBytesMax without disturbing the commits around it', async () => {
        const p = await openOn({ frameBytesMax: 4096 });
        const small = p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(100) }] });
        const big = p
          .append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(1000) }, { type: 'E', data: new Uint8Array(5000) }] })
          .then(() => 'appended', (e: unknown) => e);
        const after = p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(4000) }] });
        expect((await small).lastSeq).toBe(1);
        expect(await big).toBeInstanceOf(InvalidRequestError);
        expect(await after).toMatchObject({ firstSeq: 2, streams: [{ version: 2 }] });
        expect((await collect(p.read())).map((e) => e.payload.length)).toEqual([100, 4000]);
      });

      it('commits a unit of work over several streams atomically', async () => {
        const p = await openOn();
        await p.append({ streamId: 'to', events: [{ type: 'Opened', data: bytes('') }] });
        const r = await p.commit({
          commandIds: ['transfer-1'],
          correlationId: 'corr-1',
          causationId: 'cause-1',
          changes: [
            { streamId: 'from', expectedVersion: 0, events: [{ type: 'Opened', data: bytes('') }, { type: 'Debited', data: bytes('10') }] },
            { streamId: 'to', expectedVersion: 1, events: [{ type: 'Credited', data: bytes('10') }] },
          ],
        });
        expect(r).toMatchObject({
          firstSeq: 2,
          lastSeq: 4,
          streams: [
            { streamId: 'from', firstVersion: 1, version: 2 },
            { streamId: 'to', firstVersion: 2, version: 2 },
          ],
        });
        const events = await collect(p.read({ fromSeq: 2 }));
        expect(events.map((e) => [e.commitFirst, e.commitLast])).toEqual([
          [true, false],
          [false, false],
          [false, true],
        ]);
        expect(events[0].headers).toEqual({ commandIds: ['transfer-1'], correlationId: 'corr-1', causationId: 'cause-1' });
        // One stale change fails the whole unit: nothing of it is written.
        await expect(
          p.commit({
            changes: [
              { streamId: 'from', expectedVersion: 2, events: [{ type: 'Debited', data: bytes('5') }] },
              { streamId: 'to', expectedVersion: 1, events: [{ type: 'Credited', data: bytes('5') }] },
            ],
          }),
        ).rejects.toBeInstanceOf(WrongExpectedVersionError);
        expect(p.lastSeq).toBe(4);
        expect(p.streamVersion('from')).toBe(2);
      });
    });

    describe('read', () => {
      const seed = async (p: Partition): Promise<void> => {
        for (let i = 1; i <= 20; i++) await p.append({ streamId: i % 2 === 0 ? 'even' : 'odd', events: [{ type: 'N', data: bytes(String(i)) }] });
      };

      it('reads by seq range with a count limit', async () => {
        const p = await openOn();
        await seed(p);
        expect((await collect(p.read({ fromSeq: 5, toSeq: 9 }))).map((e) => e.seq)).toEqual([5, 6, 7, 8, 9]);
        expect((await collect(p.read({ fromSeq: 18 }))).map((e) => text(e.payload))).toEqual(['18', '19', '20']);
        expect((await collect(p.read({ fromSeq: 3, maxCount: 2 }))).map((e) => e.seq)).toEqual([3, 4]);
        expect(await collect(p.read({ fromSeq: 21 }))).toEqual([]);
        expect(await collect(p.read({ fromSeq: 9, toSeq: 5 }))).toEqual([]);
      });

      it('reads a stream by version', async () => {
        const p = await openOn();
        await seed(p);
        const even = await collect(p.readStream('even'));
        expect(even.map((e) => text(e.payload))).toEqual(['2', '4', '6', '8', '10', '12', '14', '16', '18', '20']);
        expect(even.map((e) => e.streamVersion)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect((await collect(p.readStream('odd', { fromVersion: 9 }))).map((e) => text(e.payload))).toEqual(['17', '19']);
        expect((await collect(p.readStream('odd', { fromVersion: 2, maxCount: 2 }))).map((e) => e.streamVersion)).toEqual([2, 3]);
        expect(await collect(p.readStream('missing'))).toEqual([]);
      });

      it('reads streams whose events are far apart', async () => {
        const p = await openOn();
        for (let i = 0; i < 3; i++) {
          await p.append({ streamId: 'sparse', events: [{ type: 'S', data: bytes(`s${i}`) }] });
          await p.append({ streamId: 'bulk', events: Array.from({ length: 400 }, () => ({ type: 'B', data: bytes('b') })) });
        }
        expect((await collect(p.readStream('sparse'))).map((e) => text(e.payload))).toEqual(['s0', 's1', 's2']);
      });

      it('subscribes: catches up in batches, then follows live commits until aborted', async () => {
        const p = await openOn();
        await seed(p);
        const controller = new AbortController();
        const seen: number[] = [];
        const done = (async () => {
          for await (const batch of p.subscribe({ fromSeq: 15, signal: controller.signal })) {
            expect(batch.length).toBeGreaterThan(0);
            for (const e of batch) seen.push(e.seq);
            if (seen.at(-1) === 22) controller.abort();
          }
        })();
        await p.append({ streamId: 'live', events: [{ type: 'L', data: bytes('21') }] });
        await p.append({ streamId: 'live', events: [{ type: 'L', data: bytes('22') }] });
        await done;
        expect(seen).toEqual([15, 16, 17, 18, 19, 20, 21, 22]);
      });

      it('returns the same events after reopening', async () => {
        let p = await openOn();
        await seed(p);
        const before = (await collect(p.read())).map((e) => [e.seq, e.streamId, e.streamVersion, text(e.payload)]);
        p = await reopen(p);
        expect((await collect(p.read())).map((e) => [e.seq, e.streamId, e.streamVersion, text(e.payload)])).toEqual(before);
      });
    });

    describe('concurrency', () => {
      it('group-commits concurrent appends: all acknowledged, gapless, fewer writes than commits', async () => {
        const counting = countingStorage(location.storage());
        const p = await openOn({}, counting.storage);
        const results = await Promise.all(
          Array.from({ length: 1000 }, (_, i) => p.append({ streamId: `c-${i % 50}`, events: [{ type: 'E', data: bytes(String(i)) }] })),
        );
        const seqs = results.map((r) => r.firstSeq).sort((a, b) => a - b);
        expect(seqs).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
        expect(counting.writes()).toBeLessThan(100);
        const events = await collect(p.read());
        expect(events).toHaveLength(1000);
        for (const r of results) expect(text(events[r.firstSeq - 1].payload)).toBe(String(results.indexOf(r)));
      });

      it('lets exactly one of several racing writers with the same expected version win', async () => {
        const p = await openOn();
        await p.append({ streamId: 'race', events: [{ type: 'E', data: bytes('0') }] });
        const outcomes = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => p.append({ streamId: 'race', expectedVersion: 1, events: [{ type: 'E', data: bytes(String(i)) }] })),
        );
        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(WrongExpectedVersionError);
        expect(p.streamVersion('race')).toBe(2);
      });

      it('keeps appends from successive awaits in order', async () => {
        const p = await openOn();
        const writers = Array.from({ length: 8 }, async (_, w) => {
          for (let i = 0; i < 25; i++) await p.append({ streamId: `w-${w}`, expectedVersion: i, events: [{ type: 'E', data: bytes(`${w}:${i}`) }] });
        });
        await Promise.all(writers);
        for (let w = 0; w < 8; w++) {
          expect((await collect(p.readStream(`w-${w}`))).map((e) => text(e.payload))).toEqual(Array.from({ length: 25 }, (_, i) => `${w}:${i}`));
        }
      });
    });

    describe('idempotency', () => {
      const deposit = (p: Partition, commandId: string, amount: string): Promise<CommitResult> =>
        p.append({ streamId: 'account', commandId, events: [{ type: 'Deposited', data: bytes(amount) }] });

      it('applies a command id once and returns the original result to a duplicate', async () => {
        const p = await openOn();
        const first = await deposit(p, 'cmd-1', '10');
        await deposit(p, 'cmd-2', '20');
        const again = await deposit(p, 'cmd-1', '10');
        expect(again).toEqual({ ...first, duplicate: true });
        expect(p.lastSeq).toBe(2);
        expect(p.streamVersion('account')).toBe(2);
      });

      it('resolves concurrent duplicates with one commit', async () => {
        const p = await openOn();
        const results = await Promise.all([deposit(p, 'twice', '1'), deposit(p, 'twice', '1'), deposit(p, 'twice', '1')]);
        expect(new Set(results.map((r) => r.firstSeq)).size).toBe(1);
        expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
        expect(p.lastSeq).toBe(1);
      });

      it('remembers command ids across a restart', async () => {
        let p = await openOn();
        const first = await p.commit({
          commandIds: ['a', 'b'],
          changes: [
            { streamId: 'x', events: [{ type: 'E', data: bytes('1') }] },
            { streamId: 'y', events: [{ type: 'E', data: bytes('2') }, { type: 'E', data: bytes('3') }] },
          ],
        });
        p = await reopen(p);
        const again = await p.commit({ commandIds: ['b', 'a'], changes: [{ streamId: 'x', events: [{ type: 'E', data: bytes('1') }] }] });
        expect(again).toEqual({ ...first, duplicate: true });
        expect(p.lastSeq).toBe(3);
      });

      it('refuses a unit mixing applied and new command ids', async () => {
        const p = await openOn();
        await deposit(p, 'old', '1');
        await expect(p.commit({ commandIds: ['old', 'new'], changes: [{ streamId: 'account', events: [{ type: 'E', data: bytes('2') }] }] })).rejects.toBeInstanceOf(
          CommandIdConflictError,
        );
        expect(p.lastSeq).toBe(1);
        expect((await deposit(p, 'new', '2')).duplicate).toBe(false);
      });
    });

    describe('recovery', () => {
      const fill = async (p: Partition, n: number): Promise<void> => {
        for (let i = 0; i < n; i++) await p.append({ streamId: `r-${i % 3}`, commandId: `r-${i}`, events: [{ type: 'E', data: bytes(`v${i}`) }] });
      };

      for (const [what, tail] of [
        ['a torn frame', (next: number) => rawCommit(next, 3, true).subarray(0, 70)],
        ['an unsigned commit', (next: number) => rawCommit(next, 2, false)],
        ['a commit with a torn marker', (next: number) => { const b = rawCommit(next, 2, true); return b.subarray(0, b.length - 10); }],
        ['garbage', () => Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff)],
        ['a frame with a bad checksum', (next: number) => { const b = rawCommit(next, 1, true); b[60] ^= 0xff; return b; }],
        ['a sealed commit that does not chain to the log', (next: number) => rawCommit(next, 2, true, 'raw', new Uint8Array(20).fill(7))],
      ] as const) {
        it(`drops ${what} after the last commit and keeps every acknowledged one`, async () => {
          let p = await openOn();
          await fill(p, 10);
          await p.close();
          await location.appendRaw(tail(11));
          p = await openOn();
          expect(p.lastSeq).toBe(10);
          expect(p.recovery.droppedBytes).toBeGreaterThan(0);
          expect((await collect(p.read())).map((e) => text(e.payload))).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
          const next = await p.append({ streamId: 'r-0', events: [{ type: 'E', data: bytes('after') }] });
          expect(next).toMatchObject({ firstSeq: 11, streams: [{ version: 5 }] });
          p = await reopen(p);
          expect(p.recovery.droppedBytes).toBe(0);
          expect((await collect(p.read({ fromSeq: 11 }))).map((e) => text(e.payload))).toEqual(['after']);
          expect((await p.append({ streamId: 'r-1', commandId: 'r-1', events: [{ type: 'E', data: bytes('dup') }] })).duplicate).toBe(true);
        });
      }

      it('keeps a sealed commit appended outside the engine', async () => {
        let p = await openOn();
        await fill(p, 2);
        await p.close();
        const probe = location.storage();
        await probe.open();
        const head = await probe.head();
        await probe.close();
        await location.appendRaw(rawCommit(3, 2, true, 'raw', head.digest, head.epoch));
        p = await openOn();
        expect(p.lastSeq).toBe(4);
        expect(p.recovery.droppedBytes).toBe(0);
        expect(p.streamVersion('raw')).toBe(2);
      });

      it('allows one writer at a time', async () => {
        const first = await openOn();
        await first.append({ streamId: 's', events: [{ type: 'E', data: bytes('1') }] });
        const second = location.storage();
        const error = await second.open().then(
          () => undefined,
          (e: unknown) => e,
        );
        await second.close();
        expect(isStorageError(error)).toBe(true);
        expect(error).toMatchObject({ reason: 'Locked' });
        expect((error as Error).message).toMatch(/writer/i);
        await first.close();
        const third = await openOn();
        expect(third.lastSeq).toBe(1);
      });

      it('fences a writer whose epoch is older than the log', async () => {
        let p = await openOn({ epoch: 3 });
        await p.append({ streamId: 's', events: [{ type: 'E', data: bytes('1') }] });
        await p.close();
        const error = await openOn({ epoch: 2 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StorageError);
        expect(error).toMatchObject({ reason: 'Conflict' });
        p = await openOn();
        expect(p.epoch).toBe(3);
        expect((await collect(p.read()))[0].epoch).toBe(3);
      });
    });

    describe('close', () => {
      it('finishes queued appends before closing, then refuses new ones', async () => {
        let p = await openOn();
        const pending = Array.from({ length: 50 }, (_, i) => p.append({ streamId: 's', events: [{ type: 'E', data: bytes(String(i)) }] }));
        await p.close();
        expect((await Promise.all(pending)).at(-1)?.lastSeq).toBe(50);
        await expect(p.append({ streamId: 's', events: [{ type: 'E', data: bytes('late') }] })).rejects.toBeInstanceOf(PartitionClosedError);
        await expect(collect(p.read())).rejects.toBeInstanceOf(PartitionClosedError);
        await p.close();
        p = await openOn();
        expect(p.lastSeq).toBe(50);
      });

      it('ends live subscriptions', async () => {
        const p = await openOn();
        await p.append({ streamId: 's', events: [{ type: 'E', data: bytes('1') }] });
        const seen: RecordedEvent[][] = [];
        const done = (async () => {
          for await (const batch of p.subscribe()) seen.push(batch);
        })();
        await p.append({ streamId: 's', events: [{ type: 'E', data: bytes('2') }] });
        await p.close();
        await done;
        // Whatever was delivered before the close is a gapless prefix of the log.
        const seqs = seen.flat().map((e) => e.seq);
        expect(seqs).toEqual([1, 2].slice(0, seqs.length));
      });
    });

    describe('capabilities', () => {
      it('offers a cross-process reader exactly when it says so', async () => {
        const p = await openOn();
        await p.append({ streamId: 's', events: [{ type: 'E', data: bytes('1') }, { type: 'E', data: bytes('2') }] });
        const storage = location.storage();
        if (!storage.capabilities.crossProcessReaders) {
          await expect(storage.openReader()).rejects.toMatchObject({ reason: 'Unsupported' });
          return;
        }
        const reader = await storage.openReader();
        const abort = new AbortController();
        try {
          // Another process learns of durable commits a little later than the writer: wait for it.
          const seen: number[] = [];
          const tail = (async () => {
            for await (const batch of reader.tail(1, { signal: abort.signal })) {
              for (const f of batch.frames) seen.push(f.seq);
              if (seen.at(-1) === 3) abort.abort();
            }
          })();
          await p.append({ streamId: 's', events: [{ type: 'E', data: bytes('3') }] });
          await tail;
          expect(seen).toEqual([1, 2, 3]);
          expect(await reader.lastSeq()).toBe(3);
          expect(sameIdentity(await reader.head(), p.head)).toBe(true);
          expect(sameIdentity((await reader.identityAt(3)) as BatchIdentity, p.head)).toBe(true);
          const seqs: number[] = [];
          for await (const batch of reader.read(1, 3)) for (const f of batch.frames) seqs.push(f.seq);
          expect(seqs).toEqual([1, 2, 3]);
        } finally {
          abort.abort();
          await reader.close();
        }
      });

      it('describes its durability as data', () => {
        const { durability, truncate } = location.storage().capabilities;
        expect(['commit', 'interval', 'none']).toContain(durability.kind);
        expect(['in-place', 'seal-and-roll']).toContain(truncate);
      });
    });

    describe('frame reads', () => {
      const opened: Array<{ close(): Promise<void> }> = [];
      afterEach(async () => {
        for (const s of opened.splice(0)) await s.close().catch(() => undefined);
      });
      const openStorage = async (): Promise<PartitionStorage> => {
        const storage = location.storage({ fsync: 'commit' });
        opened.push(storage);
        await storage.open();
        return storage;
      };
      /**
       * 40 batches of 1 to 7 frames, chained, written as 1 to 3 batches per write, synced: a
       * log whose frames sit at every position of batches and of multi-batch writes.
       */
      const writeVaried = async (storage: PartitionStorage): Promise<SealedBatch[]> => {
        let head = await storage.head();
        let pending: RawBatch[] = [];
        for (let b = 0; b < 40; b++) {
          const [batch] = chainedBatches(head, 1, 1 + ((b * 5) % 7), head.epoch, `fr${b}`);
          pending.push(batch);
          head = batch.identity;
          if (pending.length === 1 + (b % 3) || b === 39) {
            await storage.write(joined(pending), pending[0].firstSeq, batch.lastSeq);
            pending = [];
          }
        }
        await storage.sync();
        return collect(storage.read(1, head.lastSeq));
      };
      /** Deterministic pseudo-random numbers (mulberry32): the same seq sets on every run. */
      const random = (seed: number): (() => number) => () => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const framesOf = (reader: StorageReader, seqs: readonly number[]): Promise<EventFrame[]> => collect((reader.readFrames as NonNullable<StorageReader['readFrames']>)(seqs));

      it('says frameReads exactly when it has readFrames', () => {
        const storage = location.storage();
        expect(typeof storage.readFrames === 'function').toBe(storage.capabilities.frameReads);
      });

      it('reads single frames, runs and frames across batches and writes exactly as read() returns them, in order', async () => {
        const storage = await openStorage();
        if (!storage.capabilities.frameReads) return; // stream reads use batches: covered by the read group
        const batches = await writeVaried(storage);
        const all = batches.flatMap((b) => b.frames);
        const last = all.length;
        const bySeq = (seqs: readonly number[]): EventFrame[] => seqs.map((seq) => all[seq - 1]);
        const sets: number[][] = [[1], [last], [1, last], Array.from({ length: last }, (_, i) => i + 1), []];
        // Every frame of one batch, and a run across batch and write boundaries.
        sets.push(Array.from({ length: batches[7].lastSeq - batches[7].firstSeq + 1 }, (_, i) => batches[7].firstSeq + i));
        sets.push(Array.from({ length: 15 }, (_, i) => batches[10].lastSeq - 3 + i));
        const next = random(9);
        for (let n = 0; n < 20; n++) {
          const picked = new Set<number>();
          const size = 1 + Math.floor(next() * 12);
          while (picked.size < size) {
            const seq = 1 + Math.floor(next() * last);
            const run = Math.floor(next() * 4); // sometimes a few adjacent seqs
            for (let k = 0; k <= run && seq + k <= last; k++) picked.add(seq + k);
          }
          sets.push([...picked].sort((a, b) => a - b));
        }
        for (const seqs of sets) {
          const frames = await framesOf(storage, seqs);
          expect(frames.map((f) => f.seq)).toEqual(seqs);
          expect(frames).toEqual(bySeq(seqs));
        }
        if (storage.capabilities.crossProcessReaders) {
          const reader = await storage.openReader();
          opened.push(reader);
          expect(typeof reader.readFrames).toBe('function');
          for (const seqs of sets.slice(-5)) expect(await framesOf(reader, seqs)).toEqual(bySeq(seqs));
          await expect(framesOf(reader, [last + 1])).rejects.toMatchObject({ reason: 'Invalid' });
        }
      });

      it('refuses unsorted, duplicate, zero, fractional and above-head seqs with Invalid', async () => {
        const storage = await openStorage();
        if (!storage.capabilities.frameReads) return;
        await writeAll(storage, chainedBatches(await storage.head(), 3));
        for (const seqs of [[2, 1], [3, 3], [0], [-1, 2], [1.5], [6, 7], [1, 2, 99], [Number.NaN]]) {
          const error = await failure(() => framesOf(storage, seqs));
          expect(error, `seqs ${JSON.stringify(seqs)}`).toMatchObject({ reason: 'Invalid' });
          expect(isStorageError(error)).toBe(true);
        }
        expect((await framesOf(storage, [1, 6])).map((f) => f.seq)).toEqual([1, 6]);
      });

      it('never returns a frame above the durable head', async () => {
        const storage = await openStorage();
        if (!storage.capabilities.frameReads) return;
        const [a, b] = chainedBatches(await storage.head(), 2);
        await writeAll(storage, [a]);
        await storage.write(b.bytes, b.firstSeq, b.lastSeq);
        if (storage.durableHead().lastSeq < b.lastSeq) {
          // Written, not synced: not committed, not served.
          await expect(framesOf(storage, [3])).rejects.toMatchObject({ reason: 'Invalid' });
          await expect(framesOf(storage, [1, 2, 3])).rejects.toMatchObject({ reason: 'Invalid' });
        }
        await storage.sync();
        expect((await framesOf(storage, [2, 3, 4])).map((f) => f.seq)).toEqual([2, 3, 4]);
        await storage.truncate(2, { operatorReason: 'conformance: frames above the new head' });
        await expect(framesOf(storage, [3])).rejects.toMatchObject({ reason: 'Invalid' });
        expect((await framesOf(storage, [1, 2])).map((f) => f.seq)).toEqual([1, 2]);
      });
    });

    for (const policy of POLICIES) {
      describe(`contract, fsync ${policy}`, () => {
        const opened: PartitionStorage[] = [];
        const openStorage = async (): Promise<PartitionStorage> => {
          const storage = location.storage({ fsync: policy });
          opened.push(storage);
          await storage.open();
          return storage;
        };
        afterEach(async () => {
          for (const s of opened.splice(0)) await s.close().catch(() => undefined);
        });
        const readAll = async (storage: Pick<PartitionStorage, 'read'>, from = 1, to = Number.MAX_SAFE_INTEGER): Promise<SealedBatch[]> => collect(storage.read(from, to));

        it('writes, syncs and reads back the exact bytes; the durable head is the last batch\'s identity', async () => {
          const storage = await openStorage();
          expect(sameIdentity(await storage.head(), { lastSeq: 0, epoch: 0, digest: ZERO_DIGEST })).toBe(true);
          const batches = chainedBatches(await storage.head(), 3);
          const head = await writeAll(storage, batches);
          expect(sameIdentity(head, batches[2].identity)).toBe(true);
          expect(sameIdentity(storage.durableHead(), head)).toBe(true);
          expect(sameIdentity(await storage.head(), head)).toBe(true);
          expect(await storage.lastSeq()).toBe(6);
          const read = await readAll(storage);
          expect(read.map((b) => Array.from(b.bytes))).toEqual(batches.map((b) => Array.from(b.bytes)));
          for (let i = 0; i < read.length; i++) expect(Array.from(read[i].marker.prevDigest ?? [])).toEqual(Array.from(i === 0 ? ZERO_DIGEST : batches[i - 1].identity.digest));
        });

        it('takes several batches in one write and tells any batch\'s identity', async () => {
          const storage = await openStorage();
          const batches = chainedBatches(await storage.head(), 3, 3);
          await storage.write(joined(batches), 1, 9);
          await storage.sync();
          for (let seq = 1; seq <= 9; seq++) {
            expect(sameIdentity((await storage.identityAt(seq)) as BatchIdentity, batches[Math.floor((seq - 1) / 3)].identity)).toBe(true);
          }
          expect(await storage.identityAt(0)).toBeUndefined();
          expect(await storage.identityAt(10)).toBeUndefined();
        });

        it('refuses a gap, a broken chain and a lower epoch with Conflict, and keeps working', async () => {
          const storage = await openStorage();
          const [first] = chainedBatches(await storage.head(), 1, 2, 5);
          await writeAll(storage, [first]);
          const [gap] = chainedBatches({ ...first.identity, lastSeq: 3 }, 1, 2, 5);
          expect(await failure(() => storage.write(gap.bytes, gap.firstSeq, gap.lastSeq))).toMatchObject({ reason: 'Conflict' });
          const [foreign] = chainedBatches({ ...first.identity, digest: new Uint8Array(20).fill(7) }, 1, 2, 5);
          expect(await failure(() => storage.write(foreign.bytes, foreign.firstSeq, foreign.lastSeq))).toMatchObject({ reason: 'Conflict' });
          const [stale] = chainedBatches(first.identity, 1, 2, 4);
          const fenced = await failure(() => storage.write(stale.bytes, stale.firstSeq, stale.lastSeq));
          expect(fenced).toMatchObject({ reason: 'Conflict' });
          expect((fenced as Error).message).toMatch(/epoch/);
          const [next] = chainedBatches(first.identity, 1, 2, 6);
          expect(sameIdentity(await writeAll(storage, [next]), next.identity)).toBe(true);
        });

        it('enforces one write and one sync at a time, and lets a write overlap a sync', async () => {
          const storage = await openStorage();
          const [a, b, c] = chainedBatches(await storage.head(), 3);
          const first = storage.write(a.bytes, a.firstSeq, a.lastSeq);
          const second = await failure(() => storage.write(b.bytes, b.firstSeq, b.lastSeq));
          await first;
          expect(second).toMatchObject({ reason: 'Invalid' });
          const syncing = storage.sync();
          expect(await failure(() => storage.sync())).toMatchObject({ reason: 'Invalid' });
          const overlapping = storage.write(b.bytes, b.firstSeq, b.lastSeq);
          expect((await syncing).lastSeq).toBeGreaterThanOrEqual(2);
          await overlapping;
          await storage.write(c.bytes, c.firstSeq, c.lastSeq);
          expect(sameIdentity(await storage.sync(), c.identity)).toBe(true);
        });

        it('copies raw batches to a second location byte for byte', async () => {
          const source = await openStorage();
          await writeAll(source, chainedBatches(await source.head(), 4, 3));
          const original = await readAll(source);
          await source.close();
          const second = await target.createLocation();
          try {
            const copy = second.storage({ fsync: policy });
            await copy.open();
            try {
              for (const batch of original) await copy.write(batch.bytes, batch.firstSeq, batch.lastSeq);
              const head = await copy.sync();
              expect(sameIdentity(head, identityOf(original.at(-1) as SealedBatch))).toBe(true);
              const copied = await readAll(copy);
              expect(copied.map((b) => Array.from(b.bytes))).toEqual(original.map((b) => Array.from(b.bytes)));
              for (const batch of original) expect(sameIdentity((await copy.identityAt(batch.lastSeq)) as BatchIdentity, identityOf(batch))).toBe(true);
            } finally {
              await copy.close();
            }
          } finally {
            await second.destroy();
          }
        });

        it('reads the same bytes, seqs and markers with frames: false (frames may then be left out)', async () => {
          const storage = await openStorage();
          await writeAll(storage, chainedBatches(await storage.head(), 3, 2));
          const full = await readAll(storage);
          const raw: SealedBatch[] = [];
          for await (const b of storage.read(1, await storage.lastSeq(), { frames: false })) raw.push({ ...b, bytes: Uint8Array.from(b.bytes) });
          expect(raw.map((b) => [b.firstSeq, b.lastSeq, Array.from(b.bytes), b.marker.timestamp, Array.from(b.marker.digest)])).toEqual(
            full.map((b) => [b.firstSeq, b.lastSeq, Array.from(b.bytes), b.marker.timestamp, Array.from(b.marker.digest)]),
          );
          for (const b of raw) expect(b.frames.length === 0 || b.frames.length === b.lastSeq - b.firstSeq + 1).toBe(true);
          await storage.close();
        });

        it('takes several batches joined in one write (a copy, a drain), and refuses joined batches with a flipped byte or a torn end', async () => {
          const storage = await openStorage();
          const batches = chainedBatches(await storage.head(), 3, 2);
          const joined = Buffer.concat(batches.map((b) => b.bytes));
          const [first, last] = [batches[0].firstSeq, (batches.at(-1) as RawBatch).lastSeq];
          const flipped = (at: number): Uint8Array => {
            const copy = Uint8Array.from(joined);
            copy[at] ^= 0x01;
            return copy;
          };
          // A payload byte of the first and of the second batch, and the last batch's torn marker.
          for (const bad of [flipped(60), flipped(batches[0].bytes.length + 60), joined.subarray(0, joined.length - 10)]) {
            expect(await failure(() => storage.write(bad, first, last))).toMatchObject({ reason: 'Invalid' });
          }
          expect(await storage.lastSeq()).toBe(first - 1);
          await storage.write(joined, first, last);
          expect(sameIdentity(await storage.sync(), (batches.at(-1) as RawBatch).identity)).toBe(true);
          for (const b of batches) expect(sameIdentity((await storage.identityAt(b.lastSeq)) as BatchIdentity, b.identity)).toBe(true);
          const stored = (await readAll(storage)).filter((b) => b.firstSeq >= first);
          expect(stored.map((b) => [b.firstSeq, b.lastSeq])).toEqual(batches.map((b) => [b.firstSeq, b.lastSeq]));
          await storage.close();
        });

        it('truncates a tail at a batch boundary, never below the durable head without an operator reason', async () => {
          const storage = await openStorage();
          const batches = chainedBatches(await storage.head(), 3);
          await writeAll(storage, batches);
          expect(await failure(() => storage.truncate(3))).toMatchObject({ reason: 'Invalid' });
          expect(await failure(() => storage.truncate(2))).toMatchObject({ reason: 'Invalid' });
          const head = await storage.truncate(2, { operatorReason: 'conformance: cut a tail' });
          expect(sameIdentity(head, batches[0].identity)).toBe(true);
          expect(await storage.lastSeq()).toBe(2);
          const [replacement] = chainedBatches(head, 1, 2, head.epoch, 'other');
          expect(sameIdentity(await writeAll(storage, [replacement]), replacement.identity)).toBe(true);
          await storage.close();
          const again = await openStorage();
          expect(sameIdentity(await again.head(), replacement.identity)).toBe(true);
          expect((await readAll(again)).map((b) => b.lastSeq)).toEqual([2, 4]);
        });

        it('cuts an unsynced tail without an operator', async () => {
          const storage = await openStorage();
          const batches = chainedBatches(await storage.head(), 2);
          await writeAll(storage, [batches[0]]);
          await storage.write(batches[1].bytes, batches[1].firstSeq, batches[1].lastSeq);
          if (storage.durableHead().lastSeq === 4) {
            // This policy acknowledges what is written: nothing is above the durable head.
            expect(await failure(() => storage.truncate(2))).toMatchObject({ reason: 'Invalid' });
            return;
          }
          expect(sameIdentity(await storage.truncate(2), batches[0].identity)).toBe(true);
          expect(await storage.lastSeq()).toBe(2);
        });

        it('tails: existing batches, then each new durable one, until aborted', async () => {
          const storage = await openStorage();
          const batches = chainedBatches(await storage.head(), 3);
          await writeAll(storage, batches.slice(0, 1));
          const abort = new AbortController();
          const seen: number[] = [];
          const tail = (async () => {
            for await (const batch of storage.tail(1, { signal: abort.signal })) {
              seen.push(batch.lastSeq);
              if (batch.lastSeq === 6) abort.abort();
            }
          })();
          await writeAll(storage, batches.slice(1));
          await tail;
          expect(seen).toEqual([2, 4, 6]);
        });

        it('recovers the same head twice in a row, and refuses to be used after close', async () => {
          const storage = await openStorage();
          const batches = chainedBatches(await storage.head(), 2);
          const head = await writeAll(storage, batches);
          await storage.close();
          for (let i = 0; i < 2; i++) {
            const again = location.storage({ fsync: policy });
            const recovery = await again.open();
            expect(recovery).toMatchObject({ lastSeq: 4, droppedBytes: 0, droppedSeqs: 0 });
            expect(sameIdentity(recovery.head, head)).toBe(true);
            await again.close();
          }
          const [next] = chainedBatches(head, 1);
          expect(await failure(() => storage.write(next.bytes, next.firstSeq, next.lastSeq))).toMatchObject({ reason: 'Closed' });
          expect(await failure(() => collect(storage.read(1, 4)))).toMatchObject({ reason: 'Closed' });
        });

        it('drops a torn tail on open and reports it', async () => {
          const storage = await openStorage();
          const head = await writeAll(storage, chainedBatches(await storage.head(), 2));
          await storage.close();
          const [torn] = chainedBatches(head, 1, 3);
          await location.appendRaw(torn.bytes.subarray(0, torn.bytes.length - 30));
          const again = location.storage({ fsync: policy });
          const recovery = await again.open();
          await again.close();
          expect(recovery.lastSeq).toBe(4);
          expect(recovery.droppedBytes).toBeGreaterThan(0);
          expect(sameIdentity(recovery.head, head)).toBe(true);
        });
      });
    }
  });
}
