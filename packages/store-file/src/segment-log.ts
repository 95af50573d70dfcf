import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { MARKER_BYTES, MARKER_V1_BYTES, StreamDecoder, ZERO_DIGEST, readU32, type DecodeReport, type SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, StorageError, describeIdentity, firstBatchEndingAtOrAfter, identityOf, type BatchIdentity, type ReadBatchesOptions } from '@sluice/store';
import { mapFsError } from './fs-errors.js';
import { SEGMENT_HEADER_BYTES, decodeHeaderPage, incarnationHex, type HeaderPage, type SegmentHeader } from './segment-header.js';

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

/** Reads the first page of a segment file (zero-padded when the file is shorter). */
export async function readHeaderPage(directory: string, segment: number): Promise<HeaderPage> {
  const path = join(directory, segmentName(segment));
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw mapFsError(error, path);
  }
  try {
    const page = Buffer.alloc(SEGMENT_HEADER_BYTES);
    await readAt(handle, page, 0, path);
    return decodeHeaderPage(page);
  } finally {
    await handle.close();
  }
}

/** One segment that is part of the log. */
export interface SegmentInfo {
  readonly segment: number;
  /** 1: a version 1 segment (no header, data from offset 0); 2: with a header. */
  readonly format: 1 | 2;
  readonly dataOffset: number;
  readonly header: SegmentHeader | undefined;
}

/**
 * Where a forward scan stopped:
 * - `end`: the last listed segment ended cleanly (zero-filled space or end of file);
 * - `unused`: the next segment exists but has no header yet (preallocated, never rolled into);
 * - `damage`: data in `segment` stops verifying at `validEnd` (`report` says why);
 * - `bad-header`: the next segment's header is damaged, or it has none after version 2 segments;
 * - `hole`: the next segment starts at a later seq than the log reaches (data before it is missing);
 * - `gap`: a segment number is missing from the directory;
 * - `limit`: the next batch is above the limit the scan was given.
 */
export interface ScanStop {
  readonly kind: 'end' | 'unused' | 'damage' | 'bad-header' | 'hole' | 'gap' | 'limit';
  /** The segment the stop is about (the damaged, missing, unused or holed one). */
  readonly segment: number;
  readonly detail: string;
  readonly report: DecodeReport | undefined;
}

/**
 * The seq → (segment, offset) index of a file partition: one entry per sealed batch, in
 * parallel number arrays (no object per batch), plus the segments' headers and the chain
 * head. Shared by the writer and read-only readers.
 */
