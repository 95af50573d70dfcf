export {
  CommandIdConflictError,
  CorruptFrameError,
  InvalidRequestError,
  PartitionClosedError,
  PartitionFaultedError,
  PartitionOverloadedError,
  StorageError,
  StoreError,
  WrongExpectedVersionError,
  isStorageError,
  isWrongExpectedVersionError,
  type StorageErrorReason,
} from './errors.js';
export { MemoryLog, createMemoryStorage, type MemoryStorageOptions } from './memory-storage.js';
export {
  Partition,
  openPartition,
  partitionDefaults,
  LEVEL_NAME_BYTES_MAX,
  type PartitionOptions,
  type ReadOptions,
  type ReadStreamOptions,
  type SubscribeOptions,
} from './partition.js';
export type {
  BatchIdentity,
  CommitReliability,
  PartitionStorage,
  StorageCapabilities,
  StorageReader,
  StorageRecovery,
  ReadBatchesOptions,
  TailOptions,
  TruncateOptions,
} from './storage.js';
export { EMPTY_IDENTITY, checkWrite, checkWriteSpans, describeIdentity, identityOf, sameIdentity } from './batch-identity.js';
export { DurableSignal, pollWait, tailBatches, type WaitForDurable } from './tail.js';
export type {
  AppendRequest,
  CommitHeaders,
  CommitResult,
  EncodedAppendRequest,
  EventData,
  ExpectedVersion,
  RecordedEvent,
  StreamChange,
  StreamCommit,
  UnitOfWork,
} from './types.js';
export { describeFsyncPolicy, parseFsyncPolicy, type FsyncPolicy, type FsyncPolicyInput } from './fsync-policy.js';
export { LOCK_FILE, WriterLock, locationIdentity, type LocationIdentity } from './writer-lock.js';
export { firstBatchEndingAtOrAfter } from './seq-search.js';
export { checkFrameSeqs } from './frame-seqs.js';
export type { IndexStatus } from './partition-index.js';
export type { SealedBatchBytes, TailCacheStatus } from './tail-cache.js';
export { IndexCorruptError } from './index-table.js';
export { reindexPartition, type ReindexOptions, type ReindexReport } from './reindex.js';
export {
  createMirroredStorage,
  type MirrorLocation,
  type MirrorLocationState,
  type MirrorRecovery,
  type MirrorRepair,
  type MirroredStorage,
  type MirroredStorageOptions,
  type UnacknowledgedTailRepair,
} from './mirrored-storage.js';
export { scrubPartition, type ScrubCopyReport, type ScrubOptions, type ScrubReport } from './scrub.js';
export { createRingStorage, type RingMode, type RingState, type RingStorage, type RingStorageOptions } from './ring-storage.js';
