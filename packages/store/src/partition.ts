import {
  DEFAULT_FRAME_BYTES_MAX,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION_BASE,
  FORMAT_VERSION_LEVEL,
  FRAME_BYTES_MIN,
  FrameWriter,
  FramingError,
  checkFramedEvents,
  readU32,
  type CommitHeaders,
  type EventFrame,
  type SealedBatch,
} from '@sluice/framing';
import {
  CommandIdConflictError,
  CorruptFrameError,
  InvalidRequestError,
  PartitionClosedError,
  PartitionFaultedError,
  PartitionOverloadedError,
  StorageError,
  WrongExpectedVersionError,
} from './errors.js';
import { EMPTY_IDENTITY } from './batch-identity.js';
import { TailCache, type SealedBatchBytes, type TailCacheStatus } from './tail-cache.js';
import { PartitionIndex, type CommitRecord as IndexedCommit, type IndexStatus, type Resolved } from './partition-index.js';
import type { BatchIdentity, CommitReliability, PartitionStorage, ReadBatchesOptions, StorageRecovery } from './storage.js';
import type {
  AppendRequest,
  CommitResult,
  EncodedAppendRequest,
  ExpectedVersion,
  RecordedEvent,
  StreamChange,
  StreamCommit,
  UnitOfWork,
} from './types.js';

/** Options of {@link openPartition}. */
export interface PartitionOptions {
  /** Where the partition's log lives. */
  readonly storage: PartitionStorage;
  /**
   * The partition's name, used in messages.
   * @default storage.kind
   */
  readonly name?: string;
  /**
   * Fencing term written into every frame. Must not be lower than the highest epoch in the
   * log (a stale writer is refused); defaults to that epoch.
   */
  readonly epoch?: number;
  /**
   * Bytes one group commit may write before the next group starts.
   * @default 1048576
   */
  readonly batchBytesMax?: number;
  /**
   * Largest frame (one event with its names, headers and metadata), at most 4 MiB (the
   * limit storage backends verify frames with).
   * @default 4194304
   */
  readonly frameBytesMax?: number;
  /**
   * Appends that may wait for the writer before new ones are refused with
   * `PartitionOverloadedError`.
   * @default 100000
   */
  readonly queueMax?: number;
  /**
   * Groups handed to storage and not yet durable (one being written, the others written and
   * waiting for or covered by a sync). 2 lets group N+1 be written while group N syncs.
   * @default 4
   */
  readonly groupsInFlightMax?: number;
  /**
   * Bytes of event data and metadata that may wait for the writer before new appends are
   * refused with `PartitionOverloadedError` (the queue is bounded in bytes as well as count).
   * @default 268435456 (256 MiB)
   */
  readonly queueBytesMax?: number;
  /**
   * Largest unit of work, in bytes of event data and metadata; a larger one is refused with
   * `InvalidRequestError` before anything is queued.
   * @default 67108864 (64 MiB)
   */
  readonly unitBytesMax?: number;
  /**
   * Most events in one unit of work.
   * @default 100000
   */
  readonly unitEventsMax?: number;
  /**
   * Clock for commit timestamps (ms since the Unix epoch).
   * @default Date.now
   */
  readonly clock?: () => number;
  /**
   * A local directory for this partition's derived index files (stream and command-id index
   * tables, see the README). With it, open loads the last index checkpoint and replays only
   * the log after it; without it the index is rebuilt from the whole log on every open and
   * kept in memory. Use one directory per partition, on a local disk beside the log; for a
   * remote backend (Azure) it is a local cache folder: losing it costs one full replay.
   * Index files are never trusted: a missing, stale, corrupt or foreign one is rebuilt from
   * the log, which index repair never touches.
   * @default undefined (in-memory index)
   */
  readonly indexDirectory?: string | undefined;
  /**
   * Events appended since the last index checkpoint that trigger the next one (the memtable's
   * bound). Also bounds what open replays after a crash.
   * @default 262144
   */
  readonly indexCheckpointEvents?: number;
  /**
   * Stream versions kept in an LRU cache beside the memtable (each miss costs an index lookup
   * and one frame read from the log).
   * @default 100000
   */
  readonly streamCacheMax?: number;
  /**
   * Results of the latest durable commits that carry command ids, kept in memory so that a
   * duplicate of one (a client's resend after a fail-over) is answered without reading the log;
   * older ones are read back from the log (one commit per duplicate). The bound counts what they
   * hold: each command id and each stream of a commit counts one (a single-stream append with one
   * id counts 2; a commit of 200 merged messages, 400). 0 keeps none.
   * @default 8192
   */
  readonly commandResultCacheMax?: number;
  /**
   * Command ids are remembered forever by default. With `seqs`, an id whose commit is more
   * than that many seqs behind the head is forgotten (a retry after that is applied again).
   * @default undefined (never forgotten)
   */
  readonly commandIdRetention?: { readonly seqs?: number | undefined } | undefined;
  /**
   * Called with every index error the partition survives (e.g. the disk holding
   * `indexDirectory` is full): appends go on, the index stays in memory until it can be
   * written. Also in `partition.indexStatus.lastError`.
   */
  readonly onIndexError?: ((error: Error) => void) | undefined;
  /**
   * Seqs a stream read asks storage for in one `readFrames` call, on a backend with
   * `capabilities.frameReads` (bounds the frames one call holds; a longer stream takes several).
   * @default 512
   */
  readonly streamReadFramesMax?: number;
  /**
   * How much of each index file open checks before trusting it. `footer`: trailer, footer and
   * Bloom filter checksums, sizes, partition and checkpoint identity (open time independent of
   * the log's size); every block's checksum is then checked when it is read, and a damaged one
   * rejects that lookup with `IndexCorruptError`, is reported, and its file is deleted so the
   * next open rebuilds from the table before it. `full`: also every block now (reads the whole
   * index: about 0.3 s per 10 M events).
   * @default 'footer'
   */
  readonly indexVerifyOnOpen?: 'full' | 'footer';
  /**
   * Name of the reliability level the partition writes under (e.g. `"critical"`), recorded in
   * the headers of every commit (`RecordedEvent.headers.level` on its first event) so a reader
   * can tell how safe each write was, even after the level changes. Recording a level writes
   * frame format version 3, which needs @sluice/framing 0.x with version 3 to read (older
   * readers refuse the log rather than cut it). At most 255 UTF-8 bytes.
   * @default the level the storage reports (`storage.reliability()`, e.g. a mirror created
   *   with `level`), else none: commits record no level and the log stays format version 2
   */
  readonly level?: string | undefined;
  /**
   * Bytes of recently committed batches kept in memory, decoded, for this partition's readers:
   * subscribers following the head (and reads of recent seqs) are served from it instead of
   * each reading and decoding storage again. Counted as the batches' encoded bytes plus about
   * 160 bytes per decoded event; the oldest batches go first. Filled only while at least one
   * `subscribe()` runs (what it holds stays until evicted or the partition closes). 0 disables it.
   * @default 4194304 (4 MiB)
   */
  readonly tailCacheBytes?: number;
}

/** Longest level name recorded in a commit, in UTF-8 bytes. */
export const LEVEL_NAME_BYTES_MAX = 255;

type IndexOptionNames = 'indexDirectory' | 'commandIdRetention' | 'onIndexError' | 'level';

/** Defaults of {@link PartitionOptions}, in one place. */
export function partitionDefaults(): Required<Omit<PartitionOptions, 'storage' | 'name' | 'epoch' | IndexOptionNames>> {
  return {
    batchBytesMax: 1024 * 1024,
    frameBytesMax: 4 * 1024 * 1024,
    queueMax: 100_000,
    groupsInFlightMax: 4,
    queueBytesMax: 256 * 1024 * 1024,
    unitBytesMax: 64 * 1024 * 1024,
    unitEventsMax: 100_000,
    clock: Date.now,
    indexCheckpointEvents: 262_144,
    streamCacheMax: 100_000,
    commandResultCacheMax: 8192,
    indexVerifyOnOpen: 'footer',
    streamReadFramesMax: 512,
    tailCacheBytes: 4 * 1024 * 1024,
  };
}

