import {
  CRC_BYTES,
  DEFAULT_FRAME_BYTES_MAX,
  EVENT_HEADER_BYTES,
  EVENT_HEADERS_BYTES_AT,
  EVENT_KIND_AT,
  EVENT_METADATA_BYTES_AT,
  EVENT_PAYLOAD_BYTES_AT,
  EVENT_SEQ_AT,
  EVENT_STREAM_ID_BYTES_AT,
  EVENT_TYPE_BYTES_AT,
  EVENT_VERSION_AT,
  FORMAT_VERSION,
  FORMAT_VERSION_MIN,
  FRAME_BYTES_MIN,
  FrameWriter,
  KIND_EVENT,
  crc32c,
  decodeEventFrameAt,
  readU16,
  readU32,
} from '@sluice/framing';
import type { RecordedEvent } from '@sluice/store';

/**
 * Datagram format of the broadcast (little-endian), version 2:
 *
 * ```
 * magic u32 "SLBC" | version u8 (2) | kind u8 (1 data, 2 heartbeat) | nameLen u8 | name utf8
 * | session u32 | data: firstSeq f64 | count u32 | frames...  heartbeat: headSeq f64
 * | crc32c u32 over everything before it
 * ```
 *
 * `frames` are `count` event frames of the partition's log exactly as stored (the framing
 * package's format: length, seq, fields, each frame's own CRC-32C), back to back, seqs
 * `firstSeq`, `firstSeq + 1`, …: the publisher copies them out of the sealed batch bytes
 * without decoding or re-encoding them. A receiver checks the datagram's CRC-32C (one native
 * pass over all its bytes, so every byte of every frame is verified), then walks the frames'
 * length fields and checks each frame's kind, version, field lengths and seq (seq order within
 * the datagram is verified per event). Anything that does not check out is rejected as a whole
 * (`decodeDatagram` returns `undefined`), never half-applied: the receiver then repairs the
 * range like any lost datagram. Events are decoded to objects only when a consumer asks
 * ({@link FrameRun.events}).
 */
export const DATAGRAM_MAGIC = 0x43424c53; // "SLBC"
export const DATAGRAM_VERSION = 2;
export const KIND_DATA = 1;
export const KIND_HEARTBEAT = 2;
/** Largest UDP payload over IPv4. */
export const DATAGRAM_BYTES_LIMIT = 65507;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A run of consecutive committed events as stored frames, decoded to objects only on demand.
 * Receivers hand these over whole: a consumer that forwards, stores or checksums frames never
 * pays for objects; {@link events} decodes them once (and caches the array).
 */
export class FrameRun {
  private decoded: RecordedEvent[] | undefined;
  private encoded: Uint8Array | undefined;

  private constructor(
    /** Seq of the first event. */
    readonly firstSeq: number,
    /** Number of events. */
    readonly length: number,
    frames: Uint8Array | undefined,
    events: RecordedEvent[] | undefined,
  ) {
    this.encoded = frames;
    this.decoded = events;
  }

  /** A run over `frames`, `count` verified event frames with seqs `firstSeq`… (not copied). */
  static ofFrames(firstSeq: number, count: number, frames: Uint8Array): FrameRun {
    return new FrameRun(firstSeq, count, frames, undefined);
  }

  /** A run of decoded, consecutive events (e.g. from a replayer); framed only if asked. */
  static ofEvents(events: RecordedEvent[]): FrameRun {
    if (events.length === 0) throw new RangeError('[sluice/subscriptions] FrameRun.ofEvents: no events');
    return new FrameRun(events[0].seq, events.length, undefined, events);
  }

  /** Seq of the last event. */
  get lastSeq(): number {
    return this.firstSeq + this.length - 1;
  }

  /**
   * The events' frames back to back (the stored format, each with its CRC-32C). For a run that
   * came as objects they are encoded on first use (same fields; the bytes may differ from the
   * stored ones in format version).
   */
  get frames(): Uint8Array {
    this.encoded ??= encodeFrames(this.decoded as RecordedEvent[]);
    return this.encoded;
  }

  /** The events as objects, decoded on first use; `payload` and `metadata` are views into the frames. */
  get events(): RecordedEvent[] {
    this.decoded ??= decodeFrames(this.encoded as Uint8Array, this.firstSeq, this.length);
    return this.decoded;
  }

