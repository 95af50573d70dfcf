import { SHA1_BYTES, ZERO_DIGEST, crc32c, readU32, readU53 } from '@sluice/framing';
import type { BatchIdentity } from '@sluice/store';

/**
 * The header of a version 2 segment: the first {@link SEGMENT_HEADER_BYTES} bytes of every
 * segment file; batches start right after it.
 *
 * Static part (bytes 0..511, written once when the writer rolls into the segment):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic "SLUICESG" |
 * | 8 | 4 | header version (1) |
 * | 12 | 4 | data offset (4096) |
 * | 16 | 16 | incarnation: random id of the partition, made when it was created, the same in every segment |
 * | 32 | 8 | segment number (equals the file name's) |
 * | 40 | 8 | base seq: seq of the segment's first frame |
 * | 48 | 4 | epoch of the batch before base seq |
 * | 52 | 20 | digest of the batch before base seq (the chain across segments) |
 * | 72 | 8 | bytes the segment was preallocated to |
 * | 80 | 2 | partition name length, then the UTF-8 name (at most 256 bytes) |
 * | 508 | 4 | CRC-32C of bytes [0, 508) |
 *
 * Two watermark slots at 1024 and 1536 (512 bytes each, sector-aligned), written in turn
 * (slot `counter % 2`), each with its own CRC; the valid one with the higher counter counts,
 * so a torn slot write leaves the other one intact:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | counter |
 * | 8 | 4 | flags: bit 0 successor (the next segment exists and is synced), bit 1 cut record present, bit 2 the cut is a truncate's (else a failed write or sync's) |
 * | 12 | 32 | synced: identity (seq 8, epoch 4, digest 20) of the last batch a successful fdatasync confirmed |
 * | 44 | 32 | acknowledged: identity of the durable head per the policy (what readers in other processes may serve) |
 * | 76 | 32 | cut record: recovery removes every batch after this identity (a failed write or sync, an unfinished truncate) |
 * | 508 | 4 | CRC-32C of bytes [0, 508) |
 */
export const SEGMENT_HEADER_BYTES = 4096;
export const SEGMENT_MAGIC = Buffer.from('SLUICESG', 'latin1');
export const HEADER_VERSION = 1;
export const PARTITION_NAME_BYTES_MAX = 256;
export const INCARNATION_BYTES = 16;
const STATIC_BYTES = 512;
const SLOT_BYTES = 512;
const SLOT_OFFSETS = [1024, 1536] as const;
const FLAG_SUCCESSOR = 1;
const FLAG_CUT = 2;
const FLAG_CUT_OPERATOR = 4;

/** What the static part of a segment header says. */
export interface SegmentHeader {
  readonly incarnation: Uint8Array;
  readonly partition: string;
  readonly segment: number;
  readonly baseSeq: number;
  /** Identity of the batch before `baseSeq` (lastSeq = baseSeq − 1). */
  readonly previous: BatchIdentity;
  readonly allocatedBytes: number;
}

/** A cut recovery must make: every batch after `after` goes. */
export interface CutRecord {
  readonly after: BatchIdentity;
  readonly kind: 'fault' | 'truncate';
}

/** One watermark slot. */
export interface WatermarkSlot {
  readonly counter: number;
  readonly synced: BatchIdentity;
  readonly acked: BatchIdentity;
  readonly successor: boolean;
  readonly cut: CutRecord | undefined;
}

/** What the first page of a segment file holds. */
export type HeaderPage =
  | { readonly kind: 'zero' }
  | { readonly kind: 'v1' }
  | { readonly kind: 'damaged'; readonly detail: string }
  | { readonly kind: 'v2'; readonly header: SegmentHeader; readonly slot: WatermarkSlot | undefined };

function putU53(b: Buffer, o: number, v: number): void {
  b.writeUInt32LE(v % 0x1_0000_0000, o);
  b.writeUInt32LE(Math.floor(v / 0x1_0000_0000), o + 4);
}

function putIdentity(b: Buffer, o: number, id: BatchIdentity): void {
  putU53(b, o, id.lastSeq);
  b.writeUInt32LE(id.epoch, o + 8);
  b.set(id.digest.subarray(0, SHA1_BYTES), o + 12);
}

function getIdentity(b: Uint8Array, o: number): BatchIdentity {
  return { lastSeq: readU53(b, o), epoch: readU32(b, o + 8), digest: Uint8Array.from(b.subarray(o + 12, o + 12 + SHA1_BYTES)) };
}

