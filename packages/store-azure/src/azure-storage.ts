import { KIND_MARKER, MARKER_BYTES, readU32, readU53, type SealedBatch } from '@sluice/framing';
import {
  DurableSignal,
  EMPTY_IDENTITY,
  StorageError,
  checkWrite,
  describeIdentity,
  tailBatches,
  type BatchIdentity,
  type PartitionStorage,
  type StorageCapabilities,
  type StorageReader,
  type StorageRecovery,
  type TailOptions,
  type TruncateOptions,
} from '@sluice/store';
import { SOURCE, mapAzureError } from './azure-errors.js';
import { openReaderOn } from './azure-reader.js';
import { APPEND_BLOB_BLOCKS_LIMIT, resolveStorageOptions, type AzureStorageOptions, type ResolvedStorageOptions } from './azure-storage-options.js';
import { batchBounds } from './batch-markers.js';
import { BlobLogIndex, isDirty } from './blob-log-index.js';
import { appendBlockOnce } from './conditional-append.js';
import { LogBlobs, SEAL_REASON_LENGTH_MAX, type LogBlob } from './log-blobs.js';
import { isTransient } from './retry-policy.js';
import { WriterLease } from './writer-lease.js';

/** Tries to take the lease while other writers keep rolling the log under us. */
const LEASE_ROUNDS_MAX = 5;

/**
 * Azure Blob storage (storage contract v2): a partition's log kept in append blobs
 * `<prefix>/00000001.log`, `00000002.log`, ... of one container, one write per block (split in
 * blocks of up to `blockBytesMax` when larger), rolling to a new blob long before Azure's
 * per-blob limits.
 *
 * - One writer, enforced by a blob lease on the current blob; every append carries the lease
 *   id, so a writer whose lease was broken or taken gets reason `Conflict` (fencing), and a
 *   second writer gets reason `Locked` at open. Epochs fence too: `write` refuses a batch sealed
 *   with an epoch lower than the log's, and one that does not chain to the head (`checkWrite`).
 * - Appends are conditional on the blob's length (`appendPosition`): a retry after an
 *   ambiguous failure never writes a block twice. That condition also orders appends, so one
 *   write is in flight at a time by nature, as the contract asks.
 * - `write` resolves once Azure has committed every block of it, and Azure acknowledges
 *   `appendBlock` only once the block is durable: so `sync` has nothing to force and resolves at
 *   once with the written head, whatever fsync policy was asked for (`capabilities.durability`
 *   is `commit`). The durable head still moves only at `sync`, so that after a failed write the
 *   writer knows exactly what was acknowledged and seals the log there.
 * - Append blobs cannot shrink, so every cut is a seal and a roll: a torn tail at open, a
 *   failed write, or `truncate` records the valid length on the blob (metadata
 *   `sluicesealedbytes`, and `sluicesealreason` saying why) and the log goes on in a new blob;
 *   reads never look past a sealed length.
 * - Reads download only the byte ranges they need, found in a seq → (blob, offset) index built
 *   at open (verifying every batch and the hash chain across blobs) and on every write. Readers
 *   in other processes: `openAzureReader`.
 *
 * @example
 * const partition = await openPartition({
 *   name: 'payments',
 *   storage: createAzureStorage({
 *     connectionString: process.env.AZURE_STORAGE_CONNECTION_STRING,
 *     container: 'sluice',
 *     prefix: 'payments',
 *   }),
 * });
 */
export function createAzureStorage(options: AzureStorageOptions): PartitionStorage {
  return new AzureStorage(options);
}

/** Longest wait between two tries to seal the log at the durable head after a failed write. */
const FAIL_SEAL_DELAY_MAX_MS = 30_000;

