import { createHash, type Hash } from 'node:crypto';
import { crc32c } from './crc32c.js';
import { verifyFrameRun } from './crc32c-run.js';
import {
  CRC_BYTES,
  DEFAULT_FRAME_BYTES_MAX,
  DIGEST_SHA1,
  EVENT_HEADER_BYTES,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION,
  FORMAT_VERSION_LEVEL,
  FORMAT_VERSION_MIN,
  FRAME_BYTES_MIN,
  KIND_EVENT,
  KIND_MARKER,
  MARKER_BYTES,
  MARKER_DIGEST_OFFSET,
  MARKER_HEADER_BYTES,
  MARKER_PREV_DIGEST_OFFSET,
  MARKER_V1_BYTES,
  SHA1_BYTES,
  readU16,
  readU32,
  readU53,
} from './layout.js';
import type { CommitHeaders, CommitMarker, DecodeReport, EventFrame, SealedBatch, StopReason } from './types.js';

/** Options of a {@link StreamDecoder}. */
export interface StreamDecoderOptions {
  /**
   * Largest frame accepted; a length field above it stops decoding with `frame-too-large`.
   * @default 4194304
   */
  readonly frameBytesMax?: number;
  /** Seq the first frame must have; when absent, the first frame's seq is taken as given. */
  readonly firstSeq?: number;
  /**
   * Verify each marker's digest (SHA-1 over the sealed frames and the marker's header).
   * @default true
   */
  readonly verifyDigest?: boolean;
  /**
   * Digest of the batch before the input (20 zero bytes at the start of a log). When given,
   * the first batch must name it as its previous digest; later batches must always chain to
   * the one before them. Decoding stops with `broken-chain` where they do not.
   */
  readonly prevDigest?: Uint8Array;
}

// ignoreBOM: a leading U+FEFF is part of a name, not a byte-order mark to strip.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const latin1 = (b: Uint8Array, s: number, e: number): string => {
  // Short ASCII names are the common case; TextDecoder's call overhead dominates for them.
  if (e - s <= 32) {
    let out = '';
    for (let i = s; i < e; i++) {
      const c = b[i];
      if (c >= 0x80) return decoder.decode(b.subarray(s, e));
      out += String.fromCharCode(c);
    }
    return out;
  }
  return decoder.decode(b.subarray(s, e));
};

/**
 * Stream ids and event types repeat from frame to frame: a catch-up read of a million events
 * names a few thousand streams and a handful of types. Decoding each name anew allocates a
 * string per frame (and a rope while it is built); this direct-mapped cache hands back the
 * string decoded last time from the same bytes. Bounded: NAME_CACHE_SLOTS names of at most
 * NAME_CACHE_BYTES_MAX bytes each (64 KiB of keys, plus the strings), shared by every decoder
 * in the process. A miss costs the decode it saves plus one byte copy, no allocation.
 */
const NAME_CACHE_SLOTS = 1024;
const NAME_CACHE_BYTES_MAX = 64;
const nameKeys = new Uint8Array(NAME_CACHE_SLOTS * NAME_CACHE_BYTES_MAX);
const nameLengths = new Int32Array(NAME_CACHE_SLOTS).fill(-1);
const names: string[] = new Array<string>(NAME_CACHE_SLOTS).fill('');

/** The UTF-8 name in `b[s, e)`, from the cache when the same bytes were decoded recently. Throws on invalid UTF-8. */
function decodeName(b: Uint8Array, s: number, e: number): string {
  const n = e - s;
  if (n === 0) return '';
  if (n > NAME_CACHE_BYTES_MAX) return decoder.decode(b.subarray(s, e));
  let h = n;
  for (let i = s; i < e; i++) h = Math.imul(h ^ b[i], 0x01000193);
  const slot = (h ^ (h >>> 15)) & (NAME_CACHE_SLOTS - 1);
  const base = slot * NAME_CACHE_BYTES_MAX;
  if (nameLengths[slot] === n) {
    let i = 0;
    while (i < n && nameKeys[base + i] === b[s + i]) i++;
    if (i === n) return names[slot];
  }
  const name = latin1(b, s, e);
  // Only valid names are cached: latin1 threw before this line for invalid UTF-8.
  for (let i = 0; i < n; i++) nameKeys[base + i] = b[s + i];
  nameLengths[slot] = n;
  names[slot] = name;
  return name;
}