/** Options of a read by seq. */
export interface ReadOptions {
  /** @default 1 */
  readonly fromSeq?: number;
  /** Inclusive; defaults to the last committed seq when the read starts. */
  readonly toSeq?: number;
  /** Stop after this many events. */
  readonly maxCount?: number;
}

/** Options of a read by stream. */
export interface ReadStreamOptions {
  /** @default 1 */
  readonly fromVersion?: number;
  /** Stop after this many events. */
  readonly maxCount?: number;
}

/** Options of a live subscription. */
export interface SubscribeOptions {
  /** @default 1 */
  readonly fromSeq?: number;
  /** Ends the subscription. */
  readonly signal?: AbortSignal;
}

/**
 * The commits a group acknowledges once durable: three parallel arrays and a count, not an
 * object per commit in an array emptied with `length = 0` (which dropped its storage, so every
 * group grew it again from nothing). A group is reused, and so are its arrays; settling clears
 * the entries it used so their promises and results can be collected.
 */
class AckList {
  private readonly resolves: Array<((result: CommitResult) => void) | undefined> = [];
  private readonly rejects: Array<((error: unknown) => void) | undefined> = [];
  private readonly results: Array<CommitResult | undefined> = [];
  length = 0;

  push(resolve: (result: CommitResult) => void, reject: (error: unknown) => void, result: CommitResult): void {
    const i = this.length++;
    this.resolves[i] = resolve;
    this.rejects[i] = reject;
    this.results[i] = result;
  }

  /** Resolves every commit with its result (stamped with `reliability` when given), then empties the list. */
  resolveAll(reliability: CommitReliability | undefined): void {
    const n = this.length;
    this.length = 0;
    for (let i = 0; i < n; i++) {
      const result = this.results[i] as CommitResult;
      // The result objects are the group's own (a duplicate waiting on this group shares its
      // original's): stamp them rather than copy each one.
      if (reliability !== undefined) (result as { reliability?: CommitReliability }).reliability = reliability;
      const resolve = this.resolves[i] as (result: CommitResult) => void;
      this.forget(i);
      resolve(result);
    }
  }

  /** Rejects every commit with `error`, then empties the list. */
  rejectAll(error: unknown): void {
    const n = this.length;
    this.length = 0;
    for (let i = 0; i < n; i++) {
      const reject = this.rejects[i] as (error: unknown) => void;
      this.forget(i);
      reject(error);
    }
  }

  private forget(i: number): void {
    this.resolves[i] = undefined;
    this.rejects[i] = undefined;
    this.results[i] = undefined;
  }
}

interface Group {
  readonly writer: FrameWriter;
  readonly acks: AckList;
  /** Command ids first recorded by this group, made durable with it. */
  readonly records: CommitRecord[];
  firstSeq: number;
  lastSeq: number;
  timestamp: number;
}

/** A commit that recorded command ids; `group` is the group writing it, until it is durable. */
type CommitRecord = IndexedCommit<Group>;

interface Pending {
  readonly unit: UnitOfWork;
  /** Bytes of event data and metadata, counted against queueBytesMax. */
  readonly bytes: number;
  readonly resolve: (result: CommitResult) => void;
  readonly reject: (error: unknown) => void;
  /** Stream versions and command ids confirmed from the log (index hits), when memory could not answer. */
  resolved?: Resolved<Group> | undefined;
  resolving?: boolean;
  resolveError?: unknown;
  /** Framed events of an {@link Partition.appendEncoded} (checked): its one change's events, copied and stamped. */
  readonly encoded?: Uint8Array | undefined;
  readonly encodedCount?: number | undefined;
}

const NO_HEADERS: readonly string[] = [];
/**
 * How the partition reads its own durable batches: CRC-32C per frame and the chain, not the
 * SHA-1 digest (verified when the batch was sealed and when storage recovered it; code that
 * copies bytes elsewhere verifies it). See `ReadBatchesOptions`.
 */
const BELOW_WATERMARK: ReadBatchesOptions = { verifyDigests: false };
/** {@link BELOW_WATERMARK} for readers of sealed bytes only: the same checks, no event objects. */
const BELOW_WATERMARK_SEALED: ReadBatchesOptions = { verifyDigests: false, frames: false };
const NO_EVENTS: readonly never[] = [];
/**
 * Encoded bytes after which the group's digest is fed what was encoded (FrameWriter.digestWritten):
 * a large group is hashed in steps while its frames are still in the CPU cache, on this thread,
 * instead of as one copy handed to the thread pool at seal time.
 */
const DIGEST_STEP_BYTES = 64 * 1024;
/** Bytes encoded between yields to the event loop while a write is in flight. */
const ENCODE_SLICE_BYTES = 64 * 1024;

/**
 * Opens a partition: takes the storage's writer lock, recovers it, rebuilds the stream and
 * command-id indexes from the log, and starts the single writer.
 *
 * @example
 * const partition = await openPartition({ storage: createMemoryStorage(), name: 'bank-1' });
 * const result = await partition.append({
 *   streamId: 'account-42', expectedVersion: 0, commandId: 'open-42',
 *   events: [{ type: 'AccountOpened', data: new TextEncoder().encode('{"owner":"Ada"}') }],
 * });
 * for await (const event of partition.readStream('account-42')) console.log(event.eventType);
 * await partition.close();
 */
export async function openPartition(options: PartitionOptions): Promise<Partition> {
  const problems = checkOptions(options);
  if (problems.length > 0) throw new InvalidRequestError(`[sluice/store] invalid partition options: ${problems.join('; ')}`);
  const recovery = await options.storage.open();
  const partition = new Partition(options, recovery);
  try {
    await partition.rebuild();
  } catch (error) {
    await options.storage.close().catch(() => undefined);
    throw error;
  }
  return partition;
}

/**
 * One partition's single writer and its reads. Create it with {@link openPartition}.
 *
 * Appends are queued and written by group commit: every append that arrives while a write is
 * in flight is encoded into the next group, which is written as one batch the moment the
 * previous write completes, while the groups before it are synced (several groups in flight,
 * `groupsInFlightMax`). An append resolves only once its whole commit is durable per the
 * storage's policy, and acknowledgements go out strictly in seq order.
 */
export class Partition {
  readonly name: string;
  /** What storage recovery found and dropped when the partition opened. */
  readonly recovery: StorageRecovery;
  /** The reliability level recorded in every commit this partition writes, if any. */
  readonly level: string | undefined;
  /** Headers of a commit that records only the level (shared: no allocation per commit). */
  private readonly levelHeaders: CommitHeaders | undefined;
  private readonly storage: PartitionStorage;
  private readonly options: Required<Omit<PartitionOptions, 'storage' | 'name' | 'epoch' | IndexOptionNames>>;
  private readonly requestedEpoch: number | undefined;
  private epochValue = 0;
  /** The stream and command-id indexes (memtable, cache, tables). */
  private readonly index: PartitionIndex<Group>;
  /** Filled by {@link ready} for the unit {@link encode} takes next. */
  private readonly changeVersions: number[] = [];
  private readonly commandRecords: Array<CommitRecord | null> = [];
  /** How many of {@link commandRecords} the unit being encoded filled (the array is reused, not emptied). */
  private commandRecordCount = 0;
  private nextSeq = 1;
  private durableSeq = 0;
  private durable: BatchIdentity = EMPTY_IDENTITY;
  /** Digest of the last batch handed to storage: the next batch chains to it. */
  private headDigest: Uint8Array = EMPTY_IDENTITY.digest;
  private queue: Pending[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private building: Group;
  private readonly free: Group[] = [];
  /** The group whose write is in flight. */
  private writing: Group | undefined;
  /** Groups written and not yet covered by a sync. */
  private written: Group[] = [];
  /** Groups covered by the sync in flight. */
  private syncing: Group[] | undefined;
  private groupsInFlight = 0;
  private scheduled = false;
  private sliceScheduled = false;
  private state: 'open' | 'closing' | 'closed' | 'faulted' = 'open';
  private fault: unknown;
  private commitWaiters: Array<() => void> = [];
  private closing: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];
  /** Recently durable batches, shared by readers (tailCacheBytes). */
  private readonly tail: TailCache;
  /** Running {@link subscribe} generators: the tail cache is filled only while there are some. */
  private subscribers = 0;

