import { createHash, type Hash } from 'node:crypto';
import { crc32c, nativeFrameCrcs, type NativeFrameCrcs } from './crc32c.js';
import { shiftCrc } from './crc32c-run.js';
import { FrameTooLargeError, InvalidFrameFieldError } from './errors.js';
import {
  CRC_BYTES,
  DEFAULT_FRAME_BYTES_MAX,
  DIGEST_SHA1,
  EVENT_HEADER_BYTES,
  EVENT_HEADERS_BYTES_AT,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION_BASE,
  FORMAT_VERSION_LEVEL,
  KIND_EVENT,
  KIND_MARKER,
  MARKER_BYTES,
  MARKER_DIGEST_OFFSET,
  MARKER_PREV_DIGEST_OFFSET,
  NAME_BYTES_MAX,
  SHA1_BYTES,
  ZERO_DIGEST,
  readU16,
  readU32,
  writeU16,
  writeU32,
  writeU53,
} from './layout.js';
import type { CommitHeaders } from './types.js';

/** Options of a {@link FrameWriter}. */
export interface FrameWriterOptions {
  /**
   * Initial buffer size; the buffer doubles when a batch needs more.
   * @default 1048576
   */
  readonly initialBytes?: number;
  /**
   * Largest frame the writer will encode.
   * @default 4194304
   */
  readonly frameBytesMax?: number;
  /**
   * Format version of every frame and marker written: 3 records `CommitHeaders.level`
   * (readable by version 3 decoders only), 2 cannot (a level is then refused).
   * @default 2
   */
  readonly formatVersion?: 2 | 3;
  /**
   * @internal `false` checksums every frame as it is written, in JavaScript, even when the
   * native frame CRC is loaded: for the tests that compare both.
   */
  readonly nativeFrameCrcs?: boolean;
}

const EMPTY = new Uint8Array(0);

/**
 * Frames whose CRC is left for one native call: {@link FrameWriter.digestWritten},
 * {@link FrameWriter.seal} and {@link FrameWriter.bytes} checksum them first, and so does the
 * writer itself when this many are pending (a fixed 16 KiB of offsets per writer).
 */
const CRC_BATCH_FRAMES = 4096;
/** Offsets are kept in a Uint32Array: a frame starting past this is checksummed at once. */
const CRC_OFFSET_MAX = 0xffff_ffff;
const NO_OFFSETS = new Uint32Array(0);

/**
 * Encodes event frames and commit markers straight into one reused buffer.
 *
 * The writer is the hot path of every append: it allocates nothing per event except when
 * its buffer must grow. Write the frames of one or more commits with {@link appendEvent},
 * close them with {@link seal}, hand {@link bytes} to storage, then {@link reset}.
 *
 * @example
 * const writer = new FrameWriter();
 * writer.appendEvent(1, 0, Date.now(), FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST,
 *   'account-1', 1, 'Opened', { commandIds: ['c1'] }, undefined, payload);
 * writer.seal(0, Date.now()); // chains to the previous batch this writer sealed
 * await file.write(writer.bytes());
 */
