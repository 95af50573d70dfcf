import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { appendFile, mkdir, open, readdir, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  DurableSignal,
  EMPTY_IDENTITY,
  StorageError,
  WriterLock,
  checkWriteSpans,
  describeIdentity,
  parseFsyncPolicy,
  sameIdentity,
  tailBatches,
  type BatchIdentity,
  type FsyncPolicy,
  type FsyncPolicyInput,
  type PartitionStorage,
  type ReadBatchesOptions,
  type StorageCapabilities,
  type StorageReader,
  type StorageRecovery,
  type TailOptions,
  type TruncateOptions,
} from '@sluice/store';
import type { BatchSpan, EventFrame, SealedBatch } from '@sluice/framing';
import { openFileReader } from './file-reader.js';
import { mapFsError } from './fs-errors.js';
import { findSealedBatches, readNonZero, zeroRange } from './recovery-scan.js';
import {
  INCARNATION_BYTES,
  PARTITION_NAME_BYTES_MAX,
  SEGMENT_HEADER_BYTES,
  encodeHeaderPage,
  encodeSlot,
  slotOffset,
  type CutRecord,
  type HeaderPage,
  type SegmentHeader,
} from './segment-header.js';
import { READ_HANDLES_MAX_DEFAULT, SegmentIndex, checkFrameSeqs, listSegments, readHeaderPage, segmentName } from './segment-log.js';
import { SIDECARS_SUPPORTED, writeSidecar } from './segment-sidecar.js';

/** Largest `segmentBytes` accepted: 1 GiB. */
export const SEGMENT_BYTES_MAX = 1024 * 1024 * 1024;
/** Smallest `segmentBytes` accepted: the 4 KiB header plus 4 KiB of data. */
export const SEGMENT_BYTES_MIN = 8192;
/** The file an operator's truncate below the durable watermark is recorded in. */
export const OPERATOR_LOG = 'operator.log';
/**
 * Batches up to this size are written with a synchronous pwrite on the writer's thread: a small
 * write only copies into the page cache (a few µs), while a thread-pool round trip costs the
 * event loop ~25–50 µs of dispatch and wake-up (measured: 300-byte writes, 85 µs wall and 61 µs
 * CPU each through FileHandle.write). Larger batches go through the pool, so the copy of a big
 * group overlaps the encoding of the next. The fdatasync always goes through the pool.
 *
 * 128 KiB: the engine submits a group after one 64 KiB encoding slice when the disk is idle,
 * and such a group ends a little past 64 KiB (the unit that crossed the slice). Through the
 * pool, its completion waited for the next encoding slice to end before the sync could start
 * (up to ~1 ms with 1000 concurrent single appends). Measured with 1000 concurrent appenders of
 * one 100-byte event, 2 alternated pairs: 380-401 k -> 430-464 k appends/s. A 180 KB group
 * (one append of 1000 × 100 B) written synchronously was slower: 1.28 M vs 1.45 M events/s.
 */
const SYNC_WRITE_BYTES_MAX = 128 * 1024;

/** Options of {@link createFileStorage}. */
export interface FileStorageOptions {
  /** The partition's directory: its segments and lock file live here. */
  readonly directory: string;
  /**
   * Create the directory if it is missing (its parent is fsynced so the new entry survives a
   * power cut).
   * @default true
   */
  readonly createDirectory?: boolean;
  /**
   * Size each segment file is preallocated to (set ahead of use, so writes never grow the file
   * and fdatasync has no size change to flush), header included. A batch larger than a segment
   * gets a segment of its own. At least 8192, at most 1 GiB ({@link SEGMENT_BYTES_MAX}).
   * @default 67108864 (64 MiB)
   */
  readonly segmentBytes?: number;
  /**
   * How a segment is preallocated: `"sparse"` sets its size (ftruncate) and the file system
   * allocates blocks as the log reaches them; `"zero-fill"` writes zeros over the whole segment
   * first, so its space is reserved at the roll (a full disk is reported then, before any commit
   * needs the space) and a commit's fdatasync never allocates a block, at the price of writing
   * every byte of the log twice. See the README's "Preallocation" for the figures.
   * @default "sparse"
   */
  readonly preallocate?: PreallocateMode;
  /**
   * When writes are forced to disk: `"commit"` (every sync() is an fdatasync), `"interval:100ms"`
   * (sync() acknowledges what the OS has; a timer fdatasyncs) or `"none"` (only at a segment
   * roll and at close).
   * @default "commit"
   */
  readonly fsync?: FsyncPolicyInput;
  /**
   * The partition's name, recorded in every segment header when the partition is created. When
   * given for an existing partition it must match what the segments record.
   * @default the directory's base name
   */
  readonly partition?: string;
  /**
   * The durable watermark in the segment header is rewritten at most this often while the
   * writer is busy (so readers in other processes see new commits at most this much later), and
   * persisted with an fdatasync of its own this long after the writer goes idle under `commit`
   * (while busy it rides along with the next sync). 0 rewrites it after every sync.
   * @default 5
   */
  readonly watermarkFlushMs?: number;
  /**
   * Segment files kept open for reads (least recently used closed beyond it). Frame reads of a
   * stream spread over the whole log touch every segment: keep it above the segment count of
   * your largest partition (20 M 100-byte events are ~55 segments of 64 MiB).
   * @default 256
   */
  readonly readHandlesMax?: number;
  /**
   * Interrupts `open()` (its scan and the first segment's preallocation) and any background
   * preallocation; what was half made is removed. An interrupted `open()` rejects with reason
   * `Closed`.
   */
  readonly signal?: AbortSignal;
}

/** How segments are preallocated ({@link FileStorageOptions.preallocate}). */
export type PreallocateMode = 'sparse' | 'zero-fill';
/** The values {@link FileStorageOptions.preallocate} accepts. */
export const PREALLOCATE_MODES: readonly PreallocateMode[] = ['sparse', 'zero-fill'];

/** Defaults of {@link FileStorageOptions}. */
export function fileStorageDefaults(): { createDirectory: boolean; segmentBytes: number; preallocate: PreallocateMode; fsync: FsyncPolicy; watermarkFlushMs: number } {
  return { createDirectory: true, segmentBytes: 64 * 1024 * 1024, preallocate: 'sparse', fsync: { kind: 'commit' }, watermarkFlushMs: 5 };
}

const ZEROS = Buffer.alloc(1024 * 1024);