/** The metadata of every frame that has none: zero bytes, nothing to write into, shared. */
const NO_BYTES = new Uint8Array(0);

/**
 * Decodes a byte stream of frames into sealed batches, accepting any chunk boundaries.
 *
 * It never throws on bad input: at the first torn, corrupt or unsigned data it stops, and
 * {@link end} (or {@link report}) says where the valid data ends and why. Frames are handed
 * out only inside a {@link SealedBatch} whose marker verified, so a reader never sees part of
 * a commit. Decoded payloads are views into the pushed chunks: do not reuse a chunk's memory
 * after pushing it.
 *
 * @example
 * const decoder = new StreamDecoder();
 * for await (const chunk of fs.createReadStream(path)) {
 *   for (const batch of decoder.push(chunk)) handle(batch);
 * }
 * const report = decoder.end(); // { validBytes, reason: 'end' | 'torn-frame' | ... }
 */
export class StreamDecoder {
  private readonly frameBytesMax: number;
  private readonly verifyDigest: boolean;
  private nextSeq: number | undefined;
  private consumed = 0; // bytes of the input fully decoded (frames and markers)
  private validBytes = 0; // end of the last verified marker
  private pending: EventFrame[] = [];
  private hash: Hash | undefined;
  // Views of the current batch's bytes seen so far (one, unless the batch spans pushes).
  private pieces: Uint8Array[] = [];
  private chain: Uint8Array | undefined;
  // Format version of the pending batch's frames (all frames of a batch and its marker share one).
  private batchVersion = 0;
  // Once a chained (version 2) batch was read, an unchained one can no longer follow. (A
  // version 1 log has no chain: its batches cannot check the prevDigest option.)
  private chainStarted = false;
  private carry: Uint8Array | undefined;
  private carryFilled = 0;
  private inCommit = false;
  private stopped: { reason: StopReason; offset: number; detail: string } | undefined;

  constructor(options: StreamDecoderOptions = {}) {
    this.frameBytesMax = options.frameBytesMax ?? DEFAULT_FRAME_BYTES_MAX;
    this.verifyDigest = options.verifyDigest ?? true;
    this.nextSeq = options.firstSeq;
    if (options.prevDigest !== undefined && options.prevDigest.length !== SHA1_BYTES) {
      throw new RangeError(`[sluice/framing] prevDigest must be a ${SHA1_BYTES}-byte SHA-1 digest, got ${options.prevDigest.length} bytes`);
    }
    this.chain = options.prevDigest === undefined ? undefined : Uint8Array.from(options.prevDigest);
  }

  /** Digest of the last verified batch (or the `prevDigest` option before any). */
  get lastDigest(): Uint8Array | undefined {
    return this.chain;
  }

  /** True once decoding has stopped on bad or unwritten data; later input is ignored. */
  get isStopped(): boolean {
    return this.stopped !== undefined;
  }

  /** Decodes `chunk`, returning the batches it completed (often none, sometimes many). */
  push(chunk: Uint8Array): SealedBatch[] {
    const out: SealedBatch[] = [];
    if (this.stopped !== undefined || chunk.length === 0) return out;
    let offset = 0;
    if (this.carry !== undefined || this.carryFilled > 0) {
      offset = this.fillCarry(chunk, out);
      if (offset < 0) return out;
    }
    this.scan(chunk, offset, out);
    return out;
  }

  /** Declares the input complete and reports where valid data ends and why. */
  end(): DecodeReport {
    if (this.stopped === undefined) {
      if (this.carryFilled > 0) {
        const need = this.carry === undefined ? 4 : this.carry.length;
        this.stop('torn-frame', this.consumed, `input ends inside a frame: ${this.carryFilled} of ${need} bytes present`);
      } else if (this.pending.length > 0) {
        this.stop('unsigned-commit', this.consumed, `${this.pending.length} frame(s) after the last marker were never sealed`);
      } else {
        this.stop('end', this.consumed, 'input ends after a verified marker');
      }
    }
    return this.report();
  }

  /** Where valid data ends so far and, once stopped, why. */
  report(): DecodeReport {
    const s = this.stopped;
    const reason: StopReason = s?.reason ?? 'end';
    return {
      validBytes: this.validBytes,
      reason,
      clean: reason === 'end' || reason === 'zero-fill',
      offset: s?.offset ?? this.consumed,
      detail: s?.detail ?? 'decoding',
      nextSeq: this.pending.length > 0 ? this.pending[0].seq : this.nextSeq,
      unsealedFrames: this.pending.length,
    };
  }

