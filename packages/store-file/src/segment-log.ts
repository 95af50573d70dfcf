import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { StreamDecoder, type DecodeReport, type SealedBatch } from '@sluice/framing';
import { StorageError, firstBatchEndingAtOrAfter } from '@sluice/store';
import { mapFsError } from './fs-errors.js';

/** Segment files are named by their number: `00000001.seg`. */
export const SEGMENT_SUFFIX = '.seg';
const SCAN_CHUNK_BYTES = 256 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;
/** Read handles kept open at most (beyond those in use). */
const HANDLES_MAX = 32;

export function segmentName(segment: number): string {
  return `${String(segment).padStart(8, '0')}${SEGMENT_SUFFIX}`;
}

/** Segment numbers present in `directory`, ascending. */
export async function listSegments(directory: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    throw mapFsError(error, directory);
  }
  return names
    .filter((n) => /^\d{8}\.seg$/.test(n))
    .map((n) => Number(n.slice(0, 8)))
    .sort((a, b) => a - b);
}

/** Where a scan of one segment stopped. */
export interface SegmentScan {
  readonly segment: number;
  /** Offset just after the last verified batch. */
  readonly validEnd: number;
  readonly report: DecodeReport;
  readonly batches: number;
}

/**
 * The seq → (segment, offset) index of a file partition: one entry per sealed batch, in
 * parallel number arrays (no object per batch). Shared by the writer and read-only readers.
 */
