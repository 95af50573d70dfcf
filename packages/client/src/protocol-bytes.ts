/**
 * Little-endian byte writer and reader for the store protocol (internal).
 *
 * Integers follow `@sluice/framing`'s conventions: u16 / u32 little-endian, and 64-bit
 * counters (seq, versions, timestamps) as two u32 halves that must form a safe integer
 * (< 2^53). Strings are a u16 byte length and UTF-8; byte fields are a u32 length and bytes.
 */

import { FramingError, framedEventsBytesBound, writeFramedEvents, type CommitHeaders, type FramedEventInput } from '@sluice/framing';

const TWO_32 = 0x1_0000_0000;
/** Largest frame the encoder writes (a frame's length is a u32); nodes hold frames to their own frameBytesMax. */
const FRAME_BYTES_ENCODABLE = 0xffff_ffff;
/** High half of the largest safe integer. */
const SAFE_HIGH_MAX = 0x1fffff;
const EMPTY = new Uint8Array(0);

/** Longest string field, in UTF-8 bytes (u16 length). Equal to framing's `NAME_BYTES_MAX`. */
export const STRING_BYTES_MAX = 0xffff;

/** Thrown by {@link ByteWriter} when a value cannot be encoded; callers turn it into a typed error. */
export class EncodeError extends Error {
  override readonly name = 'EncodeError';
}

/**
 * Appends fields to one growing buffer. The buffer doubles when needed; {@link finish}
 * returns the exact bytes written (a view, no copy).
 */
export class ByteWriter {
  private buffer: Buffer;
  private position = 0;

  constructor(initialBytes = 256) {
    this.buffer = Buffer.allocUnsafe(Math.max(16, initialBytes));
  }

  get length(): number {
    return this.position;
  }

  /** The bytes written so far (a view into the writer's buffer). */
  finish(): Buffer {
    return this.buffer.subarray(0, this.position);
  }

  /** Forgets what was written after `mark` (a value of {@link length}). */
  truncate(mark: number): void {
    this.position = mark;
  }

  u8(value: number): void {
    this.ensure(1);
    this.buffer[this.position++] = value;
  }

  u16(value: number): void {
    this.ensure(2);
    this.buffer.writeUInt16LE(value, this.position);
    this.position += 2;
  }

  u32(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value >= TWO_32) {
      throw new EncodeError(`${value} is not an unsigned 32-bit integer`);
    }
    this.ensure(4);
    this.buffer.writeUInt32LE(value, this.position);
    this.position += 4;
  }

  /** A non-negative safe integer as two u32 halves (low first). */
  u53(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new EncodeError(`${value} is not a safe non-negative integer`);
    this.ensure(8);
    const low = value % TWO_32;
    this.buffer.writeUInt32LE(low, this.position);
    this.buffer.writeUInt32LE((value - low) / TWO_32, this.position + 4);
    this.position += 8;
  }

  /** u16 byte length + UTF-8. */
  string(value: string): void {
    if (typeof value !== 'string') throw new EncodeError(`expected a string, got ${typeof value}`);
    // At most 3 UTF-8 bytes per UTF-16 unit: reserve, write, then backfill the exact length.
    this.ensure(2 + value.length * 3);
    const start = this.position + 2;
    const written = value.length === 0 ? 0 : this.buffer.write(value, start, 'utf8');
    if (written > STRING_BYTES_MAX) {
      throw new EncodeError(`a string of ${written} UTF-8 bytes is longer than ${STRING_BYTES_MAX}`);
    }
    this.buffer.writeUInt16LE(written, this.position);
    this.position = start + written;
  }

  /** u32 byte length + bytes. */
  bytes(value: Uint8Array | undefined): void {
    const bytes = value ?? EMPTY;
    if (!(bytes instanceof Uint8Array)) throw new EncodeError('expected a Uint8Array');
    this.u32(bytes.length);
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.position);
    this.position += bytes.length;
  }

  /**
   * u32 byte length + the events of one stream as framed events (`writeFramedEvents` of
   * `@sluice/framing`), written straight into this buffer: the one encoding an append gets.
   */
  framedEvents(streamId: string, events: readonly FramedEventInput[], headers: CommitHeaders | undefined): void {
    this.ensure(4 + framedEventsBytesBound(streamId, events, headers));
    const start = this.position + 4;
    let end: number;
    try {
      end = writeFramedEvents(this.buffer, start, streamId, events, headers, FRAME_BYTES_ENCODABLE);
    } catch (error) {
      if (error instanceof FramingError) throw new EncodeError(`stream "${streamId}": ${error.message}`);
      throw error;
    }
    this.buffer.writeUInt32LE(end - start, this.position);
    this.position = end;
  }

  private ensure(extra: number): void {
    const needed = this.position + extra;
    if (needed <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
  }
}

