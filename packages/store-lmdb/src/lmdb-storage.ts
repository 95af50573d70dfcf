import { mkdir, open as openFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventFrame, SealedBatch } from '@sluice/framing';
import {
  DurableSignal,
  EMPTY_IDENTITY,
  StorageError,
  WriterLock,
  checkFrameSeqs,
  checkWrite,
  describeIdentity,
  identityOf,
  parseFsyncPolicy,
  sameIdentity,
  tailBatches,
  type BatchIdentity,
  type FsyncPolicy,
  type FsyncPolicyInput,
  type PartitionStorage,
  type ReadBatchesOptions,
  type StorageReader,
  type StorageRecovery,
  type TailOptions,
  type TruncateOptions,
} from '@sluice/store';
import {
  HEAD_KEY,
  LAYOUT,
  LAYOUT_KEY,
  LAYOUT_V1,
  TRUNCATIONS_KEY,
  decodeValue,
  encodeIdentity,
  floorKey,
  identityInLog,
  isWhole,
  lastKey,
  ownedCopy,
  readBatches,
  readFramesAt,
  readHead,
} from './batch-log.js';
import { Durability } from './durability.js';
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
   * When writes are forced to disk: `"commit"` (`sync()` resolves once LMDB has fsynced them),
   * `"interval:100ms"` or `"none"` (see the README for what each means in LMDB terms).
   * @default "commit"
   */
  readonly fsync?: FsyncPolicyInput;
  /**
   * Largest size, in bytes, the partition's LMDB data file may reach. lmdb-js grows its
   * memory map on demand, so the storage enforces this itself: a write that could take the
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
/**
 * A record beside the LMDB files, preallocated at open and overwritten (and fsynced) when a
 * write or sync fails: the seq of the durable head then. The next open cuts everything after it, since what LMDB holds past it was never
 * durable per a successful sync (it may even be committed: a sync can fail after the commit).
 */
export const FAILURE_FILE = 'write-failed';

/**
 * LMDB storage (contract v2): each write stored as one LMDB entry keyed by its first seq, with
 * the head identity recorded in the same transaction; read back by key range and verified;
 * one Sluice writer per partition (a lock file), read-only readers in any process
 * (`openLmdbReader`).
 *
 * @example
 * const partition = await openPartition({
 *   storage: createLmdbStorage({ directory: './data/payments', fsync: 'commit' }),
 *   name: 'payments',
 * });
 */
export function createLmdbStorage(options: LmdbStorageOptions): PartitionStorage {
  return new LmdbStorage(options, {});
}

/**
 * Faults a real LMDB cannot produce on demand, for this package's tests only (not exported
 * from the package).
 * @internal
 */
export interface LmdbFaultHooks {
  /** Called by `sync()` once the writes it covers are committed; an error returned fails the sync. */
  readonly syncFault?: () => Error | undefined;
}

/** @internal {@link createLmdbStorage} with fault hooks, for tests. */
export function createLmdbStorageWithFaults(options: LmdbStorageOptions, hooks: LmdbFaultHooks): PartitionStorage {
  return new LmdbStorage(options, hooks);
}

class LmdbStorage implements PartitionStorage {
  readonly kind = 'lmdb';
  readonly capabilities: PartitionStorage['capabilities'];
  private readonly directory: string;
  private readonly where: string;
  private readonly createDirectory: boolean;
  private readonly fsync: FsyncPolicy;
  private readonly mapSize: number;
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  private lock: WriterLock | undefined;
  private failureRecord: FailureRecord | undefined;
  private env: LmdbHandle | undefined;
  private durability: Durability | undefined;
  private limit: MapSizeLimit | undefined;
  /** Identity of the last batch handed to LMDB (committed or queued). */
  private written: BatchIdentity = EMPTY_IDENTITY;
  /** The durable watermark: moved only by a successful sync (or, under interval/none, write). */
  private durable: BatchIdentity = EMPTY_IDENTITY;
  private writing = false;
  private truncating = false;
  private syncing: Promise<unknown> | undefined;
  /** The last write transaction handed to lmdb-js: resolves once committed, rejects if it (or one before it) failed. */
  private pending: Promise<void> | undefined;
  /** Bytes of write transactions not committed yet (for the mapSize check). */
  private pendingBytes = 0;
  /** Set synchronously when a transaction or sync fails: later transactions write nothing. */
  private broken = false;
  /** The failure every later write and sync rejects with. */
  private failure: Promise<StorageError> | undefined;
  /** Resolves once the failure is recorded on disk ({@link FAILURE_FILE}). */
  private failureRecorded: Promise<void> | undefined;
  private readonly signal = new DurableSignal();

