import type { SealedBatch } from '@sluice/framing';
import { StorageError, type StorageReader } from '@sluice/store';
import { LAYOUT, decodeValue, floorKey, isWhole, lastKey, readBatches } from './batch-log.js';
import { openReaderEnv, type LmdbHandle } from './lmdb-env.js';

/** Options of {@link openLmdbReader}. */
export interface LmdbReaderOptions {
  /** The partition's directory, as given to the writer's `createLmdbStorage`. */
  readonly directory: string;
}

/**
 * Opens a read-only reader on an LMDB partition, from any process, while its writer runs.
 * It opens the environment read-only (`MDB_RDONLY`: it never writes the data file and takes
 * no Sluice lock), sees each commit once LMDB has committed it, and yields only batches that
 * verify. In the writer's own process, open readers after the writer (lmdb-js shares one
 * environment per file per process and keeps the first opener's flags).
 *
 * @example
 * const reader = await openLmdbReader({ directory: './data/payments' });
 * for await (const batch of reader.read(checkpoint + 1, await reader.lastSeq())) project(batch.frames);
 * await reader.close();
 */
export async function openLmdbReader(options: LmdbReaderOptions): Promise<StorageReader> {
  if (typeof options?.directory !== 'string' || options.directory.length === 0) {
    throw new StorageError('Invalid', '[sluice/store-lmdb] options.directory must be a non-empty path');
  }
  const env = openReaderEnv(options.directory);
  const found = env.meta.getBinary('layout');
  if (found !== undefined && new TextDecoder().decode(found) !== LAYOUT) {
    await env.close();
    throw new StorageError(
      'Invalid',
      `[sluice/store-lmdb] ${options.directory} was written with layout "${new TextDecoder().decode(found)}", this version reads "${LAYOUT}": ` +
        `read it with the @sluice/store-lmdb version that wrote it`,
    );
  }
  return new LmdbReader(options.directory, env);
}

class LmdbReader implements StorageReader {
  private closed = false;
  /** The last entry's key and size and the seq it ends at: decoded once, not on every call. */
  private last: { key: number; bytes: number; lastSeq: number } | undefined;

  constructor(
    private readonly directory: string,
    private readonly env: LmdbHandle,
  ) {}

  async *read(fromSeq: number, toSeq: number): AsyncGenerator<SealedBatch> {
    this.assertOpen();
    // Up to the last entry that verifies: a tail the writer's recovery has not removed yet is never read.
    const lastSeq = this.lastVerifiedSeq();
    yield* readBatches(this.env.batches, this.directory, fromSeq, Math.min(toSeq, lastSeq), 'stop', () => this.assertOpen());
  }

  async lastSeq(): Promise<number> {
    this.assertOpen();
    return this.lastVerifiedSeq();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.env.close();
  }

  /**
   * The seq the last entry that verifies ends at, from a fresh snapshot. Steps back over a
   * last entry that does not verify: a tail the writer has not recovered yet.
   */
  private lastVerifiedSeq(): number {
    const db = this.env.batches;
    this.env.root.resetReadTxn(); // see commits made since this reader last looked
    let key = lastKey(db);
    while (key !== undefined) {
      const fast = db.getBinaryFast(key);
      if (fast !== undefined) {
        if (this.last?.key === key && this.last.bytes === fast.length) return this.last.lastSeq;
        const value = decodeValue(fast, key); // in place: only numbers escape
        if (isWhole(value)) {
          const lastSeq = value.batches[value.batches.length - 1].lastSeq;
          this.last = { key, bytes: fast.length, lastSeq };
          return lastSeq;
        }
      }
      key = floorKey(db, key - 1);
    }
    return 0;
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `[sluice/store-lmdb] reader of ${this.directory} is closed`);
  }
}
