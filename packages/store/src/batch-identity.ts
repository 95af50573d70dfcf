import {
  KIND_MARKER,
  MARKER_BYTES,
  MARKER_DIGEST_OFFSET,
  MARKER_PREV_DIGEST_OFFSET,
  SHA1_BYTES,
  ZERO_DIGEST,
  crc32c,
  readU32,
  scanSealedBatches,
  type BatchSpan,
  readU53,
  type SealedBatch,
} from '@sluice/framing';
import { StorageError } from './errors.js';
import type { BatchIdentity } from './storage.js';

/** The identity of an empty log: every first batch names this digest as its previous one. */
export const EMPTY_IDENTITY: BatchIdentity = Object.freeze({ lastSeq: 0, epoch: 0, digest: ZERO_DIGEST });

/** The identity of a verified batch (its digest is copied: batches may be views into reused buffers). */
export function identityOf(batch: SealedBatch): BatchIdentity {
  return { lastSeq: batch.lastSeq, epoch: batch.marker.epoch, digest: Uint8Array.from(batch.marker.digest) };
}

/** True when two identities name the same batch (and so, by the chain, the same history). */
export function sameIdentity(a: BatchIdentity, b: BatchIdentity): boolean {
  return a.lastSeq === b.lastSeq && a.epoch === b.epoch && equalBytes(a.digest, b.digest);
}

/** `seq 42 epoch 1 digest 3fa0c1…` for messages. */
export function describeIdentity(id: BatchIdentity): string {
  return `seq ${id.lastSeq} epoch ${id.epoch} digest ${Buffer.from(id.digest.buffer, id.digest.byteOffset, 6).toString('hex')}…`;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Checks what `PartitionStorage.write` is handed against the head it must follow, and
 * returns the identity of the last batch written. Every backend calls it, so the rules are
 * the same everywhere: seqs follow the head without a gap, the first batch chains to the head's
 * digest, and no batch is sealed with an epoch lower than the head's (a fenced writer).
 *
 * One batch (the engine's case) costs a look at its marker; several batches (raw copies from
 * another location, a drain, a shipment) are verified in full (every CRC, digest and chain link)
 * without decoding their events.
 */
export function checkWrite(bytes: Uint8Array, firstSeq: number, lastSeq: number, head: BatchIdentity, where: string): BatchIdentity {
  return checkWriteSpans(bytes, firstSeq, lastSeq, head, where).identity;
}

/**
 * {@link checkWrite}, also returning where each batch lies when `bytes` hold several (a raw copy,
 * a drain, a shipment): `spans` is undefined for the common single batch, whose marker alone is
 * checked. Several batches are checked as a decoder would (every frame's CRC-32C, seq order,
 * each marker's SHA-1 digest and the chain) without decoding their events.
 */
export function checkWriteSpans(bytes: Uint8Array, firstSeq: number, lastSeq: number, head: BatchIdentity, where: string): { identity: BatchIdentity; spans: BatchSpan[] | undefined } {
  if (firstSeq !== head.lastSeq + 1 || lastSeq < firstSeq) {
    throw new StorageError('Conflict', `${where}: write of seq ${firstSeq}..${lastSeq} does not follow seq ${head.lastSeq}: writes must continue the log without a gap`);
  }
  const m = bytes.length - MARKER_BYTES;
  const single =
    m >= 0 &&
    readU32(bytes, m) === MARKER_BYTES &&
    bytes[m + 5] === KIND_MARKER &&
    readU53(bytes, m + 8) === firstSeq &&
    readU53(bytes, m + 32) === lastSeq &&
    crc32c(bytes, m, m + MARKER_BYTES - 4) === readU32(bytes, m + MARKER_BYTES - 4);
  if (single) {
    const epoch = readU32(bytes, m + 24);
    checkEpoch(epoch, head, firstSeq, where);
    if (!equalBytes(bytes.subarray(m + MARKER_PREV_DIGEST_OFFSET, m + MARKER_PREV_DIGEST_OFFSET + SHA1_BYTES), head.digest)) {
      throw brokenChain(firstSeq, head, where);
    }
    // A plain copy: `bytes` may be a Buffer (whose slice() is a view) that the caller reuses.
    return { identity: { lastSeq, epoch, digest: Uint8Array.from(bytes.subarray(m + MARKER_DIGEST_OFFSET, m + MARKER_DIGEST_OFFSET + SHA1_BYTES)) }, spans: undefined };
  }
  const { spans, reason, detail, offset } = scanSealedBatches(bytes, { firstSeq, prevDigest: head.digest });
  if (reason === 'broken-chain' && spans.length === 0) throw brokenChain(firstSeq, head, where);
  if (reason !== 'end' || spans.at(-1)?.lastSeq !== lastSeq) {
    throw new StorageError('Invalid', `${where}: the bytes written for seq ${firstSeq}..${lastSeq} are not whole sealed batches of those seqs (${reason} at byte ${offset}: ${detail})`);
  }
  let epoch = head.epoch;
  for (const span of spans) {
    checkEpoch(span.marker.epoch, { ...head, epoch }, span.firstSeq, where);
    epoch = span.marker.epoch;
  }
  const last = spans[spans.length - 1];
  return { identity: { lastSeq: last.lastSeq, epoch: last.marker.epoch, digest: Uint8Array.from(last.marker.digest) }, spans };
}

function checkEpoch(epoch: number, head: BatchIdentity, firstSeq: number, where: string): void {
  if (epoch < head.epoch) {
    throw new StorageError(
      'Conflict',
      `${where}: batch from seq ${firstSeq} is sealed with epoch ${epoch}, lower than epoch ${head.epoch} already stored: this writer was fenced by a newer one; stop writing from it`,
    );
  }
}

function brokenChain(firstSeq: number, head: BatchIdentity, where: string): StorageError {
  return new StorageError(
    'Conflict',
    `${where}: batch from seq ${firstSeq} does not chain to the stored head (${describeIdentity(head)}): the bytes come from a different history; compare the copies with identityAt() before copying`,
  );
}
