import { describe, expect, it } from 'vitest';
import {
  EVENT_HEADER_BYTES,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION,
  FORMAT_VERSION_BASE,
  FORMAT_VERSION_LEVEL,
  FrameWriter,
  InvalidFrameFieldError,
  crc32c,
  decodeBatches,
  decodeEventFrameAt,
  type CommitHeaders,
} from './index.js';

const ONLY = FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST;
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const u16 = (b: Uint8Array, o: number): number => b[o] | (b[o + 1] << 8);

/** One single-frame commit per headers value, sealed once. */
function write(formatVersion: 2 | 3, ...headers: (CommitHeaders | undefined)[]): Uint8Array {
  const w = new FrameWriter({ formatVersion });
  headers.forEach((h, i) => w.appendEvent(i + 1, 1, 1_000, ONLY, 's', i + 1, 'T', h, undefined, utf8('x')));
  w.seal(1, 1_001);
  return w.bytes().slice();
}

const frameLength = (b: Uint8Array, o = 0): number => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) >>> 0;

/** Sets the version byte of the frame at `o` and fixes its CRC. */
function relabel(b: Uint8Array, o: number, version: number): void {
  const n = frameLength(b, o);
  b[o + 4] = version;
  new DataView(b.buffer, b.byteOffset).setUint32(o + n - 4, crc32c(b, o, o + n - 4), true);
}

describe('the reliability level in commit headers (format version 3)', () => {
  it('is written after the causation id as u16 length + UTF-8, in frames and a marker of version 3', () => {
    const b = write(3, { commandIds: ['c'], level: 'critical' });
    expect(b[4]).toBe(FORMAT_VERSION_LEVEL);
    const headersAt = EVENT_HEADER_BYTES + 1 + 1;
    // u16 1, u16 1 "c", u16 0 (no correlation), u16 0 (no causation), u16 8 "critical"
    expect(u16(b, headersAt)).toBe(1);
    expect(u16(b, headersAt + 5)).toBe(0);
    expect(u16(b, headersAt + 7)).toBe(0);
    expect(u16(b, headersAt + 9)).toBe(8);
    expect(Buffer.from(b.subarray(headersAt + 11, headersAt + 19)).toString('utf8')).toBe('critical');
    expect(b[frameLength(b) + 4]).toBe(FORMAT_VERSION_LEVEL);
  });

  it('decodes back with each commit\'s own level, and without one where none was recorded', () => {
    const { batches, report } = decodeBatches(write(3, { commandIds: [], level: 'standard' }, undefined, { commandIds: ['a'] }, { commandIds: [], level: 'critical' }));
    expect(report.clean).toBe(true);
    const headers = batches[0].frames.map((f) => f.headers);
    expect(headers).toEqual([
      { commandIds: [], correlationId: undefined, causationId: undefined, level: 'standard' },
      undefined,
      { commandIds: ['a'], correlationId: undefined, causationId: undefined },
      { commandIds: [], correlationId: undefined, causationId: undefined, level: 'critical' },
    ]);
    expect('level' in (headers[2] as object)).toBe(false);
    expect(decodeEventFrameAt(write(3, { commandIds: [], level: 'ünï' }), 0)).toMatchObject({ headers: { level: 'ünï' } });
  });

  it('writes version 2 by default, byte for byte as before, and refuses a level there with a typed error', () => {
    expect(new FrameWriter().formatVersion).toBe(FORMAT_VERSION_BASE);
    const b = write(2, { commandIds: ['c'], correlationId: 'k' });
    expect(b[4]).toBe(FORMAT_VERSION_BASE);
    expect(b).toEqual(write(2, { commandIds: ['c'], correlationId: 'k', level: undefined }));
    const w = new FrameWriter();
    expect(() => w.appendEvent(1, 1, 1, ONLY, 's', 1, 'T', { commandIds: [], level: 'critical' }, undefined, utf8('x'))).toThrow(/formatVersion 3/);
    expect(w.byteLength).toBe(0);
    expect(() => new FrameWriter({ formatVersion: 4 as 3 })).toThrow(InvalidFrameFieldError);
  });

  it('refuses a level longer than 65535 bytes with a typed error, writing nothing', () => {
    const w = new FrameWriter({ formatVersion: 3 });
    expect(() => w.appendEvent(1, 1, 1, ONLY, 's', 1, 'T', { commandIds: [], level: 'x'.repeat(70_000) }, undefined, utf8('x'))).toThrow(InvalidFrameFieldError);
    expect(w.byteLength).toBe(0);
  });

  it('reads a level field only in version 3: the same bytes labelled version 2 are malformed, not misread', () => {
    const b = write(3, { commandIds: [], level: 'critical' });
    relabel(b, 0, FORMAT_VERSION_BASE);
    relabel(b, frameLength(b), FORMAT_VERSION_BASE);
    const { batches, report } = decodeBatches(b, { verifyDigest: false });
    expect(batches).toEqual([]);
    expect(report.reason).toBe('malformed-frame');
    expect(report.detail).toMatch(/commit headers malformed/);
  });

  it('continues a version 2 log with version 3 batches and back, one hash chain', () => {
    const w2 = new FrameWriter();
    w2.appendEvent(1, 1, 1, ONLY, 's', 1, 'T', { commandIds: ['a'] }, undefined, utf8('x'));
    w2.seal(1, 2);
    const first = w2.bytes().slice();
    const w3 = new FrameWriter({ formatVersion: 3 });
    w3.appendEvent(2, 1, 3, ONLY, 's', 2, 'T', { commandIds: ['b'], level: 'critical' }, undefined, utf8('y'));
    w3.seal(1, 4, decodeBatches(first).batches[0].marker.digest);
    const second = w3.bytes().slice();
    const w2b = new FrameWriter();
    w2b.appendEvent(3, 1, 5, ONLY, 's', 3, 'T', { commandIds: ['c'] }, undefined, utf8('z'));
    w2b.seal(1, 6, decodeBatches(second, { firstSeq: 2 }).batches[0].marker.digest);
    const log = new Uint8Array([...first, ...second, ...w2b.bytes()]);
    const { batches, report } = decodeBatches(log);
    expect(report.reason).toBe('end');
    expect(batches.map((x) => [x.marker.formatVersion, x.frames[0].headers?.level])).toEqual([
      [2, undefined],
      [3, 'critical'],
      [2, undefined],
    ]);
  });

  it('is the newest version this decoder reads; a newer one stops with unsupported-version (what a version 2 decoder does with a version 3 frame)', () => {
    expect(FORMAT_VERSION).toBe(FORMAT_VERSION_LEVEL);
    const b = write(3, { commandIds: [], level: 'critical' });
    relabel(b, 0, FORMAT_VERSION + 1);
    expect(decodeBatches(b).report.reason).toBe('unsupported-version');
  });
});
