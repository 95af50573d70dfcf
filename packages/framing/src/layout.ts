/**
 * The frame format, version 3 (version 1 and 2 logs still decode). Binary, little-endian,
 * self-delimiting, checksummed.
 *
 * Every frame starts with its total length and ends with a CRC-32C of everything before
 * the CRC. Two kinds exist:
 *
 * Event frame (kind 1), 52-byte header:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | frameBytes: total length, this field and the CRC included |
 * | 4 | 1 | format version (2 or 3, see below; 1 in older logs, same layout) |
 * | 5 | 1 | kind (1 = event) |
 * | 6 | 1 | flags: bit 0 first frame of its commit, bit 1 last frame of its commit |
 * | 7 | 1 | reserved, 0 |
 * | 8 | 8 | seq |
 * | 16 | 8 | timestamp, ms since the Unix epoch |
 * | 24 | 4 | epoch (fencing term of the writer) |
 * | 28 | 2 | streamIdBytes |
 * | 30 | 2 | eventTypeBytes |
 * | 32 | 8 | streamVersion |
 * | 40 | 4 | headersBytes (commit headers: command ids, correlation, causation) |
 * | 44 | 4 | metadataBytes (opaque, application-defined) |
 * | 48 | 4 | payloadBytes (opaque) |
 * | 52 | … | streamId (UTF-8), eventType (UTF-8), headers, metadata, payload |
 * | end−4 | 4 | CRC-32C of bytes [0, end−4) |
 *
 * Commit marker (kind 2), version 2, 88 bytes: seals every event frame written since the
 * previous marker (one or more whole commits: a batch). Readers accept frames only once a
 * marker whose digest verifies has been read after them. The marker names the digest of the
 * previous batch, so the log is a hash chain: two copies whose markers match at a seq hold the
 * same history up to it.
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | frameBytes (88) |
 * | 4 | 1 | format version (2) |
 * | 5 | 1 | kind (2 = marker) |
 * | 6 | 1 | digest algorithm (1 = SHA-1) |
 * | 7 | 1 | reserved, 0 |
 * | 8 | 8 | firstSeq sealed |
 * | 16 | 8 | timestamp |
 * | 24 | 4 | epoch |
 * | 28 | 4 | frameCount sealed |
 * | 32 | 8 | lastSeq sealed |
 * | 40 | 4 | digestBytes (20) |
 * | 44 | 20 | prevDigest: the previous batch's digest (20 zero bytes before the first batch) |
 * | 64 | 20 | digest: SHA-1 of the sealed event frames' exact bytes followed by bytes [0, 64) of this marker |
 * | 84 | 4 | CRC-32C |
 *
 * A version 1 marker (68 bytes) has no prevDigest: its digest (offset 44) covers the sealed
 * event frames only. A version 2 marker may follow a version 1 batch (its prevDigest is then
 * the version 1 digest), which is how a version 1 log continues under version 2.
 *
 * Commit headers (inside an event frame, normally the first frame of a commit):
 * u16 commandIdCount, then per id u16 length + UTF-8; u16 length + UTF-8 correlation id;
 * u16 length + UTF-8 causation id (length 0 = absent); in a version 3 event frame only, then
 * u16 length + UTF-8 reliability level name (length 0 = absent).
 *
 * Version 3 adds only that level field; every other byte of the layout is as in version 2. A
 * writer writes one version for all its frames and markers (`FrameWriterOptions.formatVersion`):
 * 2 by default, so a partition without a level writes logs any version 2 decoder reads; 3 when
 * its commits record a level (the partition engine does this when it is given one). A batch is
 * of one version, frames and marker alike; version 3 batches chain to version 2 (and 1) batches
 * as version 2 ones do, so an existing log continues under version 3 and back. Version 1 and 2
 * logs decode unchanged, with `headers.level` absent. An older decoder (versions 1–2) that
 * meets a version 3 frame stops there with `unsupported-version` ("upgrade @sluice/framing"),
 * and store-file refuses to open such a log rather than cut it: a downgrade is refused, never a
 * silent truncation.
 *
 * 64-bit integers are stored as two u32 halves and must be safe integers (< 2^53).
 * A length field of 0 at a frame boundary means unwritten (preallocated, zero-filled) space.
 */