/** The first page of a new segment: its static header and slot 1 holding `slot`. */
export function encodeHeaderPage(header: SegmentHeader, slot: Omit<WatermarkSlot, 'counter'>): Buffer {
  const page = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(page, 0);
  page.writeUInt32LE(HEADER_VERSION, 8);
  page.writeUInt32LE(SEGMENT_HEADER_BYTES, 12);
  page.set(header.incarnation, 16);
  putU53(page, 32, header.segment);
  putU53(page, 40, header.baseSeq);
  page.writeUInt32LE(header.previous.epoch, 48);
  page.set(header.previous.digest.subarray(0, SHA1_BYTES), 52);
  putU53(page, 72, header.allocatedBytes);
  const name = Buffer.from(header.partition, 'utf8').subarray(0, PARTITION_NAME_BYTES_MAX);
  page.writeUInt16LE(name.length, 80);
  name.copy(page, 82);
  page.writeUInt32LE(crc32c(page, 0, STATIC_BYTES - 4), STATIC_BYTES - 4);
  const first = encodeSlot({ ...slot, counter: 1 });
  first.copy(page, slotOffset(1));
  return page;
}

/** Where the slot with `counter` goes. */
export function slotOffset(counter: number): number {
  return SLOT_OFFSETS[counter % 2];
}

export function encodeSlot(slot: WatermarkSlot): Buffer {
  const b = Buffer.alloc(SLOT_BYTES);
  putU53(b, 0, slot.counter);
  const flags = (slot.successor ? FLAG_SUCCESSOR : 0) | (slot.cut === undefined ? 0 : FLAG_CUT | (slot.cut.kind === 'truncate' ? FLAG_CUT_OPERATOR : 0));
  b.writeUInt32LE(flags, 8);
  putIdentity(b, 12, slot.synced);
  putIdentity(b, 44, slot.acked);
  if (slot.cut !== undefined) putIdentity(b, 76, slot.cut.after);
  b.writeUInt32LE(crc32c(b, 0, SLOT_BYTES - 4), SLOT_BYTES - 4);
  return b;
}

function decodeSlot(page: Uint8Array, o: number): WatermarkSlot | undefined {
  if (crc32c(page, o, o + SLOT_BYTES - 4) !== readU32(page, o + SLOT_BYTES - 4)) return undefined;
  const counter = readU53(page, o);
  if (counter <= 0) return undefined;
  const flags = readU32(page, o + 8);
  const synced = getIdentity(page, o + 12);
  const acked = getIdentity(page, o + 44);
  if (synced.lastSeq < 0 || acked.lastSeq < 0) return undefined;
  const cut = (flags & FLAG_CUT) === 0 ? undefined : { after: getIdentity(page, o + 76), kind: (flags & FLAG_CUT_OPERATOR) === 0 ? ('fault' as const) : ('truncate' as const) };
  return { counter, synced, acked, successor: (flags & FLAG_SUCCESSOR) !== 0, cut };
}

/** Reads both slots of a header page and returns the valid one with the higher counter. */
export function newestSlot(page: Uint8Array): WatermarkSlot | undefined {
  const a = decodeSlot(page, SLOT_OFFSETS[0]);
  const b = decodeSlot(page, SLOT_OFFSETS[1]);
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a.counter > b.counter ? a : b;
}

/** Classifies the first page of a segment file (shorter input counts as zero-padded). */
export function decodeHeaderPage(input: Uint8Array): HeaderPage {
  const page = input.length >= SEGMENT_HEADER_BYTES ? input : padded(input);
  let zero = true;
  for (let i = 0; i < SEGMENT_HEADER_BYTES; i++) {
    if (page[i] !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return { kind: 'zero' };
  if (!SEGMENT_MAGIC.equals(page.subarray(0, SEGMENT_MAGIC.length))) {
    // A version 1 segment starts with a frame: its length field, then format version 1 or 2.
    return { kind: 'v1' };
  }
  if (crc32c(page, 0, STATIC_BYTES - 4) !== readU32(page, STATIC_BYTES - 4)) return { kind: 'damaged', detail: 'the segment header fails its CRC-32C' };
  const version = readU32(page, 8);
  if (version !== HEADER_VERSION || readU32(page, 12) !== SEGMENT_HEADER_BYTES) {
    return { kind: 'damaged', detail: `segment header version ${version} is not supported: open it with a newer @sluice/store-file` };
  }
  const baseSeq = readU53(page, 40);
  const nameBytes = page[80] | (page[81] << 8);
  const header: SegmentHeader = {
    incarnation: Uint8Array.from(page.subarray(16, 32)),
    segment: readU53(page, 32),
    baseSeq,
    previous: { lastSeq: baseSeq - 1, epoch: readU32(page, 48), digest: Uint8Array.from(page.subarray(52, 72)) },
    allocatedBytes: readU53(page, 72),
    partition: Buffer.from(page.buffer, page.byteOffset + 82, Math.min(nameBytes, PARTITION_NAME_BYTES_MAX)).toString('utf8'),
  };
  return { kind: 'v2', header, slot: newestSlot(page) };
}

function padded(input: Uint8Array): Uint8Array {
  const page = new Uint8Array(SEGMENT_HEADER_BYTES);
  page.set(input);
  return page;
}

export function incarnationHex(id: Uint8Array): string {
  return Buffer.from(id).toString('hex');
}

export const EMPTY_DIGEST = ZERO_DIGEST;