  constructor(
    options: LmdbStorageOptions,
    private readonly hooks: LmdbFaultHooks,
  ) {
    const defaults = lmdbStorageDefaults();
    if (typeof options?.directory !== 'string' || options.directory.length === 0) {
      throw new StorageError('Invalid', '[sluice/store-lmdb] options.directory must be a non-empty path');
    }
    this.directory = options.directory;
    this.where = `[sluice/store-lmdb] ${options.directory}`;
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
    this.capabilities = { crossProcessReaders: true, durability: this.fsync, truncate: 'in-place', frameReads: true };
  }

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', '[sluice/store-lmdb] open() was already called: create a new storage to reopen');
    this.state = 'opening';
    try {
      await this.prepareDirectory();
      this.lock = await WriterLock.acquire(this.directory, 'store-lmdb', 'openLmdbReader()');
      const env = openWriterEnv(this.directory, this.fsync, Math.min(this.mapSize, INITIAL_MAP_BYTES_MAX));
      this.env = env;
      const recovery = await this.recover(env, this.checkLayout(env));
      this.written = recovery.head;
      this.durable = recovery.head;
      this.limit = new MapSizeLimit(env.root, this.mapSize, this.directory);
      this.durability = new Durability(this.fsync, env.root, env.batches);
      this.state = 'open';
      return recovery;
    } catch (error) {
      // A commit of recovery or of the layout record failed: never commit again on this environment.
      if (this.env !== undefined && !(error instanceof StorageError)) this.env.poison();
      await this.release();
      this.state = 'closed';
      this.signal.close();
      throw await mapLmdbWriteError(error, this.context(), 0);
    }
  }

  /**
   * Checks the write against the written head, then hands it to lmdb-js as one transaction
   * (the batch entry and the `head` record). Under `commit` it resolves once the transaction is
   * queued: LMDB commits and fsyncs it on its write thread while the engine builds the next
   * group, and `sync()` waits for it. Under `interval` / `none` it resolves once committed (the
   * OS has it), which is what those policies call durable.
   */
  async write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    // The concurrency rule is checked before anything awaits, so two calls in one turn are caught.
    this.assertOpen();
    if (this.writing) throw new StorageError('Invalid', `${this.where}: write() called while another write is in flight: one write at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${this.where}: write() called while truncate() runs: wait for it first`);
    this.writing = true;
    try {
      await this.assertHealthy();
      const next = checkWrite(bytes, firstSeq, lastSeq, this.written, this.where);
      // Full: nothing was written, the log is intact.
      (this.limit as MapSizeLimit).check(bytes.length + this.pendingBytes);
      // lmdb-js keeps a reference to the value until its transaction commits; the caller reuses `bytes`.
      const committed = this.commitWrite(Uint8Array.from(bytes), firstSeq, next);
      this.written = next;
      if (this.fsync.kind !== 'commit') {
        await committed;
        await (this.durability as Durability).afterCommit();
        this.makeDurable(next);
      }
    } catch (error) {
      if (this.broken) throw await this.failWith(error);
      throw error;
    } finally {
      this.writing = false;
    }
  }

  async sync(): Promise<BatchIdentity> {
    this.assertOpen();
    if (this.syncing !== undefined) throw new StorageError('Invalid', `${this.where}: sync() called while another sync is in flight: one sync at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${this.where}: sync() called while truncate() runs: wait for it first`);
    const covered = this.written;
    const committed = this.pending;
    const run = (async (): Promise<BatchIdentity> => {
      await this.assertHealthy();
      try {
        if (this.fsync.kind === 'commit') {
          // Plain LMDB commits fsync before they resolve: the last transaction queued before this
          // call (lmdb-js commits in order) being committed means every covered write is on disk.
          // Not `flushed`: it would also wait for a write queued after this call.
          await committed;
          const fault = this.hooks.syncFault?.();
          if (fault !== undefined) throw fault;
        }
        this.makeDurable(covered);
        return this.durable;
      } catch (error) {
        throw await this.failWith(error);
      }
    })();
    this.syncing = run;
    try {
      return await run;
    } finally {
      this.syncing = undefined;
    }
  }

  durableHead(): BatchIdentity {
    return this.durable;
  }

  async truncate(afterSeq: number, options: TruncateOptions = {}): Promise<BatchIdentity> {
    this.assertOpen();
    if (this.writing || this.syncing !== undefined || this.truncating) {
      throw new StorageError('Invalid', `${this.where}: truncate() while a write, sync or truncate is in flight: wait for them first`);
    }
    this.truncating = true;
    try {
      return await this.truncateIdle(afterSeq, options);
    } finally {
      this.truncating = false;
    }
  }

  private async truncateIdle(afterSeq: number, options: TruncateOptions): Promise<BatchIdentity> {
    await this.assertHealthy();
    try {
      await this.pending;
    } catch (error) {
      throw await this.failWith(error);
    }
    const env = this.env as LmdbHandle;
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0 || afterSeq > this.written.lastSeq) {
      throw this.notABoundary(afterSeq);
    }
    const cut = afterSeq === 0 ? { key: 0, keepBytes: 0, head: EMPTY_IDENTITY, entryBytes: 0 } : this.boundaryAt(afterSeq);
    if (cut === undefined) throw this.notABoundary(afterSeq);
    const belowDurable = afterSeq < this.durable.lastSeq;
    const reason = options.operatorReason?.trim() ?? '';
    if (belowDurable && reason === '') {
      throw new StorageError(
        'Invalid',
        `${this.where}: truncating after seq ${afterSeq} would remove durable (acknowledged) seqs up to ${this.durable.lastSeq}: pass operatorReason to do it deliberately`,
      );
    }
    const record = belowDurable
      ? JSON.stringify({ at: new Date().toISOString(), afterSeq, removedThroughSeq: this.written.lastSeq, durableSeq: this.durable.lastSeq, operatorReason: reason })
      : undefined;
    try {
      await env.root.transaction(() => {
        const remove = Array.from(env.batches.getKeys({ start: cut.key + 1 }));
        for (const key of remove) env.batches.removeSync(key);
        if (cut.keepBytes > 0 && cut.keepBytes < cut.entryBytes) {
          // The cut falls inside one write's entry (several batches): keep its first batches.
          const value = ownedCopy(env.batches.getBinaryFast(cut.key) as Uint8Array);
          env.batches.putSync(cut.key, value.slice(0, cut.keepBytes));
        }
        env.meta.putSync(HEAD_KEY, encodeIdentity(cut.head));
        if (record !== undefined) {
          const before = env.meta.getBinary(TRUNCATIONS_KEY);
          const previous = before === undefined ? '' : new TextDecoder().decode(before);
          env.meta.putSync(TRUNCATIONS_KEY, new TextEncoder().encode(`${previous}${record}\n`));
        }
      });
      await (this.durability as Durability).afterCommit();
    } catch (error) {
      this.broken = true;
      throw await this.failWith(error);
    }
    this.written = cut.head;
    if (this.durable.lastSeq > afterSeq) this.durable = cut.head;
    return this.written;
  }

  read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncIterable<SealedBatch> {
    if (this.state !== 'open') {
      const error = this.closedError();
      return (async function* () {
        throw error;
      })();
    }
    // Never past the durable head: an entry starting at or below it ends at or below it (the
    // durable head is always the end of a write).
    return readBatches(
      (this.env as LmdbHandle).batches,
      this.directory,
      fromSeq,
      Math.min(toSeq, this.durable.lastSeq),
      'corrupt',
      () => {
        if (this.state !== 'open') throw this.closedError();
      },
      options?.verifyDigests ?? true,
    );
  }

  /** Frames by seq, up to the durable head, found by walking their entries' length fields (see the README). */
  readFrames(seqs: readonly number[]): AsyncIterable<EventFrame> {
    const assertOpen = (): void => {
      if (this.state !== 'open') throw this.closedError();
    };
    const db = (): LmdbHandle['batches'] => (this.env as LmdbHandle).batches;
    const durable = (): number => this.durable.lastSeq;
    const directory = this.directory;
    const where = this.where;
    return (async function* () {
      assertOpen();
      checkFrameSeqs(seqs, durable(), where);
      yield* readFramesAt(db(), directory, seqs, assertOpen);
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
    if (!(seq >= 1) || seq > this.durable.lastSeq) return undefined;
    return identityInLog((this.env as LmdbHandle).batches, this.directory, seq);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  openReader(): Promise<StorageReader> {
    return openLmdbReader({ directory: this.directory });
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.signal.close();
    if (wasOpen) {
      await this.pending?.catch(() => undefined);
      await this.syncing?.catch(() => undefined);
      await this.failureRecorded;
      await this.durability?.close(!this.broken);
    }
    await this.release();
  }

  /**
   * Hands one write to lmdb-js: the batch entry (MDB_APPEND: its key must sort last, so a
   * batch is never overwritten) and the `head` record in one transaction, so whatever snapshot
   * LMDB recovers names its own head. Returns the transaction's promise, which rejects if this
   * transaction or one queued before it failed.
   */
  private commitWrite(value: Uint8Array, firstSeq: number, head: BatchIdentity): Promise<void> {
    const env = this.env as LmdbHandle;
    const headRecord = encodeIdentity(head);
    this.pendingBytes += value.length;
    const transaction = env.root.transaction(() => {
      // An earlier transaction failed: write nothing after it (lmdb-js may damage the file if
      // an environment commits again after a failed commit).
      if (this.broken) return 'refused' as const;
      if (!env.batches.putSync(firstSeq, value, { append: true })) return 'exists' as const;
      env.meta.putSync(HEAD_KEY, headRecord);
      return 'stored' as const;
    });
    const committed = transaction.then(
      (outcome) => {
        this.pendingBytes -= value.length;
        if (outcome === 'stored') return;
        const error =
          outcome === 'exists'
            ? new StorageError('Conflict', `${this.where}: a batch at or after seq ${firstSeq} is already stored: another process wrote this partition; reopen it`)
            : new StorageError('Unavailable', `${this.where}: the write of seq ${firstSeq} was not committed because an earlier write failed`);
        // The first failure is the one every later call reports.
        void this.failWith(error);
        throw error;
      },
      (error: unknown) => {
        this.pendingBytes -= value.length;
        void this.failWith(error);
        throw error;
      },
    );
    // A sync waits for the last transaction queued before it; chaining makes that wait fail if any
    // earlier one failed, even if lmdb-js went on to commit a later one.
    const previous = this.pending;
    const chained = previous === undefined ? committed : Promise.all([previous, committed]).then(() => undefined);
    // Failures are reported by the sync (or write) that waits for this transaction.
    chained.catch(() => undefined);
    this.pending = chained;
    return committed;
  }

  /**
   * Fails the storage (once): every later write and sync rejects with the same error; the
   * environment never commits again; the durable head at the time is recorded on disk so the
   * next open cuts what was written after it.
   */
  private failWith(error: unknown): Promise<StorageError> {
    if (this.failure !== undefined) return this.failure;
    this.broken = true;
    this.env?.poison();
    const failure = mapLmdbWriteError(error, this.context(), 0);
    this.failure = failure;
    this.failureRecorded = (async () => {
      // A sync already in flight may still succeed (what it covers committed): record after it.
      await this.syncing?.catch(() => undefined);
      const error = await failure;
      await this.failureRecord?.write(this.durable.lastSeq, `${error.reason}: ${error.message}`);
    })().catch(() => undefined);
    return failure;
  }

  /** Rejects once the storage failed (the failure rule). */
  private async assertHealthy(): Promise<void> {
    if (this.failure !== undefined) throw await this.failure;
    const background = this.durability?.failure;
    if (background !== undefined) throw await this.failWith(background);
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw this.closedError();
  }

  private makeDurable(head: BatchIdentity): void {
    if (head.lastSeq <= this.durable.lastSeq) return;
    this.durable = head;
    this.signal.advance(head.lastSeq);
  }

  /** Where the log can be cut after `afterSeq`: the entry holding it, and how much of it stays. */
  private boundaryAt(afterSeq: number): { key: number; keepBytes: number; entryBytes: number; head: BatchIdentity } | undefined {
    const db = (this.env as LmdbHandle).batches;
    const key = floorKey(db, afterSeq);
    if (key === undefined) return undefined;
    const value = decodeValue(ownedCopy(db.getBinaryFast(key) as Uint8Array), key);
    let keepBytes = 0;
    for (const batch of value.batches) {
      keepBytes += batch.bytes.length;
      if (batch.lastSeq === afterSeq) return { key, keepBytes, entryBytes: value.report.validBytes, head: identityOf(batch) };
    }
    return undefined;
  }

  private notABoundary(afterSeq: number): StorageError {
    return new StorageError('Invalid', `${this.where}: cannot truncate after seq ${afterSeq}: it is not the end of a stored batch (head is ${describeIdentity(this.written)})`);
  }

  private async release(): Promise<void> {
    const env = this.env;
    this.env = undefined;
    await env?.close().catch(() => undefined);
    await this.failureRecord?.close().catch(() => undefined);
    this.failureRecord = undefined;
    await this.lock?.release();
    this.lock = undefined;
  }

  private async prepareDirectory(): Promise<void> {
    try {
      if (this.createDirectory) {
        await mkdir(this.directory, { recursive: true });
      } else if (!(await stat(this.directory)).isDirectory()) {
        throw new StorageError('NotFound', `${this.where} is not a directory: point directory at the partition's folder`);
      }
    } catch (error) {
      throw mapLmdbError(error, this.context());
    }
  }

  /** Refuses a partition written with an unknown layout; says whether it is version 1 (no head record). */
  private checkLayout(env: LmdbHandle): 'v1' | 'v2' {
    const found = env.meta.getBinary(LAYOUT_KEY);
    const layout = found === undefined ? undefined : new TextDecoder().decode(found);
    if (layout === LAYOUT_V1) return 'v1';
    if (layout === undefined || layout === LAYOUT) return 'v2';
    throw new StorageError(
      'Invalid',
      `${this.where} was written with layout "${layout}", this version reads "${LAYOUT}" (and upgrades "${LAYOUT_V1}"): ` +
        `open it with the @sluice/store-lmdb version that wrote it`,
    );
  }

  /**
   * Recovery. LMDB commits are atomic and the `head` record is committed with its batch, so the
   * head is known without a scan; only its entry is decoded, to check it. Then:
   * - after a failed write or sync ({@link FAILURE_FILE}), everything after the durable head
   *   recorded then is cut (`droppedSeqs`);
   * - entries after the head were written around the storage (a raw tail, as the conformance
   *   suite's `appendRaw` writes): their whole batches that follow the head without a gap and
   *   chain to it are kept, the rest dropped (`droppedBytes`).
   * One transaction carries out the cut and records the new head.
   */
  private async recover(env: LmdbHandle, layout: 'v1' | 'v2'): Promise<StorageRecovery> {
    const db = env.batches;
    const { record, failed } = await FailureRecord.open(this.directory);
    this.failureRecord = record;
    let head = readHead(env.meta, this.directory) ?? (layout === 'v1' ? this.legacyHead(db) : EMPTY_IDENTITY);
    let droppedBytes = 0;
    let droppedSeqs = 0;
    let droppedReason: string | undefined;
    const writes: Array<[number, Uint8Array]> = [];
    const removals: number[] = [];
    const cutting = failed !== undefined && failed.durableSeq < head.lastSeq;
    if (cutting) {
      const cut = failed.durableSeq === 0 ? EMPTY_IDENTITY : identityInLog(db, this.directory, failed.durableSeq, true);
      if (cut === undefined) {
        throw new StorageError('Corrupt', `${this.where}: the log has no batch ending at seq ${failed.durableSeq}, the durable head recorded when a write failed: restore the partition from a copy`);
      }
      droppedSeqs = head.lastSeq - failed.durableSeq;
      droppedReason = `a write or sync failed after seq ${failed.durableSeq} (${failed.reason}): what was written after it was never durable`;
      head = cut;
    }
    if (head.lastSeq > 0 && !sameIdentity(identityInLog(db, this.directory, head.lastSeq, true) ?? EMPTY_IDENTITY, head)) {
      throw new StorageError('Corrupt', `${this.where}: the batch at the recorded head (${describeIdentity(head)}) is missing or differs: restore the partition from a copy`);
    }
    // Everything after the head: cut (after a failure) or a raw tail to verify.
    let prevDigest = head.digest;
    let expected = head.lastSeq + 1;
    let keeping = !cutting;
    for (const key of Array.from(db.getKeys({ start: head.lastSeq + 1 }))) {
      const fast = db.getBinaryFast(key) as Uint8Array;
      if (!keeping) {
        if (!cutting) droppedBytes += fast.length; // after a broken raw tail
        removals.push(key);
        continue;
      }
      const value = key === expected ? decodeValue(ownedCopy(fast), key, prevDigest) : undefined;
      if (value !== undefined && value.batches.length > 0) {
        const last = value.batches[value.batches.length - 1];
        head = identityOf(last);
        prevDigest = head.digest;
        expected = head.lastSeq + 1;
        if (isWhole(value)) continue;
        droppedBytes += fast.length - value.report.validBytes;
        writes.push([key, ownedCopy(fast).slice(0, value.report.validBytes)]);
      } else {
        droppedBytes += fast.length;
        removals.push(key);
      }
      droppedReason ??= value === undefined ? `an entry at seq ${key} does not follow seq ${expected - 1}` : `${value.report.reason}: ${value.report.detail}`;
      keeping = false;
    }
    const headChanged = !sameIdentity(readHead(env.meta, this.directory) ?? EMPTY_IDENTITY, head);
    if (removals.length > 0 || writes.length > 0 || headChanged || layout === 'v1' || env.meta.getBinary(LAYOUT_KEY) === undefined) {
      const record = encodeIdentity(head);
      await env.root.transaction(() => {
        for (const key of removals) env.batches.removeSync(key);
        for (const [key, value] of writes) env.batches.putSync(key, value);
        env.meta.putSync(HEAD_KEY, record);
        env.meta.putSync(LAYOUT_KEY, new TextEncoder().encode(LAYOUT));
      });
      await db.flushed;
      if (this.fsync.kind !== 'commit') await forceSync(env);
    }
    env.root.resetReadTxn();
    if (failed !== undefined) await record.clear();
    return { lastSeq: head.lastSeq, head, droppedBytes, droppedSeqs, droppedReason };
  }

  /** A version 1 partition has no head record: its head is the last batch of its last entry. */
  private legacyHead(db: LmdbHandle['batches']): BatchIdentity {
    const key = lastKey(db);
    if (key === undefined) return EMPTY_IDENTITY;
    // Raw entries after the head are handled as a tail; step back to the last whole entry.
    for (let k: number | undefined = key; k !== undefined; k = floorKey(db, k - 1)) {
      const value = decodeValue(ownedCopy(db.getBinaryFast(k) as Uint8Array), k);
      if (isWhole(value)) return identityOf(value.batches[value.batches.length - 1]);
    }
    return EMPTY_IDENTITY;
  }

  private context(): { directory: string; mapSize: number } {
    return { directory: this.directory, mapSize: this.mapSize };
  }

  private closedError(): StorageError {
    return new StorageError('Closed', `${this.where} is ${this.state === 'new' || this.state === 'opening' ? 'not open: call open() first' : 'closed'}`);
  }
}

interface RecordedFailure {
  readonly durableSeq: number;
  readonly reason: string;
}

const FAILURE_RECORD_BYTES = 512;

/**
 * {@link FAILURE_FILE}: a preallocated, zero-filled record, opened for the writer's whole life,
 * so a failure can be recorded by overwriting it in place even on a full disk. All zeros means
 * no failure.
 */
class FailureRecord {
  private constructor(
    private readonly file: FileHandle,
    private readonly directory: string,
  ) {}

  /** Opens (creating and preallocating if missing) the record and reads what it holds. */
  static async open(directory: string): Promise<{ record: FailureRecord; failed: RecordedFailure | undefined }> {
    const path = join(directory, FAILURE_FILE);
    let file: FileHandle;
    try {
      file = await openFile(path, 'r+');
    } catch {
      file = await openFile(path, 'w+');
      await file.write(new Uint8Array(FAILURE_RECORD_BYTES), 0, FAILURE_RECORD_BYTES, 0);
      await file.sync();
    }
    const record = new FailureRecord(file, directory);
    try {
      return { record, failed: await record.read() };
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  /** Records the durable head at a failure, in place, and fsyncs it. */
  async write(durableSeq: number, reason: string): Promise<void> {
    const head = `{"durableSeq":${durableSeq},"at":"${new Date().toISOString()}","reason":`;
    const room = FAILURE_RECORD_BYTES - head.length - 8;
    const text = `${head}${JSON.stringify(reason.slice(0, Math.max(0, room / 2)))}}`;
    const bytes = new Uint8Array(FAILURE_RECORD_BYTES);
    new TextEncoder().encodeInto(text, bytes);
    await this.file.write(bytes, 0, FAILURE_RECORD_BYTES, 0);
    await this.file.datasync();
  }

  /** Clears the record once recovery has cut what it names. */
  async clear(): Promise<void> {
    await this.file.write(new Uint8Array(FAILURE_RECORD_BYTES), 0, FAILURE_RECORD_BYTES, 0);
    await this.file.datasync();
  }

  close(): Promise<void> {
    return this.file.close();
  }

  private async read(): Promise<RecordedFailure | undefined> {
    const bytes = new Uint8Array(FAILURE_RECORD_BYTES);
    const { bytesRead } = await this.file.read(bytes, 0, FAILURE_RECORD_BYTES, 0);
    const used = bytes.subarray(0, bytesRead);
    const end = used.indexOf(0);
    const text = new TextDecoder().decode(end < 0 ? used : used.subarray(0, end)).trim();
    if (text === '' && used.every((b) => b === 0)) return undefined;
    try {
      const parsed = JSON.parse(text) as { durableSeq?: unknown; reason?: unknown };
      if (typeof parsed.durableSeq === 'number' && Number.isSafeInteger(parsed.durableSeq) && parsed.durableSeq >= 0) {
        return { durableSeq: parsed.durableSeq, reason: String(parsed.reason ?? 'unknown') };
      }
    } catch {
      // fall through
    }
    // A damaged record: a failure happened, the durable head then is unknown. Refuse rather than guess.
    throw new StorageError(
      'Corrupt',
      `[sluice/store-lmdb] ${this.directory}: ${FAILURE_FILE} is damaged, so the durable head before the last failed write is unknown: ` +
        `restore the partition from a copy, or delete the file to keep everything LMDB committed`,
    );
  }
}

function forceSync(env: LmdbHandle): Promise<void> {
  return new Promise((resolve, reject) => env.root.sync((error) => (error === undefined || error === null ? resolve() : reject(error))));
}
