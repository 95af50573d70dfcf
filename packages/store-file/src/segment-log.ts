import { close as closeFd, openSync, read as readFd, readSync } from 'node:fs';
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import {
  KIND_EVENT,
  KIND_MARKER,
  MARKER_BYTES,
  MARKER_V1_BYTES,
  StreamDecoder,
  ZERO_DIGEST,
  decodeEventFrameAt,
  readU32,
  readU53,
  scanSealedBatches,
  type DecodeReport,
  type EventFrame,
  type SealedBatch,
  type StopReason,
} from '@sluice/framing';
import { EMPTY_IDENTITY, StorageError, describeIdentity, identityOf, sameIdentity, type BatchIdentity, type ReadBatchesOptions } from '@sluice/store';
import { mapFsError } from './fs-errors.js';
import { NumberColumn } from './number-column.js';
import { SEGMENT_HEADER_BYTES, decodeHeaderPage, incarnationHex, type HeaderPage, type SegmentHeader } from './segment-header.js';
import { SIDECARS_SUPPORTED, decodeSidecar, readSidecar, type SegmentSidecar } from './segment-sidecar.js';

/** Segment files are named by their number: `00000001.seg`. */
export const SEGMENT_SUFFIX = '.seg';
const SCAN_CHUNK_BYTES = 256 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;
/** Read handles kept open at most (beyond those in use). */
/** Default of the `readHandlesMax` option: segment files a partition keeps open for reads. */
export const READ_HANDLES_MAX_DEFAULT = 256;
/**
 * The frame position index holds an entry at every batch start and at the first frame that
 * starts at least this many bytes after the previous entry: a frame read reads at most about
 * this much beyond the frames it wants (Kafka's `index.interval.bytes`).
 */
export const FRAME_INDEX_INTERVAL_BYTES = 4096;
/** A readFrames run is split when its read would exceed this (unless it is a single frame). */
const FRAME_RUN_BYTES_MAX = 1024 * 1024;
/** Files read ahead while loading sidecars at open (header pages, sidecars). */
const PREFETCH = 8;
const NOTHING_FETCHED: Promise<{ bytes: Uint8Array | undefined; size: number }> = Promise.resolve({ bytes: undefined, size: 0 });
/** Reads of a readFrames call running at once (each at most FRAME_RUN_BYTES_MAX, or one frame). */
const FRAME_READS_IN_FLIGHT = 16;
/**
 * readFrames runs up to this size are read with a synchronous pread: a frame read is a few KiB
 * from the page cache, which costs microseconds in place and ~50 µs as a thread-pool round trip
 * (measured: 100 scattered 4 KiB reads, 1–3 ms synchronous vs 4–10 ms through the pool). A
 * cache miss blocks the event loop for one device read, as an LMDB read does.
 */
const SYNC_FRAME_READ_BYTES_MAX = 64 * 1024;
const EMPTY_READ: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));

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
 * parallel float64 columns (no object per batch: 40 bytes a batch), a sparse frame position
 * index (seq → offset of the frame, at every batch start and about every
 * {@link FRAME_INDEX_INTERVAL_BYTES} of log: 16 bytes an entry), plus the segments' headers
 * and the chain head. Shared by the writer and read-only readers.
 */
export class SegmentIndex {
  private readonly firstSeqs = new NumberColumn();
  private readonly lastSeqs = new NumberColumn();
  private readonly segments = new NumberColumn();
  private readonly offsets = new NumberColumn();
  private readonly lengths = new NumberColumn();
  /** Frame positions: seq of an event frame and its offset in the segment of the batch holding it. */
  private readonly frameSeqs = new NumberColumn(256);
  private readonly frameOffsets = new NumberColumn(256);
  /** Read file descriptors by segment (opened synchronously: see {@link handle}). */
  private readonly handles = new Map<number, { fd: number; users: number }>();
  /**
   * The buffer readFrames reads small runs into, while no call holds it (a call that finds it
   * taken makes its own). Reused: a read into fresh memory costs its page faults, 10–25 µs more
   * per read here than into a buffer already touched. The frames a call hands out are copies,
   * never views of it.
   */
  private frameScratch: Buffer | undefined;
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