  /** @internal use {@link openPartition} */
  constructor(options: PartitionOptions, recovery: StorageRecovery) {
    this.storage = options.storage;
    this.name = options.name ?? options.storage.kind;
    this.options = { ...partitionDefaults(), ...definedOnly(options) };
    const level = options.level ?? options.storage.reliability?.(recovery.head.lastSeq)?.level;
    this.level = level === '' ? undefined : level;
    this.levelHeaders = this.level === undefined ? undefined : { commandIds: [], level: this.level };
    this.requestedEpoch = options.epoch;
    this.recovery = recovery;
    this.building = this.newGroup();
    this.tail = new TailCache(this.options.tailCacheBytes);
    this.index = new PartitionIndex<Group>(options.storage, {
      name: this.name,
      directory: options.indexDirectory,
      checkpointEvents: this.options.indexCheckpointEvents,
      streamCacheMax: this.options.streamCacheMax,
      commandResultCacheMax: this.options.commandResultCacheMax,
      commandIdRetentionSeqs: options.commandIdRetention?.seqs,
      onError: options.onIndexError,
      hash: (options as { indexHash?: (s: string, out: Uint32Array) => void }).indexHash,
      rebuild: (options as { indexRebuild?: boolean }).indexRebuild,
      verifyOnOpen: this.options.indexVerifyOnOpen,
    });
  }

  /** What the index loaded, replayed and discarded on open, and its checkpoint now. */
  get indexStatus(): IndexStatus {
    return this.index.status;
  }

  /** What the shared tail cache of recently committed batches holds (`tailCacheBytes`). */
  get tailCacheStatus(): TailCacheStatus {
    return this.tail.status;
  }

  /** Seq of the last durable (acknowledged) frame; 0 when the partition is empty. */
  get lastSeq(): number {
    return this.durableSeq;
  }

  /** Identity of the last durable batch: what the partition has acknowledged, as storage holds it. */
  get head(): BatchIdentity {
    return this.durable;
  }

  /** The fencing term this writer writes. */
  get epoch(): number {
    return this.epochValue;
  }

  /** True until {@link close} is called or a write fails. */
  get isWritable(): boolean {
    return this.state === 'open';
  }

  /**
   * The current version of a stream (0 when it has no events), including appends in flight.
   * Synchronous: for a stream found only in an index table it is not confirmed against the log
   * (a 64-bit hash collision could name another stream's version); {@link currentVersion} is.
   */
  streamVersion(streamId: string): number {
    return this.index.versionUnconfirmed(streamId);
  }

  /** The current version of a stream, confirmed against the log, including appends in flight. */
  currentVersion(streamId: string): Promise<number> {
    return this.index.resolveVersion(streamId);
  }

  /** Number of streams with at least one event. */
  get streamCount(): number {
    return this.index.streamCount;
  }

  /**
   * The result of the commit a command id produced, or undefined when the id was never
   * applied (or is past `commandIdRetention`): a handler can skip executing a command again.
   * A commit still in flight is answered once durable.
   */
  async commandResult(commandId: string): Promise<CommitResult | undefined> {
    this.assertReadable();
    const record = await this.index.resolveCommand(commandId);
    if (record === null) return undefined;
    const group = record.group;
    if (group === undefined) return record.result;
    if (this.state === 'faulted') throw this.notWritable();
    return new Promise<CommitResult>((resolve, reject) => group.acks.push(resolve, reject, record.result));
  }

  /** Appends events to one stream. Resolves when the commit is durable. */
  append(request: AppendRequest): Promise<CommitResult> {
    // Refuse an overload before building anything for it.
    if (this.state === 'open' && this.queue.length - this.queueHead >= this.options.queueMax) return this.overloaded();
    return this.commit({
      changes: [request],
      commandIds: request.commandId === undefined ? undefined : [request.commandId],
      correlationId: request.correlationId,
      causationId: request.causationId,
    });
  }

  /**
   * Appends events the client encoded once as framed events (`writeFramedEvents` of
   * `@sluice/framing`, the cluster's fast path): checked like {@link append} (expected
   * version, command ids from the first frame's commit headers, `unitEventsMax`,
   * `unitBytesMax`, `frameBytesMax`), then copied into the batch with seq, epoch, timestamp,
   * commit flags and stream version stamped, each frame's CRC derived from the CRC-32C of the
   * body the client computed: the checksum travels with the event from the client to disk. A
   * body whose CRC does not match rejects the whole append with {@link CorruptFrameError};
   * nothing of it is stored. Resolves when the commit is durable.
   *
   * @example
   * const bytes = Buffer.allocUnsafe(framedEventsBytesBound('account-42', events, headers));
   * const end = writeFramedEvents(bytes, 0, 'account-42', events, { commandIds: ['open-42'] }, 4 << 20);
   * await partition.appendEncoded({ frames: bytes.subarray(0, end), expectedVersion: 0 });
   */
  appendEncoded(request: EncodedAppendRequest): Promise<CommitResult> {
    if (this.state !== 'open') return Promise.reject(this.notWritable());
    if (this.queue.length - this.queueHead >= this.options.queueMax) return this.overloaded();
    const frames = request?.frames;
    if (!(frames instanceof Uint8Array)) {
      return Promise.reject(new InvalidRequestError(`[sluice/store] partition "${this.name}": appendEncoded needs frames as a Uint8Array of framed events (writeFramedEvents)`));
    }
    const expectedVersion = request.expectedVersion;
    if (!validExpectedVersion(expectedVersion)) {
      return Promise.reject(new InvalidRequestError(`[sluice/store] partition "${this.name}": expectedVersion must be a non-negative integer, 'any', 'no-stream' or 'exists'`));
    }
    const info = checkFramedEvents(frames, this.options.frameBytesMax, this.options.unitEventsMax);
    if (!info.ok) {
      return Promise.reject(
        info.corrupt
          ? new CorruptFrameError(this.name, info.event, info.problem)
          : new InvalidRequestError(`[sluice/store] partition "${this.name}": ${info.problem} (limits: frameBytesMax ${this.options.frameBytesMax}, unitEventsMax ${this.options.unitEventsMax})`),
      );
    }
    if (info.dataBytes > this.options.unitBytesMax) {
      return Promise.reject(
        new InvalidRequestError(
          `[sluice/store] partition "${this.name}": a unit of work of ${info.dataBytes} bytes exceeds unitBytesMax (${this.options.unitBytesMax}): split it into smaller units or raise unitBytesMax`,
        ),
      );
    }
    if (this.queuedBytes + info.dataBytes > this.options.queueBytesMax && this.queue.length > this.queueHead) return this.overloaded();
    const headers = info.headers;
    const unit: UnitOfWork = {
      changes: [{ streamId: info.streamId, expectedVersion, events: NO_EVENTS }],
      commandIds: headers === undefined || headers.commandIds.length === 0 ? undefined : headers.commandIds,
      correlationId: headers?.correlationId,
      causationId: headers?.causationId,
    };
    // A partition recording its level writes format version 3: the writer inserts the level
    // into the first frame's headers as it copies the frames (FrameWriter.appendFramed).
    return this.enqueue(unit, info.dataBytes, frames, info.count);
  }

  /**
   * Commits a unit of work atomically: every change is written or none is. If its command
   * ids were applied before, nothing is written and the original result comes back with
   * `duplicate: true`.
   */
  commit(unit: UnitOfWork): Promise<CommitResult> {
    if (this.state !== 'open') return Promise.reject(this.notWritable());
    if (this.queue.length - this.queueHead >= this.options.queueMax) return this.overloaded();
    const checked = validateUnit(unit, this.options.unitEventsMax);
    if (typeof checked === 'string') return Promise.reject(new InvalidRequestError(`[sluice/store] partition "${this.name}": ${checked}`));
    if (checked > this.options.unitBytesMax) {
      return Promise.reject(
        new InvalidRequestError(
          `[sluice/store] partition "${this.name}": a unit of work of ${checked} bytes exceeds unitBytesMax (${this.options.unitBytesMax}): split it into smaller units or raise unitBytesMax`,
        ),
      );
    }
    if (this.queuedBytes + checked > this.options.queueBytesMax && this.queue.length > this.queueHead) return this.overloaded();
    return this.enqueue(unit, checked, undefined, undefined);
  }