  /** The part of this run from `seq` on (`firstSeq < seq <= lastSeq`). */
  from(seq: number): FrameRun {
    const skip = seq - this.firstSeq;
    if (skip <= 0) return this;
    if (skip >= this.length) throw new RangeError(`[sluice/subscriptions] FrameRun.from(${seq}) outside ${this.firstSeq}..${this.lastSeq}`);
    if (this.decoded !== undefined) return new FrameRun(seq, this.length - skip, undefined, this.decoded.slice(skip));
    const bytes = this.encoded as Uint8Array;
    let o = 0;
    for (let i = 0; i < skip; i++) o += readU32(bytes, o);
    return new FrameRun(seq, this.length - skip, bytes.subarray(o), undefined);
  }
}

function decodeFrames(bytes: Uint8Array, firstSeq: number, count: number): RecordedEvent[] {
  const events: RecordedEvent[] = new Array(count);
  let o = 0;
  for (let i = 0; i < count; i++) {
    // The datagram's CRC covered these bytes: the frame's own is not computed again.
    const e = decodeEventFrameAt(bytes, o, DEFAULT_FRAME_BYTES_MAX, false);
    if (typeof e === 'string') throw new Error(`[sluice/subscriptions] broadcast frame of seq ${firstSeq + i} passed its checksum but does not decode: ${e}`);
    events[i] = e;
    o += e.frameBytes;
  }
  return events;
}

function encodeFrames(events: readonly RecordedEvent[]): Uint8Array {
  let level = false;
  let bytes = 0;
  for (const e of events) {
    if (e.headers?.level !== undefined) level = true;
    bytes += e.frameBytes;
  }
  const writer = new FrameWriter({ initialBytes: Math.max(1024, bytes + 1024), formatVersion: level ? 3 : 2 });
  for (const e of events) {
    const flags = (e.commitFirst ? 1 : 0) | (e.commitLast ? 2 : 0);
    writer.appendEvent(e.seq, e.epoch, e.timestamp, flags, e.streamId, e.streamVersion, e.eventType, e.headers, e.metadata, e.payload);
  }
  return Uint8Array.from(writer.bytes());
}

export type Datagram =
  | { readonly kind: 'data'; readonly partition: string; readonly session: number; readonly run: FrameRun }
  | { readonly kind: 'heartbeat'; readonly partition: string; readonly session: number; readonly headSeq: number };

function headerBytes(nameBytes: Uint8Array): number {
  return 4 + 1 + 1 + 1 + nameBytes.length + 4;
}

function writeHeader(view: DataView, bytes: Uint8Array, kind: number, nameBytes: Uint8Array, session: number): number {
  view.setUint32(0, DATAGRAM_MAGIC, true);
  view.setUint8(4, DATAGRAM_VERSION);
  view.setUint8(5, kind);
  view.setUint8(6, nameBytes.length);
  bytes.set(nameBytes, 7);
  const o = 7 + nameBytes.length;
  view.setUint32(o, session >>> 0, true);
  return o + 4;
}

/** Encodes a heartbeat: the publisher's partition head, so receivers notice a lost tail. */
export function encodeHeartbeat(partition: string, session: number, headSeq: number): Uint8Array {
  const nameBytes = encoder.encode(partition);
  const bytes = new Uint8Array(headerBytes(nameBytes) + 8 + 4);
  const view = new DataView(bytes.buffer);
  let o = writeHeader(view, bytes, KIND_HEARTBEAT, nameBytes, session);
  view.setFloat64(o, headSeq, true);
  o += 8;
  view.setUint32(o, crc32c(bytes, 0, o), true);
  return bytes;
}

/**
 * Cuts runs of stored event frames into data datagrams of at most `datagramBytesMax` bytes,
 * copying the frames as they are (one copy into the datagram, no re-encoding). One per
 * publisher: the header (partition, session) is built once.
 */
export class DatagramEncoder {
  private readonly nameBytes: Uint8Array;
  private readonly fixed: number;

