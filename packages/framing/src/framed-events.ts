import { isUtf8 } from 'node:buffer';
import { crc32c } from './crc32c.js';
import { FrameTooLargeError, InvalidFrameFieldError } from './errors.js';
import { headersBytesMax, writeHeaders, writeString } from './frame-writer.js';
import { decodeHeaders as decodeCommitHeaders } from './stream-decoder.js';
import { CRC_BYTES, EVENT_HEADER_BYTES, FORMAT_VERSION_BASE, KIND_EVENT, NAME_BYTES_MAX, readU16, readU32, writeU16, writeU32 } from './layout.js';
import type { CommitHeaders } from './types.js';

/**
 * Framed events: the events of one append, encoded once by the client in the exact frame
 * format the log stores (layout.ts), so the node copies them to disk instead of decoding and
 * re-encoding them, and a checksum travels with each event from the client to the disk.
 *
 * A framed event is an event frame whose seq, timestamp, epoch, flags and stream version are
 * 0 (the writer stamps them: only it knows them) and whose last 4 bytes hold the CRC-32C of
 * its body, bytes [52, end − 4), instead of the CRC of the whole frame. The writer's
 * `appendFramed` stamps the header and derives the whole frame's CRC from the header's and the
 * body's (`crc32cCombine`). The events of one append follow each other; all name the same
 * stream; only the first carries the commit headers (command ids, correlation, causation).
 */

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** One event to frame: what `EventData` holds. */
export interface FramedEventInput {
  readonly type: string;
  readonly data: Uint8Array;
  readonly metadata?: Uint8Array | undefined;
}

/**
 * Most bytes {@link writeFramedEvents} may write for these events (UTF-8 takes at most 3
 * bytes per UTF-16 unit); reserve this much, then use the returned end.
 */
export function framedEventsBytesBound(streamId: string, events: readonly FramedEventInput[], headers: CommitHeaders | undefined): number {
  let bytes = headers === undefined ? 0 : headersBytesMax(headers);
  for (const event of events) {
    bytes += EVENT_HEADER_BYTES + CRC_BYTES + (streamId.length + event.type.length) * 3 + event.data.length + (event.metadata?.length ?? 0);
  }
  return bytes;
}

/**
 * Writes `events` of `streamId` as framed events into `target` from `offset`, which must have
 * room for {@link framedEventsBytesBound} bytes; `headers` go with the first event. Returns
 * the end offset. Throws {@link InvalidFrameFieldError} for an empty or too long name, or
 * {@link FrameTooLargeError} for an event over `frameBytesMax` (what the node accepts).
 *
 * @example
 * const target = Buffer.allocUnsafe(framedEventsBytesBound('account-1', events, headers));
 * const end = writeFramedEvents(target, 0, 'account-1', events, { commandIds: ['c1'] }, 4 * 1024 * 1024);
 * send(target.subarray(0, end));
 */