  /** Queues a checked unit (with its framed events for appendEncoded) and schedules the pump. */
  private enqueue(unit: UnitOfWork, bytes: number, encoded: Uint8Array | undefined, encodedCount: number | undefined): Promise<CommitResult> {
    const promise = new Promise<CommitResult>(this.takeSettlers);
    this.queue.push({ unit, bytes, resolve: this.settleResolve, reject: this.settleReject, encoded, encodedCount });
    this.queuedBytes += bytes;
    this.schedulePump();
    return promise;
  }

  private schedulePump(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(this.pump);
  }

  // The settling functions of the promise just made: one executor for every append instead of a
  // closure (and its context) per append. Read right after `new Promise(this.takeSettlers)`.
  private settleResolve: (result: CommitResult) => void = () => undefined;
  private settleReject: (error: unknown) => void = () => undefined;
  private readonly takeSettlers = (resolve: (result: CommitResult) => void, reject: (error: unknown) => void): void => {
    this.settleResolve = resolve;
    this.settleReject = reject;
  };

  /**
   * Refuses an append cheaply: an overloaded caller may send millions, so the refusal carries
   * no stack trace (where it came from is always `append`/`commit`) and allocates only the
   * error and its rejected promise.
   */
  private overloaded(): Promise<never> {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return Promise.reject(new PartitionOverloadedError(this.name, this.options.queueMax, this.options.queueBytesMax));
    } finally {
      Error.stackTraceLimit = limit;
    }
  }

  /**
   * Events by seq, in order, up to the last committed seq (when the read starts). Served batch
   * by batch: an event already decoded is handed out without the resumption an async
   * generator costs per event (see {@link EventReader}).
   */
  read(options: ReadOptions = {}): AsyncGenerator<RecordedEvent> {
    return new EventReader(this, options);
  }

  /** @internal The range a read covers, fixed when it starts; undefined when empty. Throws once closed. */
  startRead(options: ReadOptions): { fromSeq: number; toSeq: number; maxCount: number; batches: AsyncGenerator<readonly EventFrame[]> } | undefined {
    const fromSeq = Math.max(1, options.fromSeq ?? 1);
    const toSeq = Math.min(options.toSeq ?? this.durableSeq, this.durableSeq);
    const maxCount = options.maxCount ?? Number.POSITIVE_INFINITY;
    if (fromSeq > toSeq || maxCount <= 0) return undefined;
    this.assertReadable();
    return { fromSeq, toSeq, maxCount, batches: this.committed(fromSeq, toSeq) };
  }

  /**
   * The frames of the durable batches overlapping `[fromSeq, toSeq]`, batch by batch (a batch
   * may hold frames outside the range): from the tail cache while it holds them, else from
   * storage (CRCs checked, not digests: {@link BELOW_WATERMARK}). The arrays may be shared
   * with other readers: never modify them.
   */
  private async *committed(fromSeq: number, toSeq: number): AsyncGenerator<readonly EventFrame[]> {
    for await (const batch of this.durableBatches(fromSeq, toSeq, (seq) => this.tail.find(seq))) yield batch.frames;
  }

  /**
   * The durable batches holding `next..toSeq`, each as `cached` gives it while the tail cache
   * holds it, else as storage reads it (CRCs checked, not digests: {@link BELOW_WATERMARK});
   * a stored batch has both the frames and the sealed bytes, so it serves either shape.
   */
  private async *durableBatches<T extends { readonly lastSeq: number }>(
    next: number,
    toSeq: number,
    cached: (seq: number) => T | undefined,
    readOptions: ReadBatchesOptions = BELOW_WATERMARK,
  ): AsyncGenerator<T | SealedBatch> {
    while (next <= toSeq) {
      const hit = cached(next);
      if (hit !== undefined) {
        next = hit.lastSeq + 1;
        yield hit;
        continue;
      }
      // Storage up to where the cache starts (it may hold the rest), or to the end.
      const cacheFirst = this.tail.firstSeq;
      const until = cacheFirst > next ? Math.min(toSeq, cacheFirst - 1) : toSeq;
      const before = next;
      for await (const batch of this.storage.read(next, until, readOptions)) {
        if (batch.lastSeq < next) continue;
        next = batch.lastSeq + 1;
        yield batch;
        if (next > until) break;
      }
      if (next === before) {
        throw new StorageError('Corrupt', `[sluice/store] partition "${this.name}": ${this.storage.kind} storage returned nothing for durable seqs ${next}..${until}`);
      }
    }
  }

  /** A stream's events in version order, up to the last committed one. */
  async *readStream(streamId: string, options: ReadStreamOptions = {}): AsyncGenerator<RecordedEvent> {
    this.assertReadable();
    const fromVersion = Math.max(1, options.fromVersion ?? 1);
    let remaining = options.maxCount ?? Number.POSITIVE_INFINITY;
    const limit = this.durableSeq;
    // Found through the index, never by scanning: with a hash collision the list also holds
    // another stream's seqs, which the stream id check below drops.
    const seqs = this.index.streamSeqs(streamId, fromVersion, limit);
    const readFrames = this.storage.capabilities.frameReads ? this.storage.readFrames : undefined;
    if (readFrames !== undefined) {
      // Frame reads: only the stream's frames, never their batches, a bounded number per call.
      const chunk = this.options.streamReadFramesMax;
      for (let at = 0; at < seqs.length && remaining > 0; ) {
        const end = Math.min(seqs.length, at + Math.min(chunk, remaining));
        for await (const frame of readFrames.call(this.storage, seqs.slice(at, end))) {
          if (frame.streamId !== streamId || frame.streamVersion < fromVersion) continue;
          yield frame;
          if (--remaining <= 0) return;
        }
        at = end;
      }
      return;
    }
    let index = 0;
    while (index < seqs.length && remaining > 0) {
      // Only the batches holding the stream's seqs: contiguous seqs are read as one range,
      // others batch by batch (read(seq, seq) yields the one batch holding seq).
      const from = seqs[index];
      let end = index;
      while (end + 1 < seqs.length && seqs[end + 1] === seqs[end] + 1) end++;
      const to = seqs[end];
      let last = to;
      for await (const batch of this.storage.read(from, to)) {
        last = Math.max(last, batch.lastSeq);
        for (const frame of batch.frames) {
          if (frame.seq < from || frame.streamId !== streamId || frame.streamVersion < fromVersion) continue;
          if (frame.seq > last) break;
          // Frames of the stream after `to` in a batch already read are served from it.
          while (index < seqs.length && seqs[index] < frame.seq) index++;
          if (seqs[index] !== frame.seq) continue;
          index++;
          yield frame;
          if (--remaining <= 0) return;
        }
      }
      while (index < seqs.length && seqs[index] <= last) index++;
    }
  }

  /**
   * Committed events from `fromSeq` on, in batches (each array is this subscriber's own), then
   * live as new commits become durable: those come from the shared tail cache
   * (`tailCacheBytes`), decoded once for every subscriber, without reading storage. Ends when
   * the signal aborts or the partition closes (events not yet delivered then are not: resume
   * from your checkpoint after reopening).
   */
  subscribe(options: SubscribeOptions = {}): AsyncGenerator<RecordedEvent[]> {
    return this.follow(options, (next, head) => this.committedSlices(next, head), (events) => events[events.length - 1].seq);
  }

  /** The committed events `next..head` in batches, each array this subscriber's own. */
  private async *committedSlices(next: number, head: number): AsyncGenerator<RecordedEvent[]> {
    for await (const frames of this.committed(next, head)) {
      // One array per batch and subscriber: the batch's own may be shared with other readers.
      const from = seqIndex(frames, next);
      const to = seqIndex(frames, head + 1);
      if (from >= to) continue;
      next = frames[to - 1].seq + 1;
      yield frames.slice(from, to);
    }
  }

  /**
   * Like {@link subscribe}, but hands over each committed batch as its sealed bytes (event
   * frames, then the marker, exactly as stored: `SealedBatch.bytes`) instead of decoded events,
   * for relays that forward frames without looking inside them (broadcast publishers). Live
   * batches come from the tail cache without decoding; older ones from storage, read with the
   * same checks as {@link read} (every frame's CRC-32C, seq order, grouping, the chain) but
   * without building event objects (`frames: false`); a cached batch's CRCs are checked the
   * first time a reader takes it. A batch may start before `fromSeq` (batches are whole): skip
   * its frames below it. Never modify `bytes` (shared with other readers).
   */
  subscribeSealed(options: SubscribeOptions = {}): AsyncGenerator<SealedBatchBytes> {
    return this.follow(options, (next, head) => this.committedSealed(next, head), (batch) => batch.lastSeq);
  }

  /** The committed batches holding `next..head` as sealed bytes: from the tail cache, else from storage. */
  private committedSealed(next: number, head: number): AsyncGenerator<SealedBatchBytes> {
    return this.durableBatches(next, head, (seq) => this.tail.findSealed(seq), BELOW_WATERMARK_SEALED);
  }

  /**
   * What {@link subscribe} and {@link subscribeSealed} share: catch up from `fromSeq` to the
   * durable head with `catchUp`, then wait for the next commit and go on, until the signal
   * aborts or the partition closes. Counts as a subscriber meanwhile (the tail cache is filled).
   */
  private async *follow<T>(options: SubscribeOptions, catchUp: (next: number, head: number) => AsyncGenerator<T>, lastSeqOf: (item: T) => number): AsyncGenerator<T> {
    let next = Math.max(1, options.fromSeq ?? 1);
    const signal = options.signal;
    // Live subscribers are served the batches just committed from the shared tail cache.
    this.subscribers++;
    try {
      while (!aborted(signal)) {
        const head = this.durableSeq;
        if (this.closingOrClosed()) return;
        if (next <= head) {
          try {
            for await (const item of catchUp(next, head)) {
              next = lastSeqOf(item) + 1;
              yield item;
              if (aborted(signal)) return;
            }
          } catch (error) {
            // Closing the partition ends subscriptions; the reader resumes from its checkpoint.
            if (this.closingOrClosed()) return;
            throw error;
          }
          continue;
        }
        // Caught up: nothing more will come from a partition whose writer failed.
        if (this.state === 'faulted') throw new PartitionFaultedError(this.name, { cause: this.fault });
        await this.nextCommit(signal);
      }
    } finally {
      // The cache keeps what it holds (bounded) for the next subscriber; it is no longer filled.
      this.subscribers--;
    }
  }

  /** Waits for every queued append to settle, then releases the storage. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    const wasFaulted = this.state === 'faulted';
    this.state = 'closing';
    if (!wasFaulted) {
      await new Promise<void>((resolve) => {
        if (this.idle()) resolve();
        else this.drainWaiters.push(resolve);
      });
    }
    this.state = 'closed';
    this.tail.clear();
    this.wakeCommitWaiters();
    // The last index checkpoint, at the durable head: the next open replays nothing.
    await this.index.close(this.durable);
    await this.storage.close();
  }

  /**
   * @internal Loads the index checkpoint (or rebuilds the index from the log) and replays the
   * log after it; called once by {@link openPartition}.
   */
  async rebuild(): Promise<void> {
    const lastSeq = this.recovery.lastSeq;
    let maxEpoch = await this.index.open(this.recovery);
    if (this.recovery.head.epoch > maxEpoch) maxEpoch = this.recovery.head.epoch;
    if (this.requestedEpoch !== undefined && this.requestedEpoch < maxEpoch) {
      throw new StorageError(
        'Conflict',
        `[sluice/store] partition "${this.name}": epoch ${this.requestedEpoch} is older than epoch ${maxEpoch} already in the log: this writer was fenced by a newer one; do not write from it`,
      );
    }
    this.epochValue = this.requestedEpoch ?? maxEpoch;
    this.nextSeq = lastSeq + 1;
    this.durableSeq = lastSeq;
    this.durable = this.recovery.head;
    this.headDigest = this.recovery.head.digest;
  }

  private newGroup(): Group {
    return {
      writer: new FrameWriter({
        frameBytesMax: this.options.frameBytesMax,
        initialBytes: 1024 * 1024,
        formatVersion: this.level === undefined ? FORMAT_VERSION_BASE : FORMAT_VERSION_LEVEL,
      }),
      acks: new AckList(),
      records: [],
      firstSeq: 0,
      lastSeq: 0,
      timestamp: 0,
    };
  }

  private readonly pump = (): void => {
    this.scheduled = false;
    this.drive();
  };

  /**
   * Moves queued appends along: encodes them into the building group and, when no write is in
   * flight, submits it and goes on encoding the rest into the next group, so encoding always
   * overlaps the write and sync of the previous group.
   *
   * When the disk is idle, the group goes out as soon as it holds something: what was encoded
   * while the last write ran, or else one slice (ENCODE_SLICE_BYTES, at least one unit). The
   * rest of the queue is encoded while that group is written and synced. Encoding the whole
   * queue first would leave the disk idle meanwhile. It also keeps a few large appenders in
   * lockstep: one sync acknowledges them all, they all come back at once, and the thread then
   * waits for that sync with nothing to encode. Measured with 4 appenders of 1000 × 100 B events
   * on their own: +10-30 % events/s over 3 alternated pairs; in `npm run bench` (2 alternated
   * pairs), within the run-to-run noise of the disk.
   */
  private drive(): void {
    for (;;) {
      if (this.state === 'faulted' || this.state === 'closed') return;
      if (this.writing === undefined && this.groupsInFlight < this.options.groupsInFlightMax) {
        if (this.building.acks.length === 0) this.fill(this.building, Math.min(this.options.batchBytesMax, ENCODE_SLICE_BYTES));
        if (this.building.acks.length === 0) break;
        this.submit();
        continue;
      }
      // I/O is in flight: encode the next group in slices and yield between them, so the
      // completions of writes and syncs are handled promptly instead of waiting for a whole
      // group to be encoded.
      const group = this.building;
      this.fill(group, Math.min(this.options.batchBytesMax, group.writer.byteLength + ENCODE_SLICE_BYTES));
      if (this.queueHead < this.queue.length && group.writer.byteLength < this.options.batchBytesMax && !this.sliceScheduled && this.queue[this.queueHead].resolving !== true) {
        this.sliceScheduled = true;
        setImmediate(this.continueSlices);
      }
      break;
    }
    this.checkDrained();
  }

  private readonly continueSlices = (): void => {
    this.sliceScheduled = false;
    this.drive();
  };

  /** Encodes queued units into `group` until it holds `limit` bytes or the queue is empty. */
  private fill(group: Group, limit: number): void {
    const queue = this.queue;
    while (this.queueHead < queue.length && group.writer.byteLength < limit) {
      const pending = queue[this.queueHead];
      if (pending.resolveError === undefined && !this.ready(pending)) break;
      queue[this.queueHead++] = undefined as unknown as Pending;
      this.queuedBytes -= pending.bytes;
      if (pending.resolveError !== undefined) pending.reject(pending.resolveError);
      else this.encode(pending, group);
      if (group.writer.undigestedBytes >= DIGEST_STEP_BYTES) group.writer.digestWritten();
    }
    if (this.queueHead === queue.length) {
      if (queue.length > 0) {
        this.queue = [];
        this.queueHead = 0;
      }
    } else if (this.queueHead > 4096) {
      this.queue = queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  /**
   * True when memory (memtable, cache, or a miss in every index table) answers every stream
   * version and command id of the unit, filling {@link changeVersions} and
   * {@link commandRecords}. Otherwise an index table holds a hash the log must confirm: starts
   * that and returns false; the pump stops at this unit (order matters) and resumes once the
   * answers are in `pending.resolved`.
   */
  private ready(pending: Pending): boolean {
    if (pending.resolving === true) return false;
    // The memtable is full while an index checkpoint is built off the main thread: wait for it.
    const checkpoint = this.index.backpressure();
    if (checkpoint !== undefined) {
      pending.resolving = true;
      void checkpoint.finally(() => {
        pending.resolving = false;
        this.schedulePump();
      });
      return false;
    }
    const unit = pending.unit;
    const resolved = pending.resolved;
    // Filled by index, not emptied (length = 0) and pushed: emptying drops the arrays' storage,
    // which every append would then allocate again.
    const versions = this.changeVersions;
    const records = this.commandRecords;
    let streams: string[] | undefined;
    let ids: string[] | undefined;
    const changes = unit.changes;
    for (let c = 0; c < changes.length; c++) {
      const v = this.index.versionNow(changes[c].streamId, resolved);
      if (v === undefined) (streams ??= []).push(changes[c].streamId);
      else versions[c] = v;
    }
    const commandIds = unit.commandIds ?? NO_HEADERS;
    this.commandRecordCount = commandIds.length;
    for (let i = 0; i < commandIds.length; i++) {
      const r = this.index.commandNow(commandIds[i], resolved);
      if (r === undefined) (ids ??= []).push(commandIds[i]);
      else records[i] = r;
    }
    if (streams === undefined && ids === undefined) return true;
    pending.resolving = true;
    this.index
      .resolve(streams ?? NO_HEADERS, ids ?? NO_HEADERS)
      .then(
        (r) => {
          pending.resolved = r;
        },
        (error: unknown) => {
          pending.resolveError = error;
        },
      )
      .finally(() => {
        pending.resolving = false;
        this.schedulePump();
      });
    return false;
  }

  /** Checks and encodes one unit of work into `group`, or settles it at once. {@link ready} came first. */
  private encode(pending: Pending, group: Group): void {
    const unit = pending.unit;
    const commandIds = unit.commandIds ?? NO_HEADERS;
    if (commandIds.length > 0) {
      const known = this.duplicateOf();
      if (known === 'conflict') {
        pending.reject(new CommandIdConflictError(this.name, commandIds));
        return;
      }
      if (known !== undefined) {
        const result = known.result.duplicate ? known.result : { ...known.result, duplicate: true };
        if (known.group === undefined) pending.resolve(this.withReliability(result));
        else known.group.acks.push(pending.resolve, pending.reject, result);
        return;
      }
    }
    const changes = unit.changes;
    // One index lookup per change (in ready), reused by the check, the encoding and the update below.
    const versions = this.changeVersions;
    for (let c = 0; c < changes.length; c++) {
      const change = changes[c];
      if (!versionMatches(change.expectedVersion, versions[c])) {
        pending.reject(new WrongExpectedVersionError(this.name, change.streamId, change.expectedVersion ?? 'any', versions[c]));
        return;
      }
    }
    const writer = group.writer;
    if (group.firstSeq === 0) group.timestamp = this.options.clock();
    const mark = writer.mark();
    const framesBefore = writer.unsealedFrameCount;
    const headers: CommitHeaders | undefined =
      commandIds.length > 0 || unit.correlationId !== undefined || unit.causationId !== undefined
        ? this.level === undefined
          ? { commandIds, correlationId: unit.correlationId, causationId: unit.causationId }
          : { commandIds, correlationId: unit.correlationId, causationId: unit.causationId, level: this.level }
        : this.levelHeaders;
    const firstSeq = this.nextSeq;
    let seq = firstSeq;
    // Sized up front: pushing into [] would allocate room for 17 entries on every append.
    const streams: StreamCommit[] = new Array<StreamCommit>(changes.length);
    const lastChange = changes.length - 1;
    const encoded = pending.encoded;
    try {
      if (encoded !== undefined) {
        // One change, already framed by the client: copy and stamp (no decode, no re-encode).
        const count = pending.encodedCount as number;
        const base = versions[0];
        // The first frame alone (it carries the commit's headers, and the level goes into them),
        // the rest as one run: one copy, then each frame stamped in place.
        const firstBytes = readU32(encoded, 0);
        writer.appendFramed(seq, this.epochValue, group.timestamp, FLAG_COMMIT_FIRST | (count === 1 ? FLAG_COMMIT_LAST : 0), base + 1, encoded, 0, firstBytes, this.level);
        seq++;
        if (count > 1) seq += writer.appendFramedRun(seq, this.epochValue, group.timestamp, base + 2, encoded, firstBytes, encoded.length, true);
        streams[0] = { streamId: changes[0].streamId, firstVersion: base + 1, version: base + count };
      }
      for (let c = 0; encoded === undefined && c <= lastChange; c++) {
        const change = changes[c];
        const events = change.events;
        const base = versions[c];
        for (let i = 0; i < events.length; i++) {
          const event = events[i];
          let flags = 0;
          if (seq === firstSeq) flags |= FLAG_COMMIT_FIRST;
          if (c === lastChange && i === events.length - 1) flags |= FLAG_COMMIT_LAST;
          writer.appendEvent(
            seq,
            this.epochValue,
            group.timestamp,
            flags,
            change.streamId,
            base + i + 1,
            event.type,
            seq === firstSeq ? headers : undefined,
            event.metadata,
            event.data,
          );
          seq++;
        }
        streams[c] = { streamId: change.streamId, firstVersion: base + 1, version: base + events.length };
      }
    } catch (error) {
      writer.rollback(mark, framesBefore, this.nextSeq - 1);
      pending.reject(
        error instanceof FramingError
          ? new InvalidRequestError(`[sluice/store] partition "${this.name}": ${error.message}`, { cause: error })
          : error,
      );
      return;
    }
    // The unit is encoded: only now change the in-memory state.
    for (let c = 0; c < changes.length; c++) {
      const count = encoded === undefined ? changes[c].events.length : (pending.encodedCount as number);
      this.index.noteStream(changes[c].streamId, versions[c], this.nextSeq, count);
      this.nextSeq += count;
    }
    if (group.firstSeq === 0) group.firstSeq = firstSeq;
    group.lastSeq = seq - 1;
    const result: CommitResult = { firstSeq, lastSeq: seq - 1, streams, timestamp: group.timestamp, duplicate: false };
    group.acks.push(pending.resolve, pending.reject, result);
    if (commandIds.length > 0) {
      // Its own copy: the index checks in-flight duplicates against it, and a caller may reuse its array.
      const record: CommitRecord = { result, group, commandIds: commandIds.slice() };
      for (const id of commandIds) this.index.noteCommand(id, record);
      group.records.push(record);
    }
  }

  /** The commit the unit's command ids name (from {@link ready}): none, one, or a conflict (different commits). */
  private duplicateOf(): CommitRecord | 'conflict' | undefined {
    const records = this.commandRecords;
    const count = this.commandRecordCount;
    if (count === 0) return undefined;
    const first = records[0];
    for (let i = 1; i < count; i++) {
      const r = records[i];
      if (r !== first && (r === null || first === null || r.result.firstSeq !== first.result.firstSeq)) return 'conflict';
    }
    return first ?? undefined;
  }

  /** Seals the building group, chained to the previous batch, and hands it to storage.write. */
  private submit(): void {
    const group = this.building;
    if (group.writer.unsealedFrameCount === 0) {
      // Only duplicates of durable commits: settle without writing.
      this.settle(group);
      return;
    }
    this.building = this.free.pop() ?? this.newGroup();
    this.writing = group;
    this.groupsInFlight++;
    const writer = group.writer;
    // Most of a large group's digest was computed as it was encoded (fill): this hashes the rest.
    writer.seal(this.epochValue, group.timestamp, this.headDigest);
    this.headDigest = writer.lastDigest;
    this.storage.write(writer.bytes(), group.firstSeq, group.lastSeq).then(
      () => this.onWritten(group),
      (error: unknown) => this.onWriteFailed(error),
    );
  }

  private onWritten(group: Group): void {
    if (this.state === 'faulted') return;
    this.writing = undefined;
    this.written.push(group);
    this.startSync();
    this.drive();
  }

  /** Syncs every written group at once, unless a sync is already in flight (it starts when that one ends). */
  private startSync(): void {
    if (this.syncing !== undefined || this.written.length === 0) return;
    const covered = this.written;
    this.written = [];
    this.syncing = covered;
    this.storage.sync().then(
      (head) => this.onDurable(covered, head),
      (error: unknown) => this.onWriteFailed(error),
    );
  }

  private onDurable(covered: Group[], head: BatchIdentity): void {
    if (this.state === 'faulted') return;
    const last = covered[covered.length - 1];
    if (head.lastSeq < last.lastSeq) {
      this.onWriteFailed(new StorageError('Corrupt', `[sluice/store] partition "${this.name}": ${this.storage.kind} storage synced up to seq ${head.lastSeq}, not ${last.lastSeq} as written`));
      return;
    }
    this.syncing = undefined;
    this.durableSeq = last.lastSeq;
    this.durable = head;
    const reliability = this.storage.reliability?.(last.lastSeq);
    // The index checkpoints at what this engine made durable, not past it (a storage may name writes made after the sync started).
    const upTo: BatchIdentity = head.lastSeq === last.lastSeq ? head : { lastSeq: last.lastSeq, epoch: this.epochValue, digest: Uint8Array.from(last.writer.lastDigest) };
    // Subscribers wake up to these batches: keep them, copied (the writer's buffer is reused;
    // it may be a Buffer, whose slice() is a view, so the copy is made by the constructor).
    if (this.subscribers > 0 && this.tail.enabled) {
      for (const group of covered) this.tail.add(group.firstSeq, group.lastSeq, new Uint8Array(group.writer.bytes()));
    }
    for (const group of covered) {
      for (const record of group.records) record.group = undefined;
      this.index.commandsDurable(group.records);
      this.settle(group, reliability);
      this.free.push(group);
      this.groupsInFlight--;
    }
    // An index checkpoint when the memtable is full (durable entries only).
    this.index.afterDurable(upTo);
    this.wakeCommitWaiters();
    this.startSync();
    this.drive();
  }

  /** A durable commit's result with where it is held now, when the storage reports it. */
  private withReliability(result: CommitResult): CommitResult {
    const reliability = this.storage.reliability?.(result.lastSeq);
    return reliability === undefined ? result : { ...result, reliability };
  }

  private settle(group: Group, reliability?: CommitReliability): void {
    group.acks.resolveAll(reliability);
    group.records.length = 0;
    group.writer.reset();
    group.firstSeq = 0;
    group.lastSeq = 0;
  }

  /** A write or sync failed: nothing in flight is acknowledged, and the partition stops. */
  private onWriteFailed(cause: unknown): void {
    if (this.state === 'faulted') return;
    this.state = 'faulted';
    this.fault = cause;
    const faulted = new PartitionFaultedError(this.name, { cause, durableSeq: this.durableSeq });
    const inFlight = [...(this.writing === undefined ? [] : [this.writing]), ...this.written, ...(this.syncing ?? [])];
    this.writing = undefined;
    this.written = [];
    this.syncing = undefined;
    this.groupsInFlight = 0;
    for (const group of inFlight) group.acks.rejectAll(cause);
    this.building.acks.rejectAll(faulted);
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i].reject(faulted);
    this.queue = [];
    this.queueHead = 0;
    this.queuedBytes = 0;
    this.wakeCommitWaiters();
    this.checkDrained();
  }

  private idle(): boolean {
    return this.groupsInFlight === 0 && this.queueHead === this.queue.length && this.building.acks.length === 0;
  }

  private checkDrained(): void {
    if (this.drainWaiters.length === 0 || !this.idle()) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private nextCommit(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.commitWaiters.indexOf(done);
        if (i >= 0) this.commitWaiters.splice(i, 1);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.commitWaiters.push(done);
    });
  }

  private wakeCommitWaiters(): void {
    if (this.commitWaiters.length === 0) return;
    const waiters = this.commitWaiters;
    this.commitWaiters = [];
    for (const w of waiters) w();
  }

  private notWritable(): Error {
    if (this.state === 'faulted') return new PartitionFaultedError(this.name, { cause: this.fault, durableSeq: this.durableSeq });
    return new PartitionClosedError(this.name);
  }

  private closingOrClosed(): boolean {
    return this.state === 'closed' || this.state === 'closing';
  }

  private assertReadable(): void {
    if (this.state === 'closed') throw new PartitionClosedError(this.name);
  }
}

