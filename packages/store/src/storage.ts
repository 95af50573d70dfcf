import type { EventFrame, SealedBatch } from '@sluice/framing';
import type { FsyncPolicy } from './fsync-policy.js';

/**
 * Who a batch is: its last seq, the epoch of the writer that sealed it and its digest. The
 * digest chains every batch to the one before it, so two copies of a log hold the same
 * history up to a seq exactly when their identities there are equal.
 */
export interface BatchIdentity {
  readonly lastSeq: number;
  readonly epoch: number;
  /** SHA-1 batch digest (20 zero bytes for the empty log). */
  readonly digest: Uint8Array;
}

/**
 * What a backend can do. The engine and the conformance suite read these; they never probe.
 */
export interface StorageCapabilities {
  /** Other processes can open a read-only {@link StorageReader} while the writer runs. */
  readonly crossProcessReaders: boolean;
  /**
   * When written data becomes durable: `commit` (sync() forces it to stable storage),
   * `interval` (sync() resolves once the OS has it; a timer forces it every `intervalMs`),
   * `none` (never forced). Describe it with `describeFsyncPolicy`.
   */
  readonly durability: FsyncPolicy;
  /**
   * How `truncate` removes a tail: `in-place` (the bytes are cut or zeroed) or `seal-and-roll`
   * (the location cannot shrink, e.g. an append blob: the valid length is recorded and writing
   * goes on in a new object).
   */
  readonly truncate: 'in-place' | 'seal-and-roll';
  /**
   * The backend implements {@link StorageReader.readFrames}: it reads single event frames by
   * seq (through a frame position index) without reading their whole batches. The engine's
   * stream reads use it when true and fall back to batch reads otherwise.
   */
  readonly frameReads: boolean;
}

/** What storage reports after opening and recovering. */
export interface StorageRecovery {
  /** Seq of the last frame stored, 0 when empty (equals `head.lastSeq`). */
  readonly lastSeq: number;
  /** Identity of the last batch stored after recovery. */
  readonly head: BatchIdentity;
  /** Bytes of torn, unsigned or corrupt tail dropped during recovery (0 when clean). */
  readonly droppedBytes: number;
  /**
   * Whole verified batches recovery cut because they were never durable per the policy: data
   * written after the last successful sync of a writer whose write or sync failed, or batches
   * after a hole in the unsynced window of an `interval` / `none` policy. Their seqs.
   */
  readonly droppedSeqs: number;
  /** Why something was dropped, when it was. */
  readonly droppedReason?: string | undefined;
}

/**
 * Options of {@link StorageReader.read}.
 *
 * The digest policy: every read checks each frame's CRC-32C, the seq order, the commit
 * grouping and the chain (each batch names the digest in the marker of the one before); the
 * SHA-1 batch digest (a hash of every byte of the batch) is the expensive part. It protects
 * bytes that leave this copy of the log, so it is verified by default and by everything that
 * copies `SealedBatch.bytes` elsewhere (shipping, mirror repair, ring drain) or judges a copy
 * (recovery, scrub). The partition's own reads of batches below the durable watermark
 * (`read`, `subscribe`) pass `verifyDigests: false`: those batches were hashed when they were
 * sealed and again when storage recovered them, and a CRC-32C per frame catches damage since.
 */
export interface ReadBatchesOptions {
  /**
   * Verify each batch's SHA-1 digest against its marker (a batch that fails rejects with
   * reason `Corrupt`). False still checks every frame's CRC-32C and the chain. A backend that
   * cannot skip it (or keeps decoded batches, like the in-memory one) may verify anyway.
   * @default true
   */
  readonly verifyDigests?: boolean | undefined;
  /**
   * False when the caller uses only each batch's `bytes`, seqs and `marker` (a copy, a
   * shipment): a backend may then hand out batches whose `frames` is empty, after the same
   * checks (every CRC-32C, grouping, the chain and, per `verifyDigests`, the digest) without
   * decoding events into objects. A backend that cannot skip decoding returns the frames anyway.
   * @default true
   */
  readonly frames?: boolean | undefined;
}