export class SegmentIndex {
  private readonly firstSeqs: number[] = [];
  private readonly lastSeqs: number[] = [];
  private readonly segments: number[] = [];
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];
  private readonly handles = new Map<number, { handle: FileHandle; users: number; pinned: boolean }>();
  private closed = false;
  /** Segment and offset the next batch goes to / is looked for at. */
  endSegment = 1;
  endOffset = 0;

  constructor(readonly directory: string) {}

  get lastSeq(): number {
    return this.lastSeqs.length === 0 ? 0 : this.lastSeqs[this.lastSeqs.length - 1];
  }

  get batchCount(): number {
    return this.lastSeqs.length;
  }

  add(firstSeq: number, lastSeq: number, segment: number, offset: number, length: number): void {
    this.firstSeqs.push(firstSeq);
    this.lastSeqs.push(lastSeq);
    this.segments.push(segment);
    this.offsets.push(offset);
    this.lengths.push(length);
    this.endSegment = segment;
    this.endOffset = offset + length;
  }

  /** Registers an open handle (the writer's) so reads share it instead of opening another. */
  adoptHandle(segment: number, handle: FileHandle): void {
    const previous = this.handles.get(segment);
    if (previous !== undefined && previous.handle !== handle) void previous.handle.close().catch(() => undefined);
    // The writer's segment stays open; earlier adopted ones become ordinary, evictable handles.
    for (const entry of this.handles.values()) entry.pinned = false;
    this.handles.set(segment, { handle, users: previous?.users ?? 0, pinned: true });
  }

  /**
   * Scans forward from the end of the index, adding every verified batch, across segment
   * boundaries, and returns the scan of the tail: where the next batch goes and what lies there.
   *
   * `writer` mode (the lock is held, nothing changes underneath): a torn first write into a new
   * segment becomes the tail; a later segment that does not continue the log is corruption.
   * `reader` mode (the writer may be mid-write): never move to the next segment until it starts
   * with the next seq; a torn or unfinished tail is just "not yet", retried on the next scan.
   */
  async scanForward(mode: 'writer' | 'reader' = 'writer'): Promise<SegmentScan> {
    let tail: SegmentScan = {
      segment: this.endSegment,
      validEnd: this.endOffset,
      report: emptyReport(this.endOffset, this.lastSeq + 1),
      batches: 0,
    };
    for (const segment of await listSegments(this.directory)) {
      if (segment < this.endSegment) continue;
      const current = segment === this.endSegment;
      if (!current && mode === 'reader' && !tail.report.clean) break; // the writer may still be finishing it
      const scan = await this.scanSegment(segment, current ? this.endOffset : 0);
      if (current) {
        tail = scan;
        continue;
      }
      if (scan.batches === 0) {
        if (scan.report.clean) break; // preallocated, not used yet
        if (mode === 'reader') break; // being written, or not yet continuing the log: look again later
        if (scan.report.reason === 'bad-sequence' || !tail.report.clean) {
          throw this.gapError(tail, segment, scan);
        }
        // A torn first write into a new segment: the writer continues there.
        this.endSegment = segment;
        this.endOffset = 0;
        tail = scan;
        continue;
      }
      if (!tail.report.clean) throw this.gapError(tail, segment, scan);
      tail = scan;
    }
    return tail;
  }

  private gapError(tail: SegmentScan, segment: number, scan: SegmentScan): StorageError {
    return new StorageError(
      'Corrupt',
      `[sluice/store-file] ${join(this.directory, segmentName(tail.segment))} ends at offset ${tail.validEnd} after seq ${this.lastSeq} ` +
        `(${tail.report.reason}: ${tail.report.detail}) but ${segmentName(segment)} follows with more data (${scan.report.reason}: ${scan.report.detail}): ` +
        `committed data is missing or damaged; restore the partition from a copy or a shipped archive`,
    );
  }

  private async scanSegment(segment: number, start: number): Promise<SegmentScan> {
    const handle = await this.handle(segment);
    try {
      return await this.scanWith(handle, segment, start);
    } finally {
      this.releaseHandle(segment);
    }
  }

  private async scanWith(handle: FileHandle, segment: number, start: number): Promise<SegmentScan> {
    const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1 });
    let position = start;
    let batches = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
      const { bytesRead } = await readAt(handle, chunk, position, this.directory);
      if (bytesRead === 0) break;
      for (const b of decoder.push(chunk.subarray(0, bytesRead))) {
        this.add(b.firstSeq, b.lastSeq, segment, start + b.byteOffset, b.byteLength);
        batches++;
      }
      position += bytesRead;
      if (decoder.isStopped) break;
    }
    const report = decoder.end();
    return { segment, validEnd: start + report.validBytes, report, batches };
  }

  /** Verified batches overlapping [fromSeq, toSeq] among those indexed. */
  async *read(fromSeq: number, toSeq: number): AsyncGenerator<SealedBatch> {
    let i = firstBatchEndingAtOrAfter(this.lastSeqs, fromSeq);
    const count = this.lastSeqs.length;
    while (i < count && this.firstSeqs[i] <= toSeq) {
      // Read a run of adjacent batches of one segment with one read, up to the chunk size.
      const segment = this.segments[i];
      const start = this.offsets[i];
      let j = i;
      let end = start + this.lengths[i];
      while (
        j + 1 < count &&
        this.firstSeqs[j + 1] <= toSeq &&
        this.segments[j + 1] === segment &&
        this.offsets[j + 1] === end &&
        end + this.lengths[j + 1] - start <= READ_CHUNK_BYTES
      ) {
        j++;
        end += this.lengths[j];
      }
      const handle = await this.handle(segment);
      const buffer = Buffer.allocUnsafe(end - start);
      let bytesRead: number;
      try {
        ({ bytesRead } = await readAt(handle, buffer, start, this.directory));
      } finally {
        this.releaseHandle(segment);
      }
      const decoder = new StreamDecoder({ firstSeq: this.firstSeqs[i] });
      const batches = decoder.push(buffer.subarray(0, bytesRead));
      if (batches.length !== j - i + 1) {
        const report = decoder.end();
        throw new StorageError(
          'Corrupt',
          `[sluice/store-file] ${join(this.directory, segmentName(segment))} changed under a reader at offset ${start + report.offset} ` +
            `(${report.reason}: ${report.detail}): committed data was damaged; restore the partition from a copy`,
        );
      }
      for (const batch of batches) yield batch;
      i = j + 1;
    }
  }


  /** A read handle of `segment`, held until {@link releaseHandle}; the least recently used idle ones are closed beyond HANDLES_MAX. */
  private async handle(segment: number): Promise<FileHandle> {
    if (this.closed) throw new StorageError('Closed', `[sluice/store-file] ${this.directory} is closed`);
    let entry = this.handles.get(segment);
    if (entry === undefined) {
      let h: FileHandle;
      try {
        h = await open(join(this.directory, segmentName(segment)), 'r');
      } catch (error) {
        throw mapFsError(error, join(this.directory, segmentName(segment)));
      }
      if (this.closed) {
        await h.close();
        throw new StorageError('Closed', `[sluice/store-file] ${this.directory} is closed`);
      }
      const raced = this.handles.get(segment);
      if (raced !== undefined) {
        await h.close();
        entry = raced;
      } else {
        entry = { handle: h, users: 0, pinned: false };
      }
    }
    // Most recently used last.
    this.handles.delete(segment);
    this.handles.set(segment, entry);
    entry.users++;
    this.evictIdle();
    return entry.handle;
  }

  private releaseHandle(segment: number): void {
    const entry = this.handles.get(segment);
    if (entry !== undefined && entry.users > 0) entry.users--;
  }

  private evictIdle(): void {
    if (this.handles.size <= HANDLES_MAX) return;
    for (const [segment, entry] of this.handles) {
      if (this.handles.size <= HANDLES_MAX) break;
      if (entry.users > 0 || entry.pinned) continue;
      this.handles.delete(segment);
      void entry.handle.close().catch(() => undefined);
    }
  }

  /** fdatasyncs a segment through a read handle (recovery makes what it found durable). */
  async syncSegment(segment: number): Promise<void> {
    const handle = await this.handle(segment).catch(() => undefined);
    if (handle === undefined) return;
    try {
      await handle.datasync().catch(() => undefined);
    } finally {
      this.releaseHandle(segment);
    }
  }

  /** Closes read handles (not `adopted`, the writer's current one, which its owner closes). */
  async close(adopted?: FileHandle): Promise<void> {
    this.closed = true;
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.filter((e) => e.handle !== adopted).map((e) => e.handle.close().catch(() => undefined)));
  }
}

function emptyReport(offset: number, nextSeq: number): DecodeReport {
  return { validBytes: 0, reason: 'end', clean: true, offset, detail: 'no data', nextSeq, unsealedFrames: 0 };
}

export async function readAt(handle: FileHandle, buffer: Buffer, position: number, where: string): Promise<{ bytesRead: number }> {
  let total = 0;
  try {
    while (total < buffer.length) {
      const { bytesRead } = await handle.read(buffer, total, buffer.length - total, position + total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
  } catch (error) {
    throw mapFsError(error, where);
  }
  return { bytesRead: total };
}