  constructor(
    readonly partition: string,
    readonly session: number,
    readonly datagramBytesMax: number,
  ) {
    this.nameBytes = encoder.encode(partition);
    this.fixed = headerBytes(this.nameBytes) + 8 + 4 + 4;
    if (this.fixed + FRAME_BYTES_MIN > datagramBytesMax) throw new RangeError(`[sluice/subscriptions] datagramBytesMax ${datagramBytesMax} cannot hold one frame: raise it`);
  }

  /**
   * The datagrams carrying the event frames of `bytes` (frames back to back, seqs `firstSeq`…;
   * a commit marker ends them, as in a sealed batch) from seq `fromSeq` on. A frame too large
   * for any datagram is left out (its seq returned in `oversized`): receivers see the hole and
   * repair it from the replayer. `lastSeq` is the last seq looked at (0 when none).
   */
  encode(bytes: Uint8Array, firstSeq: number, fromSeq: number, out: Uint8Array[], oversized: number[]): number {
    const parts: Uint8Array[][] = [];
    const lastSeq = this.encodeParts(bytes, firstSeq, fromSeq, parts, oversized);
    for (const [head, frames, crc] of parts) {
      // Each datagram its own ArrayBuffer (not Buffer's shared pool): it may be transferred.
      const d = new Uint8Array(head.length + frames.length + crc.length);
      d.set(head, 0);
      d.set(frames, head.length);
      d.set(crc, head.length + frames.length);
      out.push(d);
    }
    return lastSeq;
  }

  /**
   * Like {@link encode}, but each datagram comes as its parts (header, a view of the frames in
   * `bytes`, CRC-32C), to be sent gathered (`DatagramSender.sendParts`): the frames are not even
   * copied. `bytes` must then stay unchanged until the datagrams are sent (sealed batches do).
   */
  encodeParts(bytes: Uint8Array, firstSeq: number, fromSeq: number, out: Uint8Array[][], oversized: number[]): number {
    let seq = firstSeq;
    let o = 0;
    let runStart = -1;
    let runSeq = 0;
    let runCount = 0;
    let lastSeq = 0;
    const room = this.datagramBytesMax - this.fixed;
    while (o + 6 <= bytes.length) {
      const n = readU32(bytes, o);
      if (bytes[o + 5] !== KIND_EVENT || n < FRAME_BYTES_MIN || o + n > bytes.length) break; // the marker (or the end)
      if (seq >= fromSeq) {
        if (n > room) {
          if (runCount > 0) out.push(this.dataParts(bytes, runStart, o, runSeq, runCount));
          runCount = 0;
          oversized.push(seq);
        } else {
          if (runCount > 0 && o + n - runStart > room) {
            out.push(this.dataParts(bytes, runStart, o, runSeq, runCount));
            runCount = 0;
          }
          if (runCount === 0) {
            runStart = o;
            runSeq = seq;
          }
          runCount++;
        }
        lastSeq = seq;
      }
      o += n;
      seq++;
    }
    if (runCount > 0) out.push(this.dataParts(bytes, runStart, o, runSeq, runCount));
    return lastSeq;
  }

  private dataParts(frames: Uint8Array, start: number, end: number, firstSeq: number, count: number): Uint8Array[] {
    // Header and CRC in one small allocation (Buffer's pool), the frames as a view.
    const head = this.fixed - 4;
    const small = Buffer.allocUnsafe(this.fixed);
    const view = new DataView(small.buffer, small.byteOffset, small.byteLength);
    let o = writeHeader(view, small, KIND_DATA, this.nameBytes, this.session);
    view.setFloat64(o, firstSeq, true);
    view.setUint32(o + 8, count, true);
    o += 12;
    const crc = crc32c(frames, start, end, crc32c(small, 0, head));
    view.setUint32(head, crc, true);
    return [small.subarray(0, head), frames.subarray(start, end), small.subarray(head)];
  }
}

/**
 * Splits committed events (decoded objects, e.g. from a remote source) into datagrams of at
 * most `datagramBytesMax` bytes each, framing them in the stored format first. A single frame
 * too large for any datagram is left out (returned in `oversized`): receivers see the hole and
 * repair it from the replayer. Sources that have the stored bytes use {@link DatagramEncoder}
 * on them instead (no encoding at all).
 */