export class SegmentIndex {
  private readonly firstSeqs: number[] = [];
  private readonly lastSeqs: number[] = [];
  private readonly segments: number[] = [];
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];
  private readonly handles = new Map<number, { handle: FileHandle; users: number }>();
  private closed = false;
  /** Segments that are part of the log, by number. */
  readonly infos = new Map<number, SegmentInfo>();
  /** The partition's incarnation, once a version 2 segment has been seen. */
  incarnation: Uint8Array | undefined;
  partitionName: string | undefined;
  /** Identity of the last indexed batch. */
  head: BatchIdentity = EMPTY_IDENTITY;
  /** Segment and offset the next batch goes to / is looked for at. */
  endSegment = 1;
  endOffset = 0;
  /** True once {@link endSegment} is known to be part of the log (its header was checked). */
  entered = false;

  constructor(readonly directory: string) {}

  get lastSeq(): number {
    return this.head.lastSeq;
  }

  get batchCount(): number {
    return this.lastSeqs.length;
  }

  get firstSegment(): number {
    return this.infos.size === 0 ? this.endSegment : Math.min(...this.infos.keys());
  }

  path(segment: number): string {
    return join(this.directory, segmentName(segment));
  }

  add(batch: SealedBatch, segment: number, offset: number): void {
    this.firstSeqs.push(batch.firstSeq);
    this.lastSeqs.push(batch.lastSeq);
    this.segments.push(segment);
    this.offsets.push(offset);
    this.lengths.push(batch.byteLength);
    this.head = identityOf(batch);
    this.endSegment = segment;
    this.endOffset = offset + batch.byteLength;
  }

  /** The writer adds what it wrote (already checked by checkWrite). */
  addWritten(firstSeq: number, lastSeq: number, head: BatchIdentity, segment: number, offset: number, length: number): void {
    this.firstSeqs.push(firstSeq);
    this.lastSeqs.push(lastSeq);
    this.segments.push(segment);
    this.offsets.push(offset);
    this.lengths.push(length);
    this.head = head;
    this.endSegment = segment;
    this.endOffset = offset + length;
  }

  /** The writer entered a new segment it made. */
  enter(info: SegmentInfo): void {
    this.infos.set(info.segment, info);
    this.endSegment = info.segment;
    this.endOffset = info.dataOffset;
    this.entered = true;
    if (info.header !== undefined) {
      this.incarnation ??= info.header.incarnation;
      this.partitionName ??= info.header.partition;
    }
  }

  /** Where the batch holding `seq` is, or undefined. */
  locate(seq: number): { index: number; segment: number; offset: number; length: number; firstSeq: number; lastSeq: number } | undefined {
    if (seq < 1 || seq > this.lastSeq) return undefined;
    const i = firstBatchEndingAtOrAfter(this.lastSeqs, seq);
    if (i >= this.lastSeqs.length || this.firstSeqs[i] > seq) return undefined;
    return { index: i, segment: this.segments[i], offset: this.offsets[i], length: this.lengths[i], firstSeq: this.firstSeqs[i], lastSeq: this.lastSeqs[i] };
  }

  /** True when `seq` ends an indexed batch (0 always does). */
  isBoundary(seq: number): boolean {
    if (seq === 0) return true;
    const at = this.locate(seq);
    return at !== undefined && at.lastSeq === seq;
  }

  /** Identity of the batch holding `seq`, read from its marker on disk. */
  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    const at = this.locate(seq);
    if (at === undefined) return undefined;
    if (at.index === this.lastSeqs.length - 1) return this.head;
    const handle = await this.handle(at.segment);
    try {
      const tail = Buffer.alloc(Math.min(MARKER_BYTES, at.length));
      await readAt(handle, tail, at.offset + at.length - tail.length, this.path(at.segment));
      return markerIdentity(tail, at.lastSeq, this.path(at.segment));
    } finally {
      this.releaseHandle(at.segment);
    }
  }

  /**
   * Forgets every batch after `seq` (a batch boundary) and sets the head to `head`; segments
   * after the one holding `seq` leave the index.
   */
  truncateAfter(seq: number, head: BatchIdentity): void {
    const keep = seq === 0 ? 0 : firstBatchEndingAtOrAfter(this.lastSeqs, seq) + 1;
    for (const a of [this.firstSeqs, this.lastSeqs, this.segments, this.offsets, this.lengths]) a.length = keep;
    this.head = head;
    if (keep > 0) {
      this.endSegment = this.segments[keep - 1];
      this.endOffset = this.offsets[keep - 1] + this.lengths[keep - 1];
    } else {
      this.endSegment = this.firstSegment;
      this.endOffset = this.infos.get(this.endSegment)?.dataOffset ?? 0;
    }
    for (const segment of [...this.infos.keys()]) if (segment > this.endSegment) this.forget(segment);
  }

  /** Bytes of the indexed batches after `seq` (a batch boundary). */
  bytesAfter(seq: number): number {
    let n = 0;
    for (let i = this.lastSeqs.length - 1; i >= 0 && this.lastSeqs[i] > seq; i--) n += this.lengths[i];
    return n;
  }

  /** Drops a segment from the index's headers and closes its read handle. */
  forget(segment: number): void {
    this.infos.delete(segment);
    const entry = this.handles.get(segment);
    if (entry !== undefined) {
      this.handles.delete(segment);
      void entry.handle.close().catch(() => undefined);
    }
  }

  /**
   * Scans forward from the end of the index, adding every verified batch (chained to the head,
   * across segment boundaries) up to `limitSeq`, and says where and why it stopped.
   *
   * `writer` mode (the lock is held, nothing changes underneath) and `reader` mode (the writer
   * may be mid-write) differ only in what the caller makes of the stop: a reader treats a
   * `hole` or a torn tail as "not yet" and looks again later.
   *
   * Throws `Corrupt` for a segment of another partition (incarnation) or a stale one (wrong
   * number, or starting at a seq the log has already passed).
   */
  async scanForward(limitSeq = Number.MAX_SAFE_INTEGER): Promise<ScanStop> {
    const listed = await listSegments(this.directory);
    let last: ScanStop = { kind: 'end', segment: this.endSegment, detail: 'no segments', report: undefined };
    for (const segment of listed) {
      if (segment < this.endSegment) continue;
      const expected = this.entered ? this.endSegment + 1 : this.endSegment;
      if (segment > expected && !(this.entered && segment === this.endSegment)) {
        return { kind: 'gap', segment: expected, detail: `${segmentName(expected)} is missing`, report: undefined };
      }
      if (!this.entered || segment > this.endSegment) {
        const entry = await this.entry(segment);
        if (entry.kind !== 'enter') return entry.stop;
        this.enter(entry.info);
      }
      const scan = await this.scanSegment(segment, this.endOffset, limitSeq);
      if (scan.limited) return { kind: 'limit', segment, detail: `next batch is above seq ${limitSeq}`, report: scan.report };
      if (!scan.report.clean) return { kind: 'damage', segment, detail: `${scan.report.reason}: ${scan.report.detail}`, report: scan.report };
      last = { kind: 'end', segment, detail: scan.report.detail, report: scan.report };
    }
    return last;
  }

  /** Checks the header of `segment`, the next one after the index's end. */
  private async entry(segment: number): Promise<{ kind: 'enter'; info: SegmentInfo } | { kind: 'stop'; stop: ScanStop }> {
    const page = await readHeaderPage(this.directory, segment);
    const stop = (kind: ScanStop['kind'], detail: string): { kind: 'stop'; stop: ScanStop } => ({ kind: 'stop', stop: { kind, segment, detail, report: undefined } });
    if (page.kind === 'zero') return stop('unused', `${segmentName(segment)} has no header yet (preallocated, not used)`);
    if (page.kind === 'damaged') return stop('bad-header', `${segmentName(segment)}: ${page.detail}`);
    if (page.kind === 'v1') {
      if (this.incarnation !== undefined) return stop('bad-header', `${segmentName(segment)} holds data but no segment header, after version 2 segments`);
      return { kind: 'enter', info: { segment, format: 1, dataOffset: 0, header: undefined } };
    }
    const header = page.header;
    this.checkHeader(segment, header);
    const head = this.head;
    if (header.baseSeq > head.lastSeq + 1) {
      return stop('hole', `${segmentName(segment)} starts at seq ${header.baseSeq} but the log before it ends at seq ${head.lastSeq}`);
    }
    if (header.baseSeq < head.lastSeq + 1 || !sameDigest(header.previous.digest, head.lastSeq === 0 ? ZERO_DIGEST : head.digest)) {
      throw new StorageError(
        'Corrupt',
        `[sluice/store-file] ${this.path(segment)} starts at seq ${header.baseSeq} after ${describeIdentity(header.previous)}, but the log before it ends at ` +
          `${describeIdentity(head)}: it is stale (left from an earlier history of this partition): move it out of ${this.directory}`,
      );
    }
    return { kind: 'enter', info: { segment, format: 2, dataOffset: SEGMENT_HEADER_BYTES, header } };
  }

  /** Refuses a segment of another partition, or one renamed or copied to the wrong number. */
  checkHeader(segment: number, header: SegmentHeader): void {
    if (this.incarnation !== undefined && !sameDigest(header.incarnation, this.incarnation)) {
      throw new StorageError(
        'Corrupt',
        `[sluice/store-file] ${this.path(segment)} belongs to another partition ("${header.partition}", incarnation ${incarnationHex(header.incarnation)}), ` +
          `not to "${this.partitionName ?? ''}" (incarnation ${incarnationHex(this.incarnation)}): it was copied in or left from a deleted partition; move it out of ${this.directory}`,
      );
    }
    if (header.segment !== segment) {
      throw new StorageError(
        'Corrupt',
        `[sluice/store-file] ${this.path(segment)} says it is segment ${header.segment}: it was renamed or copied over; move it out of ${this.directory} or restore the partition from a copy`,
      );
    }
  }

  private async scanSegment(segment: number, start: number, limitSeq: number): Promise<{ report: DecodeReport; limited: boolean }> {
    const handle = await this.handle(segment);
    try {
      const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1, prevDigest: this.lastSeq === 0 ? ZERO_DIGEST : this.head.digest });
      let position = start;
      for (;;) {
        const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
        const { bytesRead } = await readAt(handle, chunk, position, this.path(segment));
        if (bytesRead === 0) break;
        for (const b of decoder.push(chunk.subarray(0, bytesRead))) {
          if (b.lastSeq > limitSeq) return { report: decoder.report(), limited: true };
          this.add(b, segment, start + b.byteOffset);
        }
        position += bytesRead;
        if (decoder.isStopped) break;
      }
      return { report: decoder.end(), limited: false };
    } finally {
      this.releaseHandle(segment);
    }
  }

  /** Verified batches overlapping [fromSeq, toSeq] among those indexed (digests per {@link ReadBatchesOptions}). */
  async *read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncGenerator<SealedBatch> {
    const verifyDigest = options?.verifyDigests ?? true;
    let i = firstBatchEndingAtOrAfter(this.lastSeqs, fromSeq);
    while (i < this.lastSeqs.length && this.firstSeqs[i] <= toSeq) {
      // Read a run of adjacent batches of one segment with one read, up to the chunk size.
      const count = this.lastSeqs.length;
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
        ({ bytesRead } = await readAt(handle, buffer, start, this.path(segment)));
      } finally {
        this.releaseHandle(segment);
      }
      const decoder = new StreamDecoder({ firstSeq: this.firstSeqs[i], verifyDigest });
      const batches = decoder.push(buffer.subarray(0, bytesRead));
      if (batches.length !== j - i + 1) {
        const report = decoder.end();
        throw new StorageError(
          'Corrupt',
          `[sluice/store-file] ${this.path(segment)} changed under a reader at offset ${start + report.offset} ` +
            `(${report.reason}: ${report.detail}): committed data was damaged; restore the partition from a copy or a shipped archive`,
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
        h = await open(this.path(segment), 'r');
      } catch (error) {
        throw mapFsError(error, this.path(segment));
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
        entry = { handle: h, users: 0 };
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
      if (entry.users > 0) continue;
      this.handles.delete(segment);
      void entry.handle.close().catch(() => undefined);
    }
  }

  /** Closes every read handle. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((e) => e.handle.close().catch(() => undefined)));
  }
}

/** The identity in a batch's marker: `tail` holds the batch's last (up to 88) bytes. */
export function markerIdentity(tail: Uint8Array, lastSeq: number, where: string): BatchIdentity {
  const n = tail.length;
  if (n >= MARKER_BYTES && readU32(tail, n - MARKER_BYTES) === MARKER_BYTES && tail[n - MARKER_BYTES + 4] >= 2) {
    const m = n - MARKER_BYTES;
    return { lastSeq, epoch: readU32(tail, m + 24), digest: Uint8Array.from(tail.subarray(m + 64, m + 84)) };
  }
  if (n >= MARKER_V1_BYTES && readU32(tail, n - MARKER_V1_BYTES) === MARKER_V1_BYTES) {
    const m = n - MARKER_V1_BYTES;
    return { lastSeq, epoch: readU32(tail, m + 24), digest: Uint8Array.from(tail.subarray(m + 44, m + 64)) };
  }
  throw new StorageError('Corrupt', `[sluice/store-file] ${where}: the marker of the batch ending at seq ${lastSeq} changed on disk: restore the partition from a copy`);
}

export function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