export class FrameWriter {
  readonly frameBytesMax: number;
  /** Format version written on every frame and marker. */
  readonly formatVersion: number;
  private buffer: Buffer;
  /**
   * A view of {@link buffer} for the frame header's fields: one little-endian 32-bit store
   * each instead of four byte stores (measured on 1000 × 100 B events: 103-148 -> 85-89 ns
   * per event for appendEvent with its CRC).
   */
  private view: DataView;
  private position = 0;
  private sealedPosition = 0;
  private unsealedFirstSeq = -1;
  private unsealedLastSeq = -1;
  private unsealedFrames = 0;
  // Last seq sealed since the reset: frames of one buffer must stay gapless across seals, or
  // the buffer would decode only up to the gap ('bad-sequence').
  private sealedLastSeq = -1;
  // Offset of a marker written by beginSeal() whose digest is still to come, or -1.
  private pendingMarker = -1;
  // Digest of the last batch this writer sealed (kept across resets): the default previous
  // digest of the next seal, so one writer's consecutive batches chain by themselves.
  private chain: Uint8Array = ZERO_DIGEST;
  // SHA-1 of the unsealed bytes [sealedPosition, digestedPosition), fed by digestWritten():
  // the batch digest is then computed while its frames are still in the CPU cache, and seal()
  // only hashes what came after. Undefined until the first digestWritten() of a batch.
  private partialDigest: Hash | undefined;
  private digestedPosition = 0;
  // Event frames written by appendEvent() whose CRC trailer is still to be written, by one
  // call to the native frame CRC (flushCrcs()) before any of their bytes are read.
  private readonly frameCrcs: NativeFrameCrcs | undefined;
  // Grown from 64 entries as frames are written (a short-lived writer of a few frames allocates little).
  private crcOffsets: Uint32Array = NO_OFFSETS;
  private crcPending = 0;

  constructor(options: FrameWriterOptions = {}) {
    this.frameBytesMax = options.frameBytesMax ?? DEFAULT_FRAME_BYTES_MAX;
    const version = options.formatVersion ?? FORMAT_VERSION_BASE;
    if (version !== FORMAT_VERSION_BASE && version !== FORMAT_VERSION_LEVEL) {
      throw new InvalidFrameFieldError('formatVersion', `${String(version)} is not written by this writer: use ${FORMAT_VERSION_BASE} or ${FORMAT_VERSION_LEVEL}`);
    }
    this.formatVersion = version;
    this.buffer = Buffer.allocUnsafe(Math.max(options.initialBytes ?? 1024 * 1024, 256));
    this.view = viewOf(this.buffer);
    this.frameCrcs = options.nativeFrameCrcs === false ? undefined : nativeFrameCrcs;
  }

  /** Bytes written since the last reset. */
  get byteLength(): number {
    return this.position;
  }

  /** Event frames written since the last seal. */
  get unsealedFrameCount(): number {
    return this.unsealedFrames;
  }

  /** A view of everything written since the last reset; valid until the next write or reset. */
  bytes(): Uint8Array {
    this.flushCrcs();
    return this.buffer.subarray(0, this.position);
  }

  /** Forgets everything written; the buffer is reused. */
  reset(): void {
    this.position = 0;
    this.sealedPosition = 0;
    this.unsealedFrames = 0;
    this.unsealedFirstSeq = -1;
    this.unsealedLastSeq = -1;
    this.sealedLastSeq = -1;
    this.pendingMarker = -1;
    this.partialDigest = undefined;
    this.digestedPosition = 0;
    this.crcPending = 0;
  }

  /** Bytes written since the last seal and not yet fed to the batch digest by {@link digestWritten}. */
  get undigestedBytes(): number {
    return this.partialDigest === undefined ? this.position - this.sealedPosition : this.position - this.digestedPosition;
  }

  /**
   * Feeds the frames written since the last seal (or the last call) to the batch's SHA-1 now,
   * instead of all at once in {@link seal}: a caller that encodes a large batch in slices calls
   * this after each one, so the digest is computed while the bytes are still in the CPU cache
   * and seal() only hashes the rest. The bytes fed are final: a later {@link rollback} to a
   * mark before them throws (take marks after this call).
   */
  digestWritten(): void {
    if (this.pendingMarker >= 0) throw new RangeError('[sluice/framing] digestWritten() between beginSeal() and completeSeal()');
    const from = this.partialDigest === undefined ? this.sealedPosition : this.digestedPosition;
    if (this.position === from) return;
    this.flushCrcs();
    (this.partialDigest ??= createHash('sha1')).update(this.buffer.subarray(from, this.position));
    this.digestedPosition = this.position;
  }