  /** Completes a frame split across pushes. Returns the chunk offset after it, or -1 to wait/stop. */
  private fillCarry(chunk: Uint8Array, out: SealedBatch[]): number {
    let offset = 0;
    if (this.carry === undefined) {
      // Fewer than 4 bytes of the length field arrived so far; they sit in lengthBytes.
      const take = Math.min(4 - this.carryFilled, chunk.length);
      this.lengthBytes.set(chunk.subarray(0, take), this.carryFilled);
      this.carryFilled += take;
      offset = take;
      if (this.carryFilled < 4) return -1;
      const frameBytes = readU32(this.lengthBytes, 0);
      if (!this.checkLength(frameBytes, this.consumed)) return -1;
      this.carry = new Uint8Array(frameBytes);
      this.carry.set(this.lengthBytes, 0);
    }
    const carry = this.carry;
    const take = Math.min(carry.length - this.carryFilled, chunk.length - offset);
    carry.set(chunk.subarray(offset, offset + take), this.carryFilled);
    this.carryFilled += take;
    offset += take;
    if (this.carryFilled < carry.length) return -1;
    this.carry = undefined;
    this.carryFilled = 0;
    if (!this.frame(carry, 0, carry.length, -1, out)) return -1;
    return offset;
  }

  private readonly lengthBytes = new Uint8Array(4);

  private scan(b: Uint8Array, start: number, out: SealedBatch[]): void {
    let o = start;
    const end = b.length;
    let region = o; // start of this chunk's bytes not yet fed to the digest
    // The whole frames of this chunk with one CRC call; frames past `verified` are checked one by one.
    const verified = verifyFrameRun(b, o, end, this.frameBytesMax);
    while (o < end) {
      if (end - o < 4) {
        this.hashRegion(b, region, o);
        this.lengthBytes.set(b.subarray(o, end), 0);
        this.carryFilled = end - o;
        return;
      }
      const frameBytes = readU32(b, o);
      if (!this.checkLength(frameBytes, this.consumed)) return;
      if (end - o < frameBytes) {
        this.hashRegion(b, region, o);
        this.carry = new Uint8Array(frameBytes);
        this.carry.set(b.subarray(o, end), 0);
        this.carryFilled = end - o;
        return;
      }
      if (!this.frame(b, o, frameBytes, region, out, o + frameBytes <= verified)) return;
      o += frameBytes;
      if (this.pending.length === 0) region = o;
    }
    this.hashRegion(b, region, end);
  }

  /** Takes `b[from, to)` as bytes of the current batch: kept as a view, and digested. */
  private hashRegion(b: Uint8Array, from: number, to: number): void {
    if (to <= from || this.pending.length === 0) return;
    const piece = b.subarray(from, to);
    this.pieces.push(piece);
    if (!this.verifyDigest) return;
    this.hash ??= createHash('sha1');
    this.hash.update(piece);
  }

  /** Validates a length field; stops decoding and returns false when it cannot start a frame. */
  private checkLength(frameBytes: number, at: number): boolean {
    if (frameBytes === 0) {
      if (this.pending.length > 0) {
        this.stop('unsigned-commit', at, `${this.pending.length} frame(s) before unwritten space were never sealed`);
      } else {
        this.stop('zero-fill', at, 'reached unwritten (zero-filled) space');
      }
      return false;
    }
    if (frameBytes > this.frameBytesMax) {
      this.stop('frame-too-large', at, `length field ${frameBytes} exceeds frameBytesMax ${this.frameBytesMax}`);
      return false;
    }
    if (frameBytes < FRAME_BYTES_MIN) {
      this.stop('malformed-frame', at, `length field ${frameBytes} is below the minimum frame size ${FRAME_BYTES_MIN}`);
      return false;
    }
    return true;
  }