export const FORMAT_VERSION = 3;
/** The version a writer writes by default (frames of commits that record no level). */
export const FORMAT_VERSION_BASE = 2;
/** The first version whose commit headers carry a reliability level. */
export const FORMAT_VERSION_LEVEL = 3;
/** Oldest format version decoders still read. */
export const FORMAT_VERSION_MIN = 1;
export const KIND_EVENT = 1;
export const KIND_MARKER = 2;
export const FLAG_COMMIT_FIRST = 1;
export const FLAG_COMMIT_LAST = 2;
export const DIGEST_SHA1 = 1;
export const SHA1_BYTES = 20;

export const EVENT_HEADER_BYTES = 52;
/**
 * Offsets of an event frame's header fields (the table above), for readers that walk frames in
 * place instead of decoding them (subscriptions, the broadcast codec).
 */
export const EVENT_VERSION_AT = 4;
export const EVENT_KIND_AT = 5;
export const EVENT_SEQ_AT = 8;
export const EVENT_TIMESTAMP_AT = 16;
export const EVENT_STREAM_ID_BYTES_AT = 28;
export const EVENT_TYPE_BYTES_AT = 30;
export const EVENT_STREAM_VERSION_AT = 32;
export const EVENT_HEADERS_BYTES_AT = 40;
export const EVENT_METADATA_BYTES_AT = 44;
export const EVENT_PAYLOAD_BYTES_AT = 48;
export const MARKER_HEADER_BYTES = 44;
/** Offset of the previous batch's digest in a version 2 marker. */
export const MARKER_PREV_DIGEST_OFFSET = 44;
/** Offset of the batch digest in a version 2 marker; the bytes before it are digested with the frames. */
export const MARKER_DIGEST_OFFSET = 64;
export const CRC_BYTES = 4;
/** The smallest possible frame: an event frame with every variable field empty. */
export const FRAME_BYTES_MIN = EVENT_HEADER_BYTES + CRC_BYTES;
/** A version 2 SHA-1 commit marker's exact size. */
export const MARKER_BYTES = MARKER_DIGEST_OFFSET + SHA1_BYTES + CRC_BYTES;
/** A version 1 SHA-1 commit marker's exact size. */
export const MARKER_V1_BYTES = MARKER_HEADER_BYTES + SHA1_BYTES + CRC_BYTES;
/** The previous digest of the first batch of a log. */
export const ZERO_DIGEST: Uint8Array = new Uint8Array(SHA1_BYTES);
/** Default largest frame accepted by the encoder and decoder: 4 MiB. */
export const DEFAULT_FRAME_BYTES_MAX = 4 * 1024 * 1024;
/** Longest stream id or event type, in UTF-8 bytes. */
export const NAME_BYTES_MAX = 0xffff;

const TWO_32 = 0x1_0000_0000;
/** High half of the largest safe integer. */
const SAFE_HIGH_MAX = 0x1fffff;

export function readU32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

export function readU16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

/** Reads a u64 stored as two u32 halves; returns -1 when it is not a safe integer. */
export function readU53(b: Uint8Array, o: number): number {
  const high = readU32(b, o + 4);
  if (high > SAFE_HIGH_MAX) return -1;
  return high * TWO_32 + readU32(b, o);
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
}

export function writeU53(b: Uint8Array, o: number, v: number): void {
  // v < 2^53, so the high word is below 2^21 and `>>> 0` truncates the quotient (no fmod).
  const high = (v / TWO_32) >>> 0;
  writeU32(b, o, v - high * TWO_32);
  writeU32(b, o + 4, high);
}