class AzureStorage implements PartitionStorage {
  readonly kind = 'azure';
  readonly capabilities: StorageCapabilities = {
    crossProcessReaders: true,
    // Azure acknowledges appendBlock once the block is stored per the account's redundancy.
    durability: { kind: 'commit' },
    truncate: 'seal-and-roll',
    frameReads: false,
  };
  private readonly config: ResolvedStorageOptions;
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  private log: LogBlobs | undefined;
  private index: BlobLogIndex | undefined;
  private lease: WriterLease | undefined;
  /** The blob appends go to, its first seq, its length and committed block count. */
  private blob = 0;
  private blobFirstSeq = 1;
  private position = 0;
  private blockCount = 0;
  /** Identity of the last batch written (appended and acknowledged by Azure). */
  private written: BatchIdentity = EMPTY_IDENTITY;
  /** Identity of the last batch a sync covered: what readers see and what survives a failure. */
  private durable: BatchIdentity = EMPTY_IDENTITY;
  private writing: Promise<void> | undefined;
  private syncing = false;
  private truncating = false;
  private failure: StorageError | undefined;
  /** After a failed write: sealing the log at the durable head, retried until it lands or close. */
  private failSeal: Promise<void> | undefined;
  private wakeFailSeal: (() => void) | undefined;
  private readonly signal = new DurableSignal();