  /**
   * Handles one complete frame at b[o, o+n). `regionStart` is where the current batch's not
   * yet hashed bytes start in `b`, or -1 when the frame was completed in a carry buffer.
   * `crcVerified`: its CRC-32C was already checked with its run ({@link verifyFrameRun}).
   */
  private frame(b: Uint8Array, o: number, n: number, regionStart: number, out: SealedBatch[], crcVerified = false): boolean {
    const at = this.consumed;
    const crcAt = o + n - CRC_BYTES;
    if (!crcVerified && crc32c(b, o, crcAt) !== readU32(b, crcAt)) {
      this.stop('bad-checksum', at, `frame of ${n} bytes fails its CRC-32C`);
      return false;
    }
    const version = b[o + 4];
    if (version > FORMAT_VERSION) {
      this.stop('unsupported-version', at, `format version ${version} is not supported (this decoder reads versions ${FORMAT_VERSION_MIN} to ${FORMAT_VERSION}): upgrade @sluice/framing`);
      return false;
    }
    if (version < FORMAT_VERSION_MIN) {
      this.stop('malformed-frame', at, `format version ${version} does not exist`);
      return false;
    }
    const kind = b[o + 5];
    if (kind === KIND_EVENT) {
      const frame = decodeEvent(b, o, n);
      if (typeof frame === 'string') {
        this.stop('malformed-frame', at, frame);
        return false;
      }
      if (this.nextSeq !== undefined && frame.seq !== this.nextSeq) {
        this.stop('bad-sequence', at, `frame seq ${frame.seq} where ${this.nextSeq} was expected`);
        return false;
      }
      if (frame.commitFirst === this.inCommit) {
        this.stop(
          'bad-commit-grouping',
          at,
          frame.commitFirst ? `seq ${frame.seq} starts a commit before the previous one ended` : `seq ${frame.seq} continues a commit that never started`,
        );
        return false;
      }
      this.inCommit = !frame.commitLast;
      this.nextSeq = frame.seq + 1;
      if (this.pending.length === 0) this.batchVersion = version;
      else if (version !== this.batchVersion) {
        this.stop('malformed-frame', at, `seq ${frame.seq} is format version ${version} inside a batch of version ${this.batchVersion}`);
        return false;
      }
      this.pending.push(frame);
      this.consumed += n;
      if (regionStart < 0) this.hashRegion(b, o, o + n); // a frame completed in a carry buffer
      return true;
    }
    if (kind === KIND_MARKER) {
      return this.marker(b, o, n, regionStart, at, out);
    }
    this.stop('malformed-frame', at, `unknown frame kind ${kind}`);
    return false;
  }

  private marker(b: Uint8Array, o: number, n: number, regionStart: number, at: number, out: SealedBatch[]): boolean {
    const marker = decodeMarker(b, o, n);
    if (typeof marker === 'string') {
      this.stop('malformed-frame', at, marker);
      return false;
    }
    const frames = this.pending;
    if (frames.length === 0 || marker.frameCount !== frames.length || marker.firstSeq !== frames[0].seq || marker.lastSeq !== frames[frames.length - 1].seq) {
      this.stop('bad-digest', at, `marker for seq ${marker.firstSeq}..${marker.lastSeq} (${marker.frameCount} frames) does not match the ${frames.length} frame(s) before it`);
      return false;
    }
    if (this.inCommit) {
      this.stop('bad-commit-grouping', at, `marker after seq ${marker.lastSeq} seals a commit that never ended`);
      return false;
    }
    if (regionStart >= 0) this.hashRegion(b, regionStart, o);
    const chained = marker.prevDigest !== undefined;
    if (marker.formatVersion !== this.batchVersion) {
      this.stop('malformed-frame', at, `marker of format version ${marker.formatVersion} seals frames of version ${this.batchVersion}`);
      return false;
    }
    if (!chained && this.chainStarted) {
      this.stop('broken-chain', at, `batch seq ${marker.firstSeq}..${marker.lastSeq} has an unchained (version 1) marker after chained batches`);
      return false;
    }
    if (chained && this.chain !== undefined && !equalBytes(marker.prevDigest, this.chain)) {
      this.stop('broken-chain', at, `batch seq ${marker.firstSeq}..${marker.lastSeq} names a previous batch digest that differs from the batch before it`);
      return false;
    }
    if (this.verifyDigest) {
      const hash = this.hash ?? createHash('sha1');
      if (chained) hash.update(b.subarray(o, o + MARKER_DIGEST_OFFSET));
      const digest = hash.digest();
      this.hash = undefined;
      if (!equalBytes(digest, marker.digest)) {
        this.stop('bad-digest', at, `SHA-1 of seq ${marker.firstSeq}..${marker.lastSeq} does not match the marker`);
        return false;
      }
    }
    this.consumed += n;
    let batchBytes = n;
    for (const f of frames) batchBytes += f.frameBytes;
    out.push({
      firstSeq: marker.firstSeq,
      lastSeq: marker.lastSeq,
      frames,
      marker,
      byteOffset: this.consumed - batchBytes,
      byteLength: batchBytes,
      bytes: this.batchBytes(b, o, n, batchBytes),
    });
    this.pending = [];
    this.pieces = [];
    this.chain = marker.digest;
    if (chained) this.chainStarted = true;
    this.validBytes = this.consumed;
    return true;
  }

