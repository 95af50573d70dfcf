import { crc32c } from '@sluice/framing';
import type { RecordedEvent } from '@sluice/store';

/**
 * Datagram format of the broadcast (little-endian), version 1:
 *
 * ```
 * magic u32 "SLBC" | version u8 | kind u8 (1 data, 2 heartbeat) | nameLen u8 | name utf8
 * | session u32 | data: firstSeq f64 | count u16 | frames...  heartbeat: headSeq f64
 * | crc32c u32 over everything before it
 * frame: epoch u32 | timestamp f64 | flags u8 (1 commitFirst, 2 commitLast, 4 headers)
 *        | streamVersion f64 | frameBytes u32 | streamId u16+utf8 | eventType u16+utf8
 *        | [headers u32+json] | metadata u32+bytes | payload u32+bytes
 * ```
 *
 * A frame's seq is `firstSeq + index`: a datagram carries a contiguous seq range. Anything
 * whose checksum, magic, version or lengths do not check out is rejected as a whole
 * (`decodeDatagram` returns `undefined`), never half-applied: the receiver then repairs the
 * range like any lost datagram.
 */
export const DATAGRAM_MAGIC = 0x43424c53; // "SLBC"
export const DATAGRAM_VERSION = 1;
export const KIND_DATA = 1;
export const KIND_HEARTBEAT = 2;
/** Largest UDP payload over IPv4. */
export const DATAGRAM_BYTES_LIMIT = 65507;

const FRAME_FIXED_BYTES = 4 + 8 + 1 + 8 + 4 + 2 + 2 + 4 + 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export type Datagram =
  | { readonly kind: 'data'; readonly partition: string; readonly session: number; readonly firstSeq: number; readonly events: RecordedEvent[] }
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
  let o = 7 + nameBytes.length;
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

interface EncodedFrame {
  readonly event: RecordedEvent;
  readonly streamIdBytes: number;
  readonly eventTypeBytes: number;
  readonly headers: string | undefined;
  readonly headersBytes: number;
  readonly size: number;
}

function prepare(event: RecordedEvent): EncodedFrame {
  const streamIdBytes = Buffer.byteLength(event.streamId);
  const eventTypeBytes = Buffer.byteLength(event.eventType);
  const headers = event.headers === undefined ? undefined : JSON.stringify(event.headers);
  const headersBytes = headers === undefined ? 0 : Buffer.byteLength(headers);
  const size = FRAME_FIXED_BYTES + streamIdBytes + eventTypeBytes + (headers === undefined ? 0 : 4 + headersBytes) + event.metadata.length + event.payload.length;
  return { event, streamIdBytes, eventTypeBytes, headers, headersBytes, size };
}

/**
 * Splits a contiguous run of committed events into datagrams of at most `datagramBytesMax`
 * bytes each. A single frame too large for any datagram is left out (returned in
 * `oversized`): receivers see the hole and repair it from the replayer.
 */
export function encodeDataDatagrams(
  partition: string,
  session: number,
  events: readonly RecordedEvent[],
  datagramBytesMax: number,
): { datagrams: Uint8Array[]; oversized: number[] } {
  const nameBytes = encoder.encode(partition);
  const fixed = headerBytes(nameBytes) + 8 + 2 + 4;
  const datagrams: Uint8Array[] = [];
  const oversized: number[] = [];
  let run: EncodedFrame[] = [];
  let runBytes = fixed;
  const flush = () => {
    if (run.length === 0) return;
    datagrams.push(writeData(nameBytes, session, run, runBytes));
    run = [];
    runBytes = fixed;
  };
  for (const event of events) {
    const frame = prepare(event);
    if (fixed + frame.size > datagramBytesMax) {
      flush();
      oversized.push(event.seq);
      continue;
    }
    const contiguous = run.length === 0 || run[run.length - 1].event.seq + 1 === event.seq;
    if (!contiguous || runBytes + frame.size > datagramBytesMax || run.length === 0xffff) flush();
    run.push(frame);
    runBytes += frame.size;
  }
  flush();
  return { datagrams, oversized };
}

function writeData(nameBytes: Uint8Array, session: number, run: readonly EncodedFrame[], total: number): Uint8Array {
  const bytes = Buffer.allocUnsafe(total);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = writeHeader(view, bytes, KIND_DATA, nameBytes, session);
  view.setFloat64(o, run[0].event.seq, true);
  view.setUint16(o + 8, run.length, true);
  o += 10;
  for (const f of run) {
    const e = f.event;
    view.setUint32(o, e.epoch, true);
    view.setFloat64(o + 4, e.timestamp, true);
    view.setUint8(o + 12, (e.commitFirst ? 1 : 0) | (e.commitLast ? 2 : 0) | (f.headers !== undefined ? 4 : 0));
    view.setFloat64(o + 13, e.streamVersion, true);
    view.setUint32(o + 21, e.frameBytes, true);
    o += 25;
    view.setUint16(o, f.streamIdBytes, true);
    bytes.write(e.streamId, o + 2, f.streamIdBytes, 'utf8');
    o += 2 + f.streamIdBytes;
    view.setUint16(o, f.eventTypeBytes, true);
    bytes.write(e.eventType, o + 2, f.eventTypeBytes, 'utf8');
    o += 2 + f.eventTypeBytes;
    if (f.headers !== undefined) {
      view.setUint32(o, f.headersBytes, true);
      bytes.write(f.headers, o + 4, f.headersBytes, 'utf8');
      o += 4 + f.headersBytes;
    }
    view.setUint32(o, e.metadata.length, true);
    bytes.set(e.metadata, o + 4);
    o += 4 + e.metadata.length;
    view.setUint32(o, e.payload.length, true);
    bytes.set(e.payload, o + 4);
    o += 4 + e.payload.length;
  }
  view.setUint32(o, crc32c(bytes, 0, o), true);
  return bytes;
}