  /** A position to {@link rollback} to, e.g. to drop a commit that failed half-way. */
  mark(): number {
    return this.position;
  }

  /**
   * Drops frames written after `mark` (taken with {@link mark} since the last seal).
   * `frames` and `lastSeq` say what remains unsealed; with `frames` 0 the next frame must
   * follow the last sealed seq.
   */
  rollback(mark: number, frames: number, lastSeq: number): void {
    if (mark < this.sealedPosition || mark > this.position) {
      throw new RangeError(`[sluice/framing] rollback mark ${mark} outside the unsealed range`);
    }
    if (this.partialDigest !== undefined && mark < this.digestedPosition) {
      throw new RangeError(`[sluice/framing] rollback mark ${mark} before bytes already digested (up to ${this.digestedPosition}): take marks after digestWritten()`);
    }
    this.position = mark;
    // Frames dropped need no CRC (their offsets are in increasing order).
    while (this.crcPending > 0 && this.crcOffsets[this.crcPending - 1] >= mark) this.crcPending--;
    this.unsealedFrames = frames;
    this.unsealedLastSeq = frames === 0 ? -1 : lastSeq;
    if (frames === 0) this.unsealedFirstSeq = -1;
  }

  /**
   * Encodes one event frame. `flags` combines FLAG_COMMIT_FIRST / FLAG_COMMIT_LAST.
   * Throws {@link FrameTooLargeError} or {@link InvalidFrameFieldError} and writes nothing
   * when the frame cannot be encoded, or when `seq` does not follow the previous frame
   * written since the last {@link reset}.
   */
  appendEvent(
    seq: number,
    epoch: number,
    timestamp: number,
    flags: number,
    streamId: string,
    streamVersion: number,
    eventType: string,
    headers: CommitHeaders | undefined,
    metadata: Uint8Array | undefined,
    payload: Uint8Array,
  ): void {
    if (this.pendingMarker >= 0) throw new RangeError('[sluice/framing] appendEvent() between beginSeal() and completeSeal()');
    this.checkNext(seq, epoch, timestamp, streamVersion);
    const meta = metadata ?? EMPTY;
    const fixedBytes = EVENT_HEADER_BYTES + meta.length + payload.length + CRC_BYTES;
    if (fixedBytes > this.frameBytesMax) throw new FrameTooLargeError(fixedBytes, this.frameBytesMax);
    // Upper bound first (UTF-8 needs at most 3 bytes per UTF-16 unit), exact size after writing.
    const headersMax = headers === undefined ? 0 : headersBytesMax(headers);
    const bound =
      EVENT_HEADER_BYTES + (streamId.length + eventType.length) * 3 + headersMax + meta.length + payload.length + CRC_BYTES;
    this.ensure(bound);
    const b = this.buffer;
    const start = this.position;
    let o = start + EVENT_HEADER_BYTES;
    const streamIdBytes = writeString(b, o, streamId);
    o += streamIdBytes;
    const eventTypeBytes = writeString(b, o, eventType);
    o += eventTypeBytes;
    if (streamIdBytes > NAME_BYTES_MAX) throw new InvalidFrameFieldError('streamId', `longer than ${NAME_BYTES_MAX} bytes`);
    if (eventTypeBytes > NAME_BYTES_MAX) throw new InvalidFrameFieldError('eventType', `longer than ${NAME_BYTES_MAX} bytes`);
    const headersBytes = headers === undefined ? 0 : writeHeaders(b, o, headers, this.formatVersion >= FORMAT_VERSION_LEVEL);
    o += headersBytes;
    // Most events have no metadata: a set() of nothing still costs a call (~15 ns per event).
    if (meta.length > 0) b.set(meta, o);
    o += meta.length;
    b.set(payload, o);
    o += payload.length;
    const frameBytes = o + CRC_BYTES - start;
    if (frameBytes > this.frameBytesMax) throw new FrameTooLargeError(frameBytes, this.frameBytesMax);

    const v = this.view;
    v.setUint32(start, frameBytes, true);
    this.stamp(start, flags, seq, timestamp, epoch, streamVersion);
    v.setUint32(start + 28, streamIdBytes | (eventTypeBytes << 16), true);
    v.setUint32(start + 40, headersBytes, true);
    v.setUint32(start + 44, meta.length, true);
    v.setUint32(start + 48, payload.length, true);
    if (this.frameCrcs === undefined || start > CRC_OFFSET_MAX) {
      writeU32(b, o, crc32c(b, start, o));
    } else {
      if (this.crcPending === this.crcOffsets.length) this.makeRoomForCrc();
      this.crcOffsets[this.crcPending++] = start;
    }
    this.position = o + CRC_BYTES;
    this.counted(seq);
  }