  /** The batch's exact bytes: a view when it arrived in one piece, a copy otherwise. */
  private batchBytes(b: Uint8Array, o: number, n: number, total: number): Uint8Array {
    const pieces = this.pieces;
    if (pieces.length === 1) {
      const p = pieces[0];
      // A view only when the piece lies in `b` itself, right before the marker (chunks can be
      // views of one larger buffer, so the same ArrayBuffer is not enough).
      if (p.buffer === b.buffer && o >= p.length && p.byteOffset === b.byteOffset + o - p.length) return b.subarray(o - p.length, o + n);
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of pieces) {
      out.set(p, at);
      at += p.length;
    }
    out.set(b.subarray(o, o + n), at);
    return out;
  }

  private stop(reason: StopReason, offset: number, detail: string): void {
    this.stopped = { reason, offset, detail };
    this.carry = undefined;
    this.carryFilled = 0;
    this.hash = undefined;
    this.pieces = [];
  }
}

/** @internal */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Decodes a checksum-verified event frame, or returns why it is malformed. */
function decodeEvent(b: Uint8Array, o: number, n: number): EventFrame | string {
  const seq = readU53(b, o + 8);
  const timestamp = readU53(b, o + 16);
  const streamVersion = readU53(b, o + 32);
  if (seq < 0 || timestamp < 0 || streamVersion < 0) return 'a 64-bit field is not a safe integer';
  const flags = b[o + 6];
  if ((flags & ~3) !== 0 || b[o + 7] !== 0) return `reserved bits set (flags ${flags})`;
  const streamIdBytes = readU16(b, o + 28);
  const eventTypeBytes = readU16(b, o + 30);
  const headersBytes = readU32(b, o + 40);
  const metadataBytes = readU32(b, o + 44);
  const payloadBytes = readU32(b, o + 48);
  if (EVENT_HEADER_BYTES + streamIdBytes + eventTypeBytes + headersBytes + metadataBytes + payloadBytes + CRC_BYTES !== n) {
    return `field lengths do not add up to the frame length ${n}`;
  }
  let p = o + EVENT_HEADER_BYTES;
  let streamId: string;
  let eventType: string;
  try {
    streamId = decodeName(b, p, p + streamIdBytes);
    p += streamIdBytes;
    eventType = decodeName(b, p, p + eventTypeBytes);
    p += eventTypeBytes;
  } catch {
    return 'stream id or event type is not valid UTF-8';
  }
  let headers: CommitHeaders | undefined;
  if (headersBytes > 0) {
    const h = decodeHeaders(b, p, p + headersBytes, b[o + 4] >= FORMAT_VERSION_LEVEL);
    if (typeof h === 'string') return h;
    headers = h;
    p += headersBytes;
  }
  // Plain views made by the constructor: Buffer.prototype.subarray (the chunk is often a
  // Buffer) costs several times as much per frame.
  const metadata = metadataBytes === 0 ? NO_BYTES : new Uint8Array(b.buffer, b.byteOffset + p, metadataBytes);
  p += metadataBytes;
  const payload = new Uint8Array(b.buffer, b.byteOffset + p, payloadBytes);
  return {
    seq,
    epoch: readU32(b, o + 24),
    timestamp,
    commitFirst: (flags & FLAG_COMMIT_FIRST) !== 0,
    commitLast: (flags & FLAG_COMMIT_LAST) !== 0,
    streamId,
    streamVersion,
    eventType,
    headers,
    metadata,
    payload,
    frameBytes: n,
  };
}

