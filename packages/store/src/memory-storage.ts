import { StreamDecoder, type EventFrame, type SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, checkWrite, describeIdentity, identityOf } from './batch-identity.js';
import { StorageError } from './errors.js';
import { checkFrameSeqs } from './frame-seqs.js';
import { parseFsyncPolicy, type FsyncPolicy, type FsyncPolicyInput } from './fsync-policy.js';
import { firstBatchEndingAtOrAfter } from './seq-search.js';
import type { BatchIdentity, PartitionStorage, StorageReader, StorageRecovery, TailOptions, TruncateOptions } from './storage.js';
import { DurableSignal, tailBatches } from './tail.js';

/**
 * The bytes of an in-memory log. Hand the same log to several `createMemoryStorage` calls to
 * "reopen" it (tests do this to check recovery); it also holds the writer lock. It can
 * simulate what a real disk does to unsynced data ({@link powerLoss}) and inject write or
 * sync failures ({@link failNext}), so the engine's failure paths are testable without a disk.
 */
export class MemoryLog {
  /** Stored batches in seq order, written or durable. */
  readonly batches: SealedBatch[] = [];
  /** lastSeqs[i] is batches[i].lastSeq: the search key of reads. */
  readonly lastSeqs: number[] = [];
  /** How many of {@link batches} have been synced (survive {@link powerLoss}). */
  syncedCount = 0;
  /** Raw bytes appended after the last verified batch (a torn tail, for recovery tests). */
  tail: Uint8Array = new Uint8Array(0);
  /**
   * Set when a write or sync failed: the seq synced before it. Recovery cuts everything after
   * it (what a real disk may or may not hold after a failed sync is unknown).
   */
  failedAfterSeq: number | undefined;
  /** @internal */
  writer: object | undefined;
  /** @internal */
  fault: { op: 'write' | 'sync'; error: Error } | undefined;

  /** Drops every batch that was written but never synced, as a power cut would. */
  powerLoss(): void {
    this.batches.length = this.syncedCount;
    this.lastSeqs.length = this.syncedCount;
    this.tail = new Uint8Array(0);
    this.writer = undefined;
  }

  /** The next `write` or `sync` rejects with `error` (once). */
  failNext(op: 'write' | 'sync', error: Error): void {
    this.fault = { op, error };
  }
}

/** Options of {@link createMemoryStorage}. */
export interface MemoryStorageOptions {
  /**
   * The log to use; pass the same one again to reopen it.
   * @default a new, empty log
   */
  readonly log?: MemoryLog;
  /**
   * Which writes count as durable, as a disk backend would: `commit` (sync() marks them
   * synced), `interval:<n>ms` (acknowledged once written, synced by a timer) or `none`.
   * {@link MemoryLog.powerLoss} drops what was not synced.
   * @default "commit"
   */
  readonly fsync?: FsyncPolicyInput;
}

/**
 * In-memory storage: the reference backend. Nothing survives the process; everything else
 * behaves as the contract says (single writer, verified chained batches, write/sync split,
 * recovery of a torn tail and of a failed sync, truncate, tail).
 *
 * @example
 * const partition = await openPartition({ storage: createMemoryStorage() });
 */
export function createMemoryStorage(options: MemoryStorageOptions = {}): PartitionStorage {
  const fsync = options.fsync === undefined ? ({ kind: 'commit' } as const) : parseFsyncPolicy(options.fsync);
  return new MemoryStorage(options.log ?? new MemoryLog(), fsync);
}

const WHERE = '[sluice/store] memory storage';

