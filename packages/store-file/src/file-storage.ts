import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  StorageError,
  WriterLock,
  describeFsyncPolicy,
  parseFsyncPolicy,
  type FsyncPolicy,
  type FsyncPolicyInput,
  type PartitionStorage,
  type StorageReader,
  type StorageRecovery,
} from '@sluice/store';
import { FORMAT_VERSION, FRAME_BYTES_MIN, MARKER_BYTES, crc32c, decodeBatches, type SealedBatch } from '@sluice/framing';
import { openFileReader } from './file-reader.js';
import { SegmentIndex, listSegments, readAt, segmentName } from './segment-log.js';
import { mapFsError } from './fs-errors.js';

/** Options of {@link createFileStorage}. */
export interface FileStorageOptions {
  /** The partition's directory: its segments and lock file live here. */
  readonly directory: string;
  /**
   * Create the directory if it is missing.
   * @default true
   */
  readonly createDirectory?: boolean;
  /**
   * Size each segment file is preallocated to (zero-filled ahead of use, so appends never
   * grow the file and fdatasync has no size change to flush). A batch larger than this gets a
   * segment of its own.
   * @default 67108864 (64 MiB)
   */
  readonly segmentBytes?: number;
  /**
   * When appends are forced to disk: `"commit"`, `"interval:100ms"` or `"none"`.
   * @default "commit"
   */
  readonly fsync?: FsyncPolicyInput;
}