/**
 * File storage: a partition's log as segment files preallocated in large chunks, written by
 * one process (a lock file enforces it) and readable by others while it is written.
 *
 * @example
 * const partition = await openPartition({
 *   storage: createFileStorage({ directory: './data/payments', fsync: 'commit' }),
 *   name: 'payments',
 * });
 */
export function createFileStorage(options: FileStorageOptions): PartitionStorage {
  return new FileStorage(options);
}

interface SlotState {
  counter: number;
  successor: boolean;
  cut: CutRecord | undefined;
}

interface Current {
  readonly segment: number;
  readonly handle: FileHandle;
}

class FileStorage implements PartitionStorage {
  readonly kind = 'file';
  readonly capabilities: StorageCapabilities;
  private readonly directory: string;
  private readonly where: string;
  private readonly segmentBytes: number;
  private readonly preallocateMode: PreallocateMode;
  private readonly fsync: FsyncPolicy;
  private readonly createDirectory: boolean;
  private readonly partitionOption: string | undefined;
  private readonly watermarkFlushMs: number;
  private readonly readHandlesMax: number;
  private readonly userSignal: AbortSignal | undefined;
  /** Aborted at close: stops background preallocation. */
  private readonly closeController = new AbortController();
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  private lock: WriterLock | undefined;
  private readonly index: SegmentIndex;
  private current: Current | undefined;
  private position = 0;
  private next: Promise<FileHandle> | undefined;
  /** Handles of earlier segments not closed yet (a sync in flight may still use them). */
  private retired: FileHandle[] = [];
  private writing: Promise<void> | undefined;
  private truncating = false;
  private syncing: Promise<BatchIdentity> | undefined;
  private failure: StorageError | undefined;
  private faultRecorded: Promise<void> = Promise.resolve();
  /** Identity of the last batch written. */
  private written: BatchIdentity = EMPTY_IDENTITY;
  /** The durable head per the policy: what sync() acknowledged. */
  private durable: BatchIdentity = EMPTY_IDENTITY;
  /** The last batch a successful fdatasync confirmed. */
  private synced: BatchIdentity = EMPTY_IDENTITY;
  /** Handles with written data not yet fdatasynced. */
  private readonly dirty = new Set<FileHandle>();
  /** Handles whose watermark slot was written since their last fdatasync. */
  private readonly slotDirty = new Set<FileHandle>();
  private readonly slots = new Map<number, SlotState>();
  private slotLock: Promise<void> = Promise.resolve();
  private slotQueued = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private slotTimer: NodeJS.Timeout | undefined;
  private slotWrittenAt = 0;
  private flushing: Promise<void> | undefined;
  private intervalTimer: NodeJS.Timeout | undefined;
  private intervalSync: Promise<void> | undefined;
  private readonly signal = new DurableSignal();
  private closing: Promise<void> | undefined;
  /** Sidecar writes of sealed segments, one after the other, in the background (best effort). */
  private sidecars: Promise<void> = Promise.resolve();

  constructor(options: FileStorageOptions) {
    const defaults = fileStorageDefaults();
    if (typeof options?.directory !== 'string' || options.directory.length === 0) {
      throw new StorageError('Invalid', '[sluice/store-file] options.directory must be a non-empty path');
    }
    this.directory = options.directory;
    this.where = `[sluice/store-file] ${this.directory}`;
    this.segmentBytes = options.segmentBytes ?? defaults.segmentBytes;
    if (!Number.isSafeInteger(this.segmentBytes) || this.segmentBytes < SEGMENT_BYTES_MIN || this.segmentBytes > SEGMENT_BYTES_MAX) {
      throw new StorageError(
        'Invalid',
        `[sluice/store-file] options.segmentBytes must be an integer from ${SEGMENT_BYTES_MIN} to ${SEGMENT_BYTES_MAX} (1 GiB), got ${options.segmentBytes}: ` +
          `larger segments make preallocation and recovery scans slow; a batch larger than a segment gets a segment of its own anyway`,
      );
    }
    this.preallocateMode = options.preallocate ?? defaults.preallocate;
    if (!PREALLOCATE_MODES.includes(this.preallocateMode)) {
      throw new StorageError(
        'Invalid',
        `[sluice/store-file] options.preallocate must be "sparse" or "zero-fill", got ${JSON.stringify(options.preallocate)}: ` +
          `"sparse" (the default) for throughput, "zero-fill" to reserve each segment's space when it is made`,
      );
    }
    try {
      this.fsync = options.fsync === undefined ? defaults.fsync : parseFsyncPolicy(options.fsync);
    } catch (error) {
      throw new StorageError('Invalid', (error as Error).message, { cause: error });
    }
    this.watermarkFlushMs = options.watermarkFlushMs ?? defaults.watermarkFlushMs;
    if (!Number.isSafeInteger(this.watermarkFlushMs) || this.watermarkFlushMs < 0 || this.watermarkFlushMs > 60_000) {
      throw new StorageError('Invalid', `[sluice/store-file] options.watermarkFlushMs must be an integer from 0 to 60000, got ${options.watermarkFlushMs}`);
    }
    if (options.partition !== undefined && (typeof options.partition !== 'string' || options.partition === '' || Buffer.byteLength(options.partition) > PARTITION_NAME_BYTES_MAX)) {
      throw new StorageError('Invalid', `[sluice/store-file] options.partition must be a non-empty name of at most ${PARTITION_NAME_BYTES_MAX} UTF-8 bytes`);
    }
    this.partitionOption = options.partition;
    this.createDirectory = options.createDirectory ?? defaults.createDirectory;
    this.userSignal = options.signal;
    this.capabilities = { crossProcessReaders: true, durability: this.fsync, truncate: 'in-place', frameReads: true };
    this.readHandlesMax = options.readHandlesMax ?? READ_HANDLES_MAX_DEFAULT;
    if (!Number.isSafeInteger(this.readHandlesMax) || this.readHandlesMax < 1 || this.readHandlesMax > 65_536) {
      throw new StorageError('Invalid', `[sluice/store-file] options.readHandlesMax must be an integer from 1 to 65536, got ${options.readHandlesMax}`);
    }
    this.index = new SegmentIndex(this.directory, this.readHandlesMax);
  }

