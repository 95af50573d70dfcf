import { mkdir, stat } from 'node:fs/promises';
import type { SealedBatch } from '@sluice/framing';
import {
  StorageError,
  WriterLock,
  parseFsyncPolicy,
  type FsyncPolicy,
  type FsyncPolicyInput,
  type PartitionStorage,
  type StorageReader,
  type StorageRecovery,
} from '@sluice/store';
import { LAYOUT, decodeValue, isWhole, lastKey, ownedCopy, readBatches } from './batch-log.js';
import { Durability, describeLmdbDurability } from './durability.js';
import { openWriterEnv, type LmdbHandle } from './lmdb-env.js';
import { mapLmdbError, mapLmdbWriteError } from './lmdb-errors.js';
import { openLmdbReader } from './lmdb-reader.js';
import { MapSizeLimit } from './map-size-limit.js';

/** Options of {@link createLmdbStorage}. */
export interface LmdbStorageOptions {
  /**
   * The partition's directory: LMDB's `data.mdb` and `lock.mdb` and the Sluice `writer.lock`
   * live here. One partition per directory.
   */
  readonly directory: string;
  /**
   * Create the directory if it is missing.
   * @default true
   */
  readonly createDirectory?: boolean;
  /**
   * When appends are forced to disk: `"commit"`, `"interval:100ms"` or `"none"` (see the
   * README for what each means in LMDB terms).
   * @default "commit"
   */
  readonly fsync?: FsyncPolicyInput;
  /**
   * Largest size, in bytes, the partition's LMDB data file may reach. lmdb-js grows its
   * memory map on demand, so the storage enforces this itself: an append that could take the
   * file past it rejects with `StorageError` reason `Full` (the partition faults); raise it and
   * reopen. Also sizes the first memory map (up to 256 MiB).
   * @default 1099511627776 (1 TiB)
   */
  readonly mapSize?: number;
}

/** Defaults of {@link LmdbStorageOptions}. */
export function lmdbStorageDefaults(): { createDirectory: boolean; fsync: FsyncPolicy; mapSize: number } {
  return { createDirectory: true, fsync: { kind: 'commit' }, mapSize: 2 ** 40 };
}

const MAP_SIZE_MIN = 64 * 1024;
const INITIAL_MAP_BYTES_MAX = 256 * 1024 * 1024;
const LAYOUT_KEY = 'layout';

/**
 * LMDB storage: each append stored as one LMDB entry keyed by its first seq, read back by key
 * range and verified; one Sluice writer per partition (a lock file), read-only readers in
 * any process (`openLmdbReader`).
 *
 * @example
 * const partition = await openPartition({
 *   storage: createLmdbStorage({ directory: './data/payments', fsync: 'commit' }),
 *   name: 'payments',
 * });
 */
export function createLmdbStorage(options: LmdbStorageOptions): PartitionStorage {
  return new LmdbStorage(options);
}

class LmdbStorage implements PartitionStorage {
  readonly kind = 'lmdb';
  readonly capabilities: PartitionStorage['capabilities'];
  private readonly directory: string;
  private readonly createDirectory: boolean;
  private readonly fsync: FsyncPolicy;
  private readonly mapSize: number;
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  private lock: WriterLock | undefined;
  private env: LmdbHandle | undefined;
  private durability: Durability | undefined;
  private limit: MapSizeLimit | undefined;
  /** Seq of the last committed frame. */
  private committedSeq = 0;
  /** Seq the next append must start at (moves when an append starts, so overlapping appends are refused). */
  private nextSeq = 1;
  private failure: StorageError | undefined;