  constructor(options: AzureStorageOptions) {
    this.config = resolveStorageOptions(options);
  }

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', `${SOURCE} open() was already called: create a new storage to reopen the partition`);
    this.state = 'opening';
    try {
      const connection = this.config.connection;
      const container = await connection.connect();
      const log = new LogBlobs(container, connection.container, connection.prefix, connection.retry);
      this.log = log;
      if (this.config.createContainer) await log.createContainer();
      const lease = new WriterLease(log, this.config.leaseDurationSeconds);
      this.lease = lease;
      const blobs = await this.takeLease(log, lease);
      const last = blobs[blobs.length - 1];
      const index = new BlobLogIndex(log, connection.readBytesMax, connection.readAheadMax);
      this.index = index;
      const tail = await index.scanForward(blobs);
      this.blob = last.blob;
      this.blobFirstSeq = last.firstSeq ?? index.firstSeqIn(last.blob);
      this.position = tail.validEnd;
      this.blockCount = last.blockCount ?? 0;
      const dirty = isDirty(tail);
      await index.confirmTorn(tail);
      let droppedBytes = 0;
      let droppedSeqs = 0;
      let droppedReason: string | undefined;
      if (dirty) {
        droppedBytes = tail.limit - tail.validEnd;
        droppedReason = `${tail.report.reason}: ${tail.report.detail} (${log.describe(tail.blob)} sealed at ${tail.validEnd} bytes)`;
      } else if (last.sealedBytes !== undefined) {
        // The last blob was sealed (a crash came after sealing it, before the next one was made):
        // whatever lies past the seal was cut then (a failed write, a truncate); say what it was.
        const past = await index.pastSeal(last);
        droppedSeqs = past.seqs;
        droppedBytes = past.bytes;
        if (past.seqs + past.bytes > 0) {
          droppedReason = `${last.sealReason ?? 'sealed by an earlier writer'} (${log.describe(last.blob)} sealed at ${last.sealedBytes} bytes)`;
        }
      }
      if (dirty || last.sealedBytes !== undefined) {
        // Append blobs cannot be truncated: seal this one at its last verified batch (unless a
        // crash came right after sealing it) and go on in a new blob.
        await this.roll(dirty ? `recovery: ${tail.report.reason} at offset ${tail.validEnd}` : undefined, last.sealedBytes === undefined);
      }
      this.written = index.head;
      this.durable = index.head;
      this.state = 'open';
      lease.startRenewing((error) => {
        this.failure ??= error;
      });
      return { lastSeq: index.head.lastSeq, head: index.head, droppedBytes, droppedSeqs, droppedReason };
    } catch (error) {
      await this.lease?.release();
      this.state = 'closed';
      throw error;
    }
  }

  /**
   * Leases the log's last blob (creating blob 1 for a new log) and returns a listing taken
   * after the lease, whose last blob is the leased one, with fresh properties.
   */
  private async takeLease(log: LogBlobs, lease: WriterLease): Promise<LogBlob[]> {
    for (let round = 0; round < LEASE_ROUNDS_MAX; round++) {
      let blobs = await log.list();
      if (blobs.length === 0) {
        await log.create(1, 1);
        blobs = await log.list();
        if (blobs.length === 0) continue;
      }
      const last = blobs[blobs.length - 1].blob;
      await lease.acquire(last);
      blobs = await log.list();
      if (blobs[blobs.length - 1].blob === last) {
        // The length may have changed between the listing and the lease: read it again.
        blobs[blobs.length - 1] = await log.properties(last);
        return blobs;
      }
      // Another writer rolled to a new blob meanwhile: let go and look again.
      await lease.release();
    }
    throw new StorageError(
      'Locked',
      `${SOURCE} the log under "${log.containerName}/${log.prefix}" kept changing while this writer tried to lease it: another writer is active; close it first`,
    );
  }

  async write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    this.assertWritable();
    if (this.writing !== undefined) throw new StorageError('Invalid', `${SOURCE} write() called while another write is in flight: one write at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${SOURCE} write() called while truncate() runs: wait for it first`);
    // Same rules as every backend: no gap, chained to the head, no lower epoch (a fenced writer).
    const next = checkWrite(bytes, firstSeq, lastSeq, this.written, `${SOURCE} ${this.where()}`);
    if (bytes.length > this.config.blobBytesMax) {
      throw new StorageError('Invalid', `${SOURCE} a write of ${bytes.length} bytes does not fit a blob of blobBytesMax ${this.config.blobBytesMax}: raise blobBytesMax or lower the partition's batchBytesMax`);
    }
    if (Math.ceil(bytes.length / this.config.blockBytesMax) > APPEND_BLOB_BLOCKS_LIMIT) {
      throw new StorageError('Invalid', `${SOURCE} a write of ${bytes.length} bytes needs more than ${APPEND_BLOB_BLOCKS_LIMIT} blocks of blockBytesMax ${this.config.blockBytesMax}: raise blockBytesMax`);
    }
    // One entry per batch (a raw copy may carry several); the last one is `next`.
    const bounds = isOneBatch(bytes, firstSeq) ? [{ firstSeq, lastSeq, end: bytes.length, identity: next }] : batchBounds(bytes);
    const appending = this.appendBytes(bytes).catch((error: unknown) => {
      // What reached the blob is unknown now: refuse further writes and seal the log at the
      // durable head, so no reopening serves what was written after the last sync.
      throw this.fail(error, bytes.length);
    });
    this.writing = appending;
    try {
      await appending;
    } finally {
      this.writing = undefined;
    }
    const index = this.index as BlobLogIndex;
    let start = 0;
    for (const b of bounds) {
      index.add(b.firstSeq, b.lastSeq, this.blob, this.position + start, b.end - start, b.identity);
      start = b.end;
    }
    this.position += bytes.length;
    this.written = next;
  }

  private async appendBytes(bytes: Uint8Array): Promise<void> {
    const { blockBytesMax, blobBlocksMax, blobBytesMax } = this.config;
    const blocks = Math.ceil(bytes.length / blockBytesMax);
    if (this.position > 0 && (this.blockCount + blocks > blobBlocksMax || this.position + bytes.length > blobBytesMax)) await this.roll(undefined, true);
    const log = this.log as LogBlobs;
    const leaseId = (this.lease as WriterLease).leaseId;
    for (let offset = 0; offset < bytes.length; offset += blockBytesMax) {
      const block = bytes.subarray(offset, Math.min(bytes.length, offset + blockBytesMax));
      this.blockCount = await appendBlockOnce({ log, blob: this.blob, bytes: block, position: this.position + offset, leaseId, maxSize: blobBytesMax });
    }
  }

  /**
   * Resolves at once with the written head: every write resolved only after Azure acknowledged
   * its blocks, which Azure does once they are durable. It moves the durable head (what readers
   * see) to what it covers.
   */
  async sync(): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.syncing) throw new StorageError('Invalid', `${SOURCE} sync() called while another sync is in flight: one sync at a time`);
    this.syncing = true;
    try {
      const covered = this.written;
      // Nothing to force; the tick keeps the sync in flight as the contract's concurrency rule sees it.
      await Promise.resolve();
      if (this.failure !== undefined) throw this.failure;
      if (covered.lastSeq > this.durable.lastSeq) {
        this.durable = covered;
        this.signal.advance(covered.lastSeq);
      }
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
    if (this.writing !== undefined || this.syncing || this.truncating) {
      throw new StorageError('Invalid', `${SOURCE} truncate() while a write, sync or truncate is in flight: wait for them first`);
    }
    const index = this.index as BlobLogIndex;
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0 || afterSeq > this.written.lastSeq || !index.isBoundary(afterSeq)) {
      throw new StorageError('Invalid', `${SOURCE} ${this.where()}: cannot truncate after seq ${afterSeq}: it is not the end of a stored batch (head is ${describeIdentity(this.written)})`);
    }
    const operatorReason = options.operatorReason?.trim();
    if (afterSeq < this.durable.lastSeq && (operatorReason === undefined || operatorReason === '')) {
      throw new StorageError(
        'Invalid',
        `${SOURCE} ${this.where()}: truncating after seq ${afterSeq} would remove durable (acknowledged) seqs up to ${this.durable.lastSeq}: pass operatorReason to do it deliberately`,
      );
    }
    if (operatorReason !== undefined && operatorReason.length > SEAL_REASON_LENGTH_MAX) {
      throw new StorageError('Invalid', `${SOURCE} operatorReason is ${operatorReason.length} characters long: keep it under ${SEAL_REASON_LENGTH_MAX} (it is recorded in blob metadata)`);
    }
    if (afterSeq === this.written.lastSeq) return this.written;
    this.truncating = true;
    try {
      const identity = afterSeq === 0 ? EMPTY_IDENTITY : ((await index.identityAt(afterSeq, afterSeq)) as BatchIdentity);
      const reason = `truncate after seq ${afterSeq} (head was ${describeIdentity(this.written)})${operatorReason === undefined || operatorReason === '' ? '' : `: ${operatorReason}`}`;
      try {
        await this.cut(afterSeq, reason);
        index.truncateAfter(afterSeq, identity);
        this.written = identity;
        if (this.durable.lastSeq > afterSeq) this.durable = identity;
        await this.roll(undefined, false);
      } catch (error) {
        // Every step leaves a log that is a prefix of the old one, but which one is unknown here.
        this.failure ??= toStorageError(error, 'truncate');
        throw this.failure;
      }
      return this.written;
    } finally {
      this.truncating = false;
    }
  }

  /**
   * Cuts the log after `afterSeq` (a batch boundary): seals the blob holding the cut at the end
   * of that batch and every later blob at 0 bytes, recording `reason`, from the last blob back,
   * so a crash in between leaves a log that is a prefix of this one. The first step is on the
   * writer's leased blob and carries the lease id: a writer that lost its lease changes nothing.
   */
  private async cut(afterSeq: number, reason: string): Promise<void> {
    const log = this.log as LogBlobs;
    const lease = this.lease as WriterLease;
    const index = this.index as BlobLogIndex;
    const at = index.cutPoint(afterSeq);
    const blobs = await log.list();
    const held = lease.heldBlob;
    if (blobs.at(-1)?.blob !== held) {
      throw new StorageError('Conflict', `${SOURCE} ${this.where()}: the log's last blob is not the one this writer leased: another writer took over; reopen the partition`, { retryable: false });
    }
    for (let k = blobs.length - 1; k >= 0 && blobs[k].blob >= at.blob; k--) {
      const b = blobs[k];
      const sealedBytes = b.blob === at.blob ? at.offset : 0;
      if (b.blob !== held && b.sealedBytes === sealedBytes) continue;
      await log.seal(b.blob, b.firstSeq ?? index.firstSeqIn(b.blob), sealedBytes, b.blob === held ? lease.leaseId : undefined, reason);
    }
  }

  /**
   * Continues the log in the next blob: seals the current one at the writer's position (when
   * `seal`, recording `reason` if it is not an ordinary roll), creates the next one recording its
   * first seq, and moves the lease to it. Each step is conditional: sealing needs the lease, so
   * a writer that lost it never creates a blob.
   */
  private async roll(reason: string | undefined, seal: boolean): Promise<void> {
    const log = this.log as LogBlobs;
    const lease = this.lease as WriterLease;
    const index = this.index as BlobLogIndex;
    const next = this.blob + 1;
    const firstSeq = index.lastSeq + 1;
    if (seal) await log.seal(this.blob, this.blobFirstSeq, this.position, lease.leaseId, reason);
    if (!(await log.create(next, firstSeq))) {
      // It exists: made by a try of ours whose answer was lost, or by another writer.
      const existing = await log.properties(next);
      if (existing.contentLength !== 0 || existing.firstSeq !== firstSeq) {
        throw new StorageError(
          'Conflict',
          `${SOURCE} ${log.describe(next)} already exists with other content: another writer is active on the partition; stop this writer and reopen it`,
        );
      }
    }
    await lease.moveTo(next);
    index.startBlob(next);
    this.blob = next;
    this.blobFirstSeq = firstSeq;
    this.position = 0;
    this.blockCount = 0;
  }

  /**
   * Marks the storage failed after a write of `bytes` bytes failed, and starts sealing the log at
   * the durable head (retried while the service is unreachable; close makes a last try).
   */
  private fail(error: unknown, bytes: number): StorageError {
    if (this.failure !== undefined) return this.failure;
    const failure = toStorageError(error, 'write');
    this.failure = failure;
    const durable = this.durable;
    // The failed write may have landed, wholly or partly, but nothing else may lie after it.
    const blob = this.blob;
    const endMax = this.position + bytes;
    const reason = `a write failed after seq ${durable.lastSeq} (${failure.reason}): what was written after it was never acknowledged`;
    this.failSeal = (async () => {
      let retaken = false;
      for (let attempt = 1; ; attempt++) {
        try {
          await this.cut(durable.lastSeq, reason);
          return;
        } catch (sealError) {
          const mapped = toStorageError(sealError, 'seal');
          if (mapped.reason === 'Conflict' && !retaken) {
            // The lease ran out while the service was away (or the service lost it). Take it
            // again, only if nobody else holds it and nothing was appended after the failed write.
            retaken = true;
            if (await this.retakeLease(blob, endMax)) continue;
            return;
          }
          // Only a transient failure is worth another try; a lease held by another writer means
          // it took over, and its recovery decides.
          if (!isTransient(mapped) || this.state !== 'open') return;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(FAIL_SEAL_DELAY_MAX_MS, 100 * 2 ** attempt));
            this.wakeFailSeal = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wakeFailSeal = undefined;
        }
      }
    })();
    return failure;
  }

  /** Leases `blob` again after the lease was lost, if it is still the log's end and ends by `endMax`. */
  private async retakeLease(blob: number, endMax: number): Promise<boolean> {
    const log = this.log as LogBlobs;
    const lease = this.lease as WriterLease;
    try {
      await lease.acquire(blob);
      const blobs = await log.list();
      const last = await log.properties(blob);
      if (blobs.at(-1)?.blob === blob && last.sealedBytes === undefined && last.contentLength <= endMax) return true;
      await lease.release();
      return false;
    } catch {
      return false;
    }
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    if (this.state !== 'open') {
      const error = this.closedError();
      return (async function* () {
        throw error;
      })();
    }
    // Never past the durable head, even if the index holds batches written since.
    return (this.index as BlobLogIndex).read(fromSeq, Math.min(toSeq, this.durable.lastSeq));
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
    return (this.index as BlobLogIndex).identityAt(seq, this.durable.lastSeq);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  openReader(): Promise<StorageReader> {
    return openReaderOn(this.config.connection);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.signal.close();
    await this.writing?.catch(() => undefined);
    if (this.failSeal !== undefined) {
      // One last try now (e.g. the service is back), then give up: the lease expires by itself.
      this.wakeFailSeal?.();
      await this.failSeal;
    }
    // Releasing lets the next writer in at once; if it fails, the lease expires by itself.
    await this.lease?.release();
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.failure !== undefined) throw this.failure;
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw this.closedError();
  }

  private where(): string {
    return `"${this.config.connection.container}/${this.config.connection.prefix}"`;
  }

  private closedError(): StorageError {
    return new StorageError('Closed', `${SOURCE} ${this.where()} is ${this.state === 'new' || this.state === 'opening' ? 'not open: call open() first' : 'closed'}`);
  }
}

function toStorageError(error: unknown, what: string): StorageError {
  if (error instanceof StorageError) return error;
  return mapAzureError(error, what, '');
}

/** True when the marker ending `bytes` seals from `firstSeq`: the write is one batch (the engine's case). */
function isOneBatch(bytes: Uint8Array, firstSeq: number): boolean {
  const m = bytes.length - MARKER_BYTES;
  return m >= 0 && readU32(bytes, m) === MARKER_BYTES && bytes[m + 5] === KIND_MARKER && readU53(bytes, m + 8) === firstSeq;
}
