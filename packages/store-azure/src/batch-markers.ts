import { KIND_MARKER, MARKER_BYTES, MARKER_DIGEST_OFFSET, MARKER_V1_BYTES, SHA1_BYTES, crc32c, readU32, readU53 } from '@sluice/framing';
import type { BatchIdentity } from '@sluice/store';

/** Where one sealed batch ends inside bytes handed to `write`, and who it is. */
export interface BatchBound {
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Offset just after the batch's marker. */
  readonly end: number;
  readonly identity: BatchIdentity;
}

/** Offset of the digest in a version 1 marker (it has no previous digest). */
const MARKER_V1_DIGEST_OFFSET = 44;

/**
 * The identity a verified marker at `b[o, o + n)` names, or undefined when the bytes there are
 * not a whole commit marker of either format version (wrong size, kind or CRC).
 */
function identityAtMarker(b: Uint8Array, o: number, n: number): BatchIdentity | undefined {
  if (o < 0 || o + n > b.length || readU32(b, o) !== n || b[o + 5] !== KIND_MARKER) return undefined;
  if (crc32c(b, o, o + n - 4) !== readU32(b, o + n - 4)) return undefined;
  const version = b[o + 4];
  if ((n === MARKER_BYTES) === (version === 1)) return undefined;
  const lastSeq = readU53(b, o + 32);
  if (lastSeq < 0) return undefined;
  const digestAt = o + (version === 1 ? MARKER_V1_DIGEST_OFFSET : MARKER_DIGEST_OFFSET);
  return { lastSeq, epoch: readU32(b, o + 24), digest: b.slice(digestAt, digestAt + SHA1_BYTES) };
}

/**
 * The identity named by the marker that ends `tail` (the last bytes of a stored batch, at least
 * {@link MARKER_BYTES} of them): a version 2 marker, or a version 1 one in an older log.
 */
export function identityOfBatchEnd(tail: Uint8Array): BatchIdentity | undefined {
  return identityAtMarker(tail, tail.length - MARKER_BYTES, MARKER_BYTES) ?? identityAtMarker(tail, tail.length - MARKER_V1_BYTES, MARKER_V1_BYTES);
}

/**
 * Splits bytes already checked by `checkWrite` (whole, verified, chained batches) into their
 * batches by walking the frames' length fields, so the index gets one entry per batch even when
 * a write carries several (raw copies from another location).
 */
export function batchBounds(bytes: Uint8Array): BatchBound[] {
  const out: BatchBound[] = [];
  let o = 0;
  while (o + 8 <= bytes.length) {
    const n = readU32(bytes, o);
    // checkWrite verified every frame, so this is a bug, never bad input.
    if (n < 8 || o + n > bytes.length) throw new Error(`[sluice/store-azure] bug: frame of ${n} bytes at offset ${o} of a checked write`);
    if (bytes[o + 5] === KIND_MARKER) {
      const identity = identityAtMarker(bytes, o, n);
      if (identity === undefined) throw new Error(`[sluice/store-azure] bug: unreadable marker at offset ${o} of a checked write`);
      out.push({ firstSeq: readU53(bytes, o + 8), lastSeq: identity.lastSeq, end: o + n, identity });
    }
    o += n;
  }
  return out;
}