/** Defaults of {@link FileStorageOptions}. */
export function fileStorageDefaults(): { createDirectory: boolean; segmentBytes: number; fsync: FsyncPolicy } {
  return { createDirectory: true, segmentBytes: 64 * 1024 * 1024, fsync: { kind: 'commit' } };
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

class FileStorage implements PartitionStorage {
  readonly kind = 'file';
  readonly capabilities: PartitionStorage['capabilities'];
  private readonly directory: string;
  private readonly segmentBytes: number;
  private readonly fsync: FsyncPolicy;
  private readonly createDirectory: boolean;
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  private lock: WriterLock | undefined;
  private index: SegmentIndex;
  private handle: FileHandle | undefined;
  private segment = 1;
  private position = 0;
  private next: Promise<FileHandle> | undefined;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private failure: StorageError | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: FileStorageOptions) {
    const defaults = fileStorageDefaults();
    if (typeof options?.directory !== 'string' || options.directory.length === 0) {
      throw new StorageError('Invalid', '[sluice/store-file] options.directory must be a non-empty path');
    }
    this.directory = options.directory;
    this.segmentBytes = options.segmentBytes ?? defaults.segmentBytes;
    if (!Number.isSafeInteger(this.segmentBytes) || this.segmentBytes < 4096) {
      throw new StorageError('Invalid', `[sluice/store-file] segmentBytes must be an integer of at least 4096, got ${options.segmentBytes}`);
    }
    try {
      this.fsync = options.fsync === undefined ? defaults.fsync : parseFsyncPolicy(options.fsync);
    } catch (error) {
      throw new StorageError('Invalid', (error as Error).message, { cause: error });
    }
    this.createDirectory = options.createDirectory ?? defaults.createDirectory;
    this.capabilities = { crossProcessReaders: true, durability: describeFsyncPolicy(this.fsync) };
    this.index = new SegmentIndex(this.directory);
  }

  async open(): Promise<StorageRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', '[sluice/store-file] open() was already called: create a new storage to reopen');
    this.state = 'opening';
    try {
      if (this.createDirectory) await mkdir(this.directory, { recursive: true }).catch((e: unknown) => Promise.reject(mapFsError(e, this.directory)));
      this.lock = await WriterLock.acquire(this.directory, 'store-file', 'openFileReader()');
      const tail = await this.index.scanForward();
      if (tail.report.reason === 'unsupported-version') {
        // Not a torn tail: data this version cannot read. Never cut it.
        throw new StorageError(
          'Unsupported',
          `[sluice/store-file] ${join(this.directory, segmentName(tail.segment))} holds frames of a newer format at offset ${tail.report.offset} ` +
            `(${tail.report.detail}): open it with a newer @sluice/store-file`,
        );
      }
      this.segment = this.index.endSegment;
      this.position = tail.segment === this.segment ? tail.validEnd : this.index.endOffset;
      this.handle = await this.openSegment(this.segment);
      this.index.adoptHandle(this.segment, this.handle);
      // Always checked, not only after an unclean stop: a zeroed length field looks like a clean end.
      const droppedBytes = await this.cleanTail(this.position);
      // What recovery found may have reached only the page cache before a crash: make it
      // durable before anything (a duplicate's result, a reader) relies on it.
      await this.handle.datasync();
      if (this.segment > 1) await this.index.syncSegment(this.segment - 1);
      await syncDirectory(this.directory);
      this.state = 'open';
      if (this.fsync.kind === 'interval') this.startTimer(this.fsync.intervalMs);
      return {
        lastSeq: this.index.lastSeq,
        droppedBytes,
        droppedReason: droppedBytes === 0 ? undefined : `${tail.report.reason}: ${tail.report.detail}`,
      };
    } catch (error) {
      await this.release();
      this.state = 'closed';
      throw error;
    }
  }

  async append(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    if (this.state !== 'open') throw this.closedError();
    if (this.failure !== undefined) throw this.failure;
    if (firstSeq !== this.index.lastSeq + 1) {
      throw new StorageError('Conflict', `[sluice/store-file] append of seq ${firstSeq}..${lastSeq} does not follow seq ${this.index.lastSeq}`);
    }
    try {
      if (this.position > 0 && this.position + bytes.length > this.segmentBytes) await this.roll();
      const handle = this.handle as FileHandle;
      let written = 0;
      while (written < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, this.position + written);
        written += bytesWritten;
      }
      if (this.fsync.kind === 'commit') await handle.datasync();
      else this.dirty = true;
    } catch (error) {
      // What reached the file is unknown now: refuse further appends until reopened.
      this.failure = error instanceof StorageError ? error : mapFsError(error, join(this.directory, segmentName(this.segment)));
      throw this.failure;
    }
    this.index.add(firstSeq, lastSeq, this.segment, this.position, bytes.length);
    this.position += bytes.length;
    // Preallocate the next segment in the background once this one is half full.
    if (this.next === undefined && this.position > this.segmentBytes / 2) this.prepareNext();
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    if (this.state !== 'open') {
      const error = this.closedError();
      return (async function* () {
        throw error;
      })();
    }
    return this.index.read(fromSeq, toSeq);
  }

  async lastSeq(): Promise<number> {
    return this.index.lastSeq;
  }

  openReader(): Promise<StorageReader> {
    return openFileReader({ directory: this.directory });
  }

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.syncing;
    if (wasOpen && this.dirty && this.failure === undefined) await this.handle?.datasync().catch(() => undefined);
    await this.release();
  }

  private async release(): Promise<void> {
    const next = await this.next?.catch(() => undefined);
    this.next = undefined;
    await next?.close().catch(() => undefined);
    await this.index.close(this.handle);
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await this.lock?.release();
    this.lock = undefined;
  }

  private closedError(): StorageError {
    return new StorageError('Closed', `[sluice/store-file] ${this.directory} is ${this.state === 'new' ? 'not open: call open() first' : 'closed'}`);
  }

  /**
   * Zero-fills whatever lies after the last verified batch (`from`) in the current segment, so
   * no reader decodes it again, after checking it holds no committed data: a torn append never
   * holds a whole sealed batch (the engine seals each append once, at its end), so a verified
   * batch past `from` means committed data was damaged (or hidden by a zeroed length field),
   * and opening is refused rather than wiping it. Later segments get the same check.
   */
  private async cleanTail(from: number): Promise<number> {
    const handle = this.handle as FileHandle;
    const region = await nonZeroRegion(handle, from, this.directory);
    this.refuseIfCommitted(region, this.segment, from);
    for (let p = 0; p < region.length; p += ZEROS.length) {
      await handle.write(ZEROS, 0, Math.min(ZEROS.length, region.length - p), from + p);
    }
    for (const later of await listSegments(this.directory)) {
      if (later <= this.segment) continue;
      const h = await open(join(this.directory, segmentName(later)), 'r');
      try {
        this.refuseIfCommitted(await nonZeroRegion(h, 0, this.directory), later, 0);
      } finally {
        await h.close();
      }
    }
    return region.length;
  }

  private refuseIfCommitted(region: Buffer, segment: number, offset: number): void {
    const found = findSealedBatch(region, this.index.lastSeq);
    if (found !== undefined) {
      throw new StorageError(
        'Corrupt',
        `[sluice/store-file] ${join(this.directory, segmentName(segment))} holds committed seq ${found.firstSeq}..${found.lastSeq} ` +
          `at offset ${offset + found.offset}, after data that does not verify (the log ends at seq ${this.index.lastSeq}): ` +
          `committed data was damaged; restore the partition from a copy or a shipped archive`,
      );
    }
  }

  /** Opens (creating if needed) a segment and zero-fills it up to segmentBytes. */
  private async openSegment(segment: number): Promise<FileHandle> {
    const path = join(this.directory, segmentName(segment));
    try {
      const handle = await open(path, 'a+').then(async (h) => {
        // 'a+' creates it; reopen for positional writes ('a' would force appends to the end).
        await h.close();
        return open(path, 'r+');
      });
      const { size } = await handle.stat();
      // Zeros past the end never touch data; they only make room ahead of the writer, so its
      // fdatasyncs never have to allocate blocks or change the file size. Synced a few MiB at a
      // time so a background preallocation never holds the writer's syncs up for long.
      for (let p = size; p < this.segmentBytes; p += ZEROS.length) {
        await handle.write(ZEROS, 0, Math.min(ZEROS.length, this.segmentBytes - p), p);
        if ((p / ZEROS.length) % 4 === 3) await handle.datasync();
      }
      if (size < this.segmentBytes) await handle.datasync();
      await syncDirectory(this.directory);
      return handle;
    } catch (error) {
      throw mapFsError(error, path);
    }
  }

  /** Preallocates the next segment in the background while the current one fills up. */
  private prepareNext(): void {
    const segment = this.segment + 1;
    this.next = this.openSegment(segment);
    this.next.catch(() => undefined); // awaited, and reported, by roll()
  }

  private async roll(): Promise<void> {
    const next = await (this.next ?? this.openSegment(this.segment + 1));
    const previous = this.handle as FileHandle;
    if (this.dirty) await previous.datasync();
    this.segment += 1;
    this.position = 0;
    this.handle = next;
    this.index.adoptHandle(this.segment, next);
    this.next = undefined;
  }

  private startTimer(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (!this.dirty || this.syncing !== undefined || this.handle === undefined) return;
      this.dirty = false;
      this.syncing = this.handle.datasync().then(
        () => {
          this.syncing = undefined;
        },
        (error: unknown) => {
          this.syncing = undefined;
          this.failure = mapFsError(error, join(this.directory, segmentName(this.segment)));
        },
      );
    }, intervalMs);
    this.timer.unref();
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const dir = await open(directory, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** The bytes from `from` up to the last non-zero byte before a whole MiB of zeros (unwritten space). */
async function nonZeroRegion(handle: FileHandle, from: number, where: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let position = from;
  let length = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(ZEROS.length);
    const { bytesRead } = await readAt(handle, chunk, position, where);
    let last = bytesRead - 1;
    while (last >= 0 && chunk[last] === 0) last--;
    if (last < 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    length = position - from + last + 1;
    position += bytesRead;
    if (bytesRead < chunk.length) break;
  }
  return Buffer.concat(chunks).subarray(0, length);
}

const TWO_32 = 0x1_0000_0000;

/**
 * Finds a sealed batch with seqs after `afterSeq` anywhere in `region`, in linear time: looks
 * for markers whose CRC verifies, then for the event frame that would start their batch, and
 * decodes only those candidates.
 */
function findSealedBatch(region: Buffer, afterSeq: number): { firstSeq: number; lastSeq: number; offset: number } | undefined {
  for (let o = 0; o + MARKER_BYTES <= region.length; o++) {
    if (region[o + 4] !== FORMAT_VERSION || region[o + 5] !== 2 || region.readUInt32LE(o) !== MARKER_BYTES) continue;
    if (crc32c(region, o, o + MARKER_BYTES - 4) !== region.readUInt32LE(o + MARKER_BYTES - 4)) continue;
    const firstSeq = region.readUInt32LE(o + 8) + region.readUInt32LE(o + 12) * TWO_32;
    const lastSeq = region.readUInt32LE(o + 32) + region.readUInt32LE(o + 36) * TWO_32;
    if (lastSeq <= afterSeq) continue;
    for (let start = o - FRAME_BYTES_MIN; start >= 0; start--) {
      if (region[start + 4] !== FORMAT_VERSION || region[start + 5] !== 1) continue;
      if (region.readUInt32LE(start + 8) + region.readUInt32LE(start + 12) * TWO_32 !== firstSeq) continue;
      const { batches } = decodeBatches(region.subarray(start, o + MARKER_BYTES));
      if (batches.length === 1 && batches[0].lastSeq === lastSeq) return { firstSeq, lastSeq, offset: start };
    }
  }
  return undefined;
}
