import type { FileHandle } from 'node:fs/promises';
import { FRAME_BYTES_MIN, KIND_EVENT, KIND_MARKER, MARKER_BYTES, MARKER_V1_BYTES, crc32c, decodeBatches } from '@sluice/framing';
import { mapFsError } from './fs-errors.js';
import { readAt } from './segment-log.js';

const CHUNK_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(CHUNK_BYTES);
const TWO_32 = 0x1_0000_0000;

/**
 * The bytes from `from` up to the last non-zero byte of the file (empty when all of it is
 * zero). Reads the whole rest of the file, not only up to the first run of zeros: a stale
 * batch far behind a zeroed page is still data recovery must see.
 */
export async function readNonZero(handle: FileHandle, from: number, where: string): Promise<Buffer> {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let position = from;
  let end = from;
  for (;;) {
    const { bytesRead } = await readAt(handle, chunk, position, where);
    // memcmp first: almost every chunk of a tail is zero.
    let last = isZero(chunk, bytesRead) ? -1 : bytesRead - 1;
    while (last >= 0 && chunk[last] === 0) last--;
    if (last >= 0) end = position + last + 1;
    position += bytesRead;
    if (bytesRead < chunk.length) break;
  }
  if (end === from) return Buffer.alloc(0);
  const out = Buffer.alloc(end - from);
  await readAt(handle, out, from, where);
  return out;
}

/** Zero-fills [from, to) where it is not zero already (not synced). */
export async function zeroRange(handle: FileHandle, from: number, to: number, where: string): Promise<void> {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  try {
    for (let p = from; p < to; p += CHUNK_BYTES) {
      const n = Math.min(CHUNK_BYTES, to - p);
      const { bytesRead } = await readAt(handle, chunk.subarray(0, n), p, where);
      if (!isZero(chunk, bytesRead)) await handle.write(ZEROS, 0, n, p);
    }
  } catch (error) {
    throw mapFsError(error, where);
  }
}

function isZero(chunk: Buffer, length: number): boolean {
  return chunk.subarray(0, length).equals(ZEROS.subarray(0, length));
}

/**
 * Every verified batch with seqs after `afterSeq` anywhere in `region`, in linear time: looks
 * for markers (version 1 or 2) whose CRC verifies, then for the event frame that would start
 * their batch, and decodes only those candidates (digest checked, chain not: it may follow a
 * hole).
 */
export function findSealedBatches(region: Buffer, afterSeq: number): Array<{ firstSeq: number; lastSeq: number; offset: number }> {
  const out: Array<{ firstSeq: number; lastSeq: number; offset: number }> = [];
  // A batch starts after the marker before it: searching back stops there (linear overall).
  let floor = 0;
  for (let o = 0; o + MARKER_V1_BYTES <= region.length; o++) {
    if (region[o + 5] !== KIND_MARKER) continue;
    const size = region.readUInt32LE(o);
    const version = region[o + 4];
    if (!((version === 2 && size === MARKER_BYTES) || (version === 1 && size === MARKER_V1_BYTES)) || o + size > region.length) continue;
    if (crc32c(region, o, o + size - 4) !== region.readUInt32LE(o + size - 4)) continue;
    const low = floor;
    floor = o + size;
    const firstSeq = region.readUInt32LE(o + 8) + region.readUInt32LE(o + 12) * TWO_32;
    const lastSeq = region.readUInt32LE(o + 32) + region.readUInt32LE(o + 36) * TWO_32;
    if (lastSeq <= afterSeq) continue;
    for (let start = o - FRAME_BYTES_MIN; start >= low; start--) {
      if (region[start + 5] !== KIND_EVENT || (region[start + 4] !== 1 && region[start + 4] !== 2)) continue;
      if (region.readUInt32LE(start + 8) + region.readUInt32LE(start + 12) * TWO_32 !== firstSeq) continue;
      const { batches } = decodeBatches(region.subarray(start, o + size));
      if (batches.length === 1 && batches[0].lastSeq === lastSeq) {
        out.push({ firstSeq, lastSeq, offset: start });
        break;
      }
    }
  }
  return out;
}
