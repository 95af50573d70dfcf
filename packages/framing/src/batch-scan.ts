import { createHash } from 'node:crypto';
import { crc32c } from './crc32c.js';
import { verifyFrameRun } from './crc32c-run.js';
import {
  CRC_BYTES,
  DEFAULT_FRAME_BYTES_MAX,
  EVENT_HEADER_BYTES,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION,
  FORMAT_VERSION_MIN,
  FRAME_BYTES_MIN,
  KIND_EVENT,
  KIND_MARKER,
  MARKER_DIGEST_OFFSET,
  readU16,
  readU32,
  readU53,
} from './layout.js';
import { decodeMarker, equalBytes } from './stream-decoder.js';
import type { CommitMarker, StopReason } from './types.js';

/** One sealed batch found by {@link scanSealedBatches}: where it lies and its marker, no events. */
export interface BatchSpan {
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** The batch's verified marker (its digests are views into the scanned bytes). */
  readonly marker: CommitMarker;
  /** Offset of the batch's first frame in the scanned bytes, and its length with the marker. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** Options of {@link scanSealedBatches}. */
export interface ScanSealedBatchesOptions {
  /** Seq the first frame must have. */
  readonly firstSeq: number;
  /** Digest the first batch must name as its previous one (as `StreamDecoderOptions.prevDigest`). */
  readonly prevDigest?: Uint8Array | undefined;
  /** @default 4194304 */
  readonly frameBytesMax?: number;
  /** Check each marker's SHA-1 (false still checks every CRC-32C and the chain, as `StreamDecoderOptions.verifyDigest`). @default true */
  readonly verifyDigest?: boolean;
}

/** What {@link scanSealedBatches} found: the whole batches, and why it stopped (`end` when all bytes were whole batches). */
export interface ScanSealedBatchesResult {
  readonly spans: BatchSpan[];
  readonly reason: StopReason;
  readonly detail: string;
  /** Offset where the problem was found (the input's length after a clean end). */
  readonly offset: number;
}

/**
 * Checks that `bytes` are whole sealed batches continuing a log, with every check the
 * {@link StreamDecoder} makes of the bytes — each frame's length, CRC-32C, version, kind and
 * field lengths, seq order, commit grouping, each marker against its frames, its SHA-1 digest and
 * the hash chain — but without decoding events into objects. For storage that receives raw
 * batches (copies, drains, shipping) and only needs to know they are sound and where each ends.
 * Never throws on bad input: stops at the first problem, with the reason a decoder would give.
 */
export function scanSealedBatches(bytes: Uint8Array, options: ScanSealedBatchesOptions): ScanSealedBatchesResult {
  const frameBytesMax = options.frameBytesMax ?? DEFAULT_FRAME_BYTES_MAX;
  const verifyDigest = options.verifyDigest ?? true;
  const spans: BatchSpan[] = [];
  let chain = options.prevDigest;
  let chainStarted = false;
  let nextSeq = options.firstSeq;
  let o = 0;
  let batchStart = 0;
  let frames = 0;
  let batchFirstSeq = 0;
  let batchVersion = 0;
  let inCommit = false;
  const stop = (reason: StopReason, detail: string): ScanSealedBatchesResult => ({ spans, reason, detail, offset: o });
  // The CRCs of the whole frames up to `verified` with one call; frames after it are checked one by one.
  const verified = verifyFrameRun(bytes, 0, bytes.length, frameBytesMax);
  while (o < bytes.length) {
    if (bytes.length - o < 4) return stop('torn-frame', 'input ends inside a length field');
    const n = readU32(bytes, o);
    if (n === 0) return stop(frames > 0 ? 'unsigned-commit' : 'zero-fill', 'zero length field');
    if (n > frameBytesMax) return stop('frame-too-large', `length field ${n} exceeds frameBytesMax ${frameBytesMax}`);
    if (n < FRAME_BYTES_MIN) return stop('malformed-frame', `length field ${n} is below the minimum frame size ${FRAME_BYTES_MIN}`);
    if (o + n > bytes.length) return stop('torn-frame', `frame of ${n} bytes ends past the input`);
    if (o + n > verified && crc32c(bytes, o, o + n - CRC_BYTES) !== readU32(bytes, o + n - CRC_BYTES)) return stop('bad-checksum', `frame of ${n} bytes fails its CRC-32C`);
    const version = bytes[o + 4];
    if (version > FORMAT_VERSION || version < FORMAT_VERSION_MIN) return stop(version > FORMAT_VERSION ? 'unsupported-version' : 'malformed-frame', `format version ${version} is not supported`);
    const kind = bytes[o + 5];
    if (kind === KIND_EVENT) {
      const seq = readU53(bytes, o + 8);
      const flags = bytes[o + 6];
      if ((flags & ~3) !== 0 || bytes[o + 7] !== 0) return stop('malformed-frame', `reserved bits set (flags ${flags})`);
      const fields = readU16(bytes, o + 28) + readU16(bytes, o + 30) + readU32(bytes, o + 40) + readU32(bytes, o + 44) + readU32(bytes, o + 48);
      if (EVENT_HEADER_BYTES + fields + CRC_BYTES !== n) return stop('malformed-frame', `field lengths do not add up to the frame length ${n}`);
      if (seq !== nextSeq) return stop('bad-sequence', `frame seq ${seq} where ${nextSeq} was expected`);
      const first = (flags & FLAG_COMMIT_FIRST) !== 0;
      if (first === inCommit) return stop('bad-commit-grouping', first ? `seq ${seq} starts a commit before the previous one ended` : `seq ${seq} continues a commit that never started`);
      inCommit = (flags & FLAG_COMMIT_LAST) === 0;
      if (frames === 0) {
        batchVersion = version;
        batchFirstSeq = seq;
      } else if (version !== batchVersion) return stop('malformed-frame', `seq ${seq} is format version ${version} inside a batch of version ${batchVersion}`);
      frames++;
      nextSeq = seq + 1;
    } else if (kind === KIND_MARKER) {
      const marker = decodeMarker(bytes, o, n);
      if (typeof marker === 'string') return stop('malformed-frame', marker);
      if (frames === 0 || marker.frameCount !== frames || marker.firstSeq !== batchFirstSeq || marker.lastSeq !== nextSeq - 1) {
        return stop('bad-digest', `marker for seq ${marker.firstSeq}..${marker.lastSeq} (${marker.frameCount} frames) does not match the ${frames} frame(s) before it`);
      }
      if (inCommit) return stop('bad-commit-grouping', `marker after seq ${marker.lastSeq} seals a commit that never ended`);
      if (marker.formatVersion !== batchVersion) return stop('malformed-frame', `marker of format version ${marker.formatVersion} seals frames of version ${batchVersion}`);
      const chained = marker.prevDigest !== undefined;
      if (!chained && chainStarted) return stop('broken-chain', `batch seq ${marker.firstSeq}..${marker.lastSeq} has an unchained (version 1) marker after chained batches`);
      if (chained && chain !== undefined && !equalBytes(marker.prevDigest, chain)) {
        return stop('broken-chain', `batch seq ${marker.firstSeq}..${marker.lastSeq} names a previous batch digest that differs from the batch before it`);
      }
      if (verifyDigest) {
        const hash = createHash('sha1').update(bytes.subarray(batchStart, o));
        if (chained) hash.update(bytes.subarray(o, o + MARKER_DIGEST_OFFSET));
        if (!equalBytes(hash.digest(), marker.digest)) return stop('bad-digest', `SHA-1 of seq ${marker.firstSeq}..${marker.lastSeq} does not match the marker`);
      }
      spans.push({ firstSeq: marker.firstSeq, lastSeq: marker.lastSeq, marker, byteOffset: batchStart, byteLength: o + n - batchStart });
      chain = marker.digest;
      if (chained) chainStarted = true;
      frames = 0;
      batchStart = o + n;
    } else {
      return stop('malformed-frame', `unknown frame kind ${kind}`);
    }
    o += n;
  }
  if (frames > 0) return stop('unsigned-commit', `${frames} frame(s) after the last marker were never sealed`);
  return { spans, reason: 'end', detail: 'input ends after a verified marker', offset: o };
}