export function writeFramedEvents(
  target: Buffer,
  offset: number,
  streamId: string,
  events: readonly FramedEventInput[],
  headers: CommitHeaders | undefined,
  frameBytesMax: number,
): number {
  if (streamId.length === 0) throw new InvalidFrameFieldError('streamId', 'empty');
  let o = offset;
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    if (typeof event.type !== 'string' || event.type.length === 0) throw new InvalidFrameFieldError('eventType', 'empty');
    const meta = event.metadata ?? EMPTY;
    const data = event.data;
    const start = o;
    let p = start + EVENT_HEADER_BYTES;
    const streamIdBytes = writeString(target, p, streamId);
    p += streamIdBytes;
    const eventTypeBytes = writeString(target, p, event.type);
    p += eventTypeBytes;
    if (streamIdBytes > NAME_BYTES_MAX) throw new InvalidFrameFieldError('streamId', `longer than ${NAME_BYTES_MAX} bytes`);
    if (eventTypeBytes > NAME_BYTES_MAX) throw new InvalidFrameFieldError('eventType', `longer than ${NAME_BYTES_MAX} bytes`);
    const headersBytes = i === 0 && headers !== undefined ? writeHeaders(target, p, headers, false) : 0;
    p += headersBytes;
    target.set(meta, p);
    p += meta.length;
    target.set(data, p);
    p += data.length;
    const frameBytes = p + CRC_BYTES - start;
    if (frameBytes > frameBytesMax) throw new FrameTooLargeError(frameBytes, frameBytesMax);
    // Everything the writer stamps stays 0: seq, timestamp, epoch, flags, stream version.
    target.fill(0, start, start + EVENT_HEADER_BYTES);
    writeU32(target, start, frameBytes);
    target[start + 4] = FORMAT_VERSION_BASE;
    target[start + 5] = KIND_EVENT;
    writeU16(target, start + 28, streamIdBytes);
    writeU16(target, start + 30, eventTypeBytes);
    writeU32(target, start + 40, headersBytes);
    writeU32(target, start + 44, meta.length);
    writeU32(target, start + 48, data.length);
    writeU32(target, p, crc32c(target, start + EVENT_HEADER_BYTES, p));
    o = p + CRC_BYTES;
  }
  return o;
}

/** What {@link checkFramedEvents} found in a well-formed run of framed events. */
export interface FramedEventsInfo {
  readonly ok: true;
  /** Framed events in the run. */
  readonly count: number;
  readonly streamId: string;
  /** The first event's commit headers, if it has any. */
  readonly headers: CommitHeaders | undefined;
  /** Bytes of event data and metadata, as an append counts them against its limits. */
  readonly dataBytes: number;
}

/** Why a run of framed events was refused. */
export interface FramedEventsProblem {
  readonly ok: false;
  /** True when a body's CRC-32C does not match: the bytes changed after the sender encoded them. */
  readonly corrupt: boolean;
  /** Index of the event at fault. */
  readonly event: number;
  readonly problem: string;
}

/**
 * Checks a run of framed events before anything of it is stored: each is a version 2 event
 * frame whose lengths add up, at most `frameBytesMax` long, with non-empty well-formed UTF-8
 * names, the same stream as the first, commit headers on the first only, and a body whose
 * CRC-32C matches the one it carries. Never throws; reads each byte once (the CRC pass).
 */
