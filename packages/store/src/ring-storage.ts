import { MARKER_BYTES, decodeBatches, readU53, type SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, checkWrite, describeIdentity, identityOf } from './batch-identity.js';
import { StorageError } from './errors.js';
import type { BatchIdentity, CommitReliability, PartitionStorage, StorageCapabilities, StorageReader, StorageRecovery, ReadBatchesOptions, TailOptions, TruncateOptions } from './storage.js';
import { DurableSignal, tailBatches } from './tail.js';

/**
 * How a ring location acknowledges:
 * - `acknowledge`: a commit is acknowledged once it is in the ring (memory); the ring is
 *   drained to the durable location in the background. Fastest; a crash or power loss loses
 *   what was not drained yet (at most `capacityBytes`, usually the last few milliseconds).
 * - `cache`: writes go to the durable location and acknowledgements wait for it, as without a
 *   ring; the ring only keeps the recent log in memory so readers of recent data never touch
 *   the durable location.
 */
export type RingMode = 'acknowledge' | 'cache';

/** Options of {@link createRingStorage}. */
export interface RingStorageOptions {
  /** The durable location the ring drains to (or caches in front of). Not opened yet. */
  readonly durable: PartitionStorage;
  /** See {@link RingMode}. */
  readonly mode: RingMode;
  /**
   * Bytes of the ring buffer, preallocated. Bounds memory, and in `acknowledge` mode the loss
   * window: a write waits while undrained batches fill the ring.
   * @default 67108864 (64 MiB)
   */
  readonly capacityBytes?: number;
  /**
   * Most bytes one drain write to the durable location carries (several batches are joined).
   * @default 4194304 (4 MiB)
   */
  readonly drainBytesMax?: number;
  /** The reliability level's name, reported with each acknowledged commit. */
  readonly level?: string | undefined;
}

/** What a ring location holds, now. */
export interface RingState {
  readonly mode: RingMode;
  readonly capacityBytes: number;
  /** Bytes of the batches held in the ring. */
  readonly usedBytes: number;
  /** Seqs held in the ring: `[firstSeq, lastSeq]`, or undefined when empty. */
  readonly seqs: readonly [number, number] | undefined;
  /** The durable location's durable head (what survives a crash). */
  readonly drainedSeq: number;
  /** Acknowledged seqs not yet durable on the durable location: the loss window (acknowledge mode). */
  readonly undrainedSeqs: number;
  readonly undrainedBytes: number;
}

/** A ring location. */
export interface RingStorage extends PartitionStorage {
  /** Ring usage and the loss window, now. */
  ringState(): RingState;
  /** Resolves when everything acknowledged is durable on the durable location. */
  drained(): Promise<void>;
}

interface Entry {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly offset: number;
  readonly length: number;
  readonly identity: BatchIdentity;
  /** One batch (the engine's writes); several when raw batches were copied in one write. */
  readonly single: boolean;
}

const WHERE = '[sluice/store] ring storage';

/**
 * A short-term memory location: a preallocated ring buffer (LMAX-style, bounded in bytes) that
 * holds the recent log in front of a durable location.
 *
 * In `acknowledge` mode (fastest) a batch is copied into the ring and acknowledged at the next
 * `sync()` without I/O; a background drainer writes ring batches to the durable location in
 * order (joined, then synced) and frees their space. **Loss window**: what is acknowledged and
 * not yet drained (`ringState().undrainedSeqs`) is lost if the process dies; a failed drain
 * fails the storage (the failure rule) and what was undrained is lost with it. `close()` drains
 * everything first.
 *
 * In `cache` mode every write and sync goes to the durable location and acknowledgements wait
 * for it (nothing is lost that the durable location keeps); the ring serves readers of recent
 * data from memory.
 *
 * In both modes reads of seqs still in the ring come from the ring.
 *
 * @example
 * const storage = createRingStorage({ mode: 'acknowledge', durable: createFileStorage({ directory }), capacityBytes: 32 << 20 });
 */