  /**
   * Copies one framed event (see `framed-events.ts`: an event frame whose seq, timestamp,
   * epoch, flags and stream version are left for the writer, and whose last 4 bytes are the
   * CRC-32C of its body) from `source[start, end)` and stamps it: the header fields are
   * written here and the frame's CRC is derived from the body's by CRC-32C combination, so the
   * checksum on disk covers the sender's bytes without hashing them again. The caller has
   * checked the framed event with `checkFramedEvents` (body CRC included). Throws like
   * {@link appendEvent} for a seq, epoch, timestamp or stream version it cannot store.
   *
   * A format version 3 writer records the commit's reliability `level` (pass it for the
   * commit's first frame, as {@link appendEvent} gets it in that frame's headers): framed
   * events carry version 2 headers, so the level is inserted as their last field (or as
   * headers holding only the level when the frame has none), and that one frame's CRC is
   * computed over its bytes here (the body was checked just before); every other frame keeps
   * the CRC by combination. The result is byte for byte what `appendEvent` writes.
   */
  appendFramed(
    seq: number,
    epoch: number,
    timestamp: number,
    flags: number,
    streamVersion: number,
    source: Uint8Array,
    start: number,
    end: number,
    level?: string,
  ): void {
    if (this.pendingMarker >= 0) throw new RangeError('[sluice/framing] appendFramed() between beginSeal() and completeSeal()');
    const withLevel = this.formatVersion >= FORMAT_VERSION_LEVEL;
    if (!withLevel && level !== undefined && level !== '') {
      throw new InvalidFrameFieldError('level', `format version ${FORMAT_VERSION_BASE} cannot record a level: create the writer with formatVersion ${FORMAT_VERSION_LEVEL}`);
    }
    this.checkNext(seq, epoch, timestamp, streamVersion);
    const frameBytes = end - start;
    // A failed assertion is a bug in the caller (it skipped checkFramedEvents), not bad input.
    if (frameBytes < EVENT_HEADER_BYTES + CRC_BYTES || frameBytes !== readU32(source, start)) {
      throw new RangeError(`[sluice/framing] appendFramed: [${start}, ${end}) is not one framed event`);
    }
    if (frameBytes > this.frameBytesMax) throw new FrameTooLargeError(frameBytes, this.frameBytesMax);
    if (withLevel && (readU32(source, start + EVENT_HEADERS_BYTES_AT) > 0 || (level !== undefined && level !== ''))) {
      this.appendFramedWithLevel(seq, epoch, timestamp, flags, streamVersion, source, start, end, level ?? '');
      return;
    }
    this.ensure(frameBytes);
    const b = this.buffer;
    const o = this.position;
    if (frameBytes <= 256) {
      // Small frames (most events): a loop beats allocating a view for set().
      for (let i = 0; i < frameBytes; i++) b[o + i] = source[start + i];
    } else {
      b.set(source.subarray(start, end), o);
    }
    this.stampFramed(o, frameBytes, flags, seq, timestamp, epoch, streamVersion);
    this.position = o + frameBytes;
    this.counted(seq);
  }

