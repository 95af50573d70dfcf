/** Base class of every error thrown by `@sluice/store` and its backends. */
export class StoreError extends Error {
  override readonly name: string = 'StoreError';
  /** Stable machine-readable code; compare codes, not classes, across package copies. */
  readonly code: string = 'SLUICE_STORE';
}

/**
 * Why a storage operation failed. Each backend maps its native errors onto these.
 * - `Conflict`: a conditional write lost (another writer, a fenced epoch).
 * - `Locked`: another writer holds the partition.
 * - `NotFound`: the location, container or file does not exist.
 * - `Unavailable`: transient I/O or network failure; the operation may succeed later.
 * - `Corrupt`: stored data fails its checks where it must not (not a torn tail).
 * - `Unsupported`: the backend lacks the capability.
 * - `Full`: out of space (disk full, LMDB map full, blob limits).
 * - `Unauthorized`: credentials missing, invalid or expired.
 * - `Closed`: the storage was closed.
 * - `Invalid`: invalid options.
 */
export type StorageErrorReason =
  | 'Conflict'
  | 'Locked'
  | 'NotFound'
  | 'Unavailable'
  | 'Corrupt'
  | 'Unsupported'
  | 'Full'
  | 'Unauthorized'
  | 'Closed'
  | 'Invalid';

const RETRYABLE: ReadonlySet<StorageErrorReason> = new Set(['Unavailable', 'Locked']);

/** A storage backend failed; `reason` says how, `retryable` whether trying again can help. */
export class StorageError extends StoreError {
  override readonly name = 'StorageError';
  override readonly code = 'SLUICE_STORAGE';
  readonly retryable: boolean;
  constructor(
    readonly reason: StorageErrorReason,
    message: string,
    options?: ErrorOptions & { retryable?: boolean },
  ) {
    super(message, options);
    this.retryable = options?.retryable ?? RETRYABLE.has(reason);
  }
}

/** True for a {@link StorageError}, also from another copy of this package. */
export function isStorageError(error: unknown): error is StorageError {
  return error instanceof StorageError || (error instanceof Error && (error as { code?: unknown }).code === 'SLUICE_STORAGE');
}

/** An append's expected version did not match the stream (optimistic concurrency). */
export class WrongExpectedVersionError extends StoreError {
  override readonly name = 'WrongExpectedVersionError';
  override readonly code = 'SLUICE_WRONG_EXPECTED_VERSION';
  constructor(
    readonly partition: string,
    readonly streamId: string,
    readonly expectedVersion: number | string,
    readonly actualVersion: number,
  ) {
    super(
      `[sluice/store] partition "${partition}": stream "${streamId}" is at version ${actualVersion}, ` +
        `the append expected ${expectedVersion}: reload the stream, re-apply the command and retry`,
    );
  }
}

/** True for a {@link WrongExpectedVersionError}, also from another copy of this package. */
export function isWrongExpectedVersionError(error: unknown): error is WrongExpectedVersionError {
  return (
    error instanceof WrongExpectedVersionError ||
    (error instanceof Error && (error as { code?: unknown }).code === 'SLUICE_WRONG_EXPECTED_VERSION')
  );
}

/** Some command ids of a unit of work were applied before and some were not, or in other commits. */
export class CommandIdConflictError extends StoreError {
  override readonly name = 'CommandIdConflictError';
  override readonly code = 'SLUICE_COMMAND_ID_CONFLICT';
  constructor(
    readonly partition: string,
    readonly commandIds: readonly string[],
  ) {
    super(
      `[sluice/store] partition "${partition}": command ids ${commandIds.map((c) => `"${c}"`).join(', ')} were applied in ` +
        `other commits than the rest of this unit of work: send each command with the ids it was first sent with`,
    );
  }
}

/** An append or read request is malformed. */
export class InvalidRequestError extends StoreError {
  override readonly name = 'InvalidRequestError';
  override readonly code = 'SLUICE_INVALID_REQUEST';
}

/** The partition was closed; open it again to continue. */
export class PartitionClosedError extends StoreError {
  override readonly name = 'PartitionClosedError';
  override readonly code = 'SLUICE_PARTITION_CLOSED';
  constructor(readonly partition: string) {
    super(`[sluice/store] partition "${partition}" is closed: open it again with openPartition()`);
  }
}

/**
 * A write failed, so the partition no longer knows what its storage holds. Nothing after the
 * last acknowledged commit was acknowledged. Close and reopen the partition: recovery cuts
 * the unacknowledged tail.
 */
export class PartitionFaultedError extends StoreError {
  override readonly name = 'PartitionFaultedError';
  override readonly code = 'SLUICE_PARTITION_FAULTED';
  constructor(
    readonly partition: string,
    options?: ErrorOptions & { durableSeq?: number },
  ) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    const durable = options?.durableSeq === undefined ? 'the last successful sync' : `seq ${options.durableSeq}, the last durable seq`;
    super(
      `[sluice/store] partition "${partition}" stopped accepting appends after a failed write or sync${why}. ` +
        `Nothing after ${durable} was acknowledged or is committed: fix the cause, close and reopen the partition ` +
        `(recovery cuts what was never durable), then retry the failed commands with the same command ids`,
      options,
    );
  }
}

/** Too many appends are waiting; the caller should slow down and retry. */
export class PartitionOverloadedError extends StoreError {
  override readonly name = 'PartitionOverloadedError';
  override readonly code = 'SLUICE_PARTITION_OVERLOADED';
  constructor(
    readonly partition: string,
    readonly queueMax: number,
    readonly queueBytesMax?: number,
  ) {
    super(
      `[sluice/store] partition "${partition}" has ${queueMax} appends${queueBytesMax === undefined ? '' : ` or ${queueBytesMax} bytes`} waiting (queueMax${queueBytesMax === undefined ? '' : ', queueBytesMax'}): ` +
        `wait for earlier appends to resolve before sending more, or raise the limit`,
    );
  }
}

/**
 * A framed event of an `appendEncoded` request does not match the CRC-32C it carries: its
 * bytes changed between the client's encoder and the partition. Nothing of the request was
 * stored.
 */
export class CorruptFrameError extends StoreError {
  override readonly name = 'CorruptFrameError';
  override readonly code = 'SLUICE_CORRUPT_FRAME';
  constructor(
    readonly partition: string,
    /** Index of the first corrupt event in the request. */
    readonly event: number,
    detail: string,
  ) {
    super(
      `[sluice/store] partition "${partition}" refused an append: ${detail}. ` +
        `Send it again from the original events; if it recurs, check the sender's memory and network path`,
    );
  }
}