export function createRingStorage(options: RingStorageOptions): RingStorage {
  const problems: string[] = [];
  if (options?.durable === undefined || typeof options.durable.write !== 'function') problems.push('durable must be a PartitionStorage');
  if (options?.mode !== 'acknowledge' && options?.mode !== 'cache') problems.push(`mode must be "acknowledge" or "cache", got ${JSON.stringify(options?.mode)}`);
  const capacity = options?.capacityBytes ?? 64 * 1024 * 1024;
  if (!(Number.isSafeInteger(capacity) && capacity >= 64 * 1024 && capacity <= 2 ** 31)) problems.push(`capacityBytes must be an integer from 65536 to 2^31, got ${options?.capacityBytes}`);
  const drainBytesMax = options?.drainBytesMax ?? 4 * 1024 * 1024;
  if (!(Number.isSafeInteger(drainBytesMax) && drainBytesMax >= 1024)) problems.push(`drainBytesMax must be an integer of at least 1024, got ${options?.drainBytesMax}`);
  if (problems.length > 0) throw new StorageError('Invalid', `${WHERE}: invalid options: ${problems.join('; ')}`);
  return new Ring(options.durable, options.mode, capacity, drainBytesMax, options.level);
}

class Ring implements RingStorage {
  readonly kind: string;
  readonly capabilities: StorageCapabilities;
  private readonly buffer: Uint8Array;
  /** Entries in seq order; `entries[head..]` are live. */
  private entries: Entry[] = [];
  private first = 0;
  /** Next write offset in the buffer. */
  private position = 0;
  private state: 'new' | 'open' | 'closed' = 'new';
  private writing = false;
  private syncing = false;
  private failure: StorageError | undefined;
  private written: BatchIdentity = EMPTY_IDENTITY;
  private durable: BatchIdentity = EMPTY_IDENTITY;
  /** Identity of the last batch the durable location holds durably. */
  private drainedHead: BatchIdentity = EMPTY_IDENTITY;
  private draining: Promise<void> | undefined;
  private readonly signal = new DurableSignal();
  private spaceWaiters: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];

  constructor(
    private readonly inner: PartitionStorage,
    private readonly mode: RingMode,
    private readonly capacity: number,
    private readonly drainBytesMax: number,
    private readonly level: string | undefined,
  ) {
    this.kind = `ring(${inner.kind})`;
    this.buffer = new Uint8Array(capacity);
    this.capabilities =
      mode === 'cache'
        ? // No frame reads: recent frames sit in the ring's buffer, which has no frame position index (stream reads use batches).
          { ...inner.capabilities, frameReads: false }
        : // Acknowledged from memory: durable only once drained.
          { crossProcessReaders: false, durability: { kind: 'none' }, truncate: inner.capabilities.truncate, frameReads: false };
  }

  ringState(): RingState {
    const live = this.entries.length - this.first;
    const undrained = this.entries.slice(this.first).filter((e) => e.lastSeq > this.drainedHead.lastSeq);
    return {
      mode: this.mode,
      capacityBytes: this.capacity,
      usedBytes: this.entries.slice(this.first).reduce((n, e) => n + e.length, 0),
      seqs: live === 0 ? undefined : [this.entries[this.first].firstSeq, this.entries[this.entries.length - 1].lastSeq],
      drainedSeq: this.drainedHead.lastSeq,
      undrainedSeqs: Math.max(0, this.durable.lastSeq - this.drainedHead.lastSeq),
      undrainedBytes: undrained.reduce((n, e) => n + e.length, 0),
    };
  }

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', `${WHERE}: open() was already called; create a new storage to reopen`);
    const recovery = await this.inner.open();
    this.state = 'open';
    this.written = recovery.head;
    this.durable = recovery.head;
    this.drainedHead = recovery.head;
    return recovery;
  }

  async write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    this.assertWritable();
    if (this.writing) throw new StorageError('Invalid', `${WHERE}: write() called while another write is in flight: one write at a time`);
    const next = checkWrite(bytes, firstSeq, lastSeq, this.written, WHERE);
    this.writing = true;
    try {
      await Promise.resolve();
      if (this.mode === 'cache') {
        await this.inner.write(bytes, firstSeq, lastSeq).catch((e: unknown) => this.fail('write', e));
        this.keep(bytes, firstSeq, lastSeq, next, true);
        // A location durable on write (interval/none policies) moves its head here.
        if (this.inner.durableHead().lastSeq >= next.lastSeq) this.makeDurable(next);
      } else if (bytes.length > this.capacity) {
        // Larger than the ring: written through once everything before it is drained.
        await this.drained();
        this.assertWritable();
        await this.inner.write(bytes, firstSeq, lastSeq).catch((e: unknown) => this.fail('write', e));
        this.drainedHead = await this.inner.sync().catch((e: unknown) => this.fail('sync', e));
      } else {
        await this.waitForSpace(bytes.length);
        this.keep(bytes, firstSeq, lastSeq, next, false);
      }
      this.written = next;
    } finally {
      this.writing = false;
    }
  }

  async sync(): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.syncing) throw new StorageError('Invalid', `${WHERE}: sync() called while another sync is in flight: one sync at a time`);
    this.syncing = true;
    const covered = this.written;
    try {
      if (this.mode === 'cache') {
        const head = await this.inner.sync().catch((e: unknown) => this.fail('sync', e));
        this.makeDurable(head.lastSeq >= covered.lastSeq ? covered : head);
      } else {
        await Promise.resolve();
        this.makeDurable(covered);
        this.kickDrain();
      }
      return this.durable;
    } finally {
      this.syncing = false;
    }
  }

  durableHead(): BatchIdentity {
    return this.durable;
  }

  /**
   * In acknowledge mode a commit is acknowledged from the ring alone (`locations: ['ring']`,
   * durability `none`): the drain that follows is not part of the acknowledgement (see
   * `ringState()` for it). In cache mode the durable location's report, after the ring.
   */
  reliability(seq: number): CommitReliability {
    const inner = this.mode === 'cache' ? this.inner.reliability?.(seq) : undefined;
    return {
      level: this.level ?? inner?.level,
      durability: this.capabilities.durability,
      locations: this.mode === 'cache' ? ['ring', ...(inner?.locations ?? [this.inner.kind])] : ['ring'],
      targets: inner?.targets,
    };
  }

  /** Resolves once everything acknowledged is durable on the durable location (or the drain failed). */
  drained(): Promise<void> {
    if (this.mode === 'cache' || this.drainedHead.lastSeq >= this.durable.lastSeq || this.failure !== undefined) return Promise.resolve();
    this.kickDrain();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async truncate(afterSeq: number, options: TruncateOptions = {}): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.writing || this.syncing) throw new StorageError('Invalid', `${WHERE}: truncate() while a write or sync is in flight: wait for them first`);
    if (afterSeq < 0 || afterSeq > this.written.lastSeq || (afterSeq > 0 && (await this.identityOfAny(afterSeq))?.lastSeq !== afterSeq)) {
      throw new StorageError('Invalid', `${WHERE}: cannot truncate after seq ${afterSeq}: it is not the end of a stored batch (head is ${describeIdentity(this.written)})`);
    }
    if (afterSeq < this.durable.lastSeq && (options.operatorReason === undefined || options.operatorReason.trim() === '')) {
      throw new StorageError('Invalid', `${WHERE}: truncating after seq ${afterSeq} would remove durable (acknowledged) seqs up to ${this.durable.lastSeq}: pass operatorReason to do it deliberately`);
    }
    await this.draining;
    if (this.mode === 'cache' || afterSeq < this.drainedHead.lastSeq) {
      const head = await this.inner.truncate(afterSeq, options).catch((e: unknown) => this.fail('truncate', e));
      this.drainedHead = head.lastSeq < this.drainedHead.lastSeq ? head : this.drainedHead;
    }
    // Drop ring entries after afterSeq (the newest ones: the buffer position moves back).
    while (this.entries.length > this.first && this.entries[this.entries.length - 1].lastSeq > afterSeq) {
      const e = this.entries.pop() as Entry;
      this.position = e.offset;
    }
    this.written = afterSeq === 0 ? EMPTY_IDENTITY : ((await this.identityOfAny(afterSeq)) as BatchIdentity);
    if (this.durable.lastSeq > afterSeq) this.durable = this.written;
    if (this.drainedHead.lastSeq > afterSeq) this.drainedHead = this.written;
    return this.written;
  }

  read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncIterable<SealedBatch> {
    return this.readRange(fromSeq, toSeq, options);
  }

  private async *readRange(fromSeq: number, toSeq: number, options: ReadBatchesOptions | undefined): AsyncGenerator<SealedBatch> {
    this.assertOpen();
    const limit = Math.min(toSeq, this.durable.lastSeq);
    let next = Math.max(1, fromSeq);
    while (next <= limit) {
      const i = this.entryIndex(next);
      if (i >= 0) {
        // From the ring: a copy, since the slot is reused once drained and evicted.
        const e = this.entries[i];
        const { batches } = decodeBatches(this.buffer.slice(e.offset, e.offset + e.length), { firstSeq: e.firstSeq, verifyDigest: options?.verifyDigests ?? true });
        for (const b of batches) {
          if (b.firstSeq > limit) return;
          if (b.lastSeq >= next) yield b;
        }
        next = e.lastSeq + 1;
        continue;
      }
      // Older than the ring: from the durable location, up to where the ring starts.
      const ringStart = this.entries.length > this.first ? this.entries[this.first].firstSeq : Number.POSITIVE_INFINITY;
      let progressed = false;
      for await (const b of this.inner.read(next, Math.min(limit, ringStart - 1), options)) {
        if (b.lastSeq < next) continue;
        yield b;
        next = b.lastSeq + 1;
        progressed = true;
      }
      if (!progressed) {
        // Evicted from the ring while we read and not yet visible below: read again.
        if (this.entryIndex(next) < 0) throw new StorageError('Corrupt', `${WHERE}: seq ${next} is neither in the ring nor on the durable location`);
      }
    }
  }

  async head(): Promise<BatchIdentity> {
    this.assertOpen();
    return this.durable;
  }

  async lastSeq(): Promise<number> {
    this.assertOpen();
    return this.durable.lastSeq;
  }

  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    this.assertOpen();
    if (seq < 1 || seq > this.durable.lastSeq) return undefined;
    return this.identityOfAny(seq);
  }

  private async identityOfAny(seq: number): Promise<BatchIdentity | undefined> {
    const i = this.entryIndex(seq);
    if (i < 0) return this.inner.identityAt(seq);
    const e = this.entries[i];
    if (e.single) return e.identity;
    const { batches } = decodeBatches(this.buffer.subarray(e.offset, e.offset + e.length), { firstSeq: e.firstSeq });
    const b = batches.find((x) => x.firstSeq <= seq && seq <= x.lastSeq);
    return b === undefined ? undefined : identityOf(b);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  async openReader(): Promise<StorageReader> {
    if (this.mode === 'cache') return this.inner.openReader();
    throw new StorageError('Unsupported', `${WHERE} in acknowledge mode has no cross-process readers: acknowledged commits live in this process's memory until drained; read in process, or use mode "cache"`);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'open' && this.failure === undefined) await this.drained();
    await this.draining;
    this.state = 'closed';
    this.signal.close();
    for (const w of this.spaceWaiters.splice(0)) w();
    for (const w of this.drainWaiters.splice(0)) w();
    await this.inner.close();
  }

  /** Index of the live entry holding `seq`, or -1. */
  private entryIndex(seq: number): number {
    let lo = this.first;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid].lastSeq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.entries.length && this.entries[lo].firstSeq <= seq ? lo : -1;
  }

  /** Copies a written batch into the ring at the next position (wrapping to 0 when it does not fit at the end). */
  private keep(bytes: Uint8Array, firstSeq: number, lastSeq: number, identity: BatchIdentity, evictable: boolean): void {
    if (bytes.length > this.capacity) return;
    if (evictable) this.evict(bytes.length, Number.POSITIVE_INFINITY);
    const offset = this.position + bytes.length <= this.capacity ? this.position : 0;
    this.buffer.set(bytes, offset);
    const single = readU53(bytes, bytes.length - MARKER_BYTES + 8) === firstSeq;
    this.entries.push({ firstSeq, lastSeq, offset, length: bytes.length, identity, single });
    this.position = offset + bytes.length;
    if (this.first > 1024 && this.first * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.first);
      this.first = 0;
    }
  }

  /** Frees the oldest entries (only those drained up to `drainedSeq`) until `bytes` fit. */
  private evict(bytes: number, drainedSeq: number): boolean {
    for (;;) {
      if (this.first >= this.entries.length) {
        this.position = 0;
        return true;
      }
      if (this.fits(bytes)) return true;
      if (this.entries[this.first].lastSeq > drainedSeq) return false;
      this.first++;
    }
  }

  /** True when `bytes` can be placed at the write position (or at 0) without touching live entries. */
  private fits(bytes: number): boolean {
    const oldest = this.entries[this.first].offset;
    // Not wrapped: live data is [oldest, position); room at the end, or at the start before it.
    if (this.position > oldest) return this.position + bytes <= this.capacity || bytes <= oldest;
    // Wrapped (or exactly full): live data is [oldest, capacity) + [0, position).
    return this.position + bytes <= oldest;
  }

  private async waitForSpace(bytes: number): Promise<void> {
    while (!this.evict(bytes, this.drainedHead.lastSeq)) {
      this.assertWritable();
      this.kickDrain();
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
  }

  /** Starts the drainer unless it runs (acknowledge mode). */
  private kickDrain(): void {
    if (this.mode !== 'acknowledge' || this.draining !== undefined || this.failure !== undefined) return;
    if (this.drainedHead.lastSeq >= this.durable.lastSeq) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      if (this.failure === undefined && this.drainedHead.lastSeq < this.durable.lastSeq) this.kickDrain();
    });
  }

  /**
   * Writes acknowledged ring batches to the durable location in order, joined; the next chunk
   * is written while the previous one syncs (the contract lets a write overlap a sync).
   */
  private async drain(): Promise<void> {
    let syncing: Promise<BatchIdentity> | undefined;
    const settle = async (): Promise<void> => {
      if (syncing === undefined) return;
      const head = await syncing;
      syncing = undefined;
      if (head.lastSeq > this.drainedHead.lastSeq) this.drainedHead = head;
      for (const w of this.spaceWaiters.splice(0)) w();
    };
    try {
      let writtenSeq = this.drainedHead.lastSeq;
      while (this.state !== 'closed') {
        if (writtenSeq >= this.durable.lastSeq) {
          await settle();
          if (writtenSeq >= this.durable.lastSeq) break;
          continue;
        }
        const from = this.entryIndex(writtenSeq + 1);
        if (from < 0) throw new StorageError('Corrupt', `${WHERE}: seq ${writtenSeq + 1} is acknowledged but not in the ring`);
        let to = from;
        let bytes = this.entries[from].length;
        const target = this.durable.lastSeq;
        while (to + 1 < this.entries.length && this.entries[to + 1].lastSeq <= target && bytes + this.entries[to + 1].length <= this.drainBytesMax) {
          to++;
          bytes += this.entries[to].length;
        }
        // Taken now: keep() may compact `entries` (shifting indexes) while a write is awaited.
        const drained = this.entries.slice(from, to + 1);
        if (drained.every((e) => e.single)) {
          // The engine's own batches: written one by one straight from the ring (an entry's
          // bytes stay until it is drained), so the durable location checks each one's marker
          // and chain link as it does the engine's writes, instead of re-verifying every CRC and
          // digest of a join (which doubled the CPU of a drained batch of 1000 events).
          for (const e of drained) await this.inner.write(this.buffer.subarray(e.offset, e.offset + e.length), e.firstSeq, e.lastSeq);
        } else {
          // Raw batches copied in with one write: joined and verified in full by the location.
          const joined = new Uint8Array(bytes);
          let at = 0;
          for (const e of drained) {
            joined.set(this.buffer.subarray(e.offset, e.offset + e.length), at);
            at += e.length;
          }
          await this.inner.write(joined, drained[0].firstSeq, drained[drained.length - 1].lastSeq);
        }
        writtenSeq = drained[drained.length - 1].lastSeq;
        await settle();
        syncing = this.inner.sync();
      }
      await settle();
    } catch (error) {
      await syncing?.catch(() => undefined);
      this.fail('drain', error, false);
    } finally {
      for (const w of this.spaceWaiters.splice(0)) w();
      if (this.drainedHead.lastSeq >= this.durable.lastSeq || this.failure !== undefined) for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  private fail(what: string, cause: unknown, rethrow = true): never {
    const message = cause instanceof Error ? cause.message : String(cause);
    this.failure ??= new StorageError(
      (cause as StorageError)?.reason ?? 'Unavailable',
      `${WHERE}: ${what} to the durable location (${this.inner.kind}) failed: ${message}` +
        (this.mode === 'acknowledge' ? `; acknowledged seqs ${this.drainedHead.lastSeq + 1}..${this.durable.lastSeq} were not drained and are lost when this process ends` : ''),
      { cause, retryable: false },
    );
    if (rethrow) throw this.failure;
    return undefined as never;
  }

  private makeDurable(head: BatchIdentity): void {
    if (head.lastSeq <= this.durable.lastSeq) return;
    this.durable = head;
    this.signal.advance(head.lastSeq);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.failure !== undefined) throw this.failure;
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new StorageError('Closed', `${WHERE} is ${this.state === 'new' ? 'not open yet: call open() first' : 'closed'}`);
  }
}
