import type { SealedBatch } from '@sluice/framing';

/**
 * What a backend can do. The engine and the conformance suite read these; they never probe.
 */
export interface StorageCapabilities {
  /** Other processes can open a read-only {@link StorageReader} while the writer runs. */
  readonly crossProcessReaders: boolean;
  /**
   * What is durable when `append` resolves, in words, for documentation and `sluice stats`:
   * e.g. "fdatasync on every commit".
   */
  readonly durability: string;
}

/** What storage reports after opening and recovering. */
export interface StorageRecovery {
  /** Seq of the last frame stored, 0 when empty. */
  readonly lastSeq: number;
  /** Bytes of torn, unsigned or corrupt tail dropped during recovery (0 when clean). */
  readonly droppedBytes: number;
  /** Why the tail was dropped, when it was. */
  readonly droppedReason?: string | undefined;
}

/** Read-only access to a partition's committed batches. */
export interface StorageReader {
  /**
   * Verified batches overlapping the seq range `[fromSeq, toSeq]`, in seq order. A batch may
   * hold frames outside the range; callers filter. Only batches whose marker verified are
   * yielded, and never past the last durable batch.
   */
  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch>;
  /** Seq of the last committed frame visible to this reader (0 when empty). */
  lastSeq(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The storage plugin contract: a durable, append-only sequence of sealed batches for one
 * partition, written by one writer.
 *
 * The engine encodes frames and markers (`@sluice/framing`) and hands storage whole sealed
 * batches; storage keeps the bytes exactly, makes them durable per its fsync policy before
 * `append` resolves, and gives them back verified. Batches never overlap in seq and arrive
 * in order.
 *
 * A backend implements these primitives; the engine derives streams, versions, idempotency,
 * reads and live tail from them. `@sluice/store-conformance` checks a backend.
 */
export interface PartitionStorage extends StorageReader {
  /** Short backend name for messages: "memory", "file", "lmdb", "azure". */
  readonly kind: string;
  readonly capabilities: StorageCapabilities;
  /**
   * Takes the single-writer lock, recovers (drops a torn or unsigned tail; never a verified
   * batch) and reports what it found. Rejects with a `StorageError` of reason `Locked` when
   * another writer holds the partition.
   */
  open(): Promise<StorageRecovery>;
  /**
   * Appends `bytes`: one or more sealed batches (frames and markers) covering
   * `firstSeq..lastSeq`, following the previous append without a gap. Resolves when they are
   * durable per the backend's policy. `bytes` is reused by the caller after the promise
   * settles: copy it if you keep it. On rejection nothing of `bytes` may be reported as
   * committed until recovery decides.
   */
  append(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void>;
  /**
   * A read-only reader that other processes could open on the same location.
   * Rejects with reason `Unsupported` when `capabilities.crossProcessReaders` is false.
   */
  openReader(): Promise<StorageReader>;
}