export function encodeDataDatagrams(
  partition: string,
  session: number,
  events: readonly RecordedEvent[],
  datagramBytesMax: number,
): { datagrams: Uint8Array[]; oversized: number[] } {
  const datagrams: Uint8Array[] = [];
  const oversized: number[] = [];
  const enc = new DatagramEncoder(partition, session, datagramBytesMax);
  // Contiguous runs: a datagram carries consecutive seqs only.
  for (let start = 0; start < events.length; ) {
    let end = start + 1;
    while (end < events.length && events[end].seq === events[end - 1].seq + 1) end++;
    const run = events.slice(start, end);
    enc.encode(encodeFrames(run), run[0].seq, run[0].seq, datagrams, oversized);
    start = end;
  }
  return { datagrams, oversized };
}

/**
 * Walks `count` frames from `o`, which must end exactly at `end`: per frame its length, kind,
 * version, field lengths and seq (the datagram's CRC covered its bytes). The receiver's per-event
 * work: a handful of byte reads, no allocation.
 */
function framesFollow(b: Uint8Array, o: number, end: number, firstSeq: number, count: number): boolean {
  // Seqs are below 2^53: compared as low and high 32-bit halves, without building a double per frame.
  let low = firstSeq % 0x1_0000_0000;
  let high = (firstSeq - low) / 0x1_0000_0000;
  for (let i = 0; i < count; i++) {
    if (o + FRAME_BYTES_MIN > end) return false;
    const n = (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
    if (n < FRAME_BYTES_MIN || o + n > end) return false;
    const version = b[o + EVENT_VERSION_AT];
    if (b[o + EVENT_KIND_AT] !== KIND_EVENT || version > FORMAT_VERSION || version < FORMAT_VERSION_MIN) return false;
    if (readU32(b, o + EVENT_SEQ_AT) !== low || readU32(b, o + EVENT_SEQ_AT + 4) !== high) return false;
    const fields =
      EVENT_HEADER_BYTES +
      readU16(b, o + EVENT_STREAM_ID_BYTES_AT) +
      readU16(b, o + EVENT_TYPE_BYTES_AT) +
      readU32(b, o + EVENT_HEADERS_BYTES_AT) +
      readU32(b, o + EVENT_METADATA_BYTES_AT) +
      readU32(b, o + EVENT_PAYLOAD_BYTES_AT) +
      CRC_BYTES;
    if (fields !== n) return false;
    o += n;
    if (++low === 0x1_0000_0000) {
      low = 0;
      high++;
    }
  }
  return o === end;
}

/**
 * Decodes one datagram, or `undefined` when it is not a valid version-2 broadcast datagram
 * (garbage, torn, bad checksum, frames whose lengths, kinds or seqs do not check out): never
 * throws. A data datagram's frames are a view into `bytes` (zero-copy), not decoded to objects.
 */
export function decodeDatagram(bytes: Uint8Array): Datagram | undefined {
  if (bytes.length < 4 + 3 + 4 + 8 + 4) return undefined;
  if (readU32(bytes, 0) !== DATAGRAM_MAGIC || bytes[4] !== DATAGRAM_VERSION) return undefined;
  const end = bytes.length - 4;
  if (readU32(bytes, end) !== crc32c(bytes, 0, end)) return undefined;
  const kind = bytes[5];
  const nameLen = bytes[6];
  let o = 7;
  if (o + nameLen + 4 > end) return undefined;
  const partition = decoder.decode(bytes.subarray(o, o + nameLen));
  o += nameLen;
  const session = readU32(bytes, o);
  o += 4;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (kind === KIND_HEARTBEAT) {
    if (o + 8 !== end) return undefined;
    return { kind: 'heartbeat', partition, session, headSeq: view.getFloat64(o, true) };
  }
  if (kind !== KIND_DATA || o + 12 > end) return undefined;
  const firstSeq = view.getFloat64(o, true);
  const count = readU32(bytes, o + 8);
  o += 12;
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 1 || count === 0 || !Number.isSafeInteger(firstSeq + count)) return undefined;
  const framesStart = o;
  if (!framesFollow(bytes, o, end, firstSeq, count)) return undefined;
  return { kind: 'data', partition, session, run: FrameRun.ofFrames(firstSeq, count, bytes.subarray(framesStart, end)) };
}