class MemoryStorage implements PartitionStorage {
  readonly kind = 'memory';
  readonly capabilities;
  private state: 'new' | 'open' | 'closed' = 'new';
  private readonly token = {};
  private writing = false;
  private syncing = false;
  private failure: StorageError | undefined;
  private written: BatchIdentity = EMPTY_IDENTITY;
  private durable: BatchIdentity = EMPTY_IDENTITY;
  private readonly signal = new DurableSignal();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: MemoryLog,
    private readonly fsync: FsyncPolicy,
  ) {
    this.capabilities = { crossProcessReaders: false, durability: fsync, truncate: 'in-place' as const, frameReads: true };
  }

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', `${WHERE}: open() was already called; create a new storage to reopen the log`);
    if (this.log.writer !== undefined) {
      throw new StorageError('Locked', `${WHERE}: another writer has this log open: close it first`, { retryable: false });
    }
    this.log.writer = this.token;
    this.state = 'open';
    const log = this.log;
    let droppedBytes = 0;
    let droppedSeqs = 0;
    let droppedReason: string | undefined;
    if (log.failedAfterSeq !== undefined) {
      // After a failed write or sync nothing past the last successful sync is known durable.
      const keep = firstBatchEndingAtOrAfter(log.lastSeqs, log.failedAfterSeq + 1);
      droppedSeqs = (log.lastSeqs.at(-1) ?? 0) - log.failedAfterSeq;
      if (droppedSeqs > 0) droppedReason = `a write or sync failed after seq ${log.failedAfterSeq}: what was written after it was never durable`;
      log.batches.length = keep;
      log.lastSeqs.length = keep;
      log.tail = new Uint8Array(0);
      log.failedAfterSeq = undefined;
    }
    if (log.tail.length > 0) {
      // Same rule as every backend: whatever follows the last verified batch is abandoned.
      const last = log.batches.at(-1);
      const decoder = new StreamDecoder({ firstSeq: last === undefined ? undefined : last.lastSeq + 1, prevDigest: last?.marker.digest });
      const copy = Uint8Array.from(log.tail);
      const recovered = decoder.push(copy);
      const report = decoder.end();
      this.keep(recovered);
      droppedBytes = copy.length - report.validBytes;
      if (!report.clean) droppedReason = `${report.reason}: ${report.detail}`;
      log.tail = new Uint8Array(0);
    }
    log.syncedCount = log.batches.length;
    const last = log.batches.at(-1);
    this.written = last === undefined ? EMPTY_IDENTITY : identityOf(last);
    this.durable = this.written;
    if (this.fsync.kind === 'interval') {
      this.timer = setInterval(() => {
        if (this.failure === undefined) this.log.syncedCount = this.log.batches.length;
      }, this.fsync.intervalMs);
      this.timer.unref();
    }
    return { lastSeq: this.written.lastSeq, head: this.written, droppedBytes, droppedSeqs, droppedReason };
  }

  async write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    this.assertWritable();
    if (this.writing) throw new StorageError('Invalid', `${WHERE}: write() called while another write is in flight: one write at a time`);
    this.writing = true;
    try {
      const next = checkWrite(bytes, firstSeq, lastSeq, this.written, WHERE);
      await Promise.resolve();
      this.takeFault('write');
      // The caller reuses `bytes`: keep a copy, and decode it as any reader would.
      const decoder = new StreamDecoder({ firstSeq, prevDigest: this.written.digest });
      const batches = decoder.push(Uint8Array.from(bytes));
      const report = decoder.end();
      if (report.reason !== 'end' || batches.at(-1)?.lastSeq !== lastSeq) {
        throw new StorageError('Invalid', `${WHERE}: written bytes do not decode to seq ${firstSeq}..${lastSeq} (${report.reason}: ${report.detail})`);
      }
      this.keep(batches);
      this.written = next;
      if (this.fsync.kind !== 'commit') this.makeDurable(next);
    } finally {
      this.writing = false;
    }
  }

  async sync(): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.syncing) throw new StorageError('Invalid', `${WHERE}: sync() called while another sync is in flight: one sync at a time`);
    this.syncing = true;
    const covered = this.written;
    const count = this.log.batches.length;
    try {
      await Promise.resolve();
      this.takeFault('sync');
      if (this.fsync.kind === 'commit') this.log.syncedCount = Math.max(this.log.syncedCount, count);
      this.makeDurable(covered);
      return this.durable;
    } finally {
      this.syncing = false;
    }
  }

  durableHead(): BatchIdentity {
    return this.durable;
  }

  async truncate(afterSeq: number, options: TruncateOptions = {}): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.writing || this.syncing) throw new StorageError('Invalid', `${WHERE}: truncate() while a write or sync is in flight: wait for them first`);
    const log = this.log;
    const keep = afterSeq === 0 ? 0 : firstBatchEndingAtOrAfter(log.lastSeqs, afterSeq) + 1;
    if (afterSeq < 0 || afterSeq > this.written.lastSeq || (afterSeq > 0 && log.lastSeqs[keep - 1] !== afterSeq)) {
      throw new StorageError('Invalid', `${WHERE}: cannot truncate after seq ${afterSeq}: it is not the end of a stored batch (head is ${describeIdentity(this.written)})`);
    }
    if (afterSeq < this.durable.lastSeq && (options.operatorReason === undefined || options.operatorReason.trim() === '')) {
      throw new StorageError(
        'Invalid',
        `${WHERE}: truncating after seq ${afterSeq} would remove durable (acknowledged) seqs up to ${this.durable.lastSeq}: pass operatorReason to do it deliberately`,
      );
    }
    log.batches.length = keep;
    log.lastSeqs.length = keep;
    log.syncedCount = Math.min(log.syncedCount, keep);
    const last = log.batches.at(-1);
    this.written = last === undefined ? EMPTY_IDENTITY : identityOf(last);
    if (this.durable.lastSeq > afterSeq) this.durable = this.written;
    return this.written;
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    const batches = this.log.batches;
    const lastSeqs = this.log.lastSeqs;
    const assertOpen = (): void => this.assertOpen();
    const durable = (): number => this.durable.lastSeq;
    return (async function* () {
      assertOpen();
      const limit = Math.min(toSeq, durable());
      let i = firstBatchEndingAtOrAfter(lastSeqs, fromSeq);
      for (; i < batches.length && batches[i].firstSeq <= limit && batches[i].lastSeq <= durable(); i++) yield batches[i];
    })();
  }

  /**
   * Frames are kept decoded (their CRC was checked when written): each seq is found by a
   * binary search over the batches' last seqs, continued from the previous one.
   */
  readFrames(seqs: readonly number[]): AsyncIterable<EventFrame> {
    const batches = this.log.batches;
    const lastSeqs = this.log.lastSeqs;
    const assertOpen = (): void => this.assertOpen();
    const durable = (): number => this.durable.lastSeq;
    return (async function* () {
      assertOpen();
      checkFrameSeqs(seqs, durable(), WHERE);
      for (const seq of seqs) {
        assertOpen();
        // A truncate between two frames may have cut the log below a seq checked above.
        if (seq > durable()) throw new StorageError('Invalid', `${WHERE}: readFrames: seq ${seq} is above the durable head (${durable()}) since a truncate`);
        const batch = batches[firstBatchEndingAtOrAfter(lastSeqs, seq)];
        const frame = batch.frames[seq - batch.firstSeq];
        if (frame?.seq !== seq) throw new StorageError('Corrupt', `${WHERE}: the batch ${batch.firstSeq}..${batch.lastSeq} does not hold seq ${seq} where it should`);
        yield frame;
      }
    })();
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
    const i = firstBatchEndingAtOrAfter(this.log.lastSeqs, seq);
    return identityOf(this.log.batches[i]);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  async openReader(): Promise<StorageReader> {
    throw new StorageError('Unsupported', `${WHERE} has no cross-process readers: use the partition's own read() and subscribe(), or a file/LMDB backend`);
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    if (this.state === 'open' && this.log.writer === this.token) {
      // A clean close makes what was written durable, as the disk backends' close does.
      if (this.failure === undefined) this.log.syncedCount = this.log.batches.length;
      this.log.writer = undefined;
    }
    this.state = 'closed';
    this.signal.close();
  }

  private makeDurable(head: BatchIdentity): void {
    if (head.lastSeq <= this.durable.lastSeq) return;
    this.durable = head;
    this.signal.advance(head.lastSeq);
  }

  private takeFault(op: 'write' | 'sync'): void {
    const fault = this.log.fault;
    if (fault === undefined || fault.op !== op) return;
    this.log.fault = undefined;
    this.failure = new StorageError('Unavailable', `${WHERE}: ${op} failed: ${fault.error.message}`, { cause: fault.error, retryable: false });
    // What the "disk" holds after a failed write or sync is unknown: recovery must cut back
    // to what was synced before.
    this.log.failedAfterSeq = this.log.syncedCount === 0 ? 0 : this.log.lastSeqs[this.log.syncedCount - 1];
    throw this.failure;
  }

  private keep(batches: readonly SealedBatch[]): void {
    for (const b of batches) {
      this.log.batches.push(b);
      this.log.lastSeqs.push(b.lastSeq);
    }
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.failure !== undefined) throw this.failure;
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new StorageError('Closed', `${WHERE} is ${this.state === 'new' ? 'not open yet: call open() first' : 'closed'}`);
  }
}
