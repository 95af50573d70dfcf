import { endianness } from 'node:os';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SHA1_BYTES, crc32c, readU32, readU53 } from '@sluice/framing';
import type { BatchIdentity } from '@sluice/store';
import { mapFsError } from './fs-errors.js';
import { INCARNATION_BYTES, SEGMENT_HEADER_BYTES } from './segment-header.js';

/**
 * The sidecar of a sealed segment: its batch table and frame positions, so `open()` can load
 * the segment without reading its data. Derived data, never trusted blindly (see
 * {@link decodeSidecar} and the README's trust rule); the log never depends on it.
 *
 * Layout (little-endian), `00000001.idx` beside `00000001.seg`:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic "SLUICEIX" |
 * | 8 | 4 | sidecar version (1) |
 * | 12 | 4 | header bytes (128) |
 * | 16 | 16 | incarnation of the partition |
 * | 32 | 8 | segment number |
 * | 40 | 8 | base seq of the segment |
 * | 48 | 8 | data end: offset just past the segment's last batch |
 * | 56 | 32 | identity of the segment's last batch (seq 8, epoch 4, digest 20) |
 * | 88 | 4 | batch count n |
 * | 92 | 4 | frame position count m |
 * | 96 | 4 | frame position interval in bytes |
 * | 100 | 24 | reserved, zero |
 * | 124 | 4 | CRC-32C of bytes [0, 124) |
 * | 128 | 8n each | batch table columns (float64): first seqs, last seqs, offsets, lengths |
 * | … | 8m each | frame positions (float64): seqs, offsets |
 * | end−4 | 4 | CRC-32C of everything before it |
 */
export const SIDECAR_SUFFIX = '.idx';
const MAGIC = Buffer.from('SLUICEIX', 'latin1');
const VERSION = 1;
const HEADER_BYTES = 128;
/** Sidecars hold raw float64 columns: written and read only on little-endian hosts (else segments are scanned). */
export const SIDECARS_SUPPORTED = endianness() === 'LE';

export function sidecarName(segment: number): string {
  return `${String(segment).padStart(8, '0')}${SIDECAR_SUFFIX}`;
}

/** What a sidecar holds. */
export interface SegmentSidecar {
  readonly incarnation: Uint8Array;
  readonly segment: number;
  readonly baseSeq: number;
  readonly dataEnd: number;
  readonly last: BatchIdentity;
  readonly frameIntervalBytes: number;
  readonly firstSeqs: Float64Array;
  readonly lastSeqs: Float64Array;
  readonly offsets: Float64Array;
  readonly lengths: Float64Array;
  readonly frameSeqs: Float64Array;
  readonly frameOffsets: Float64Array;
}

function writeU32(b: Buffer, o: number, v: number): void {
  b.writeUInt32LE(v >>> 0, o);
}

function writeU53(b: Buffer, o: number, v: number): void {
  b.writeUInt32LE(v % 0x1_0000_0000, o);
  b.writeUInt32LE(Math.floor(v / 0x1_0000_0000), o + 4);
}

export function encodeSidecar(s: SegmentSidecar): Buffer {
  const n = s.firstSeqs.length;
  const m = s.frameSeqs.length;
  const out = Buffer.alloc(HEADER_BYTES + 8 * (4 * n + 2 * m) + 4);
  MAGIC.copy(out, 0);
  writeU32(out, 8, VERSION);
  writeU32(out, 12, HEADER_BYTES);
  out.set(s.incarnation.subarray(0, INCARNATION_BYTES), 16);
  writeU53(out, 32, s.segment);
  writeU53(out, 40, s.baseSeq);
  writeU53(out, 48, s.dataEnd);
  writeU53(out, 56, s.last.lastSeq);
  writeU32(out, 64, s.last.epoch);
  out.set(s.last.digest.subarray(0, SHA1_BYTES), 68);
  writeU32(out, 88, n);
  writeU32(out, 92, m);
  writeU32(out, 96, s.frameIntervalBytes);
  writeU32(out, 124, crc32c(out, 0, 124));
  let o = HEADER_BYTES;
  for (const column of [s.firstSeqs, s.lastSeqs, s.offsets, s.lengths, s.frameSeqs, s.frameOffsets]) {
    out.set(new Uint8Array(column.buffer, column.byteOffset, column.byteLength), o);
    o += column.byteLength;
  }
  writeU32(out, o, crc32c(out, 0, o));
  return out;
}

/** What the sidecar must be bound to: the segment's own header. */
export interface SidecarExpectation {
  readonly incarnation: Uint8Array;
  readonly segment: number;
  readonly baseSeq: number;
}

/**
 * Decodes and checks a sidecar: both CRCs, its binding (incarnation, segment number, base
 * seq) and its internal consistency (batches back to back from the header on, seqs gapless,
 * a frame position at every batch start, all positions inside the data). Returns the
 * sidecar, or why it cannot be trusted.
 */