  constructor(options: LmdbStorageOptions) {
    const defaults = lmdbStorageDefaults();
    if (typeof options?.directory !== 'string' || options.directory.length === 0) {
      throw new StorageError('Invalid', '[sluice/store-lmdb] options.directory must be a non-empty path');
    }
    this.directory = options.directory;
    this.createDirectory = options.createDirectory ?? defaults.createDirectory;
    this.mapSize = options.mapSize ?? defaults.mapSize;
    if (!Number.isSafeInteger(this.mapSize) || this.mapSize < MAP_SIZE_MIN) {
      throw new StorageError('Invalid', `[sluice/store-lmdb] mapSize must be an integer of at least ${MAP_SIZE_MIN} bytes, got ${options.mapSize}`);
    }
    try {
      this.fsync = options.fsync === undefined ? defaults.fsync : parseFsyncPolicy(options.fsync);
    } catch (error) {
      throw new StorageError('Invalid', (error as Error).message.replace('[sluice/store]', '[sluice/store-lmdb]'), { cause: error });
    }
    this.capabilities = { crossProcessReaders: true, durability: describeLmdbDurability(this.fsync) };
  }

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', '[sluice/store-lmdb] open() was already called: create a new storage to reopen');
    this.state = 'opening';
    try {
      await this.prepareDirectory();
      this.lock = await WriterLock.acquire(this.directory, 'store-lmdb', 'openLmdbReader()');
      const env = openWriterEnv(this.directory, this.fsync, Math.min(this.mapSize, INITIAL_MAP_BYTES_MAX));
      this.env = env;
      this.checkLayout(env);
      const recovery = await this.recover(env);
      this.committedSeq = recovery.lastSeq;
      this.nextSeq = recovery.lastSeq + 1;
      this.limit = new MapSizeLimit(env.root, this.mapSize, this.directory);
      this.durability = new Durability(this.fsync, env.root, env.batches);
      this.state = 'open';
      return recovery;
    } catch (error) {
      // A commit of recovery or of the layout record failed: never commit again on this environment.
      if (this.env !== undefined && !(error instanceof StorageError)) this.env.poison();
      await this.release();
      this.state = 'closed';
      throw await mapLmdbWriteError(error, this.context(), 0);
    }
  }

  async append(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    if (this.state !== 'open') throw this.closedError();
    if (this.failure !== undefined) throw this.failure;
    if (firstSeq !== this.nextSeq || !(lastSeq >= firstSeq)) {
      throw new StorageError(
        'Conflict',
        `[sluice/store-lmdb] append of seq ${firstSeq}..${lastSeq} does not follow seq ${this.nextSeq - 1}${this.nextSeq - 1 !== this.committedSeq ? ' (an append is still in flight)' : ''}`,
      );
    }
    const env = this.env as LmdbHandle;
    (this.limit as MapSizeLimit).check(bytes.length); // Full: nothing was written, the log is intact
    this.nextSeq = lastSeq + 1;
    let stored: boolean;
    try {
      // MDB_APPEND: the key must sort after every stored key, so a batch is never overwritten.
      stored = await env.batches.put(firstSeq, bytes, { append: true });
      if (stored) await (this.durability as Durability).afterCommit();
    } catch (error) {
      // What LMDB holds now is unknown, and lmdb-js may corrupt the file if this environment
      // commits again after a failed commit: refuse appends until reopened.
      env.poison();
      this.failure = await mapLmdbWriteError(error, this.context(), bytes.length);
      throw this.failure;
    }
    if (!stored) {
      this.failure = new StorageError(
        'Conflict',
        `[sluice/store-lmdb] ${this.directory}: a batch at or after seq ${firstSeq} is already stored: another process wrote this partition; reopen it`,
      );
      throw this.failure;
    }
    this.committedSeq = lastSeq;
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    if (this.state !== 'open') {
      const error = this.closedError();
      return (async function* () {
        throw error;
      })();
    }
    return readBatches((this.env as LmdbHandle).batches, this.directory, fromSeq, toSeq, 'corrupt', () => {
      if (this.state !== 'open') throw this.closedError();
    });
  }

  async lastSeq(): Promise<number> {
    return this.committedSeq;
  }

  openReader(): Promise<StorageReader> {
    return openLmdbReader({ directory: this.directory });
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.durability?.close(this.failure === undefined);
    await this.release();
  }

  private async release(): Promise<void> {
    const env = this.env;
    this.env = undefined;
    await env?.close().catch(() => undefined);
    await this.lock?.release();
    this.lock = undefined;
  }

  private async prepareDirectory(): Promise<void> {
    try {
      if (this.createDirectory) {
        await mkdir(this.directory, { recursive: true });
      } else if (!(await stat(this.directory)).isDirectory()) {
        throw new StorageError('NotFound', `[sluice/store-lmdb] ${this.directory} is not a directory: point directory at the partition's folder`);
      }
    } catch (error) {
      throw mapLmdbError(error, this.context());
    }
  }

  /** Records the key layout on first open; refuses a partition written with another layout. */
  private checkLayout(env: LmdbHandle): void {
    const layout = new TextEncoder().encode(LAYOUT);
    env.root.transactionSync(() => {
      const found = env.meta.getBinary(LAYOUT_KEY);
      if (found === undefined) {
        env.meta.putSync(LAYOUT_KEY, layout);
      } else if (new TextDecoder().decode(found) !== LAYOUT) {
        throw new StorageError(
          'Invalid',
          `[sluice/store-lmdb] ${this.directory} was written with layout "${new TextDecoder().decode(found)}", this version reads "${LAYOUT}": ` +
            `open it with the @sluice/store-lmdb version that wrote it`,
        );
      }
    });
  }

  /**
   * LMDB commits are atomic, so a crash never leaves part of an entry. What recovery removes
   * is a last entry that is not whole sealed batches following the log (a tail written around
   * the writer, as the conformance suite's `appendRaw` does): its verified batches are kept,
   * the rest is dropped. Reads check every other entry as they go.
   */
  private async recover(env: LmdbHandle): Promise<StorageRecovery> {
    const db = env.batches;
    let droppedBytes = 0;
    let droppedReason: string | undefined;
    let lastSeq = 0;
    for (;;) {
      const key = lastKey(db);
      if (key === undefined) break;
      const fast = db.getBinaryFast(key) as Uint8Array; // decoded in place: nothing of it escapes
      const value = decodeValue(fast, key);
      if (isWhole(value)) {
        lastSeq = value.batches[value.batches.length - 1].lastSeq;
        break;
      }
      droppedReason ??= `${value.report.reason}: ${value.report.detail}`;
      droppedBytes += fast.length - value.report.validBytes;
      if (value.batches.length > 0) {
        lastSeq = value.batches[value.batches.length - 1].lastSeq;
        await db.put(key, ownedCopy(fast).subarray(0, value.report.validBytes));
        break;
      }
      await db.remove(key);
      env.root.resetReadTxn();
    }
    if (droppedBytes > 0) await db.flushed;
    env.root.resetReadTxn();
    return { lastSeq, droppedBytes, droppedReason };
  }

  private context(): { directory: string; mapSize: number } {
    return { directory: this.directory, mapSize: this.mapSize };
  }

  private closedError(): StorageError {
    return new StorageError('Closed', `[sluice/store-lmdb] ${this.directory} is ${this.state === 'new' || this.state === 'opening' ? 'not open: call open() first' : 'closed'}`);
  }
}