export function checkFramedEvents(bytes: Uint8Array, frameBytesMax: number, eventsMax = Number.MAX_SAFE_INTEGER): FramedEventsInfo | FramedEventsProblem {
  const end = bytes.length;
  let o = 0;
  let count = 0;
  let dataBytes = 0;
  let streamStart = 0;
  let streamIdBytes0 = 0;
  let streamId = '';
  let headers: CommitHeaders | undefined;
  const bad = (problem: string, corrupt = false): FramedEventsProblem => ({ ok: false, corrupt, event: count, problem: `framed event ${count}: ${problem}` });
  if (end === 0) return { ok: false, corrupt: false, event: 0, problem: 'no framed events: an append needs at least one event' };
  while (o < end) {
    if (count >= eventsMax) return bad(`more than ${eventsMax} events`);
    if (end - o < EVENT_HEADER_BYTES + CRC_BYTES) return bad(`truncated: ${end - o} bytes left, a frame takes at least ${EVENT_HEADER_BYTES + CRC_BYTES}`);
    const frameBytes = readU32(bytes, o);
    if (frameBytes > frameBytesMax) return bad(`${frameBytes} bytes exceed frameBytesMax ${frameBytesMax}: split the event or raise frameBytesMax`);
    if (frameBytes < EVENT_HEADER_BYTES + CRC_BYTES || o + frameBytes > end) return bad(`length ${frameBytes} does not fit the ${end - o} bytes left`);
    if (bytes[o + 4] !== FORMAT_VERSION_BASE || bytes[o + 5] !== KIND_EVENT) return bad(`not a version ${FORMAT_VERSION_BASE} event frame (version ${bytes[o + 4]}, kind ${bytes[o + 5]})`);
    const sidBytes = readU16(bytes, o + 28);
    const typeBytes = readU16(bytes, o + 30);
    const headersBytes = readU32(bytes, o + 40);
    const metadataBytes = readU32(bytes, o + 44);
    const payloadBytes = readU32(bytes, o + 48);
    if (EVENT_HEADER_BYTES + sidBytes + typeBytes + headersBytes + metadataBytes + payloadBytes + CRC_BYTES !== frameBytes) {
      return bad('its field lengths do not add up to its frame length');
    }
    if (sidBytes === 0 || typeBytes === 0) return bad('stream id and event type must be non-empty');
    const crcAt = o + frameBytes - CRC_BYTES;
    if (crc32c(bytes, o + EVENT_HEADER_BYTES, crcAt) !== readU32(bytes, crcAt)) {
      return bad('CRC-32C of its body does not match: the bytes changed after the client encoded them; nothing was stored', true);
    }
    const sid = o + EVENT_HEADER_BYTES;
    const type = sid + sidBytes;
    if (!ascii(bytes, type, typeBytes) && !isUtf8(bytes.subarray(type, type + typeBytes))) return bad('event type is not well-formed UTF-8');
    if (count === 0) {
      streamStart = sid;
      streamIdBytes0 = sidBytes;
      const id = bytes.subarray(sid, sid + sidBytes);
      if (!isUtf8(id)) return bad('stream id is not well-formed UTF-8');
      streamId = utf8.decode(id);
      if (headersBytes > 0) {
        const h = decodeHeaders(bytes, type + typeBytes, type + typeBytes + headersBytes);
        if (typeof h === 'string') return bad(h);
        headers = h;
      }
    } else {
      if (headersBytes > 0) return bad('only the first event of an append carries commit headers');
      if (sidBytes !== streamIdBytes0 || !sameBytes(bytes, streamStart, sid, sidBytes)) return bad(`names another stream than the first ("${streamId}"): one append is one stream`);
    }
    dataBytes += metadataBytes + payloadBytes;
    count++;
    o += frameBytes;
  }
  return { ok: true, count, streamId, headers, dataBytes };
}

/** True when every byte is below 0x80 (ASCII is well-formed UTF-8): the common case, checked without a view. */
function ascii(b: Uint8Array, start: number, n: number): boolean {
  for (let i = start, end = start + n; i < end; i++) if (b[i] >= 0x80) return false;
  return true;
}

function sameBytes(b: Uint8Array, a: number, c: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[a + i] !== b[c + i]) return false;
  return true;
}

/** Version 2 commit headers (framed events carry no level), refusing an empty command id. */
function decodeHeaders(b: Uint8Array, start: number, end: number): CommitHeaders | string {
  const headers = decodeCommitHeaders(b, start, end, false);
  if (typeof headers !== 'string' && headers.commandIds.some((id) => id.length === 0)) return 'a command id is empty';
  return headers;
}

/**
 * The events of framed events already checked with `checkFramedEvents`, as the views an
 * ordinary append takes (type, metadata, data): for a writer that cannot take the frames as
 * they are (one recording a reliability level writes format version 3 headers).
 */
export function readFramedEvents(bytes: Uint8Array): Array<{ type: string; metadata: Uint8Array; data: Uint8Array }> {
  const out: Array<{ type: string; metadata: Uint8Array; data: Uint8Array }> = [];
  for (let o = 0; o < bytes.length; ) {
    const n = readU32(bytes, o);
    let p = o + EVENT_HEADER_BYTES + readU16(bytes, o + 28);
    const typeBytes = readU16(bytes, o + 30);
    const type = utf8.decode(bytes.subarray(p, p + typeBytes));
    p += typeBytes + readU32(bytes, o + 40);
    const metadataBytes = readU32(bytes, o + 44);
    const metadata = bytes.subarray(p, p + metadataBytes);
    p += metadataBytes;
    out.push({ type, metadata, data: bytes.subarray(p, p + readU32(bytes, o + 48)) });
    o += n;
  }
  return out;
}