export function decodeSidecar(bytes: Uint8Array, expect: SidecarExpectation): SegmentSidecar | string {
  if (bytes.length < HEADER_BYTES + 4) return `truncated (${bytes.length} bytes)`;
  if (!MAGIC.equals(bytes.subarray(0, 8))) return 'bad magic';
  if (crc32c(bytes, 0, 124) !== readU32(bytes, 124)) return 'its header fails its CRC-32C';
  if (readU32(bytes, 8) !== VERSION || readU32(bytes, 12) !== HEADER_BYTES) return `version ${readU32(bytes, 8)} is not supported`;
  const n = readU32(bytes, 88);
  const m = readU32(bytes, 92);
  const size = HEADER_BYTES + 8 * (4 * n + 2 * m) + 4;
  if (bytes.length !== size) return `holds ${bytes.length} bytes, its header says ${size}`;
  if (crc32c(bytes, 0, size - 4) !== readU32(bytes, size - 4)) return 'it fails its CRC-32C';
  const incarnation = bytes.subarray(16, 32);
  if (Buffer.compare(incarnation, expect.incarnation) !== 0) return 'it belongs to another partition or incarnation';
  const segment = readU53(bytes, 32);
  const baseSeq = readU53(bytes, 40);
  if (segment !== expect.segment || baseSeq !== expect.baseSeq) return `it describes segment ${segment} from seq ${baseSeq}, not segment ${expect.segment} from seq ${expect.baseSeq}`;
  const dataEnd = readU53(bytes, 48);
  const last: BatchIdentity = { lastSeq: readU53(bytes, 56), epoch: readU32(bytes, 64), digest: Uint8Array.from(bytes.subarray(68, 68 + SHA1_BYTES)) };
  let o = HEADER_BYTES;
  const column = (count: number): Float64Array => {
    const c = new Float64Array(count);
    new Uint8Array(c.buffer).set(bytes.subarray(o, o + 8 * count));
    o += 8 * count;
    return c;
  };
  const firstSeqs = column(n);
  const lastSeqs = column(n);
  const offsets = column(n);
  const lengths = column(n);
  const frameSeqs = column(m);
  const frameOffsets = column(m);
  if (n === 0) return 'it holds no batch';
  let expectSeq = baseSeq;
  let expectOffset = SEGMENT_HEADER_BYTES;
  let f = 0;
  for (let i = 0; i < n; i++) {
    if (firstSeqs[i] !== expectSeq || offsets[i] !== expectOffset || !(lastSeqs[i] >= firstSeqs[i]) || !(lengths[i] > 0) || !Number.isSafeInteger(lastSeqs[i]) || !Number.isSafeInteger(lengths[i])) {
      return `its batch table is inconsistent at entry ${i}`;
    }
    // Frame positions of this batch: the first at its start, all inside it, ascending.
    if (f >= m || frameSeqs[f] !== firstSeqs[i] || frameOffsets[f] !== offsets[i]) return `no frame position at the start of batch ${i}`;
    const end = offsets[i] + lengths[i];
    for (f++; f < m && frameSeqs[f] <= lastSeqs[i]; f++) {
      if (!(frameSeqs[f] > frameSeqs[f - 1]) || !(frameOffsets[f] > frameOffsets[f - 1]) || !(frameOffsets[f] < end)) return `frame position ${f} is inconsistent`;
    }
    expectSeq = lastSeqs[i] + 1;
    expectOffset = end;
  }
  if (f !== m) return 'it holds frame positions past its last batch';
  if (lastSeqs[n - 1] !== last.lastSeq || dataEnd !== expectOffset) return 'its last batch does not match its summary';
  return { incarnation: Uint8Array.from(incarnation), segment, baseSeq, dataEnd, last, frameIntervalBytes: readU32(bytes, 96), firstSeqs, lastSeqs, offsets, lengths, frameSeqs, frameOffsets };
}

/** The bytes of a segment's sidecar, or undefined when there is none (or it cannot be read). */
export async function readSidecar(directory: string, segment: number): Promise<Uint8Array | undefined> {
  return readFile(join(directory, sidecarName(segment))).catch(() => undefined);
}

/** Writes a sidecar crash-safely: a temporary file, fdatasync, rename over, directory fsync. */
export async function writeSidecar(directory: string, sidecar: SegmentSidecar): Promise<void> {
  const path = join(directory, sidecarName(sidecar.segment));
  const tmp = `${path}.tmp`;
  try {
    const handle = await open(tmp, 'w');
    try {
      await handle.writeFile(encodeSidecar(sidecar));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
    const dir = await open(directory, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw mapFsError(error, path);
  }
}

/** Removes the sidecar of `segment` if there is one (its segment is no longer sealed as described). */
export async function removeSidecar(directory: string, segment: number): Promise<void> {
  await unlink(join(directory, sidecarName(segment))).catch(() => undefined);
}
