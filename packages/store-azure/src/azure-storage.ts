import type { SealedBatch } from '@sluice/framing';
import { StorageError, type PartitionStorage, type StorageCapabilities, type StorageReader, type StorageRecovery } from '@sluice/store';
import { SOURCE } from './azure-errors.js';
import { openReaderOn } from './azure-reader.js';
import { APPEND_BLOB_BLOCKS_LIMIT, resolveStorageOptions, type AzureStorageOptions, type ResolvedStorageOptions } from './azure-storage-options.js';
import { BlobLogIndex, isDirty } from './blob-log-index.js';
import { appendBlockOnce } from './conditional-append.js';
import { LogBlobs, type LogBlob } from './log-blobs.js';
import { WriterLease } from './writer-lease.js';

/** Tries to take the lease while other writers keep rolling the log under us. */
const LEASE_ROUNDS_MAX = 5;

/**
 * Azure Blob storage: a partition's log kept in append blobs `<prefix>/00000001.log`,
 * `00000002.log`, ... of one container, one sealed batch per block (split in blocks of up to
 * `blockBytesMax` when larger), rolling to a new blob long before Azure's per-blob limits.
 *
 * - One writer, enforced by a blob lease on the current blob; every append carries the lease
 *   id, so a writer whose lease was broken or taken gets reason `Conflict` (fencing), and a
 *   second writer gets reason `Locked` at open.
 * - Appends are conditional on the blob's length (`appendPosition`): a retry after an
 *   ambiguous failure never writes a block twice.
 * - `append` resolves once Azure has committed every block of it (Azure acknowledges
 *   `appendBlock` durably).
 * - Recovery: a torn or unsigned tail of the last blob is cut off logically, since append
 *   blobs cannot be truncated: the blob is sealed at the end of its last verified batch
 *   (metadata `sluicesealedbytes`) and the log continues in a new blob; reads never look past
 *   a sealed length.
 * - Reads download only the byte ranges they need, found in a seq → (blob, offset) index built
 *   at open and on every append. Readers in other processes: `openAzureReader`.
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

class AzureStorage implements PartitionStorage {
  readonly kind = 'azure';
  readonly capabilities: StorageCapabilities = {
    crossProcessReaders: true,
    durability: 'committed by Azure Blob Storage (appendBlock acknowledged, stored per the account redundancy) before every append resolves',
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
  private appending: Promise<void> | undefined;
  private failure: StorageError | undefined;

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
      if (dirty || last.sealedBytes !== undefined) {
        // Append blobs cannot be truncated: seal this one at its last verified batch (unless a
        // crash came right after sealing it) and go on in a new blob.
        await this.roll(last.sealedBytes === undefined);
      }
      this.state = 'open';
      lease.startRenewing((error) => {
        this.failure ??= error;
      });
      return {
        lastSeq: index.lastSeq,
        droppedBytes: dirty ? tail.limit - tail.validEnd : 0,
        droppedReason: dirty ? `${tail.report.reason}: ${tail.report.detail} (${log.describe(tail.blob)} sealed at ${tail.validEnd} bytes)` : undefined,
      };
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

  async append(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    if (this.state !== 'open') throw this.closedError();
    if (this.failure !== undefined) throw this.failure;
    if (this.appending !== undefined) throw new StorageError('Invalid', `${SOURCE} append called while another append is in flight: await each append before the next`);
    const index = this.index as BlobLogIndex;
    if (firstSeq !== index.lastSeq + 1 || lastSeq < firstSeq) {
      throw new StorageError('Conflict', `${SOURCE} append of seq ${firstSeq}..${lastSeq} does not follow seq ${index.lastSeq}`);
    }
    if (bytes.length === 0 || bytes.length > this.config.blobBytesMax) {
      throw new StorageError('Invalid', `${SOURCE} an append of ${bytes.length} bytes does not fit a blob of blobBytesMax ${this.config.blobBytesMax}: raise blobBytesMax or lower the partition's batchBytesMax`);
    }
    if (Math.ceil(bytes.length / this.config.blockBytesMax) > APPEND_BLOB_BLOCKS_LIMIT) {
      throw new StorageError('Invalid', `${SOURCE} an append of ${bytes.length} bytes needs more than ${APPEND_BLOB_BLOCKS_LIMIT} blocks of blockBytesMax ${this.config.blockBytesMax}: raise blockBytesMax`);
    }
    const appending = this.write(bytes);
    this.appending = appending;
    try {
      await appending;
    } catch (error) {
      // What reached the blob is unknown now: refuse further appends until reopened.
      this.failure = error instanceof StorageError ? error : new StorageError('Unavailable', `${SOURCE} append failed: ${String(error)}`, { cause: error, retryable: false });
      throw this.failure;
    } finally {
      this.appending = undefined;
    }
    index.add(firstSeq, lastSeq, this.blob, this.position, bytes.length);
    this.position += bytes.length;
  }

  private async write(bytes: Uint8Array): Promise<void> {
    const { blockBytesMax, blobBlocksMax, blobBytesMax } = this.config;
    const blocks = Math.ceil(bytes.length / blockBytesMax);
    if (this.position > 0 && (this.blockCount + blocks > blobBlocksMax || this.position + bytes.length > blobBytesMax)) await this.roll(true);
    const log = this.log as LogBlobs;
    const leaseId = (this.lease as WriterLease).leaseId;
    for (let offset = 0; offset < bytes.length; offset += blockBytesMax) {
      const block = bytes.subarray(offset, Math.min(bytes.length, offset + blockBytesMax));
      this.blockCount = await appendBlockOnce({ log, blob: this.blob, bytes: block, position: this.position + offset, leaseId, maxSize: blobBytesMax });
    }
  }

  /**
   * Continues the log in the next blob: seals the current one at the writer's position (when
   * `seal`), creates the next one recording its first seq, and moves the lease to it. Each step
   * is conditional: sealing needs the lease, so a writer that lost it never creates a blob.
   */
  private async roll(seal: boolean): Promise<void> {
    const log = this.log as LogBlobs;
    const lease = this.lease as WriterLease;
    const index = this.index as BlobLogIndex;
    const next = this.blob + 1;
    const firstSeq = index.lastSeq + 1;
    if (seal) await log.seal(this.blob, this.blobFirstSeq, this.position, lease.leaseId);
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

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    if (this.state !== 'open') {
      const error = this.closedError();
      return (async function* () {
        throw error;
      })();
    }
    return (this.index as BlobLogIndex).read(fromSeq, toSeq);
  }

  async lastSeq(): Promise<number> {
    return this.index?.lastSeq ?? 0;
  }

  openReader(): Promise<StorageReader> {
    return openReaderOn(this.config.connection);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.appending?.catch(() => undefined);
    // Releasing lets the next writer in at once; if it fails, the lease expires by itself.
    await this.lease?.release();
  }

  private closedError(): StorageError {
    const where = `"${this.config.connection.container}/${this.config.connection.prefix}"`;
    return new StorageError('Closed', `${SOURCE} ${where} is ${this.state === 'new' || this.state === 'opening' ? 'not open: call open() first' : 'closed'}`);
  }
}