/** Every problem with the options at once. */
function checkOptions(options: PartitionOptions): string[] {
  const problems: string[] = [];
  if (options?.storage === undefined || typeof options.storage.write !== 'function') problems.push('storage must be a PartitionStorage (e.g. createMemoryStorage())');
  const { frameBytesMax, batchBytesMax, queueMax, epoch, groupsInFlightMax, queueBytesMax, unitBytesMax, unitEventsMax } = options ?? {};
  for (const [name, value, min] of [
    ['queueBytesMax', queueBytesMax, 1024],
    ['unitBytesMax', unitBytesMax, 1],
    ['unitEventsMax', unitEventsMax, 1],
  ] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= min)) problems.push(`${name} must be an integer of at least ${min}, got ${value}`);
  }
  // Storage backends verify frames with the format's default limit; a larger frame would look torn to them.
  if (frameBytesMax !== undefined && !(Number.isSafeInteger(frameBytesMax) && frameBytesMax >= FRAME_BYTES_MIN && frameBytesMax <= DEFAULT_FRAME_BYTES_MAX)) {
    problems.push(`frameBytesMax must be an integer from ${FRAME_BYTES_MIN} to ${DEFAULT_FRAME_BYTES_MAX}, got ${frameBytesMax}`);
  }
  if (batchBytesMax !== undefined && !(Number.isSafeInteger(batchBytesMax) && batchBytesMax >= 1024)) problems.push(`batchBytesMax must be an integer of at least 1024, got ${batchBytesMax}`);
  if (queueMax !== undefined && !(Number.isSafeInteger(queueMax) && queueMax >= 1)) problems.push(`queueMax must be a positive integer, got ${queueMax}`);
  if (groupsInFlightMax !== undefined && !(Number.isSafeInteger(groupsInFlightMax) && groupsInFlightMax >= 1 && groupsInFlightMax <= 64)) {
    problems.push(`groupsInFlightMax must be an integer from 1 to 64, got ${groupsInFlightMax}`);
  }
  if (epoch !== undefined && !(Number.isSafeInteger(epoch) && epoch >= 0 && epoch <= 0xffffffff)) problems.push(`epoch must be an integer from 0 to 4294967295, got ${epoch}`);
  const level = options?.level;
  if (level !== undefined && !(typeof level === 'string' && level.length > 0 && Buffer.byteLength(level) <= LEVEL_NAME_BYTES_MAX)) {
    problems.push(`level must be a reliability level name of 1 to ${LEVEL_NAME_BYTES_MAX} UTF-8 bytes (e.g. "critical"), got ${JSON.stringify(level)}`);
  }
  const { indexDirectory, indexCheckpointEvents, streamCacheMax, commandResultCacheMax, commandIdRetention, onIndexError } = options ?? {};
  if (indexDirectory !== undefined && (typeof indexDirectory !== 'string' || indexDirectory.length === 0)) problems.push('indexDirectory must be a non-empty path');
  // The memtable is made of Maps: a checkpoint keeps it far below V8's 2^24 entries.
  if (indexCheckpointEvents !== undefined && !(Number.isSafeInteger(indexCheckpointEvents) && indexCheckpointEvents >= 1 && indexCheckpointEvents <= 4_194_304)) {
    problems.push(`indexCheckpointEvents must be an integer from 1 to 4194304, got ${indexCheckpointEvents}`);
  }
  if (streamCacheMax !== undefined && !(Number.isSafeInteger(streamCacheMax) && streamCacheMax >= 0 && streamCacheMax <= 8_388_608)) {
    problems.push(`streamCacheMax must be an integer from 0 to 8388608, got ${streamCacheMax}`);
  }
  if (commandResultCacheMax !== undefined && !(Number.isSafeInteger(commandResultCacheMax) && commandResultCacheMax >= 0 && commandResultCacheMax <= 1_048_576)) {
    problems.push(`commandResultCacheMax must be an integer from 0 to 1048576, got ${commandResultCacheMax}`);
  }
  const keep = commandIdRetention?.seqs;
  if (keep !== undefined && !(Number.isSafeInteger(keep) && keep >= 1)) problems.push(`commandIdRetention.seqs must be a positive integer, got ${keep}`);
  if (onIndexError !== undefined && typeof onIndexError !== 'function') problems.push('onIndexError must be a function');
  const framesMax = options?.streamReadFramesMax;
  if (framesMax !== undefined && !(Number.isSafeInteger(framesMax) && framesMax >= 1 && framesMax <= 65_536)) {
    problems.push(`streamReadFramesMax must be an integer from 1 to 65536, got ${framesMax}`);
  }
  const tailCacheBytes = options?.tailCacheBytes;
  if (tailCacheBytes !== undefined && !(Number.isSafeInteger(tailCacheBytes) && tailCacheBytes >= 0 && tailCacheBytes <= 2 ** 30)) {
    problems.push(`tailCacheBytes must be an integer from 0 (off) to 1073741824, got ${tailCacheBytes}`);
  }
  const verify = options?.indexVerifyOnOpen;
  if (verify !== undefined && verify !== 'full' && verify !== 'footer') problems.push(`indexVerifyOnOpen must be 'full' or 'footer', got ${String(verify)}`);
  return problems;
}

