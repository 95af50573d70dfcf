import { StreamDecoder, type SealedBatch } from '@sluice/framing';
import { StorageError } from './errors.js';
import { firstBatchEndingAtOrAfter } from './seq-search.js';
import type { PartitionStorage, StorageReader, StorageRecovery } from './storage.js';

/**
 * The bytes of an in-memory log. Hand the same log to several `createMemoryStorage` calls to
 * "reopen" it (tests do this to check recovery); it also holds the writer lock.
 */
export class MemoryLog {
  /** Stored batches in seq order. */
  readonly batches: SealedBatch[] = [];
  /** lastSeqs[i] is batches[i].lastSeq: the search key of reads. */
  readonly lastSeqs: number[] = [];
  /** Raw bytes appended after the last verified batch (a torn tail, for recovery tests). */
  tail: Uint8Array = new Uint8Array(0);
  /** @internal */
  writer: object | undefined;
}

/** Options of {@link createMemoryStorage}. */
export interface MemoryStorageOptions {
  /**
   * The log to use; pass the same one again to reopen it.
   * @default a new, empty log
   */
  readonly log?: MemoryLog;
}

/**
 * In-memory storage: the reference backend. Nothing survives the process; everything else
 * behaves as the contract says (single writer, verified batches, recovery of a torn tail).
 *
 * @example
 * const partition = await openPartition({ storage: createMemoryStorage() });
 */
export function createMemoryStorage(options: MemoryStorageOptions = {}): PartitionStorage {
  return new MemoryStorage(options.log ?? new MemoryLog());
}

class MemoryStorage implements PartitionStorage {
  readonly kind = 'memory';
  readonly capabilities = { crossProcessReaders: false, durability: 'none: process memory only' };
  private state: 'new' | 'open' | 'closed' = 'new';
  private readonly token = {};

  constructor(private readonly log: MemoryLog) {}

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', '[sluice/store] memory storage: open() was already called; create a new storage to reopen the log');
    if (this.log.writer !== undefined) {
      throw new StorageError('Locked', '[sluice/store] memory storage: another writer has this log open: close it first', { retryable: false });
    }
    this.log.writer = this.token;
    this.state = 'open';
    let droppedBytes = 0;
    let droppedReason: string | undefined;
    if (this.log.tail.length > 0) {
      // Same rule as every backend: whatever follows the last verified batch is abandoned.
      const last = this.log.batches.at(-1);
      const decoder = new StreamDecoder({ firstSeq: last === undefined ? undefined : last.lastSeq + 1 });
      const copy = Uint8Array.from(this.log.tail);
      const recovered = decoder.push(copy);
      const report = decoder.end();
      this.keep(recovered);
      droppedBytes = copy.length - report.validBytes;
      droppedReason = report.clean ? undefined : `${report.reason}: ${report.detail}`;
      this.log.tail = new Uint8Array(0);
    }
    return { lastSeq: this.lastSeqNow(), droppedBytes, droppedReason };
  }

  async append(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    this.assertOpen();
    const expected = this.lastSeqNow() + 1;
    if (firstSeq !== expected) {
      throw new StorageError('Conflict', `[sluice/store] memory storage: append of seq ${firstSeq}..${lastSeq} does not follow seq ${expected - 1}`);
    }
    // The caller reuses `bytes`: keep a copy, and decode it as any reader would.
    const decoder = new StreamDecoder({ firstSeq });
    const batches = decoder.push(Uint8Array.from(bytes));
    const report = decoder.end();
    if (report.reason !== 'end' || batches.at(-1)?.lastSeq !== lastSeq) {
      throw new StorageError('Corrupt', `[sluice/store] memory storage: appended bytes do not decode to seq ${firstSeq}..${lastSeq} (${report.reason}: ${report.detail})`);
    }
    this.keep(batches);
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    const batches = this.log.batches;
    const lastSeqs = this.log.lastSeqs;
    const assertOpen = (): void => this.assertOpen();
    return (async function* () {
      assertOpen();
      let i = firstBatchEndingAtOrAfter(lastSeqs, fromSeq);
      for (; i < batches.length && batches[i].firstSeq <= toSeq; i++) yield batches[i];
    })();
  }

  async lastSeq(): Promise<number> {
    return this.lastSeqNow();
  }

  async openReader(): Promise<StorageReader> {
    throw new StorageError('Unsupported', '[sluice/store] memory storage has no cross-process readers: use the partition\'s own read() and subscribe(), or a file/LMDB backend');
  }

  async close(): Promise<void> {
    if (this.state === 'open' && this.log.writer === this.token) this.log.writer = undefined;
    this.state = 'closed';
  }

  private keep(batches: readonly SealedBatch[]): void {
    for (const b of batches) {
      this.log.batches.push(b);
      this.log.lastSeqs.push(b.lastSeq);
    }
  }

  private lastSeqNow(): number {
    return this.log.batches.at(-1)?.lastSeq ?? 0;
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new StorageError('Closed', `[sluice/store] memory storage is ${this.state === 'new' ? 'not open yet: call open() first' : 'closed'}`);
  }
}