  constructor(
    readonly directory: string,
    private readonly handlesMax: number = READ_HANDLES_MAX_DEFAULT,
  ) {}

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
    this.addFramePositions(batch.bytes, 0, batch.byteLength, offset);
    this.head = identityOf(batch);
    this.endSegment = segment;
    this.endOffset = offset + batch.byteLength;
  }

  /**
   * The writer adds one batch it wrote (already checked by checkWrite): `bytes[from, from +
   * length)` is the batch, written at `offset` of `segment`.
   */
  addWritten(firstSeq: number, lastSeq: number, head: BatchIdentity, segment: number, offset: number, length: number, bytes: Uint8Array, from: number): void {
    this.firstSeqs.push(firstSeq);
    this.lastSeqs.push(lastSeq);
    this.segments.push(segment);
    this.offsets.push(offset);
    this.lengths.push(length);
    this.addFramePositions(bytes, from, length, offset);
    this.head = head;
    this.endSegment = segment;
    this.endOffset = offset + length;
  }

  /**
   * Adds frame positions for the one verified batch in `bytes[from, from + length)`, stored at
   * `offset`: walks the frames' length fields only (no decoding, no allocation).
   */
  private addFramePositions(bytes: Uint8Array, from: number, length: number, offset: number): void {
    const end = from + length;
    let last = -Infinity;
    for (let o = from; o + 16 <= end; ) {
      const n = readU32(bytes, o);
      if (n < 8) break;
      if (bytes[o + 5] === KIND_EVENT && (last === -Infinity || o - last >= FRAME_INDEX_INTERVAL_BYTES)) {
        this.frameSeqs.push(readU53(bytes, o + 8));
        this.frameOffsets.push(offset + (o - from));
        last = o;
      }
      o += n;
    }
  }

  /**
   * Loads a sealed segment from its verified sidecar instead of scanning it: its batches and
   * frame positions join the index and the head moves to its last batch.
   */
  loadSidecar(info: SegmentInfo, sidecar: SegmentSidecar): void {
    this.infos.set(info.segment, info);
    this.entered = true;
    this.firstSeqs.append(sidecar.firstSeqs);
    this.lastSeqs.append(sidecar.lastSeqs);
    this.offsets.append(sidecar.offsets);
    this.lengths.append(sidecar.lengths);
    for (let i = 0; i < sidecar.firstSeqs.length; i++) this.segments.push(info.segment);
    this.frameSeqs.append(sidecar.frameSeqs);
    this.frameOffsets.append(sidecar.frameOffsets);
    this.head = sidecar.last;
    this.endSegment = info.segment;
    this.endOffset = sidecar.dataEnd;
  }

  /**
   * What a sidecar of `segment` (sealed, its last batch `last`) holds: copies of its part of
   * the batch table and the frame positions. Undefined when the segment holds no batch.
   */
  sidecarOf(segment: number, last: BatchIdentity): SegmentSidecar | undefined {
    const info = this.infos.get(segment);
    if (info?.header === undefined || this.incarnation === undefined) return undefined;
    const a = this.lastSeqs.firstAtOrAbove(info.header.baseSeq);
    const b = this.lastSeqs.lastAtOrBelow(last.lastSeq) + 1;
    if (a >= b || this.segments.at(a) !== segment || this.segments.at(b - 1) !== segment || this.lastSeqs.at(b - 1) !== last.lastSeq) return undefined;
    const fa = this.frameSeqs.firstAtOrAbove(info.header.baseSeq);
    const fb = this.frameSeqs.lastAtOrBelow(last.lastSeq) + 1;
    return {
      incarnation: this.incarnation,
      segment,
      baseSeq: info.header.baseSeq,
      dataEnd: this.offsets.at(b - 1) + this.lengths.at(b - 1),
      last,
      frameIntervalBytes: FRAME_INDEX_INTERVAL_BYTES,
      firstSeqs: this.firstSeqs.slice(a, b),
      lastSeqs: this.lastSeqs.slice(a, b),
      offsets: this.offsets.slice(a, b),
      lengths: this.lengths.slice(a, b),
      frameSeqs: this.frameSeqs.slice(fa, fb),
      frameOffsets: this.frameOffsets.slice(fa, fb),
    };
  }

  /**
   * On a fresh index: loads the sealed segments from 1 on whose sidecars can be trusted,
   * without reading their data, and stops at the first that cannot (the scan goes on from
   * there). A sealed segment is trusted when its header continues the log loaded so far, its
   * sidecar verifies and is bound to it (incarnation, number, base seq), its successor's header
   * names the sidecar's last batch as its previous one, that batch lies at or below the synced
   * watermark the headers record (and below any cut record, and `limitSeq`), and the file
   * still holds the data end the sidecar names. The last segment never has a sidecar: it is
   * always scanned, so damage in it is refused at open as without sidecars. Returns the
   * segments loaded.
   */
  async loadSealed(limitSeq = Number.MAX_SAFE_INTEGER, pagesRead?: Map<number, HeaderPage>): Promise<number[]> {
    const loaded: number[] = [];
    if (!SIDECARS_SUPPORTED || this.entered || this.batchCount > 0) return loaded;
    const listed = await listSegments(this.directory);
    if (listed.length < 2 || listed[0] !== 1) return loaded;
    // Header pages are small: read them all, several at a time (the caller may reuse them).
    const pages: HeaderPage[] = new Array<HeaderPage>(listed.length);
    for (let i = 0; i < listed.length; i += PREFETCH) {
      await Promise.all(
        listed.slice(i, i + PREFETCH).map(async (segment, k) => {
          pages[i + k] = await readHeaderPage(this.directory, segment).then(
            (page) => {
              pagesRead?.set(segment, page);
              return page;
            },
            (): HeaderPage => ({ kind: 'damaged', detail: 'unreadable' }),
          );
        }),
      );
    }
    // Sidecars and segment sizes are read ahead of their turn, at most PREFETCH at a time.
    const ahead: Array<Promise<{ bytes: Uint8Array | undefined; size: number }>> = [];
    const fetch = (i: number): Promise<{ bytes: Uint8Array | undefined; size: number }> => {
      const segment = listed[i];
      return Promise.all([readSidecar(this.directory, segment), stat(this.path(segment)).then((st) => st.size, () => 0)]).then(([bytes, size]) => ({ bytes, size }));
    };
    let limit = limitSeq;
    let synced = 0;
    for (const page of pages) {
      if (page.kind !== 'v2' || page.slot === undefined) continue;
      synced = Math.max(synced, page.slot.synced.lastSeq);
      if (page.slot.cut !== undefined) limit = Math.min(limit, page.slot.cut.after.lastSeq);
    }
    limit = Math.min(limit, synced);
    for (let i = 0; i + 1 < listed.length; i++) {
      const segment = listed[i];
      const page = pages[i];
      const next = pages[i + 1];
      if (segment !== i + 1 || listed[i + 1] !== segment + 1 || page.kind !== 'v2' || next.kind !== 'v2') break;
      const header = page.header;
      const incarnation = this.incarnation ?? header.incarnation;
      if (!sameDigest(header.incarnation, incarnation) || !sameDigest(next.header.incarnation, incarnation)) break;
      if (header.segment !== segment || next.header.segment !== segment + 1) break;
      const head = this.head;
      if (header.baseSeq !== head.lastSeq + 1 || !sameDigest(header.previous.digest, head.lastSeq === 0 ? ZERO_DIGEST : head.digest)) break;
      while (ahead.length < listed.length && ahead.length <= i + PREFETCH) ahead.push(fetch(ahead.length));
      const { bytes, size } = await ahead[i];
      ahead[i] = NOTHING_FETCHED;
      if (bytes === undefined) break;
      const sidecar = decodeSidecar(bytes, { incarnation, segment, baseSeq: header.baseSeq });
      if (typeof sidecar === 'string') break;
      if (!sameIdentity(sidecar.last, next.header.previous) || sidecar.last.lastSeq > limit) break;
      if (size < sidecar.dataEnd) break;
      this.incarnation ??= header.incarnation;
      this.partitionName ??= header.partition;
      this.loadSidecar({ segment, format: 2, dataOffset: SEGMENT_HEADER_BYTES, header }, sidecar);
      loaded.push(segment);
    }
    return loaded;
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
    const i = this.lastSeqs.firstAtOrAbove(seq);
    if (i >= this.lastSeqs.length || this.firstSeqs.at(i) > seq) return undefined;
    return { index: i, segment: this.segments.at(i), offset: this.offsets.at(i), length: this.lengths.at(i), firstSeq: this.firstSeqs.at(i), lastSeq: this.lastSeqs.at(i) };
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
    const fd = this.handle(at.segment);
    try {
      const tail = Buffer.alloc(Math.min(MARKER_BYTES, at.length));
      await readAtFd(fd, tail, at.offset + at.length - tail.length, this.path(at.segment));
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
    const keep = seq === 0 ? 0 : this.lastSeqs.firstAtOrAbove(seq) + 1;
    for (const a of [this.firstSeqs, this.lastSeqs, this.segments, this.offsets, this.lengths]) a.truncate(keep);
    const frames = this.frameSeqs.lastAtOrBelow(seq) + 1;
    this.frameSeqs.truncate(frames);
    this.frameOffsets.truncate(frames);
    this.head = head;
    if (keep > 0) {
      this.endSegment = this.segments.at(keep - 1);
      this.endOffset = this.offsets.at(keep - 1) + this.lengths.at(keep - 1);
    } else {
      this.endSegment = this.firstSegment;
      this.endOffset = this.infos.get(this.endSegment)?.dataOffset ?? 0;
    }
    for (const segment of [...this.infos.keys()]) if (segment > this.endSegment) this.forget(segment);
  }

  /** Bytes of the indexed batches after `seq` (a batch boundary). */
  bytesAfter(seq: number): number {
    let n = 0;
    for (let i = this.lastSeqs.length - 1; i >= 0 && this.lastSeqs.at(i) > seq; i--) n += this.lengths.at(i);
    return n;
  }

  /** Drops a segment from the index's headers and closes its read handle. */
  forget(segment: number): void {
    this.infos.delete(segment);
    const entry = this.handles.get(segment);
    if (entry !== undefined) {
      this.handles.delete(segment);
      closeFd(entry.fd, () => undefined);
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
    const fd = this.handle(segment);
    try {
      const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1, prevDigest: this.lastSeq === 0 ? ZERO_DIGEST : this.head.digest });
      let position = start;
      for (;;) {
        const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
        const { bytesRead } = await readAtFd(fd, chunk, position, this.path(segment));
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

  /**
   * Verified batches overlapping [fromSeq, toSeq] among those indexed (digests per {@link ReadBatchesOptions}).
   * Adjacent batches of a segment are read as one chunk (up to READ_CHUNK_BYTES), and the next
   * chunk's read runs while this one is decoded and handed out: a catch-up read waited for
   * every chunk's read before (11 % of a 100 B catch-up's time was idle).
   */
  async *read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncGenerator<SealedBatch> {
    const verifyDigest = options?.verifyDigests ?? true;
    const frames = options?.frames !== false;
    let chunk = this.chunkFrom(this.lastSeqs.firstAtOrAbove(fromSeq), toSeq);
    let read = chunk === undefined ? undefined : this.readRange(chunk.segment, chunk.start, chunk.end);
    while (chunk !== undefined) {
      const bytes = await (read as Promise<Buffer>);
      const next = this.chunkFrom(chunk.last + 1, toSeq);
      read = next === undefined ? undefined : this.readRange(next.segment, next.start, next.end);
      // Awaited in the next round; a reader that stops before it must not leave it unhandled.
      read?.catch(() => undefined);
      const { batches, reason, detail, offset } = sealedBatchesIn(bytes, this.firstSeqs.at(chunk.first), verifyDigest, frames);
      if (batches.length !== chunk.last - chunk.first + 1) {
        throw new StorageError(
          'Corrupt',
          `[sluice/store-file] ${this.path(chunk.segment)} changed under a reader at offset ${chunk.start + offset} ` +
            `(${reason}: ${detail}): committed data was damaged; restore the partition from a copy or a shipped archive`,
        );
      }
      for (const batch of batches) yield batch;
      chunk = next;
    }
  }

  /**
   * The run of adjacent batches of one segment from index entry `i` that overlap up to `toSeq`,
   * within READ_CHUNK_BYTES (a longer batch alone); undefined when entry `i` is past them.
   */
  private chunkFrom(i: number, toSeq: number): { first: number; last: number; segment: number; start: number; end: number } | undefined {
    const count = this.lastSeqs.length;
    if (i >= count || this.firstSeqs.at(i) > toSeq) return undefined;
    const segment = this.segments.at(i);
    const start = this.offsets.at(i);
    let j = i;
    let end = start + this.lengths.at(i);
    while (
      j + 1 < count &&
      this.firstSeqs.at(j + 1) <= toSeq &&
      this.segments.at(j + 1) === segment &&
      this.offsets.at(j + 1) === end &&
      end + this.lengths.at(j + 1) - start <= READ_CHUNK_BYTES
    ) {
      j++;
      end += this.lengths.at(j);
    }
    return { first: i, last: j, segment, start, end };
  }

  /**
   * The event frames with exactly `seqs` (ascending, each indexed: checked by the caller with
   * {@link checkFrameSeqs}), in that order. Seqs whose reads meet or overlap in one segment
   * share one read, which starts at the nearest frame position at or before the first of them
   * and ends at the next frame position after the last (or its batch's end); the frames in
   * between are skipped by their length fields. Each returned frame's CRC-32C is verified.
   */
  async *readFrames(seqs: readonly number[]): AsyncGenerator<EventFrame> {
    // Plan the reads first, then keep up to FRAME_READS_IN_FLIGHT of them running ahead of the
    // one being walked: the frames of a stream are scattered, one small read each.
    const runs: Array<{ from: number; to: number; segment: number; start: number; end: number }> = [];
    for (let i = 0; i < seqs.length; ) {
      const segment = this.segments.at(this.lastSeqs.firstAtOrAbove(seqs[i]));
      const start = this.frameOffsets.at(this.frameSeqs.lastAtOrBelow(seqs[i]));
      let end = this.frameWindowEnd(seqs[i]);
      let j = i + 1;
      while (j < seqs.length) {
        const s = seqs[j];
        if (this.segments.at(this.lastSeqs.firstAtOrAbove(s)) !== segment || this.frameOffsets.at(this.frameSeqs.lastAtOrBelow(s)) > end) break;
        const e = Math.max(end, this.frameWindowEnd(s));
        if (e - start > FRAME_RUN_BYTES_MAX) break;
        end = e;
        j++;
      }
      runs.push({ from: i, to: j, segment, start, end });
      i = j;
    }
    this.openHandles(runs.map((run) => run.segment));
    const reads: Array<Promise<Buffer>> = [];
    const startRead = (r: number): void => {
      const run = runs[r];
      // Small runs are read in place, synchronously, when their turn comes.
      const read = run.end - run.start <= SYNC_FRAME_READ_BYTES_MAX ? EMPTY_READ : this.readRange(run.segment, run.start, run.end);
      read.catch(() => undefined); // awaited below, in order
      reads.push(read);
    };
    // One generator from here to the caller's loop: each level of yield* costs every frame a
    // few microseconds more on a first, cold call.
    const scratch = this.frameScratch ?? Buffer.allocUnsafe(SYNC_FRAME_READ_BYTES_MAX);
    this.frameScratch = undefined;
    try {
      for (let r = 0; r < runs.length; r++) {
        while (reads.length < runs.length && reads.length <= r + FRAME_READS_IN_FLIGHT) startRead(reads.length);
        const { from, to, segment, start, end } = runs[r];
        const path = this.path(segment);
        const inScratch = end - start <= SYNC_FRAME_READ_BYTES_MAX;
        const bytes = inScratch ? this.readRangeSync(segment, start, end, scratch) : await reads[r];
        let pos = 0;
        for (let i = from; i < to; i++) {
          const target = seqs[i];
          const entry = this.frameOffsets.at(this.frameSeqs.lastAtOrBelow(target)) - start;
          if (entry > pos) pos = entry;
          for (;;) {
            if (pos + 16 > bytes.length) throw frameCorrupt(path, target, start + pos, `the segment ends at offset ${start + bytes.length} before it`);
            const n = readU32(bytes, pos);
            const kind = bytes[pos + 5];
            if (n < 16 || pos + n > bytes.length || (kind !== KIND_EVENT && kind !== KIND_MARKER)) throw frameCorrupt(path, target, start + pos, `no frame starts there (length field ${n}, kind ${kind})`);
            const seq = kind === KIND_EVENT ? readU53(bytes, pos + 8) : -1;
            if (seq < target) {
              pos += n;
              continue;
            }
            if (seq > target) throw frameCorrupt(path, target, start + pos, `the frame there holds seq ${seq}`);
            // A frame from the scratch buffer is decoded from its own copy: the next read reuses it.
            const frame = inScratch ? decodeEventFrameAt(copyOf(bytes, pos, n), 0) : decodeEventFrameAt(bytes, pos);
            if (typeof frame === 'string') throw frameCorrupt(path, target, start + pos, frame);
            pos += n;
            yield frame;
            break;
          }
        }
        reads[r] = EMPTY_READ; // let the buffer go
      }
    } finally {
      this.frameScratch = scratch;
    }
  }

  /**
   * Opens the read handles of `segments` not open yet (at most `handlesMax`) before a read
   * walks them: a stream spread over the log touches many segments (a 100-event stream over 55
   * segments). Opened one after the other on this thread: an open is a short metadata call,
   * and 55 of them took 0.3–0.6 ms here, against 1.9–4.5 ms through the thread pool 16 at a
   * time (most of such a stream's first read).
   */
  private openHandles(segments: readonly number[]): void {
    const missing = [...new Set(segments)].filter((segment) => !this.handles.has(segment)).slice(0, this.handlesMax);
    for (const segment of missing) {
      this.handle(segment);
      this.releaseHandle(segment);
    }
  }

  /** As {@link readRange}, the read itself synchronous, into `into` (small reads, see SYNC_FRAME_READ_BYTES_MAX). */
  private readRangeSync(segment: number, start: number, end: number, into: Buffer): Buffer {
    const fd = this.handle(segment);
    try {
      const buffer = into.subarray(0, end - start);
      let total = 0;
      while (total < buffer.length) {
        const n = readSync(fd, buffer, total, buffer.length - total, start + total);
        if (n === 0) break;
        total += n;
      }
      return buffer.subarray(0, total);
    } catch (error) {
      throw mapFsError(error, this.path(segment));
    } finally {
      this.releaseHandle(segment);
    }
  }

  /** Bytes [start, end) of `segment` (fewer when the file is shorter). */
  private async readRange(segment: number, start: number, end: number): Promise<Buffer> {
    const fd = this.handle(segment);
    try {
      const buffer = Buffer.allocUnsafe(end - start);
      const { bytesRead } = await readAtFd(fd, buffer, start, this.path(segment));
      return buffer.subarray(0, bytesRead);
    } finally {
      this.releaseHandle(segment);
    }
  }

  /** Where a read of the frame of `seq` can stop: the next frame position after it in its batch, or the batch's end. */
  private frameWindowEnd(seq: number): number {
    const k = this.frameSeqs.lastAtOrBelow(seq) + 1;
    const b = this.lastSeqs.firstAtOrAbove(seq);
    const batchEnd = this.offsets.at(b) + this.lengths.at(b);
    return k < this.frameSeqs.length && this.frameSeqs.at(k) <= this.lastSeqs.at(b) ? this.frameOffsets.at(k) : batchEnd;
  }

  /**
   * A read file descriptor of `segment`, held until {@link releaseHandle}; the least recently
   * used idle ones are closed beyond `handlesMax`. Opened synchronously: an open is a short
   * metadata call, and going through the thread pool cost a round trip per segment.
   */
  private handle(segment: number): number {
    if (this.closed) throw new StorageError('Closed', `[sluice/store-file] ${this.directory} is closed`);
    let entry = this.handles.get(segment);
    if (entry === undefined) {
      try {
        entry = { fd: openSync(this.path(segment), 'r'), users: 0 };
      } catch (error) {
        throw mapFsError(error, this.path(segment));
      }
    }
    // Most recently used last.
    this.handles.delete(segment);
    this.handles.set(segment, entry);
    entry.users++;
    this.evictIdle();
    return entry.fd;
  }

  private releaseHandle(segment: number): void {
    const entry = this.handles.get(segment);
    if (entry !== undefined && entry.users > 0) entry.users--;
  }

  private evictIdle(): void {
    if (this.handles.size <= this.handlesMax) return;
    for (const [segment, entry] of this.handles) {
      if (this.handles.size <= this.handlesMax) break;
      if (entry.users > 0) continue;
      this.handles.delete(segment);
      closeFd(entry.fd, () => undefined);
    }
  }

  /** Closes every read handle. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((e) => new Promise<void>((resolve) => closeFd(e.fd, () => resolve()))));
  }
}

/** `bytes[at, at + n)` in a buffer of its own (small ones from Node's shared pool). */
function copyOf(bytes: Buffer, at: number, n: number): Buffer {
  const copy = Buffer.allocUnsafe(n);
  bytes.copy(copy, 0, at, at + n);
  return copy;
}

function frameCorrupt(path: string, seq: number, offset: number, detail: string): StorageError {
  return new StorageError(
    'Corrupt',
    `[sluice/store-file] ${path}: the frame of seq ${seq} (at offset ${offset}) does not verify: ${detail}; ` +
      `committed data was damaged: restore the partition from a copy or a shipped archive (sluice scrub lists the damaged batches)`,
  );
}

/**
 * Checks the seq list of a readFrames call against the contract: an array of integers,
 * ascending without duplicates, each from 1 to `head` (the durable head). Throws `Invalid`.
 */
export function checkFrameSeqs(seqs: readonly number[], head: number, where: string): void {
  if (!Array.isArray(seqs)) throw new StorageError('Invalid', `${where}: readFrames(seqs) needs an array of seqs`);
  let previous = 0;
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i];
    const problem = !Number.isSafeInteger(seq)
      ? 'not an integer'
      : seq < 1
        ? 'below 1'
        : seq <= previous
          ? `not above the one before it (${previous}): pass seqs ascending without duplicates`
          : seq > head
            ? `above the durable head (${head})`
            : undefined;
    if (problem !== undefined) {
      throw new StorageError('Invalid', `${where}: readFrames(seqs): seqs[${i}] = ${String(seq)} is ${problem}; every seq must be from 1 to the durable head`);
    }
    previous = seq;
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

/**
 * Fills `buffer` from `position` with `read(offset, length, position)` (bytes read, 0 at the end
 * of the file) until it is full or the file ends; errors are mapped with `where`.
 */
async function readFully(read: (offset: number, length: number, position: number) => Promise<number>, buffer: Buffer, position: number, where: string): Promise<{ bytesRead: number }> {
  let total = 0;
  try {
    while (total < buffer.length) {
      const bytesRead = await read(total, buffer.length - total, position + total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
  } catch (error) {
    throw mapFsError(error, where);
  }
  return { bytesRead: total };
}

/** {@link readAt} on a file descriptor (through the thread pool). */
function readAtFd(fd: number, buffer: Buffer, position: number, where: string): Promise<{ bytesRead: number }> {
  return readFully(
    (offset, length, at) => new Promise<number>((resolve, reject) => readFd(fd, buffer, offset, length, at, (error, n) => (error === null ? resolve(n) : reject(error)))),
    buffer,
    position,
    where,
  );
}

export function readAt(handle: FileHandle, buffer: Buffer, position: number, where: string): Promise<{ bytesRead: number }> {
  return readFully(async (offset, length, at) => (await handle.read(buffer, offset, length, at)).bytesRead, buffer, position, where);
}

const NO_FRAMES: readonly EventFrame[] = Object.freeze([]);

/**
 * The sealed batches in `bytes` (adjacent batches read in one go), decoded into frames, or, with
 * `frames` false, checked alike but handed out with no frames (`ReadBatchesOptions.frames`);
 * with where and why decoding stopped when the batches did not all verify.
 */
function sealedBatchesIn(bytes: Uint8Array, firstSeq: number, verifyDigest: boolean, frames: boolean): { batches: SealedBatch[]; reason: StopReason; detail: string; offset: number } {
  if (frames) {
    const decoder = new StreamDecoder({ firstSeq, verifyDigest });
    const batches = decoder.push(bytes);
    const { reason, detail, offset } = decoder.end();
    return { batches, reason, detail, offset };
  }
  const { spans, reason, detail, offset } = scanSealedBatches(bytes, { firstSeq, verifyDigest });
  const batches = spans.map((s): SealedBatch => ({ ...s, frames: NO_FRAMES, bytes: bytes.subarray(s.byteOffset, s.byteOffset + s.byteLength) }));
  return { batches, reason, detail, offset };
}