  /**
   * Stamps the framed event copied to `o` (without headers: laid out alike in versions 2 and 3)
   * and derives its CRC from the stamped header's and the client's body CRC (crc32cCombine,
   * with the shift by the body's length taken from a cached table instead of 32 multiply steps).
   */
  private stampFramed(o: number, frameBytes: number, flags: number, seq: number, timestamp: number, epoch: number, streamVersion: number): void {
    const b = this.buffer;
    this.stamp(o, flags, seq, timestamp, epoch, streamVersion);
    const crcAt = o + frameBytes - CRC_BYTES;
    writeU32(b, crcAt, (shiftCrc(crc32c(b, o, o + EVENT_HEADER_BYTES), frameBytes - EVENT_HEADER_BYTES - CRC_BYTES) ^ readU32(b, crcAt)) >>> 0);
  }

  /**
   * {@link appendFramed} for the framed events of one commit after its first: copies the
   * whole run `source[start, end)` at once, then stamps each frame in place (seqs from `seq`,
   * stream versions from `streamVersion`, no commit flag but `FLAG_COMMIT_LAST` on the run's
   * last frame when `endsCommit`) and derives each CRC from the body's as appendFramed does.
   * The frames must carry no commit headers (only a commit's first frame does), and the caller
   * has checked them with `checkFramedEvents`. Returns how many frames it wrote. Throws like
   * {@link appendFramed}, writing nothing.
   */
  appendFramedRun(seq: number, epoch: number, timestamp: number, streamVersion: number, source: Uint8Array, start: number, end: number, endsCommit: boolean): number {
    if (this.pendingMarker >= 0) throw new RangeError('[sluice/framing] appendFramedRun() between beginSeal() and completeSeal()');
    this.checkNext(seq, epoch, timestamp, streamVersion);
    // Walk the run first: it is written only when every frame can be.
    let count = 0;
    for (let p = start; p < end; count++) {
      const frameBytes = p + 4 <= end ? readU32(source, p) : 0;
      // A failed assertion is a bug in the caller (it skipped checkFramedEvents), not bad input.
      if (frameBytes < EVENT_HEADER_BYTES + CRC_BYTES || p + frameBytes > end || readU32(source, p + EVENT_HEADERS_BYTES_AT) !== 0) {
        throw new RangeError(`[sluice/framing] appendFramedRun: [${start}, ${end}) is not a run of framed events without headers`);
      }
      if (frameBytes > this.frameBytesMax) throw new FrameTooLargeError(frameBytes, this.frameBytesMax);
      p += frameBytes;
    }
    if (count === 0) return 0;
    // Compared as MAX - (count - 1): seq + count - 1 would round in doubles past 2^53.
    if (seq > Number.MAX_SAFE_INTEGER - (count - 1)) throw new InvalidFrameFieldError('seq', `a run of ${count} frames from seq ${seq} passes 2^53 - 1`);
    if (streamVersion > Number.MAX_SAFE_INTEGER - (count - 1)) {
      throw new InvalidFrameFieldError('streamVersion', `a run of ${count} frames from stream version ${streamVersion} passes 2^53 - 1`);
    }
    const bytes = end - start;
    this.ensure(bytes);
    const b = this.buffer;
    const first = this.position;
    b.set(source.subarray(start, end), first);
    for (let i = 0, o = first; i < count; i++) {
      const frameBytes = readU32(b, o);
      this.stampFramed(o, frameBytes, endsCommit && i === count - 1 ? FLAG_COMMIT_LAST : 0, seq + i, timestamp, epoch, streamVersion + i);
      o += frameBytes;
    }
    this.position = first + bytes;
    if (this.unsealedFrames === 0) this.unsealedFirstSeq = seq;
    this.unsealedLastSeq = seq + count - 1;
    this.unsealedFrames += count;
    return count;
  }