  // ── open and recovery ──────────────────────────────────────────────────────────────────

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', `${this.where}: open() was already called: create a new storage to reopen`);
    this.state = 'opening';
    try {
      this.checkAborted('open');
      await this.makeDirectory();
      this.lock = await WriterLock.acquire(this.directory, 'store-file', 'openFileReader()');
      this.checkAborted('open');
      const recovery = await this.recover();
      this.state = 'open';
      if (this.fsync.kind === 'interval') this.startIntervalSync(this.fsync.intervalMs);
      return recovery;
    } catch (error) {
      await this.release();
      this.state = 'closed';
      throw error;
    }
  }

  private async makeDirectory(): Promise<void> {
    if (!this.createDirectory) {
      const s = await stat(this.directory).catch((e: unknown) => Promise.reject(mapFsError(e, this.directory)));
      if (!s.isDirectory()) throw new StorageError('NotFound', `${this.where} is not a directory`);
      return;
    }
    const made = await mkdir(this.directory, { recursive: true }).catch((e: unknown) => Promise.reject(mapFsError(e, this.directory)));
    if (made === undefined) return;
    // New directory entries are durable only once their parent directory is synced.
    for (let p = this.directory; p !== dirname(made); ) {
      p = dirname(p);
      await syncDirectory(p);
    }
  }

  /**
   * Scans the log, decides what recovery keeps (see the README's recovery rules), cuts the
   * rest, makes what it kept durable and leaves the writer at the end of the log.
   */
  private async recover(): Promise<StorageRecovery> {
    const index = this.index;
    // Sealed segments whose sidecars can be trusted are loaded without reading their data.
    const pagesRead = new Map<number, HeaderPage>();
    const trusted = new Set(await index.loadSealed(Number.MAX_SAFE_INTEGER, pagesRead));
    this.checkAborted('open');
    const stop = await index.scanForward();
    this.checkAborted('open');
    if (stop.kind === 'damage' && stop.report?.reason === 'unsupported-version') {
      // Not a torn tail: data this version cannot read. Never cut it.
      throw new StorageError(
        'Unsupported',
        `${this.where}/${segmentName(stop.segment)} holds frames of a newer format at offset ${stop.report.offset} (${stop.report.detail}): open it with a newer @sluice/store-file`,
      );
    }
    const listed = await listSegments(this.directory);
    const pages = new Map<number, HeaderPage>();
    for (const segment of listed) {
      // Read moments ago under the writer lock (nothing else writes them): the same bytes.
      let page = pagesRead.get(segment) ?? (await readHeaderPage(this.directory, segment));
      if (page.kind === 'damaged' && segment === listed.at(-1) && (await this.dataIsZero(segment))) {
        // A power cut tore the header write of a roll: nothing was written after it.
        page = { kind: 'zero' };
      }
      pages.set(segment, page);
      if (page.kind === 'damaged') {
        throw new StorageError(
          'Corrupt',
          `${this.where}/${segmentName(segment)}: ${page.detail}; the log's structure is damaged: restore the partition from a copy or a shipped archive`,
        );
      }
      if (page.kind !== 'v2') continue;
      if (index.incarnation === undefined) {
        index.incarnation = page.header.incarnation;
        index.partitionName = page.header.partition;
      }
      index.checkHeader(segment, page.header);
      // A roll writes the whole header page and fdatasyncs it before any batch goes in: a last
      // segment whose slots did not make it (a power cut during the roll) holds nothing.
      if (page.slot === undefined && segment !== listed.at(-1)) {
        throw new StorageError(
          'Corrupt',
          `${this.where}/${segmentName(segment)}: both watermark slots of the segment header fail their checks, so what was durable is unknown: restore the partition from a copy or a shipped archive`,
        );
      }
    }
    if (this.partitionOption !== undefined && index.partitionName !== undefined && index.partitionName !== this.partitionOption) {
      throw new StorageError('Invalid', `${this.where} holds partition "${index.partitionName}", not "${this.partitionOption}": check the directory or the partition option`);
    }
    // What the partition had made durable, and any cut it must finish.
    let watermark: BatchIdentity = EMPTY_IDENTITY;
    let cut: CutRecord | undefined;
    for (const page of pages.values()) {
      if (page.kind !== 'v2' || page.slot === undefined) continue;
      if (page.slot.synced.lastSeq > watermark.lastSeq) watermark = page.slot.synced;
      const c = page.slot.cut;
      if (c !== undefined && (cut === undefined || c.after.lastSeq < cut.after.lastSeq)) cut = c;
    }
    const versioned = index.incarnation !== undefined;
    const found = index.head;
    // Everything after the verified end: the rest of the end segment and every later segment.
    const endSegment = index.entered ? index.endSegment : undefined;
    const tails: Array<{ segment: number; from: number; bytes: Buffer }> = [];
    for (const segment of listed) {
      if (endSegment !== undefined && segment < endSegment) continue;
      const page = pages.get(segment);
      if (segment !== endSegment && page?.kind === 'zero') continue; // never rolled into: holds no batch
      const from = segment === endSegment ? index.endOffset : page?.kind === 'v2' ? SEGMENT_HEADER_BYTES : 0;
      const handle = await openFile(join(this.directory, segmentName(segment)), 'r');
      try {
        tails.push({ segment, from, bytes: await readNonZero(handle, from, this.path(segment)) });
      } finally {
        await handle.close();
      }
      this.checkAborted('open');
    }
    let after = found.lastSeq;
    for (const t of tails) for (const b of findSealedBatches(t.bytes, found.lastSeq)) after = Math.max(after, b.lastSeq);
    const lost = (durable: BatchIdentity, what: string): StorageError =>
      new StorageError(
        'Corrupt',
        `${this.where} holds seq 1..${found.lastSeq} (${stop.detail}) but the partition had made seq ${durable.lastSeq} durable${what}: ` +
          `acknowledged commits are missing or damaged; restore the partition from a copy or a shipped archive (the log is left as it is)`,
      );
    let head = found;
    let droppedSeqs = 0;
    let droppedReason: string | undefined;
    if (cut !== undefined) {
      if (cut.after.lastSeq > found.lastSeq) throw lost(cut.after, '');
      const at = cut.after.lastSeq === 0 ? EMPTY_IDENTITY : await index.identityAt(cut.after.lastSeq);
      if (at === undefined || at.lastSeq !== cut.after.lastSeq || !sameIdentity(at, cut.after)) {
        throw lost(cut.after, ` (the batch there is ${at === undefined ? 'not a batch boundary' : describeIdentity(at)}, not ${describeIdentity(cut.after)})`);
      }
      head = cut.after;
      droppedSeqs = after - head.lastSeq;
      droppedReason =
        cut.kind === 'fault'
          ? `a write or sync failed after seq ${head.lastSeq}: what was written after it was never durable and was cut`
          : `a truncate after seq ${head.lastSeq} had not finished: it was completed`;
    } else {
      if (watermark.lastSeq > found.lastSeq) throw lost(watermark, '');
      if (watermark.lastSeq > 0) {
        const at = await index.identityAt(watermark.lastSeq);
        if (at === undefined || !sameIdentity(at, watermark)) throw lost(watermark, ` (the batch there is ${at === undefined ? 'missing' : describeIdentity(at)}, not ${describeIdentity(watermark)})`);
      }
      const endPage = endSegment === undefined ? undefined : pages.get(endSegment);
      if (endPage?.kind === 'v2' && endPage.slot?.successor === true) {
        throw new StorageError(
          'Corrupt',
          `${this.where}: ${segmentName(endSegment as number)} records that ${segmentName((endSegment as number) + 1)} followed it, but the log cannot continue there (${stop.detail}): ` +
            `a segment holding acknowledged commits was deleted or damaged; restore the partition from a copy or a shipped archive`,
        );
      }
      if (after > found.lastSeq) {
        if (!versioned) {
          throw new StorageError(
            'Corrupt',
            `${this.where} holds committed seq up to ${after} after data that does not verify (the log ends at seq ${found.lastSeq}: ${stop.detail}): ` +
              `committed data was damaged; restore the partition from a copy or a shipped archive`,
          );
        }
        droppedSeqs = after - found.lastSeq;
        droppedReason =
          `data after seq ${found.lastSeq} was never made durable (the durable watermark is seq ${watermark.lastSeq}) and has a hole (${stop.detail}): ` +
          `${droppedSeqs} seqs written after it were cut`;
      }
    }
    // Cut: forget what goes, zero the end segment's tail to its end, remove later segments.
    let droppedBytes = tails.reduce((n, t) => n + t.bytes.length, 0);
    const endTail = tails.find((t) => t.segment === endSegment);
    // The end segment's bytes that must become zero: [from, to).
    let zeroFrom = index.endOffset;
    let zeroTo = index.endOffset + (endTail?.bytes.length ?? 0);
    if (head.lastSeq < found.lastSeq) {
      droppedBytes += index.bytesAfter(head.lastSeq);
      index.truncateAfter(head.lastSeq, head);
      zeroFrom = index.endOffset;
      if (index.endSegment !== endSegment) zeroTo = Number.MAX_SAFE_INTEGER;
    }
    const keepLast = index.entered ? index.endSegment : pages.get(index.endSegment)?.kind === 'zero' ? index.endSegment : index.endSegment - 1;
    const removed = listed.filter((s) => s > keepLast);
    for (const segment of removed.reverse()) {
      index.forget(segment);
      await unlink(this.path(segment)).catch((e: unknown) => Promise.reject(mapFsError(e, this.path(segment))));
    }
    if (removed.length > 0) await syncDirectory(this.directory);
    if (droppedBytes > 0 && droppedReason === undefined) droppedReason = stop.detail;

    // Continue in the end segment, or start a version 2 one (a new partition, or after version 1 history).
    this.written = head;
    this.durable = head;
    this.synced = head;
    const endInfo = index.entered ? index.infos.get(index.endSegment) : undefined;
    if (endInfo === undefined || endInfo.format === 1) {
      const segment = endInfo === undefined ? index.endSegment : endInfo.segment + 1;
      if (endInfo !== undefined) {
        const handle = await openFile(this.path(endInfo.segment), 'r+');
        try {
          await zeroRange(handle, zeroFrom, Math.min(zeroTo, await fileSize(handle)), this.path(endInfo.segment));
          await handle.datasync();
        } finally {
          await handle.close();
        }
      }
      index.incarnation ??= randomBytes(INCARNATION_BYTES);
      index.partitionName ??= this.partitionOption ?? basename(this.directory);
      const handle = await this.preallocate(segment, this.segmentBytes, this.userSignal);
      await this.startSegment(segment, handle, head);
    } else {
      const path = this.path(endInfo.segment);
      const handle = await openFile(path, 'r+');
      this.current = { segment: endInfo.segment, handle };
      this.position = index.endOffset;
      const page = pages.get(endInfo.segment);
      this.slots.set(endInfo.segment, { counter: page?.kind === 'v2' ? (page.slot?.counter ?? 1) : 1, successor: false, cut: undefined });
      await zeroRange(handle, zeroFrom, Math.min(zeroTo, await fileSize(handle)), path);
      await this.extend(handle, endInfo.segment, Math.max(this.segmentBytes, endInfo.header?.allocatedBytes ?? 0), this.userSignal);
      // What recovery found may have reached only the page cache before a crash: make it
      // durable before anything (a duplicate's result, a reader) relies on it.
      await handle.datasync();
      const previous = pages.get(endInfo.segment - 1);
      if (previous?.kind === 'v2' && previous.slot?.successor === false) await this.markSuccessor(endInfo.segment - 1);
      await this.writeSlot(this.current);
      await handle.datasync();
      this.slotDirty.delete(handle);
    }
    await syncDirectory(this.directory);
    // Sidecars describe sealed segments only: the current one and any later ones lose theirs;
    // sealed segments that were scanned get a fresh one.
    const current = (this.current as Current).segment;
    await this.removeSidecarsFrom(current);
    for (const info of index.infos.values()) {
      const last = index.infos.get(info.segment + 1)?.header?.previous;
      if (info.format === 2 && info.segment < current && !trusted.has(info.segment) && last !== undefined) this.queueSidecar(info.segment, last);
    }
    return { lastSeq: head.lastSeq, head, droppedBytes, droppedSeqs, droppedReason };
  }

  /** True when nothing but zeros follows the header of `segment`. */
  private async dataIsZero(segment: number): Promise<boolean> {
    const handle = await openFile(this.path(segment), 'r');
    try {
      return (await readNonZero(handle, SEGMENT_HEADER_BYTES, this.path(segment))).length === 0;
    } finally {
      await handle.close();
    }
  }

  /** Writes a new segment's header (base seq after `previous`) and makes it the current one. */
  private async startSegment(segment: number, handle: FileHandle, previous: BatchIdentity): Promise<void> {
    const header: SegmentHeader = {
      incarnation: this.index.incarnation as Uint8Array,
      partition: this.index.partitionName as string,
      segment,
      baseSeq: previous.lastSeq + 1,
      previous,
      allocatedBytes: this.segmentBytes,
    };
    const page = encodeHeaderPage(header, { synced: this.synced, acked: this.durable, successor: false, cut: undefined });
    const path = this.path(segment);
    try {
      await writeFully(handle, page, 0);
      await handle.datasync();
    } catch (error) {
      throw mapFsError(error, path, 'write');
    }
    this.slots.set(segment, { counter: 1, successor: false, cut: undefined });
    this.index.enter({ segment, format: 2, dataOffset: SEGMENT_HEADER_BYTES, header });
    this.current = { segment, handle };
    this.position = SEGMENT_HEADER_BYTES;
  }

  // ── write and sync ─────────────────────────────────────────────────────────────────────

  async write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    this.assertWritable();
    if (this.writing !== undefined) throw new StorageError('Invalid', `${this.where}: write() called while another write is in flight: one write at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${this.where}: write() called while a truncate runs: wait for it first`);
    const { identity: next, spans } = checkWriteSpans(bytes, firstSeq, lastSeq, this.written, this.where);
    const done = this.writeChecked(bytes, firstSeq, lastSeq, next, spans);
    this.writing = done;
    try {
      await done;
    } finally {
      this.writing = undefined;
    }
  }

  private async writeChecked(bytes: Uint8Array, firstSeq: number, lastSeq: number, next: BatchIdentity, spans: readonly BatchSpan[] | undefined): Promise<void> {
    let current = this.current as Current;
    try {
      if (this.position > SEGMENT_HEADER_BYTES && this.position + bytes.length > this.segmentBytes) {
        await this.roll();
        current = this.current as Current;
      }
      if (bytes.length <= SYNC_WRITE_BYTES_MAX) writeFullySync(current.handle.fd, bytes, this.position);
      else await writeFully(current.handle, bytes, this.position);
    } catch (error) {
      throw this.fail(error, 'write', this.path(current.segment));
    }
    if (this.failure !== undefined) throw this.failure;
    this.dirty.add(current.handle);
    this.indexWritten(bytes, firstSeq, lastSeq, next, spans, current.segment, this.position);
    this.position += bytes.length;
    this.written = next;
    // Preallocate the next segment in the background once this one is half full.
    if (this.next === undefined && this.position > this.segmentBytes / 2) this.prepareNext();
  }

  /** One index entry per batch: a write may carry several (a raw copy from another location), whose spans checkWriteSpans found. */
  private indexWritten(bytes: Uint8Array, firstSeq: number, lastSeq: number, head: BatchIdentity, spans: readonly BatchSpan[] | undefined, segment: number, offset: number): void {
    if (spans === undefined) {
      this.index.addWritten(firstSeq, lastSeq, head, segment, offset, bytes.length, bytes, 0);
      return;
    }
    for (const s of spans) {
      const identity = s.lastSeq === lastSeq ? head : { lastSeq: s.lastSeq, epoch: s.marker.epoch, digest: Uint8Array.from(s.marker.digest) };
      this.index.addWritten(s.firstSeq, s.lastSeq, identity, segment, offset + s.byteOffset, s.byteLength, bytes, s.byteOffset);
    }
  }


  async sync(): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.syncing !== undefined) throw new StorageError('Invalid', `${this.where}: sync() called while another sync is in flight: one sync at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${this.where}: sync() called while a truncate runs: wait for it first`);
    const done = this.syncWritten();
    this.syncing = done;
    try {
      return await done;
    } finally {
      this.syncing = undefined;
      this.closeRetired();
    }
  }

  private async syncWritten(): Promise<BatchIdentity> {
    const covered = this.written;
    if (this.fsync.kind === 'commit') {
      const handles = new Set([...this.dirty, ...this.slotDirty]);
      this.dirty.clear();
      this.slotDirty.clear();
      try {
        await Promise.all([...handles].map((h) => h.datasync()));
      } catch (error) {
        throw this.fail(error, 'sync', this.path(this.current?.segment ?? 0));
      }
      if (this.failure !== undefined) throw this.failure;
      if (covered.lastSeq > this.synced.lastSeq) this.synced = covered;
    }
    this.advance(covered);
    return this.durable;
  }

  /** The durable head moved: tell tails, record the watermark (in place, unsynced) and plan its flush. */
  private advance(covered: BatchIdentity): void {
    if (covered.lastSeq > this.durable.lastSeq) {
      this.durable = covered;
      this.signal.advance(covered.lastSeq);
    }
    this.noteWatermark();
    if (this.fsync.kind === 'commit') this.armFlush();
  }

  /**
   * Rewrites the watermark slot at most once per watermarkFlushMs (a trailing write catches up
   * on what was skipped): every rewrite dirties the header page, which the next commit's
   * fdatasync must then write too (about 20% fewer single-commit syncs per second measured).
   */
  private noteWatermark(): void {
    const wait = this.slotWrittenAt + this.watermarkFlushMs - performance.now();
    if (wait <= 0) {
      this.slotWrittenAt = performance.now();
      void this.queueSlotWrite();
      return;
    }
    if (this.slotTimer !== undefined) return;
    this.slotTimer = setTimeout(() => {
      this.slotTimer = undefined;
      this.slotWrittenAt = performance.now();
      void this.queueSlotWrite();
    }, wait);
    this.slotTimer.unref();
  }

  /** Writes the current segment's watermark slot; writes asked for while one waits are coalesced. */
  private queueSlotWrite(): Promise<void> {
    if (this.slotQueued) return this.slotLock;
    this.slotQueued = true;
    return this.withSlotLock(async () => {
      this.slotQueued = false;
      if (this.current === undefined || this.state === 'closed' || this.failure !== undefined) return;
      try {
        await this.writeSlot(this.current);
      } catch (error) {
        this.fail(error, 'write', this.path(this.current.segment));
      }
    });
  }

  private withSlotLock(run: () => Promise<void>): Promise<void> {
    const done = this.slotLock.then(run);
    this.slotLock = done.catch(() => undefined);
    return done;
  }

  /** Writes the next watermark slot of `target` (not synced: it rides along with the next fdatasync). */
  private async writeSlot(target: Current): Promise<void> {
    const state = this.slots.get(target.segment) ?? { counter: 0, successor: false, cut: undefined };
    this.slots.set(target.segment, state);
    state.counter++;
    const slot = encodeSlot({ counter: state.counter, synced: this.synced, acked: this.durable, successor: state.successor, cut: state.cut });
    // Through the thread pool, although a slot is a few dozen bytes: a write on the main thread
    // waits for the file's lock while the pool writes a large batch into it (measured with 1 KiB
    // batches of 1000: ~0.45 ms per slot, 9-12 % of the writer's thread).
    await writeFully(target.handle, slot, slotOffset(state.counter));
    this.slotDirty.add(target.handle);
  }

  /** After watermarkFlushMs without a new sync, persists the watermark with an fdatasync of its own. */
  private armFlush(): void {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      if (this.state !== 'open' || this.failure !== undefined || this.syncing !== undefined || this.flushing !== undefined) return;
      this.flushing = this.flushWatermark().finally(() => {
        this.flushing = undefined;
      });
    }, this.watermarkFlushMs);
    this.flushTimer.unref();
  }

  private async flushWatermark(): Promise<void> {
    if (this.slotTimer !== undefined) {
      // A skipped rewrite is still pending: write it now, then persist it.
      clearTimeout(this.slotTimer);
      this.slotTimer = undefined;
      this.slotWrittenAt = performance.now();
      void this.queueSlotWrite();
    }
    await this.slotLock;
    const handles = [...this.slotDirty];
    this.slotDirty.clear();
    try {
      await Promise.all(handles.map((h) => h.datasync()));
    } catch (error) {
      this.fail(error, 'sync', this.path(this.current?.segment ?? 0));
    }
  }

  /** `interval`: every intervalMs, fdatasync what was written (and the watermark written since). */
  private startIntervalSync(intervalMs: number): void {
    this.intervalTimer = setInterval(() => {
      if (this.state !== 'open' || this.failure !== undefined || this.intervalSync !== undefined) return;
      if (this.dirty.size === 0 && this.slotDirty.size === 0) return;
      const covered = this.written;
      const handles = new Set([...this.dirty, ...this.slotDirty]);
      this.dirty.clear();
      this.slotDirty.clear();
      this.intervalSync = Promise.all([...handles].map((h) => h.datasync())).then(
        () => {
          this.intervalSync = undefined;
          if (covered.lastSeq > this.synced.lastSeq) {
            this.synced = covered;
            void this.queueSlotWrite();
          }
        },
        (error: unknown) => {
          this.intervalSync = undefined;
          this.fail(error, 'sync', this.path(this.current?.segment ?? 0));
        },
      );
    }, intervalMs);
    this.intervalTimer.unref();
  }

  /**
   * The failure rule: after a failed write or sync nothing written since the last fdatasync is
   * known to be on disk. Refuse everything from now on and record, best effort, that recovery
   * must cut back to the last synced batch.
   */
  private fail(error: unknown, during: 'write' | 'sync', where: string): StorageError {
    if (this.failure !== undefined) return this.failure;
    this.failure = mapFsError(error, where, during);
    const current = this.current;
    if (current !== undefined) {
      this.faultRecorded = this.slotLock.then(async () => {
        const state = this.slots.get(current.segment);
        if (state === undefined) return;
        state.cut = { after: this.synced, kind: 'fault' };
        await this.writeSlot(current);
        await current.handle.datasync();
      }).catch(() => undefined);
    }
    return this.failure;
  }

  durableHead(): BatchIdentity {
    return this.durable;
  }

  // ── segments ───────────────────────────────────────────────────────────────────────────

  /**
   * Creates (or extends) a segment file to `bytes` (sparse or zero-filled, per the
   * `preallocate` option), synced, with its directory entry synced. Never leaves a partial file behind: on failure or abort the file
   * it created is removed (and the directory synced).
   */
  private async preallocate(segment: number, bytes: number, signal: AbortSignal | undefined): Promise<FileHandle> {
    const path = this.path(segment);
    let handle: FileHandle;
    let created = true;
    try {
      handle = await open(path, 'wx+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw mapFsError(error, path);
      created = false;
      handle = await openFile(path, 'r+');
    }
    try {
      await this.extend(handle, segment, bytes, signal);
      if (created) await syncDirectory(this.directory);
      return handle;
    } catch (error) {
      await handle.close().catch(() => undefined);
      if (created) {
        await unlink(path).catch(() => undefined);
        await syncDirectory(this.directory).catch(() => undefined);
      }
      throw error;
    }
  }

  /**
   * Extends `handle` from its size up to `bytes`: sets the size (sparse) or writes zeros
   * (zero-fill); on failure shrinks it back.
   */
  private async extend(handle: FileHandle, segment: number, bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const path = this.path(segment);
    const size = await fileSize(handle);
    if (size >= bytes) return;
    try {
      // Sparse: the size is set and synced, so a commit's fdatasync never has a size change
      // to flush; blocks are allocated as the writer reaches them (holes read as zeros).
      // Zero-fill: zeros past the end never touch data; they make room ahead of the writer,
      // so its fdatasyncs never allocate blocks either. Synced a few MiB at a time so a
      // background preallocation never holds the writer's syncs up for long.
      if (this.preallocateMode === 'sparse') {
        if (signal?.aborted === true || this.closeController.signal.aborted) throw new AbortedError();
        await handle.truncate(bytes);
      } else {
        for (let p = size; p < bytes; p += ZEROS.length) {
          if (signal?.aborted === true || this.closeController.signal.aborted) throw new AbortedError();
          await handle.write(ZEROS, 0, Math.min(ZEROS.length, bytes - p), p);
          if ((p / ZEROS.length) % 4 === 3) await handle.datasync();
        }
      }
      await handle.datasync();
    } catch (error) {
      await handle.truncate(size).catch(() => undefined);
      await handle.datasync().catch(() => undefined);
      if (error instanceof AbortedError) {
        throw new StorageError('Closed', `${this.where}: preallocating ${segmentName(segment)} was interrupted (the signal aborted or the storage closed); the partial segment was removed`, {
          cause: signal?.reason,
        });
      }
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        const free = await statfs(this.directory).then((s) => s.bavail * s.bsize).catch(() => undefined);
        throw new StorageError(
          'Full',
          `[sluice/store-file] ${path}: out of space preallocating a segment of ${bytes} bytes (${free === undefined ? 'free space unknown' : `${free} bytes free`}): ` +
            `free at least ${bytes - size} bytes on that file system, or lower segmentBytes; the partial segment was removed`,
          { cause: error },
        );
      }
      throw mapFsError(error, path);
    }
  }

  /** Preallocates the next segment in the background while the current one fills up. */
  private prepareNext(): void {
    const segment = (this.current as Current).segment + 1;
    this.next = this.preallocate(segment, this.segmentBytes, this.userSignal);
    this.next.catch(() => undefined); // awaited, and reported, by roll()
  }

  /**
   * Moves the writer to the next segment: its header is written and synced, then the old
   * segment is marked as having a successor (and synced, so all its data is durable), so a
   * deleted last segment is detected on the next open.
   */
  private async roll(): Promise<void> {
    const old = this.current as Current;
    const pending = this.next;
    this.next = undefined;
    let handle = await pending?.catch(() => undefined);
    handle ??= await this.preallocate(old.segment + 1, this.segmentBytes, undefined);
    try {
      await this.startSegment(old.segment + 1, handle, this.written);
    } catch (error) {
      // The new segment never started (a sparse one takes its first block here, so a full disk
      // shows up now): close it and remove it, as the next open would, so no handle is left open.
      await handle.close().catch(() => undefined);
      await unlink(this.path(old.segment + 1)).catch(() => undefined);
      await syncDirectory(this.directory).catch(() => undefined);
      throw error;
    }
    await this.markSuccessor(old.segment, old.handle);
    // The old segment is sealed and all of it durable: record its batch table and frame positions.
    this.queueSidecar(old.segment, this.written);
    this.dirty.delete(old.handle);
    this.retired.push(old.handle);
    if (this.syncing === undefined) this.closeRetired();
  }

  /**
   * Writes the sidecar of sealed `segment` (its last batch `last`) in the background: a
   * snapshot of its index is taken now. Best effort: a sidecar that fails to be written is
   * simply missing, and the next open scans that segment.
   */
  private queueSidecar(segment: number, last: BatchIdentity): void {
    if (!SIDECARS_SUPPORTED) return;
    const sidecar = this.index.sidecarOf(segment, last);
    if (sidecar === undefined) return;
    this.sidecars = this.sidecars.then(() => writeSidecar(this.directory, sidecar)).catch(() => undefined);
  }

  /** Removes the sidecars (and leftover temporary files) of segments from `segment` on. */
  private async removeSidecarsFrom(segment: number): Promise<void> {
    await this.sidecars;
    const names = await readdir(this.directory).catch(() => [] as string[]);
    for (const name of names) {
      const m = /^(\d{8})\.idx(\.tmp)?$/.exec(name);
      if (m === null || (Number(m[1]) < segment && m[2] === undefined)) continue;
      await unlink(join(this.directory, name)).catch(() => undefined);
    }
  }

  private async markSuccessor(segment: number, handle?: FileHandle): Promise<void> {
    const own = handle === undefined ? await openFile(this.path(segment), 'r+') : handle;
    try {
      const state = this.slots.get(segment) ?? { counter: (await this.slotCounter(segment)) ?? 0, successor: false, cut: undefined };
      this.slots.set(segment, state);
      state.successor = true;
      await this.withSlotLock(() => this.writeSlot({ segment, handle: own }));
      await own.datasync();
      this.slotDirty.delete(own);
    } finally {
      if (handle === undefined) await own.close();
    }
  }

  private async slotCounter(segment: number): Promise<number | undefined> {
    const page = await readHeaderPage(this.directory, segment);
    return page.kind === 'v2' ? page.slot?.counter : undefined;
  }

  private closeRetired(): void {
    if (this.retired.length === 0 || this.syncing !== undefined || this.intervalSync !== undefined || this.flushing !== undefined) return;
    const retired = this.retired;
    this.retired = [];
    for (const h of retired) {
      this.dirty.delete(h);
      this.slotDirty.delete(h);
      void h.close().catch(() => undefined);
    }
  }

  // ── truncate ───────────────────────────────────────────────────────────────────────────

  async truncate(afterSeq: number, options: TruncateOptions = {}): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.writing !== undefined || this.syncing !== undefined || this.truncating) {
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
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0 || afterSeq > this.written.lastSeq || !this.index.isBoundary(afterSeq)) {
      throw new StorageError('Invalid', `${this.where}: cannot truncate after seq ${afterSeq}: it is not the end of a stored batch (head is ${describeIdentity(this.written)})`);
    }
    const reason = options.operatorReason?.trim();
    if (afterSeq < this.durable.lastSeq && (reason === undefined || reason === '')) {
      throw new StorageError(
        'Invalid',
        `${this.where}: truncating after seq ${afterSeq} would remove durable (acknowledged) seqs up to ${this.durable.lastSeq}: pass operatorReason to do it deliberately`,
      );
    }
    if (afterSeq === this.written.lastSeq) return this.written;
    const target = afterSeq === 0 ? EMPTY_IDENTITY : ((await this.index.identityAt(afterSeq)) as BatchIdentity);
    // Where the log will end: a version 2 segment starting right after afterSeq, or the end of its batch.
    let segment: number | undefined;
    let offset = 0;
    for (const info of this.index.infos.values()) {
      if (info.header !== undefined && info.header.baseSeq === afterSeq + 1) {
        segment = info.segment;
        offset = SEGMENT_HEADER_BYTES;
        break;
      }
    }
    if (segment === undefined) {
      const at = this.index.locate(afterSeq);
      if (at !== undefined) {
        segment = at.segment;
        offset = at.offset + at.length;
      }
    }
    if (segment === undefined || this.index.infos.get(segment)?.format !== 2) {
      throw new StorageError('Unsupported', `${this.where}: truncating after seq ${afterSeq} would cut into version 1 segments, which are read-only history: copy the log instead`);
    }
    if (reason !== undefined && reason !== '' && afterSeq < this.durable.lastSeq) {
      const line = `${new Date().toISOString()} truncate after seq ${afterSeq}: removes seq ${afterSeq + 1}..${this.written.lastSeq} (durable up to ${this.durable.lastSeq}): ${reason.replace(/\s+/g, ' ')}\n`;
      await this.recordOperatorAction(line);
    }
    try {
      await this.cutAfter(target, segment, offset);
    } catch (error) {
      throw this.fail(error, 'write', this.path(segment));
    }
    return this.written;
  }

  private async recordOperatorAction(line: string): Promise<void> {
    const path = join(this.directory, OPERATOR_LOG);
    const existed = await stat(path).then(() => true, () => false);
    try {
      await appendFile(path, line);
      const h = await open(path, 'r');
      try {
        await h.sync();
      } finally {
        await h.close();
      }
      if (!existed) await syncDirectory(this.directory);
    } catch (error) {
      throw mapFsError(error, path);
    }
  }

  /**
   * Cuts every batch after `target`, keeping the log recoverable at every step: first a cut
   * record in the segment that stays (recovery finishes the cut after a crash), then later
   * segments go (last first), then the tail is zeroed, then the record is cleared.
   */
  private async cutAfter(target: BatchIdentity, segment: number, offset: number): Promise<void> {
    // Sidecars are derived: those of the segments about to change go first.
    await this.removeSidecarsFrom(segment);
    await this.next?.then((h) => h.close(), () => undefined);
    this.next = undefined;
    const current = this.current as Current;
    const handle = segment === current.segment ? current.handle : await openFile(this.path(segment), 'r+');
    const keep: Current = { segment, handle };
    if (this.synced.lastSeq > target.lastSeq) this.synced = target;
    if (this.durable.lastSeq > target.lastSeq) this.durable = target;
    const state = this.slots.get(segment) ?? { counter: (await this.slotCounter(segment)) ?? 0, successor: false, cut: undefined };
    this.slots.set(segment, state);
    state.cut = { after: target, kind: 'truncate' };
    state.successor = false;
    await this.withSlotLock(() => this.writeSlot(keep));
    await handle.datasync();
    const later = (await listSegments(this.directory)).filter((s) => s > segment).reverse();
    for (const s of later) {
      if (s === current.segment) this.retired.push(current.handle);
      this.index.forget(s);
      this.slots.delete(s);
      await unlink(this.path(s));
    }
    if (later.length > 0) await syncDirectory(this.directory);
    await zeroRange(handle, offset, await fileSize(handle), this.path(segment));
    state.cut = undefined;
    await this.withSlotLock(() => this.writeSlot(keep));
    await handle.datasync();
    this.slotDirty.delete(handle);
    this.dirty.delete(handle);
    this.index.truncateAfter(target.lastSeq, target);
    this.index.endSegment = segment;
    this.index.endOffset = offset;
    this.current = keep;
    this.position = offset;
    this.written = target;
    this.closeRetired();
  }

  // ── reads ──────────────────────────────────────────────────────────────────────────────

  read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncIterable<SealedBatch> {
    if (this.state !== 'open') return failedIteration(this.closedError());
    return this.index.read(fromSeq, Math.min(toSeq, this.durable.lastSeq), options);
  }

  readFrames(seqs: readonly number[]): AsyncIterable<EventFrame> {
    // Checked now, reported when iterated; the index's own generator is handed out, not wrapped
    // in another (each level of yield* costs every frame a few microseconds on a cold call).
    try {
      this.assertOpen();
      checkFrameSeqs(seqs, this.durable.lastSeq, this.where);
    } catch (error) {
      return failedIteration(error);
    }
    return this.index.readFrames(seqs);
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
    if (seq < 1 || seq > this.durable.lastSeq) return undefined;
    return this.index.identityAt(seq);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  openReader(): Promise<StorageReader> {
    return openFileReader({ directory: this.directory });
  }

  // ── close ──────────────────────────────────────────────────────────────────────────────

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.closeController.abort();
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    if (this.slotTimer !== undefined) clearTimeout(this.slotTimer);
    if (this.intervalTimer !== undefined) clearInterval(this.intervalTimer);
    await this.writing?.catch(() => undefined);
    await this.syncing?.catch(() => undefined);
    await this.flushing;
    await this.intervalSync;
    const current = this.current;
    if (wasOpen && this.failure === undefined && current !== undefined) {
      // A clean close makes what was written durable and records it exactly.
      try {
        const handles = new Set([...this.dirty, ...this.slotDirty]);
        this.dirty.clear();
        await Promise.all([...handles].map((h) => h.datasync()));
        this.synced = this.written;
        this.durable = this.written;
        await this.withSlotLock(() => this.writeSlot(current));
        await current.handle.datasync();
        this.slotDirty.clear();
      } catch (error) {
        this.fail(error, 'sync', this.path(current.segment));
      }
    }
    await this.slotLock;
    await this.faultRecorded;
    await this.sidecars;
    await this.release();
    this.signal.close();
  }

  private async release(): Promise<void> {
    const next = await this.next?.catch(() => undefined);
    this.next = undefined;
    await next?.close().catch(() => undefined);
    await this.index.close();
    for (const h of [...this.retired, ...(this.current === undefined ? [] : [this.current.handle])]) await h.close().catch(() => undefined);
    this.retired = [];
    this.current = undefined;
    await this.lock?.release();
    this.lock = undefined;
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────

  private path(segment: number): string {
    return join(this.directory, segmentName(segment));
  }

  private checkAborted(what: string): void {
    if (this.userSignal?.aborted === true) {
      throw new StorageError('Closed', `${this.where}: ${what} was interrupted (the signal aborted); nothing half-made was left behind`, { cause: this.userSignal.reason });
    }
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.failure !== undefined) throw this.failure;
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw this.closedError();
  }

  private closedError(): StorageError {
    return new StorageError('Closed', `${this.where} is ${this.state === 'new' || this.state === 'opening' ? 'not open: call open() first' : 'closed'}`);
  }
}

class AbortedError extends Error {}

async function openFile(path: string, flags: 'r' | 'r+'): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (error) {
    throw mapFsError(error, path);
  }
}

async function fileSize(handle: FileHandle): Promise<number> {
  return (await handle.stat()).size;
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
    written += bytesWritten;
  }
}

/** {@link writeFully} without the thread pool, for small batches (SYNC_WRITE_BYTES_MAX). */
function writeFullySync(fd: number, bytes: Uint8Array, position: number): void {
  let written = 0;
  while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written, position + written);
}

export async function syncDirectory(directory: string): Promise<void> {
  const dir = await open(directory, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** An iteration that fails with `error` at its first step: a read refused when it is asked for is reported when iterated. */
function failedIteration<T>(error: unknown): AsyncGenerator<T> {
  return (async function* () {
    throw error;
  })();
}