/** Why a {@link ByteReader} stopped; caught by the decoders, never seen by callers. */
export class DecodeFailure extends Error {
  override readonly name = 'DecodeFailure';
}

// fatal: invalid UTF-8 is garbage, not text to repair; ignoreBOM: a leading U+FEFF is data.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Reads fields from one frame with bounds checks. Every read past the end or of an invalid
 * value throws {@link DecodeFailure}; decoders catch it at their top level and return a
 * typed error, so garbage never escapes as an exception. Byte fields are views (zero-copy).
 */
export class ByteReader {
  private position = 0;

  constructor(private readonly buffer: Uint8Array) {}

  get remaining(): number {
    return this.buffer.length - this.position;
  }

  get offset(): number {
    return this.position;
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buffer[this.position++];
  }

  u16(what: string): number {
    this.need(2, what);
    const b = this.buffer;
    const o = this.position;
    this.position += 2;
    return b[o] | (b[o + 1] << 8);
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.readU32(this.position);
    this.position += 4;
    return value;
  }

  u53(what: string): number {
    this.need(8, what);
    const low = this.readU32(this.position);
    const high = this.readU32(this.position + 4);
    if (high > SAFE_HIGH_MAX) throw new DecodeFailure(`${what} at byte ${this.position} is not a safe integer`);
    this.position += 8;
    return high * TWO_32 + low;
  }

  string(what: string): string {
    const length = this.u16(`${what} length`);
    this.need(length, what);
    const start = this.position;
    this.position += length;
    const b = this.buffer;
    // Short ASCII strings are the common case, and TextDecoder's call overhead dominates them.
    if (length <= 32) {
      let out = '';
      for (let i = start; i < start + length; i++) {
        const c = b[i];
        if (c >= 0x80) return this.decodeUtf8(start, length, what);
        out += String.fromCharCode(c);
      }
      return out;
    }
    return this.decodeUtf8(start, length, what);
  }

  bytes(what: string): Uint8Array {
    const length = this.u32(`${what} length`);
    this.need(length, what);
    const view = this.buffer.subarray(this.position, this.position + length);
    this.position += length;
    return view;
  }

  /**
   * A count of items that each take at least `itemBytesMin` bytes: checked against what is
   * left, so a garbage count can never make a decoder allocate or loop beyond the input.
   */
  count(what: string, itemBytesMin: number): number {
    const count = this.u32(what);
    if (count * itemBytesMin > this.remaining) {
      throw new DecodeFailure(`${what} ${count} cannot fit in the ${this.remaining} bytes left`);
    }
    return count;
  }

  /** Consumes whatever is left (fields of a newer revision this one does not know). */
  skipRest(): void {
    this.position = this.buffer.length;
  }

  /** Fails unless every byte was consumed. */
  end(what: string): void {
    if (this.remaining !== 0) throw new DecodeFailure(`${this.remaining} unexpected byte(s) after the ${what}`);
  }

  private decodeUtf8(start: number, length: number, what: string): string {
    try {
      return utf8.decode(this.buffer.subarray(start, start + length));
    } catch {
      throw new DecodeFailure(`${what} at byte ${start} is not valid UTF-8`);
    }
  }

  private readU32(o: number): number {
    const b = this.buffer;
    return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
  }

  private need(bytes: number, what: string): void {
    if (this.position + bytes > this.buffer.length) {
      throw new DecodeFailure(`truncated: ${what} needs ${bytes} byte(s) at offset ${this.position}, ${this.remaining} left`);
    }
  }
}

/** UTF-8 length of a string (exact), for size budgets. */
export function utf8Bytes(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}