/** Strings of a datagram: the same stream ids and event types repeat, so the last few are reused. */
class StringCache {
  private readonly keys: Array<Buffer | undefined> = new Array(64);
  private readonly values: string[] = new Array(64);
  read(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len > 48) return buf.toString('utf8', start, end);
    let h = len;
    for (let i = start; i < end; i++) h = (Math.imul(h, 31) + buf[i]) | 0;
    const slot = h & 63;
    const key = this.keys[slot];
    if (key !== undefined && key.length === len && buf.compare(key, 0, len, start, end) === 0) return this.values[slot];
    const value = buf.toString('utf8', start, end);
    this.keys[slot] = Buffer.from(buf.subarray(start, end));
    this.values[slot] = value;
    return value;
  }
}
const strings = new StringCache();

/**
 * Decodes one datagram, or `undefined` when it is not a valid version-1 broadcast datagram
 * (garbage, torn, bad checksum): never throws. `payload` and `metadata` are views into
 * `bytes` (zero-copy).
 */
export function decodeDatagram(bytes: Uint8Array): Datagram | undefined {
  try {
    if (bytes.length < 4 + 3 + 4 + 8 + 4) return undefined;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint32(0, true) !== DATAGRAM_MAGIC || view.getUint8(4) !== DATAGRAM_VERSION) return undefined;
    const end = bytes.length - 4;
    if (view.getUint32(end, true) !== crc32c(bytes, 0, end)) return undefined;
    const kind = view.getUint8(5);
    const nameLen = view.getUint8(6);
    let o = 7;
    if (o + nameLen + 4 > end) return undefined;
    const partition = decoder.decode(bytes.subarray(o, o + nameLen));
    o += nameLen;
    const session = view.getUint32(o, true);
    o += 4;
    if (kind === KIND_HEARTBEAT) {
      if (o + 8 !== end) return undefined;
      return { kind: 'heartbeat', partition, session, headSeq: view.getFloat64(o, true) };
    }
    if (kind !== KIND_DATA || o + 10 > end) return undefined;
    const firstSeq = view.getFloat64(o, true);
    const count = view.getUint16(o + 8, true);
    o += 10;
    if (!Number.isSafeInteger(firstSeq) || firstSeq < 1 || count === 0) return undefined;
    const events: RecordedEvent[] = new Array(count);
    for (let i = 0; i < count; i++) {
      if (o + FRAME_FIXED_BYTES > end) return undefined;
      const epoch = view.getUint32(o, true);
      const timestamp = view.getFloat64(o + 4, true);
      const flags = view.getUint8(o + 12);
      const streamVersion = view.getFloat64(o + 13, true);
      const frameBytes = view.getUint32(o + 21, true);
      o += 25;
      const idLen = view.getUint16(o, true);
      if (o + 2 + idLen > end) return undefined;
      const streamId = strings.read(buf, o + 2, o + 2 + idLen);
      o += 2 + idLen;
      const typeLen = view.getUint16(o, true);
      if (o + 2 + typeLen > end) return undefined;
      const eventType = strings.read(buf, o + 2, o + 2 + typeLen);
      o += 2 + typeLen;
      let headers: RecordedEvent['headers'];
      if (flags & 4) {
        const len = view.getUint32(o, true);
        if (o + 4 + len > end) return undefined;
        headers = JSON.parse(decoder.decode(bytes.subarray(o + 4, o + 4 + len))) as RecordedEvent['headers'];
        o += 4 + len;
      }
      const metaLen = view.getUint32(o, true);
      if (o + 4 + metaLen > end) return undefined;
      const metadata = bytes.subarray(o + 4, o + 4 + metaLen);
      o += 4 + metaLen;
      const payLen = view.getUint32(o, true);
      if (o + 4 + payLen > end) return undefined;
      const payload = bytes.subarray(o + 4, o + 4 + payLen);
      o += 4 + payLen;
      events[i] = {
        seq: firstSeq + i,
        epoch,
        timestamp,
        commitFirst: (flags & 1) !== 0,
        commitLast: (flags & 2) !== 0,
        streamId,
        streamVersion,
        eventType,
        headers,
        metadata,
        payload,
        frameBytes,
      };
    }
    if (o !== end) return undefined;
    return { kind: 'data', partition, session, firstSeq, events };
  } catch {
    return undefined;
  }
}