  /** Throws {@link InvalidFrameFieldError} unless `seq` follows the last frame and the other fields can be stored. */
  private checkNext(seq: number, epoch: number, timestamp: number, streamVersion: number): void {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InvalidFrameFieldError('seq', `${seq} is not a safe non-negative integer`);
    const lastSeq = this.unsealedLastSeq >= 0 ? this.unsealedLastSeq : this.sealedLastSeq;
    if (lastSeq >= 0 && seq !== lastSeq + 1) throw new InvalidFrameFieldError('seq', `${seq} does not follow ${lastSeq}`);
    checkEpochAndTimestamp(epoch, timestamp);
    if (!Number.isSafeInteger(streamVersion) || streamVersion < 0) {
      throw new InvalidFrameFieldError('streamVersion', `${streamVersion} is not a safe non-negative integer`);
    }
  }

  /** Writes the header fields the writer decides (version, kind, flags, seq, timestamp, epoch, stream version) of the event frame at `o`. */
  private stamp(o: number, flags: number, seq: number, timestamp: number, epoch: number, streamVersion: number): void {
    const v = this.view;
    // Bytes 4-7: format version, kind, flags, a reserved zero.
    v.setUint32(o + 4, this.formatVersion | (KIND_EVENT << 8) | ((flags & 3) << 16), true);
    setU53(v, o + 8, seq);
    setU53(v, o + 16, timestamp);
    v.setUint32(o + 24, epoch, true);
    setU53(v, o + 32, streamVersion);
  }

  /** Counts the event frame just written as unsealed. */
  private counted(seq: number): void {
    if (this.unsealedFrames === 0) this.unsealedFirstSeq = seq;
    this.unsealedLastSeq = seq;
    this.unsealedFrames += 1;
  }

  /** {@link appendFramed} of a frame that gets the level in its (version 3) headers. */
  private appendFramedWithLevel(seq: number, epoch: number, timestamp: number, flags: number, streamVersion: number, source: Uint8Array, start: number, end: number, level: string): void {
    const headersBytes = readU32(source, start + 40);
    // Where the version 2 headers end: the level goes there.
    const at = EVENT_HEADER_BYTES + readU16(source, start + 28) + readU16(source, start + 30) + headersBytes;
    const bodyEnd = end - start - CRC_BYTES;
    if (at > bodyEnd) throw new RangeError(`[sluice/framing] appendFramed: [${start}, ${end}) is not one framed event`);
    this.ensure(end - start + 8 + level.length * 3);
    const b = this.buffer;
    const o = this.position;
    b.set(source.subarray(start, start + at), o);
    let p = o + at;
    if (headersBytes === 0) {
      // Headers holding only the level: no command ids, no correlation, no causation.
      writeU16(b, p, 0);
      writeU16(b, p + 2, 0);
      writeU16(b, p + 4, 0);
      p += 6;
    }
    p = writeShortString(b, p, level, 'level');
    const added = p - (o + at);
    b.set(source.subarray(start + at, start + bodyEnd), p);
    p += bodyEnd - at;
    const frameBytes = p + CRC_BYTES - o;
    if (frameBytes > this.frameBytesMax) throw new FrameTooLargeError(frameBytes, this.frameBytesMax);
    writeU32(b, o, frameBytes);
    this.stamp(o, flags, seq, timestamp, epoch, streamVersion);
    writeU32(b, o + 40, headersBytes + added);
    writeU32(b, p, crc32c(b, o, p));
    this.position = p + CRC_BYTES;
    this.counted(seq);
  }