/** @internal Commit headers in `b[start, end)` (with the level field from format version 3), or why they are malformed. */
export function decodeHeaders(b: Uint8Array, start: number, end: number, withLevel: boolean): CommitHeaders | string {
  let p = start;
  const str = (): string | undefined => {
    if (p + 2 > end) return undefined;
    const len = readU16(b, p);
    p += 2;
    if (p + len > end) return undefined;
    const s = decoder.decode(b.subarray(p, p + len));
    p += len;
    return s;
  };
  try {
    if (p + 2 > end) return 'commit headers truncated';
    const count = readU16(b, p);
    p += 2;
    const commandIds: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = str();
      if (id === undefined) return 'commit headers truncated';
      commandIds.push(id);
    }
    const correlationId = str();
    const causationId = str();
    const level = withLevel ? str() : '';
    if (correlationId === undefined || causationId === undefined || level === undefined || p !== end) return 'commit headers malformed';
    const correlation = correlationId === '' ? undefined : correlationId;
    const causation = causationId === '' ? undefined : causationId;
    // `level` is only set when recorded, so version 1–2 headers keep their exact shape.
    return level === ''
      ? { commandIds, correlationId: correlation, causationId: causation }
      : { commandIds, correlationId: correlation, causationId: causation, level };
  } catch {
    return 'commit headers are not valid UTF-8';
  }
}

/** @internal the marker at b[o, o+n), or why it is not one */
export function decodeMarker(b: Uint8Array, o: number, n: number): CommitMarker | string {
  if (b[o + 6] !== DIGEST_SHA1) return `unknown digest algorithm ${b[o + 6]}`;
  const version = b[o + 4];
  const digestBytes = readU32(b, o + 40);
  if (digestBytes !== SHA1_BYTES || n !== (version === 1 ? MARKER_V1_BYTES : MARKER_BYTES) || b[o + 7] !== 0) {
    return 'commit marker has the wrong size';
  }
  const firstSeq = readU53(b, o + 8);
  const timestamp = readU53(b, o + 16);
  const lastSeq = readU53(b, o + 32);
  if (firstSeq < 0 || timestamp < 0 || lastSeq < 0) return 'a 64-bit marker field is not a safe integer';
  const digestAt = version === 1 ? MARKER_HEADER_BYTES : MARKER_DIGEST_OFFSET;
  return {
    firstSeq,
    lastSeq,
    frameCount: readU32(b, o + 28),
    epoch: readU32(b, o + 24),
    timestamp,
    formatVersion: version,
    digestAlgorithm: 'sha1',
    digest: b.subarray(o + digestAt, o + digestAt + SHA1_BYTES),
    prevDigest: version === 1 ? undefined : b.subarray(o + MARKER_PREV_DIGEST_OFFSET, o + MARKER_PREV_DIGEST_OFFSET + SHA1_BYTES),
  };
}

/**
 * Decodes a complete buffer: every verified batch and a report of where valid data ends.
 * Never throws on bad input.
 */
export function decodeBatches(bytes: Uint8Array, options: StreamDecoderOptions = {}): { batches: SealedBatch[]; report: DecodeReport } {
  const d = new StreamDecoder(options);
  const batches = d.push(bytes);
  return { batches, report: d.end() };
}

/**
 * Decodes the one event frame starting at `bytes[offset]`, checking its length field, its
 * CRC-32C, its version and its fields (not the batch digest: that is checked where a batch is
 * read whole). For reads of single frames by position (a stream read through a frame index).
 * Returns the frame, or a sentence saying why the bytes there are not a valid event frame;
 * callers turn that into their own error naming the location. `checkCrc: false` skips the
 * frame's CRC-32C only for bytes a checksum over a larger range already verified (a broadcast
 * datagram's CRC covers every frame it carries); every other check still runs.
 */
export function decodeEventFrameAt(bytes: Uint8Array, offset: number, frameBytesMax = DEFAULT_FRAME_BYTES_MAX, checkCrc = true): EventFrame | string {
  if (offset < 0 || offset + 4 > bytes.length) return `offset ${offset} is outside the ${bytes.length} bytes given`;
  const n = readU32(bytes, offset);
  if (n < FRAME_BYTES_MIN || n > frameBytesMax) return `length field ${n} at offset ${offset} is not a frame length`;
  if (offset + n > bytes.length) return `frame of ${n} bytes at offset ${offset} ends past the ${bytes.length} bytes given`;
  const crcAt = offset + n - CRC_BYTES;
  if (checkCrc && crc32c(bytes, offset, crcAt) !== readU32(bytes, crcAt)) return `frame of ${n} bytes at offset ${offset} fails its CRC-32C`;
  const version = bytes[offset + 4];
  if (version > FORMAT_VERSION || version < FORMAT_VERSION_MIN) return `format version ${version} is not supported by this decoder`;
  if (bytes[offset + 5] !== KIND_EVENT) return `frame at offset ${offset} is not an event frame (kind ${bytes[offset + 5]})`;
  return decodeEvent(bytes, offset, n);
}