/** Options of {@link StorageReader.tail}. */
export interface TailOptions {
  /** Ends the tail (the iterator returns). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Read-only access to a partition's durable batches: in the writer's process (the
 * {@link PartitionStorage} itself) or in another one (`openReader()`).
 *
 * Readers never see a batch above the durable watermark: what is written but not yet durable
 * per the policy is not committed.
 */
export interface StorageReader {
  /**
   * Verified batches overlapping the seq range `[fromSeq, toSeq]`, in seq order, never past
   * the durable head. A batch may hold frames outside the range; callers filter. Each batch
   * carries its exact stored `bytes`. Damage below the durable head rejects with a
   * `StorageError` of reason `Corrupt` (never a silent end). The batch digest is verified
   * unless `options.verifyDigests` is false (see {@link ReadBatchesOptions}).
   */
  read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncIterable<SealedBatch>;
  /** Identity of the last durable batch visible to this reader (lastSeq 0 when empty). */
  head(): Promise<BatchIdentity>;
  /** Seq of the last durable frame visible to this reader (0 when empty). */
  lastSeq(): Promise<number>;
  /**
   * Identity of the batch holding `seq` (its firstSeq ≤ seq ≤ lastSeq), or undefined when
   * `seq` is below 1 or above the durable head. Two copies hold the same history up to a
   * batch boundary exactly when these match there.
   */
  identityAt(seq: number): Promise<BatchIdentity | undefined>;
  /**
   * Durable batches from the one holding `fromSeq` on, then each new one as it becomes
   * durable, until the signal aborts or the reader closes. Backends without notifications
   * poll with backoff.
   */
  tail(fromSeq: number, options?: TailOptions): AsyncIterable<SealedBatch>;
  /**
   * Present when `capabilities.frameReads` is true: the event frames with exactly these seqs,
   * in the order given. `seqs` is ascending, without duplicates, every seq between 1 and the
   * durable head (else `Invalid`). Each frame's CRC-32C is verified (its batch digest is not:
   * reading a frame must not cost reading its batch); a frame that fails rejects with reason
   * `Corrupt`. Cost: about one small read per frame, or per run of adjacent frames.
   */
  readFrames?(seqs: readonly number[]): AsyncIterable<EventFrame>;
  close(): Promise<void>;
}

/**
 * Where a commit is held at the moment it is acknowledged, and under which policy: what a
 * storage made of several locations or targets reports (see {@link PartitionStorage.reliability}).
 */
export interface CommitReliability {
  /** The reliability level's name, when the storage was configured with one (e.g. `"critical"`). */
  readonly level?: string | undefined;
  /** How the commit was made durable (for several locations, the weakest policy among them). */
  readonly durability: FsyncPolicy;
  /** Labels of the synchronous locations holding the commit durably. */
  readonly locations: readonly string[];
  /** Labels of the shipping targets holding it durably at that moment (may be empty). */
  readonly targets?: readonly string[] | undefined;
}

/** Options of {@link PartitionStorage.truncate}. */
export interface TruncateOptions {
  /**
   * Cutting below the durable watermark removes acknowledged commits: only an operator may,
   * and it is refused (reason `Invalid`) unless this names who and why, e.g.
   * `"ops: restore from archive 2026-12-05"`. The backend records it with the cut.
   */
  readonly operatorReason?: string | undefined;
}

/**
 * The storage plugin contract (version 2): a durable, append-only, hash-chained sequence of
 * sealed batches for one partition, written by one writer.
 *
 * The engine encodes frames and markers (`@sluice/framing`) and hands storage whole sealed
 * batches with {@link write}; {@link sync} makes everything written durable per the policy
 * and returns the new durable head. Writes and syncs overlap: batch N+1 is written while
 * batch N syncs, and the engine acknowledges strictly in seq order as the durable head
 * passes each commit.
 *
 * **Concurrency rule** (enforced: a violation rejects with reason `Invalid`): at most one
 * `write` and at most one `sync` are in flight at a time; a `write` may overlap a `sync`. A
 * `sync` covers every write that resolved before it was called. `truncate` needs both idle.
 * Reads, `head`, `identityAt` and `tail` may be called at any time.
 *
 * **Failure rule**: once a `write` or `sync` rejects, the storage is failed: every later
 * `write` and `sync` rejects with the same reason, readers stay at the durable head, and no
 * reopening ever serves as committed (or as a duplicate's result) anything written after the
 * last successful sync; recovery cuts it and reports it in `droppedSeqs`.
 *
 * A backend implements these primitives; the engine derives streams, versions, idempotency,
 * reads and live tail from them. `@sluice/store-conformance` checks a backend.
 */
export interface PartitionStorage extends StorageReader {
  /** Short backend name for messages: "memory", "file", "lmdb", "azure". */
  readonly kind: string;
  readonly capabilities: StorageCapabilities;
  /**
   * Takes the single-writer lock, recovers (drops a torn or unsigned tail and whatever was
   * never durable; never a durable batch: damage below the recorded durable watermark is
   * refused with reason `Corrupt`) and reports what it found. Rejects with reason `Locked`
   * when another writer holds the partition.
   */
  open(): Promise<StorageRecovery>;
  /**
   * Writes `bytes`: one or more whole sealed batches covering `firstSeq..lastSeq`, following
   * the head without a gap (else `Conflict`), chained to the head's digest (else `Conflict`),
   * sealed with an epoch not lower than the highest the storage holds (else `Conflict`: a
   * fenced writer). Resolves when the backend has the bytes (not necessarily durable).
   * `bytes` is reused by the caller after the promise settles: copy it if you keep it.
   */
  write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void>;
  /**
   * Makes every write that resolved before this call durable per the policy, and resolves with
   * the new durable head (the identity of the last batch written before the call). A backend
   * whose writes are durable once acknowledged (an Azure append block) does no I/O here; the
   * durable head still moves only here, so after a failed write exactly what was synced is
   * known, and what was written after it is cut even if it physically reached the medium.
   */
  sync(): Promise<BatchIdentity>;
  /** The durable watermark: identity of the last durable batch, now. */
  durableHead(): BatchIdentity;
  /**
   * Removes every batch after the one ending at `afterSeq` (which must be a batch boundary,
   * else `Invalid`), e.g. an unacknowledged tail on one copy. Below the durable watermark only
   * with {@link TruncateOptions.operatorReason}. Resolves with the new head.
   */
  truncate(afterSeq: number, options?: TruncateOptions): Promise<BatchIdentity>;
  /**
   * A read-only reader that other processes could open on the same location.
   * Rejects with reason `Unsupported` when `capabilities.crossProcessReaders` is false.
   */
  openReader(): Promise<StorageReader>;
  /**
   * Optional: where the batch holding `seq` is held durably now and under which level. The
   * engine calls it once per sync that acknowledges commits and returns it in each
   * `CommitResult.reliability`. Backends of one location need not implement it.
   */
  reliability?(seq: number): CommitReliability | undefined;
}