  /**
   * Writes a commit marker sealing every event frame since the previous seal, with the SHA-1
   * digest that chains this batch to `prevDigest` (the digest of the batch before it; by
   * default the last batch this writer sealed, or 20 zero bytes for a log's first batch).
   * Returns false (writing nothing) when nothing is unsealed. Throws
   * {@link InvalidFrameFieldError} (writing nothing) for an epoch or timestamp that cannot be
   * stored.
   */
  seal(epoch: number, timestamp: number, prevDigest: Uint8Array = this.chain): boolean {
    // What digestWritten() fed stays valid: beginSeal() writes only after it.
    const partial = this.partialDigest;
    const digested = this.digestedPosition;
    const sealed = this.beginSeal(epoch, timestamp, prevDigest);
    if (sealed === undefined) return false;
    const digest = partial === undefined ? createHash('sha1').update(sealed) : partial.update(sealed.subarray(digested - this.sealedPosition));
    this.completeSeal(digest.digest());
    return true;
  }

  /**
   * First half of {@link seal} for callers that compute the digest elsewhere (e.g. off the
   * main thread with `crypto.subtle.digest('SHA-1', bytes)`): writes the marker without its
   * digest and returns the exact bytes to digest, or undefined when nothing is unsealed. Call
   * {@link completeSeal} with their SHA-1 before reading {@link bytes}; write nothing in
   * between, and keep the returned bytes unchanged until then.
   */
  beginSeal(epoch: number, timestamp: number, prevDigest: Uint8Array = this.chain): Uint8Array | undefined {
    if (this.unsealedFrames === 0) return undefined;
    if (this.pendingMarker >= 0) throw new RangeError('[sluice/framing] beginSeal() called twice without completeSeal()');
    this.flushCrcs();
    checkEpochAndTimestamp(epoch, timestamp);
    if (prevDigest.length !== SHA1_BYTES) throw new InvalidFrameFieldError('prevDigest', `a SHA-1 digest has ${SHA1_BYTES} bytes, got ${prevDigest.length}`);
    this.ensure(MARKER_BYTES);
    const b = this.buffer;
    const start = this.position;
    writeU32(b, start, MARKER_BYTES);
    b[start + 4] = this.formatVersion;
    b[start + 5] = KIND_MARKER;
    b[start + 6] = DIGEST_SHA1;
    b[start + 7] = 0;
    writeU53(b, start + 8, this.unsealedFirstSeq);
    writeU53(b, start + 16, timestamp);
    writeU32(b, start + 24, epoch);
    writeU32(b, start + 28, this.unsealedFrames);
    writeU53(b, start + 32, this.unsealedLastSeq);
    writeU32(b, start + 40, SHA1_BYTES);
    b.set(prevDigest, start + MARKER_PREV_DIGEST_OFFSET);
    this.pendingMarker = start;
    // The caller digests the returned bytes whole (seal() takes over what digestWritten() fed first).
    this.partialDigest = undefined;
    this.position = start + MARKER_BYTES;
    this.sealedLastSeq = this.unsealedLastSeq;
    this.unsealedFrames = 0;
    this.unsealedFirstSeq = -1;
    this.unsealedLastSeq = -1;
    return b.subarray(this.sealedPosition, start + MARKER_DIGEST_OFFSET);
  }

  /** Second half of a deferred seal: stores the SHA-1 of the bytes {@link beginSeal} returned. */
  completeSeal(digest: Uint8Array): void {
    const start = this.pendingMarker;
    if (start < 0) throw new RangeError('[sluice/framing] completeSeal() without beginSeal()');
    if (digest.length !== SHA1_BYTES) throw new InvalidFrameFieldError('digest', `a SHA-1 digest has ${SHA1_BYTES} bytes, got ${digest.length}`);
    const b = this.buffer;
    b.set(digest, start + MARKER_DIGEST_OFFSET);
    const end = start + MARKER_DIGEST_OFFSET + SHA1_BYTES;
    writeU32(b, end, crc32c(b, start, end));
    this.chain = Uint8Array.from(digest);
    this.sealedPosition = this.position;
    this.pendingMarker = -1;
  }

  /** Digest of the last batch this writer sealed (20 zero bytes before the first). */
  get lastDigest(): Uint8Array {
    return this.chain;
  }