const READ_DONE: Promise<IteratorResult<RecordedEvent, undefined>> = Promise.resolve({ value: undefined, done: true });

/**
 * The iterator {@link Partition.read} returns. An async generator that yields per event costs a
 * suspension, a resumption and their queue entries for each one; this hands out events from
 * the batch in hand with one settled promise and one result object, and awaits storage (or
 * the tail cache) only between batches. It behaves as the generator did: the range is fixed
 * by the first `next()`, a closed partition rejects it, `return()` ends the read.
 */
class EventReader implements AsyncGenerator<RecordedEvent, undefined> {
  private started = false;
  private finished = false;
  private frames: readonly EventFrame[] = [];
  private index = 0;
  private fromSeq = 0;
  private toSeq = 0;
  private remaining = 0;
  private batches: AsyncGenerator<readonly EventFrame[]> | undefined;
  private pulling: Promise<IteratorResult<RecordedEvent, undefined>> | undefined;

  constructor(
    private readonly partition: Partition,
    private readonly options: ReadOptions,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<RecordedEvent, undefined>> {
    if (this.finished) return READ_DONE;
    if (this.pulling !== undefined) return this.pulling.then(() => this.next());
    const frame = this.nextInBatch();
    if (frame !== undefined) return Promise.resolve({ value: frame, done: false });
    if (this.finished) return this.end();
    this.pulling = this.pull().finally(() => {
      this.pulling = undefined;
    });
    return this.pulling;
  }

  async return(): Promise<IteratorResult<RecordedEvent, undefined>> {
    return this.end();
  }

  async throw(error: unknown): Promise<IteratorResult<RecordedEvent, undefined>> {
    await this.end();
    throw error;
  }

  /** The next event of the batch in hand within the range, or undefined (and `finished` once past it). */
  private nextInBatch(): EventFrame | undefined {
    const frames = this.frames;
    while (this.index < frames.length) {
      const frame = frames[this.index++];
      if (frame.seq < this.fromSeq) continue;
      if (frame.seq > this.toSeq || this.remaining <= 0) {
        this.finished = true;
        return undefined;
      }
      this.remaining--;
      return frame;
    }
    return undefined;
  }

  private async pull(): Promise<IteratorResult<RecordedEvent, undefined>> {
    try {
      if (!this.started) {
        this.started = true;
        const range = this.partition.startRead(this.options);
        if (range === undefined) return await this.end();
        ({ fromSeq: this.fromSeq, toSeq: this.toSeq, maxCount: this.remaining, batches: this.batches } = range);
      }
      for (;;) {
        const batch = await (this.batches as AsyncGenerator<readonly EventFrame[]>).next();
        if (batch.done === true) return await this.end();
        this.frames = batch.value;
        this.index = 0;
        const frame = this.nextInBatch();
        if (frame !== undefined) return { value: frame, done: false };
        if (this.finished) return await this.end();
      }
    } catch (error) {
      this.finished = true;
      this.frames = [];
      throw error;
    }
  }

  private async end(): Promise<IteratorResult<RecordedEvent, undefined>> {
    this.finished = true;
    this.frames = [];
    const batches = this.batches;
    this.batches = undefined;
    if (batches !== undefined) await batches.return(undefined);
    return { value: undefined, done: true };
  }
}

/** Index of the first frame of `frames` (consecutive seqs) with a seq of at least `seq`. */
function seqIndex(frames: readonly EventFrame[], seq: number): number {
  const i = seq - frames[0].seq;
  return i < 0 ? 0 : i > frames.length ? frames.length : i;
}

function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function validExpectedVersion(ev: unknown): ev is ExpectedVersion | undefined {
  return ev === undefined || ev === 'any' || ev === 'no-stream' || ev === 'exists' || (typeof ev === 'number' && Number.isSafeInteger(ev) && ev >= 0);
}

function versionMatches(expected: ExpectedVersion | undefined, actual: number): boolean {
  if (expected === undefined || expected === 'any') return true;
  if (expected === 'no-stream') return actual === 0;
  if (expected === 'exists') return actual > 0;
  return expected === actual;
}

/**
 * False for strings with a lone UTF-16 surrogate: UTF-8 would store U+FFFD instead, so the
 * stream or command id on disk would differ from the one in memory.
 */
function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** Up to this many changes, validateUnit finds a stream named twice by comparing pairs. */
const SMALL_UNIT_CHANGES = 16;

/**
 * Returns why a unit of work is malformed, or its bytes of event data and metadata. Cheap:
 * runs on every append.
 */
function validateUnit(unit: UnitOfWork, eventsMax: number): string | number {
  let bytes = 0;
  let count = 0;
  const changes = unit?.changes;
  if (!Array.isArray(changes) || changes.length === 0) return 'a unit of work needs at least one change';
  // A stream named twice: compared pairwise in small units, through a set in large ones (a
  // handler host's merged unit of 256 messages made ~32 k comparisons).
  const seen = changes.length > SMALL_UNIT_CHANGES ? new Set<string>() : undefined;
  for (let c = 0; c < changes.length; c++) {
    const change: StreamChange = changes[c];
    if (typeof change?.streamId !== 'string' || change.streamId.length === 0) return `change ${c}: streamId must be a non-empty string`;
    if (!wellFormed(change.streamId)) return `change ${c}: streamId holds a lone UTF-16 surrogate, which UTF-8 cannot store`;
    const ev = change.expectedVersion;
    if (
      ev !== undefined &&
      ev !== 'any' &&
      ev !== 'no-stream' &&
      ev !== 'exists' &&
      !(typeof ev === 'number' && Number.isSafeInteger(ev) && ev >= 0)
    ) {
      return `stream "${change.streamId}": expectedVersion must be a non-negative integer, 'any', 'no-stream' or 'exists'`;
    }
    const events = change.events;
    if (!Array.isArray(events) || events.length === 0) return `stream "${change.streamId}": at least one event is needed`;
    count += events.length;
    if (count > eventsMax) return `a unit of work holds more than unitEventsMax (${eventsMax}) events: split it into smaller units or raise unitEventsMax`;
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      if (typeof e?.type !== 'string' || e.type.length === 0 || !wellFormed(e.type)) {
        return `stream "${change.streamId}" event ${i}: type must be a non-empty, well-formed string`;
      }
      if (!(e.data instanceof Uint8Array)) return `stream "${change.streamId}" event ${i}: data must be a Uint8Array (serialize it first)`;
      if (e.metadata !== undefined && !(e.metadata instanceof Uint8Array)) return `stream "${change.streamId}" event ${i}: metadata must be a Uint8Array`;
      bytes += e.data.length + (e.metadata?.length ?? 0);
    }
    if (seen === undefined) {
      for (let d = 0; d < c; d++) {
        if (changes[d].streamId === change.streamId) return `stream "${change.streamId}" appears twice in one unit of work: merge its events into one change`;
      }
    } else {
      if (seen.has(change.streamId)) return `stream "${change.streamId}" appears twice in one unit of work: merge its events into one change`;
      seen.add(change.streamId);
    }
  }
  const ids = unit.commandIds;
  if (ids !== undefined) {
    if (!Array.isArray(ids)) return 'commandIds must be an array of strings';
    for (const id of ids) if (typeof id !== 'string' || id.length === 0 || !wellFormed(id)) return 'each command id must be a non-empty, well-formed string';
  }
  // Checked one by one, not by looping over [name, value] pairs: those arrays cost ~130 bytes per append.
  if (!optionalWellFormed(unit.correlationId)) return 'correlationId must be a well-formed string';
  if (!optionalWellFormed(unit.causationId)) return 'causationId must be a well-formed string';
  return bytes;
}

function optionalWellFormed(value: unknown): boolean {
  return value === undefined || (typeof value === 'string' && wellFormed(value));
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