  /** Room for one more pending frame: the offsets grow from 64 to CRC_BATCH_FRAMES entries, then the pending frames are checksummed. */
  private makeRoomForCrc(): void {
    const n = this.crcOffsets.length;
    if (n >= CRC_BATCH_FRAMES) {
      this.flushCrcs();
      return;
    }
    const grown = new Uint32Array(n === 0 ? 64 : n * 2);
    grown.set(this.crcOffsets.subarray(0, this.crcPending));
    this.crcOffsets = grown;
  }

  /** Writes the CRC trailers of the frames appendEvent() left pending, in one native call. */
  private flushCrcs(): void {
    if (this.crcPending === 0) return;
    (this.frameCrcs as NativeFrameCrcs).stampFrameCrcs(this.buffer, this.crcOffsets, this.crcPending);
    this.crcPending = 0;
  }

  private ensure(extra: number): void {
    const needed = this.position + extra;
    if (needed <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
    this.view = viewOf(grown);
  }
}

/** Without this check a negative or fractional value would be stored as a different number. */
function checkEpochAndTimestamp(epoch: number, timestamp: number): void {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) {
    throw new InvalidFrameFieldError('epoch', `${epoch} is not an unsigned 32-bit integer`);
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new InvalidFrameFieldError('timestamp', `${timestamp} is not a safe non-negative integer`);
  }
}

/** @internal Upper bound of the encoded commit headers (framed-events.ts encodes them too). */
export function headersBytesMax(h: CommitHeaders): number {
  let n = 6 + 2 * h.commandIds.length;
  for (const id of h.commandIds) n += id.length * 3;
  return n + 2 + (h.correlationId?.length ?? 0) * 3 + (h.causationId?.length ?? 0) * 3 + (h.level?.length ?? 0) * 3;
}

/** @internal (framed-events.ts encodes commit headers too) */
export function writeHeaders(b: Buffer, start: number, h: CommitHeaders, withLevel: boolean): number {
  if (h.commandIds.length > 0xffff) throw new InvalidFrameFieldError('commandIds', 'more than 65535 command ids');
  if (!withLevel && h.level !== undefined && h.level !== '') {
    throw new InvalidFrameFieldError('level', `format version ${FORMAT_VERSION_BASE} cannot record a level: create the writer with formatVersion ${FORMAT_VERSION_LEVEL}`);
  }
  let o = start;
  writeU16(b, o, h.commandIds.length);
  o += 2;
  for (const id of h.commandIds) o = writeShortString(b, o, id, 'commandId');
  o = writeShortString(b, o, h.correlationId ?? '', 'correlationId');
  o = writeShortString(b, o, h.causationId ?? '', 'causationId');
  if (withLevel) o = writeShortString(b, o, h.level ?? '', 'level');
  return o - start;
}

function writeShortString(b: Buffer, o: number, s: string, field: string): number {
  const n = writeString(b, o + 2, s);
  if (n > 0xffff) throw new InvalidFrameFieldError(field, 'longer than 65535 bytes');
  writeU16(b, o, n);
  return o + 2 + n;
}

/** A DataView over exactly `b`'s bytes (a small Buffer may sit at an offset in a shared pool). */
function viewOf(b: Buffer): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** {@link writeU53} through a DataView: two little-endian 32-bit stores (`v` below 2^53, checked by the caller). */
function setU53(view: DataView, o: number, v: number): void {
  const high = (v / 0x1_0000_0000) >>> 0;
  view.setUint32(o, v - high * 0x1_0000_0000, true);
  view.setUint32(o + 4, high, true);
}

/** @internal Writes `s` as UTF-8 at `o`, returning the byte count. ASCII (the common case) stays in JS. */
export function writeString(b: Buffer, o: number, s: string): number {
  const n = s.length;
  if (n < 48) {
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return b.write(s, o, 'utf8');
      b[o + i] = c;
    }
    return n;
  }
  return b.write(s, o, 'utf8');
}
