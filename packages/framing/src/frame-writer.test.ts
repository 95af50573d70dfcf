import { Hash, createHash } from 'node:crypto';
import { vi } from 'vitest';
import { describe, expect, it } from 'vitest';
import {
  CRC_BYTES,
  DEFAULT_FRAME_BYTES_MAX,
  EVENT_HEADER_BYTES,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION_BASE,
  FRAME_BYTES_MIN,
  FrameTooLargeError,
  FrameWriter,
  FramingError,
  InvalidFrameFieldError,
  MARKER_BYTES,
  MARKER_DIGEST_OFFSET,
  MARKER_PREV_DIGEST_OFFSET,
  NAME_BYTES_MAX,
  SHA1_BYTES,
  ZERO_DIGEST,
  crc32c,
  decodeBatches,
  type CommitHeaders,
  type EventFrame,
} from './index.js';

const ONLY = FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST;
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const u16 = (b: Uint8Array, o: number): number => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt16LE(o);
const u32 = (b: Uint8Array, o: number): number => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32LE(o);
const u64 = (b: Uint8Array, o: number): number =>
  Number(Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(o));
const sha1 = (b: Uint8Array): string => createHash('sha1').update(b).digest('hex');

/** Appends a one-frame commit with fixed, boring fields. */
function appendSimple(w: FrameWriter, seq: number, payload: Uint8Array = utf8(`event ${seq}`), flags = ONLY): void {
  w.appendEvent(seq, 1, 1_000 + seq, flags, 'stream-a', seq, 'Happened', undefined, undefined, payload);
}

/** Copies of the decoded frames as plain values, comparable with toEqual. */
function plain(frames: readonly EventFrame[]): unknown[] {
  return frames.map((f) => ({ ...f, metadata: Uint8Array.from(f.metadata), payload: Uint8Array.from(f.payload) }));
}

describe('FrameWriter golden frames', () => {
  // One single-frame commit and its marker, every field fixed. The hex was computed once
  // with this writer and then checked by hand against the layout in layout.ts; the offset
  // assertions below re-check it independently of the writer.
  const GOLDEN =
    // event frame, 87 bytes
    '57000000' + // 0  frameBytes = 87
    '02' + // 4  format version 2
    '01' + // 5  kind 1 = event
    '03' + // 6  flags: first | last
    '00' + // 7  reserved
    '0700000000000000' + // 8  seq = 7
    '0068e5cf8b010000' + // 16 timestamp = 1_700_000_000_000 = 0x018bcfe56800
    '03000000' + // 24 epoch = 3
    '0600' + // 28 streamIdBytes = 6
    '0600' + // 30 eventTypeBytes = 6
    '0200000000000000' + // 32 streamVersion = 2
    '0b000000' + // 40 headersBytes = 11
    '01000000' + // 44 metadataBytes = 1
    '07000000' + // 48 payloadBytes = 7
    '616363742d31' + // 52 "acct-1"
    '4f70656e6564' + // 58 "Opened"
    '0100' + '0200' + '6331' + '0100' + '6b' + '0000' + // 64 headers: 1 id "c1", correlation "k", no causation
    'aa' + // 75 metadata
    '7b2261223a317d' + // 76 payload {"a":1}
    '14da557c' + // 83 CRC-32C of [0, 83)
    // commit marker, 88 bytes
    '58000000' + // 0  frameBytes = 88
    '02' + // 4  format version 2
    '02' + // 5  kind 2 = marker
    '01' + // 6  digest algorithm 1 = SHA-1
    '00' + // 7  reserved
    '0700000000000000' + // 8  firstSeq = 7
    '0168e5cf8b010000' + // 16 timestamp = 1_700_000_000_001
    '03000000' + // 24 epoch = 3
    '01000000' + // 28 frameCount = 1
    '0700000000000000' + // 32 lastSeq = 7
    '14000000' + // 40 digestBytes = 20
    '0000000000000000000000000000000000000000' + // 44 prevDigest: 20 zero bytes (a log's first batch)
    '18425617a2f9d88a26a2384a660c2bf253a9d4c4' + // 64 SHA-1 of the event frame's 87 bytes ‖ marker bytes [0, 64)
    '2cd893c9'; // 84 CRC-32C of [0, 84)

  function writeGolden(w = new FrameWriter()): Uint8Array {
    w.appendEvent(
      7,
      3,
      1_700_000_000_000,
      ONLY,
      'acct-1',
      2,
      'Opened',
      { commandIds: ['c1'], correlationId: 'k' },
      Uint8Array.of(0xaa),
      utf8('{"a":1}'),
    );
    expect(w.seal(3, 1_700_000_000_001)).toBe(true);
    return w.bytes();
  }

  it('encodes a fixed event frame and marker to the golden bytes', () => {
    expect(hex(writeGolden())).toBe(GOLDEN);
  });

  it('puts the event frame fields at the documented offsets', () => {
    const b = writeGolden();
    const n = 87;
    expect(u32(b, 0)).toBe(n);
    expect(n).toBe(EVENT_HEADER_BYTES + 6 + 6 + 11 + 1 + 7 + CRC_BYTES);
    expect(b[4]).toBe(FORMAT_VERSION_BASE);
    expect(b[5]).toBe(1);
    expect(b[6]).toBe(FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST);
    expect(b[7]).toBe(0);
    expect(u64(b, 8)).toBe(7);
    expect(u64(b, 16)).toBe(1_700_000_000_000);
    expect(u32(b, 24)).toBe(3);
    expect(u16(b, 28)).toBe(6);
    expect(u16(b, 30)).toBe(6);
    expect(u64(b, 32)).toBe(2);
    expect(u32(b, 40)).toBe(11);
    expect(u32(b, 44)).toBe(1);
    expect(u32(b, 48)).toBe(7);
    expect(Buffer.from(b.subarray(52, 58)).toString('utf8')).toBe('acct-1');
    expect(Buffer.from(b.subarray(58, 64)).toString('utf8')).toBe('Opened');
    // headers: u16 count, u16 len + "c1", u16 len + "k", u16 0 (no causation)
    expect(u16(b, 64)).toBe(1);
    expect(u16(b, 66)).toBe(2);
    expect(Buffer.from(b.subarray(68, 70)).toString('utf8')).toBe('c1');
    expect(u16(b, 70)).toBe(1);
    expect(b[72]).toBe('k'.charCodeAt(0));
    expect(u16(b, 73)).toBe(0);
    expect(b[75]).toBe(0xaa);
    expect(Buffer.from(b.subarray(76, 83)).toString('utf8')).toBe('{"a":1}');
    expect(u32(b, n - 4)).toBe(crc32c(b, 0, n - 4));
  });

  it('puts the marker fields at the documented offsets, with the SHA-1 of the sealed frame bytes and the marker header', () => {
    const b = writeGolden();
    const m = b.subarray(87);
    expect(m.length).toBe(MARKER_BYTES);
    expect(MARKER_BYTES).toBe(88);
    expect(MARKER_PREV_DIGEST_OFFSET).toBe(44);
    expect(MARKER_DIGEST_OFFSET).toBe(64);
    expect(u32(m, 0)).toBe(88);
    expect(m[4]).toBe(FORMAT_VERSION_BASE);
    expect(m[5]).toBe(2);
    expect(m[6]).toBe(1);
    expect(m[7]).toBe(0);
    expect(u64(m, 8)).toBe(7);
    expect(u64(m, 16)).toBe(1_700_000_000_001);
    expect(u32(m, 24)).toBe(3);
    expect(u32(m, 28)).toBe(1);
    expect(u64(m, 32)).toBe(7);
    expect(u32(m, 40)).toBe(20);
    expect(hex(m.subarray(44, 64))).toBe('00'.repeat(20));
    expect(hex(m.subarray(64, 84))).toBe(sha1(b.subarray(0, 87 + 64)));
    expect(u32(m, 84)).toBe(crc32c(m, 0, 84));
  });

  it('decodes the golden bytes back to the fields written', () => {
    const { batches, report } = decodeBatches(Buffer.from(GOLDEN, 'hex'));
    expect(report).toMatchObject({ reason: 'end', clean: true, validBytes: 175 });
    expect(batches).toHaveLength(1);
    const [batch] = batches;
    expect(batch).toMatchObject({ firstSeq: 7, lastSeq: 7, byteOffset: 0, byteLength: 175 });
    expect(hex(batch.bytes)).toBe(GOLDEN);
    expect(batch.marker).toMatchObject({ firstSeq: 7, lastSeq: 7, frameCount: 1, epoch: 3, timestamp: 1_700_000_000_001, formatVersion: 2, digestAlgorithm: 'sha1' });
    expect(hex(batch.marker.prevDigest!)).toBe('00'.repeat(20));
    expect(hex(batch.marker.digest)).toBe(GOLDEN.slice(2 * (87 + 64), 2 * (87 + 84)));
    expect(plain(batch.frames)).toEqual([
      {
        seq: 7,
        epoch: 3,
        timestamp: 1_700_000_000_000,
        commitFirst: true,
        commitLast: true,
        streamId: 'acct-1',
        streamVersion: 2,
        eventType: 'Opened',
        headers: { commandIds: ['c1'], correlationId: 'k', causationId: undefined },
        metadata: Uint8Array.of(0xaa),
        payload: utf8('{"a":1}'),
        frameBytes: 87,
      },
    ]);
  });

  it('encodes the smallest possible frame in FRAME_BYTES_MIN bytes', () => {
    const w = new FrameWriter();
    w.appendEvent(0, 0, 0, ONLY, '', 0, '', undefined, undefined, new Uint8Array(0));
    expect(w.byteLength).toBe(FRAME_BYTES_MIN);
    expect(u32(w.bytes(), 0)).toBe(FRAME_BYTES_MIN);
  });

  it('stores 64-bit fields as two u32 halves, up to the largest safe integer', () => {
    const w = new FrameWriter();
    const big = Number.MAX_SAFE_INTEGER;
    w.appendEvent(big - 1, 0xffffffff, big, ONLY, 's', big, 't', undefined, undefined, new Uint8Array(0));
    const b = w.bytes();
    expect(u32(b, 8)).toBe(0xfffffffe);
    expect(u32(b, 12)).toBe(0x1fffff);
    expect(u64(b, 16)).toBe(big);
    expect(u32(b, 24)).toBe(0xffffffff);
    expect(u64(b, 32)).toBe(big);
    w.seal(0xffffffff, big);
    const { batches, report } = decodeBatches(w.bytes());
    expect(report.reason).toBe('end');
    expect(batches[0].frames[0]).toMatchObject({ seq: big - 1, epoch: 0xffffffff, timestamp: big, streamVersion: big });
    expect(batches[0].marker).toMatchObject({ firstSeq: big - 1, lastSeq: big - 1, epoch: 0xffffffff, timestamp: big });
  });
});

describe('FrameWriter markers', () => {
  it('seals every frame since the previous seal, digesting exactly their bytes', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    expect(w.seal(1, 10)).toBe(true);
    const firstEnd = w.byteLength;
    appendSimple(w, 2, utf8('x'), FLAG_COMMIT_FIRST);
    appendSimple(w, 3, utf8('y'), 0);
    appendSimple(w, 4, utf8('z'), FLAG_COMMIT_LAST);
    appendSimple(w, 5);
    expect(w.unsealedFrameCount).toBe(4);
    const framesEnd = w.byteLength;
    expect(w.seal(1, 11)).toBe(true);
    expect(w.unsealedFrameCount).toBe(0);
    const b = w.bytes();
    const marker = b.subarray(framesEnd);
    expect(marker.length).toBe(MARKER_BYTES);
    expect(u64(marker, 8)).toBe(2);
    expect(u32(marker, 28)).toBe(4);
    expect(u64(marker, 32)).toBe(5);
    // prevDigest: the first batch's digest; digest: SHA-1 of exactly the four frames and the marker header.
    expect(hex(marker.subarray(44, 64))).toBe(hex(b.subarray(firstEnd - 24, firstEnd - 4)));
    expect(hex(marker.subarray(64, 84))).toBe(sha1(b.subarray(firstEnd, framesEnd + 64)));
  });

  it('writes nothing and returns false when nothing is unsealed', () => {
    const w = new FrameWriter();
    expect(w.seal(0, 0)).toBe(false);
    expect(w.byteLength).toBe(0);
    appendSimple(w, 1);
    w.seal(0, 0);
    const length = w.byteLength;
    expect(w.seal(0, 0)).toBe(false);
    expect(w.byteLength).toBe(length);
  });
});

describe('FrameWriter hash chain', () => {
  const markerOf = (b: Uint8Array, end: number): Uint8Array => b.subarray(end - MARKER_BYTES, end);

  it('chains each batch to the last one it sealed, starting from 20 zero bytes', () => {
    const w = new FrameWriter();
    expect(hex(w.lastDigest)).toBe(hex(ZERO_DIGEST));
    expect(ZERO_DIGEST).toEqual(new Uint8Array(SHA1_BYTES));
    const ends: number[] = [];
    for (let seq = 1; seq <= 3; seq++) {
      appendSimple(w, seq);
      w.seal(1, seq);
      ends.push(w.byteLength);
    }
    const b = w.bytes();
    let prev = hex(ZERO_DIGEST);
    let start = 0;
    for (const end of ends) {
      const m = markerOf(b, end);
      expect(hex(m.subarray(MARKER_PREV_DIGEST_OFFSET, MARKER_PREV_DIGEST_OFFSET + SHA1_BYTES))).toBe(prev);
      const digest = hex(m.subarray(MARKER_DIGEST_OFFSET, MARKER_DIGEST_OFFSET + SHA1_BYTES));
      expect(digest).toBe(sha1(b.subarray(start, end - MARKER_BYTES + MARKER_DIGEST_OFFSET)));
      prev = digest;
      start = end;
    }
    expect(hex(w.lastDigest)).toBe(prev);
  });

  it('stores an explicit prevDigest, and chains later seals to its own batch', () => {
    const w = new FrameWriter();
    const given = Uint8Array.from({ length: SHA1_BYTES }, (_, i) => i + 1);
    appendSimple(w, 1);
    w.seal(1, 1, given);
    const first = markerOf(w.bytes(), w.byteLength);
    expect(hex(first.subarray(44, 64))).toBe(hex(given));
    const firstDigest = hex(first.subarray(64, 84));
    expect(hex(w.lastDigest)).toBe(firstDigest);
    appendSimple(w, 2);
    w.seal(1, 2);
    expect(hex(markerOf(w.bytes(), w.byteLength).subarray(44, 64))).toBe(firstDigest);
    const { batches, report } = decodeBatches(w.bytes(), { prevDigest: given });
    expect(report.reason).toBe('end');
    expect(batches.map((x) => hex(x.marker.prevDigest!))).toEqual([hex(given), firstDigest]);
  });

  it('refuses a prevDigest that is not 20 bytes, writing nothing', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    const length = w.byteLength;
    for (const bad of [new Uint8Array(0), new Uint8Array(19), new Uint8Array(32)]) {
      expect(() => w.seal(1, 1, bad)).toThrow(expect.objectContaining({ field: 'prevDigest' }));
      expect(() => w.beginSeal(1, 1, bad)).toThrow(InvalidFrameFieldError);
    }
    expect(w.byteLength).toBe(length);
    expect(w.unsealedFrameCount).toBe(1);
    expect(hex(w.lastDigest)).toBe(hex(ZERO_DIGEST));
  });

  it('beginSeal returns the frames and the marker header up to the digest; completeSeal with their SHA-1 equals seal', () => {
    const deferred = new FrameWriter();
    const direct = new FrameWriter();
    let firstEnd = 0;
    for (const w of [deferred, direct]) {
      appendSimple(w, 1);
      w.seal(1, 1);
      firstEnd = w.byteLength;
      appendSimple(w, 2);
      appendSimple(w, 3);
    }
    const start = deferred.byteLength;
    const toDigest = deferred.beginSeal(1, 2)!;
    expect(hex(toDigest)).toBe(hex(deferred.bytes().subarray(firstEnd, start + MARKER_DIGEST_OFFSET)));
    deferred.completeSeal(createHash('sha1').update(toDigest).digest());
    direct.seal(1, 2);
    expect(hex(deferred.bytes())).toBe(hex(direct.bytes()));
    expect(hex(deferred.lastDigest)).toBe(hex(direct.lastDigest));
    expect(decodeBatches(deferred.bytes()).report.reason).toBe('end');
  });
});

describe('FrameWriter digestWritten (the batch digest fed in steps)', () => {
  /** Two batches, the second digested in steps at every `step` frames; returns the writer. */
  function written(step: number | undefined): FrameWriter {
    const w = new FrameWriter({ initialBytes: 256 });
    appendSimple(w, 1);
    w.seal(1, 10);
    for (let seq = 2; seq <= 40; seq++) {
      appendSimple(w, seq, new Uint8Array(300).fill(seq));
      if (step !== undefined && seq % step === 0) w.digestWritten();
    }
    w.seal(1, 11);
    return w;
  }

  it('seals byte for byte what seal alone writes, across buffer growth and into the next batch', () => {
    for (const step of [1, 3, 39]) {
      const whole = written(undefined);
      const stepped = written(step);
      expect(hex(stepped.bytes())).toBe(hex(whole.bytes()));
      expect(hex(stepped.lastDigest)).toBe(hex(whole.lastDigest));
      // The digest fed in steps is gone after the seal: the next batch starts afresh.
      appendSimple(stepped, 41);
      stepped.digestWritten();
      stepped.seal(1, 12);
      appendSimple(whole, 41);
      whole.seal(1, 12);
      expect(hex(stepped.bytes())).toBe(hex(whole.bytes()));
      const { report } = decodeBatches(stepped.bytes());
      expect(report.reason).toBe('end');
    }
  });

  it('hashes every byte once: seal() hashes only what came after the last digestWritten()', () => {
    const w = new FrameWriter();
    for (let seq = 1; seq <= 20; seq++) appendSimple(w, seq, new Uint8Array(1000));
    w.digestWritten();
    appendSimple(w, 21);
    const update = vi.spyOn(Hash.prototype, 'update');
    try {
      w.seal(1, 1);
      const hashed = update.mock.calls.reduce((n, [data]) => n + (typeof data === 'string' ? data.length : (data as ArrayBufferView).byteLength), 0);
      // The last frame and the marker's first 64 bytes, not the 20 frames digested before.
      expect(hashed).toBeLessThan(200);
    } finally {
      update.mockRestore();
    }
    expect(decodeBatches(w.bytes()).report.reason).toBe('end');
  });

  it('refuses a rollback into bytes already digested, and beginSeal() digests the whole batch itself', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    const before = w.mark();
    appendSimple(w, 2);
    w.digestWritten();
    expect(w.undigestedBytes).toBe(0);
    expect(() => w.rollback(before, 1, 1)).toThrow(RangeError);
    const after = w.mark();
    appendSimple(w, 3);
    expect(w.undigestedBytes).toBe(w.byteLength - after);
    w.rollback(after, 2, 2);
    const toDigest = w.beginSeal(1, 1)!;
    expect(toDigest.length).toBe(w.byteLength - MARKER_BYTES + MARKER_DIGEST_OFFSET);
    w.completeSeal(createHash('sha1').update(toDigest).digest());
    const direct = new FrameWriter();
    appendSimple(direct, 1);
    appendSimple(direct, 2);
    direct.seal(1, 1);
    expect(hex(w.bytes())).toBe(hex(direct.bytes()));
  });
});

describe('FrameWriter mark and rollback', () => {
  it('drops a commit that failed half-way, leaving the bytes a writer without it produces', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    appendSimple(w, 2);
    const mark = w.mark();
    appendSimple(w, 3, utf8('doomed'), FLAG_COMMIT_FIRST);
    appendSimple(w, 4, utf8('doomed'), 0);
    w.rollback(mark, 2, 2);
    expect(w.byteLength).toBe(mark);
    expect(w.unsealedFrameCount).toBe(2);
    // The next commit continues from the rolled-back seq, not from 5.
    expect(() => appendSimple(w, 5)).toThrow(InvalidFrameFieldError);
    appendSimple(w, 3);
    w.seal(1, 99);

    const expected = new FrameWriter();
    appendSimple(expected, 1);
    appendSimple(expected, 2);
    appendSimple(expected, 3);
    expected.seal(1, 99);
    expect(hex(w.bytes())).toBe(hex(expected.bytes()));
    const { batches, report } = decodeBatches(w.bytes());
    expect(report.reason).toBe('end');
    expect(batches.map((b) => [b.firstSeq, b.lastSeq, b.frames.length])).toEqual([[1, 3, 3]]);
  });

  it('rolls back to nothing unsealed after a seal, and the marker then covers only later frames', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    w.seal(1, 5);
    const mark = w.mark();
    appendSimple(w, 2);
    w.rollback(mark, 0, 0);
    expect(w.unsealedFrameCount).toBe(0);
    expect(w.seal(1, 6)).toBe(false);
    appendSimple(w, 2, utf8('again'));
    w.seal(1, 6);
    const { batches, report } = decodeBatches(w.bytes());
    expect(report.reason).toBe('end');
    expect(batches.map((b) => b.frames.map((f) => Buffer.from(f.payload).toString()))).toEqual([['event 1'], ['again']]);
  });

  it('refuses a mark inside sealed data or beyond the end', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    w.seal(1, 5);
    appendSimple(w, 2);
    expect(() => w.rollback(0, 0, 0)).toThrow(RangeError);
    expect(() => w.rollback(w.byteLength + 1, 1, 2)).toThrow(RangeError);
    expect(w.unsealedFrameCount).toBe(1);
  });
});

describe('FrameWriter reset', () => {
  it('reuses its buffer: after reset it writes exactly what a fresh writer writes (given the same previous digest)', () => {
    const w = new FrameWriter({ initialBytes: 256 });
    appendSimple(w, 1);
    appendSimple(w, 2);
    w.seal(1, 1);
    const chained = Uint8Array.from(w.lastDigest);
    appendSimple(w, 3);
    w.reset();
    expect(w.byteLength).toBe(0);
    expect(w.unsealedFrameCount).toBe(0);
    expect(w.bytes().length).toBe(0);
    // Any seq may start the next buffer, and the marker covers only frames written after reset.
    appendSimple(w, 100);
    appendSimple(w, 101);
    w.seal(1, 2);
    // The chain survives reset: the next batch names the last batch sealed before it.
    expect(hex(w.bytes().subarray(w.byteLength - MARKER_BYTES + 44, w.byteLength - MARKER_BYTES + 64))).toBe(hex(chained));
    const fresh = new FrameWriter();
    appendSimple(fresh, 100);
    appendSimple(fresh, 101);
    fresh.seal(1, 2, chained);
    expect(hex(w.bytes())).toBe(hex(fresh.bytes()));
    expect(hex(w.lastDigest)).toBe(hex(fresh.lastDigest));
  });
});

describe('FrameWriter seq continuity and field validation', () => {
  it('refuses a seq that does not follow the previous frame, writing nothing', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    const length = w.byteLength;
    for (const bad of [3, 1, 0]) {
      let error: unknown;
      try {
        appendSimple(w, bad);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidFrameFieldError);
      expect(error).toBeInstanceOf(FramingError);
      expect(error).toMatchObject({ field: 'seq', code: 'SLUICE_INVALID_FRAME_FIELD', name: 'InvalidFrameFieldError' });
      expect((error as Error).message).toMatch(/^\[sluice\/framing\] invalid seq: /);
    }
    expect(w.byteLength).toBe(length);
    expect(w.unsealedFrameCount).toBe(1);
    appendSimple(w, 2);
    expect(w.unsealedFrameCount).toBe(2);
  });

  it('keeps seq continuity across seals until reset, so one buffer always decodes', () => {
    const w = new FrameWriter();
    appendSimple(w, 1);
    w.seal(1, 1);
    expect(() => appendSimple(w, 5)).toThrow(InvalidFrameFieldError);
    expect(() => appendSimple(w, 1)).toThrow(InvalidFrameFieldError);
    appendSimple(w, 2);
    w.seal(1, 2);
    expect(decodeBatches(w.bytes()).report.reason).toBe('end');
    w.reset();
    appendSimple(w, 5);
  });

  it.each([
    ['negative', -1],
    ['fractional', 1.5],
    ['unsafe', 2 ** 53],
    ['NaN', Number.NaN],
  ])('refuses a %s seq', (_name, seq) => {
    const w = new FrameWriter();
    expect(() => appendSimple(w, seq)).toThrow(InvalidFrameFieldError);
    expect(w.byteLength).toBe(0);
  });

  it('refuses an invalid streamVersion', () => {
    const w = new FrameWriter();
    for (const v of [-1, 0.5, 2 ** 53]) {
      expect(() => w.appendEvent(1, 0, 0, ONLY, 's', v, 't', undefined, undefined, new Uint8Array(0))).toThrow(
        expect.objectContaining({ field: 'streamVersion' }),
      );
    }
    expect(w.byteLength).toBe(0);
  });

  it('refuses a timestamp or epoch it cannot store, instead of writing a different value', () => {
    const w = new FrameWriter();
    for (const timestamp of [-1, 1.5, 2 ** 53]) {
      expect(() => w.appendEvent(1, 0, timestamp, ONLY, 's', 0, 't', undefined, undefined, new Uint8Array(0))).toThrow(
        expect.objectContaining({ field: 'timestamp' }),
      );
    }
    for (const epoch of [-1, 0.5, 2 ** 32]) {
      expect(() => w.appendEvent(1, epoch, 0, ONLY, 's', 0, 't', undefined, undefined, new Uint8Array(0))).toThrow(
        expect.objectContaining({ field: 'epoch' }),
      );
    }
    expect(w.byteLength).toBe(0);
    appendSimple(w, 1);
    const length = w.byteLength;
    expect(() => w.seal(-1, 0)).toThrow(expect.objectContaining({ field: 'epoch' }));
    expect(() => w.seal(0, -5)).toThrow(expect.objectContaining({ field: 'timestamp' }));
    expect(w.byteLength).toBe(length);
    expect(w.seal(0, 0)).toBe(true);
  });

  it('accepts names of exactly NAME_BYTES_MAX UTF-8 bytes and refuses one byte more', () => {
    const w = new FrameWriter();
    const longest = 'é'.repeat((NAME_BYTES_MAX - 1) / 2) + 'x'; // 65535 bytes
    expect(Buffer.byteLength(longest)).toBe(NAME_BYTES_MAX);
    w.appendEvent(1, 0, 0, ONLY, longest, 0, longest, undefined, undefined, new Uint8Array(0));
    const length = w.byteLength;
    const tooLong = 'é'.repeat((NAME_BYTES_MAX + 1) / 2); // 65536 bytes in 32768 UTF-16 units
    expect(() => w.appendEvent(2, 0, 0, ONLY, tooLong, 0, 't', undefined, undefined, new Uint8Array(0))).toThrow(
      expect.objectContaining({ field: 'streamId' }),
    );
    expect(() => w.appendEvent(2, 0, 0, ONLY, 's', 0, 'x'.repeat(NAME_BYTES_MAX + 1), undefined, undefined, new Uint8Array(0))).toThrow(
      expect.objectContaining({ field: 'eventType' }),
    );
    expect(w.byteLength).toBe(length);
    w.seal(0, 0);
    const { batches } = decodeBatches(w.bytes());
    expect(batches[0].frames[0].streamId).toBe(longest);
    expect(batches[0].frames[0].eventType).toBe(longest);
  });

  it('refuses a command, correlation or causation id longer than 65535 bytes', () => {
    const w = new FrameWriter();
    const long = 'c'.repeat(0x10000);
    const cases: [CommitHeaders, string][] = [
      [{ commandIds: ['ok', long] }, 'commandId'],
      [{ commandIds: [], correlationId: long }, 'correlationId'],
      [{ commandIds: [], causationId: long }, 'causationId'],
    ];
    for (const [headers, field] of cases) {
      expect(() => w.appendEvent(1, 0, 0, ONLY, 's', 0, 't', headers, undefined, new Uint8Array(0))).toThrow(
        expect.objectContaining({ field }),
      );
    }
    expect(w.byteLength).toBe(0);
  });
});

describe('FrameWriter size limit', () => {
  const names = { streamId: 'sz', eventType: 'Big' };
  const overhead = EVENT_HEADER_BYTES + 2 + 3 + CRC_BYTES;

  it('encodes a frame of exactly frameBytesMax bytes', () => {
    const frameBytesMax = 4096;
    const w = new FrameWriter({ frameBytesMax });
    w.appendEvent(1, 0, 0, ONLY, names.streamId, 0, names.eventType, undefined, undefined, new Uint8Array(frameBytesMax - overhead));
    expect(w.byteLength).toBe(frameBytesMax);
    expect(u32(w.bytes(), 0)).toBe(frameBytesMax);
  });

  it('throws FrameTooLargeError one byte over, from the payload alone or from names and headers, writing nothing', () => {
    const frameBytesMax = 4096;
    const w = new FrameWriter({ frameBytesMax });
    appendSimple(w, 1);
    const length = w.byteLength;
    const attempts: (() => void)[] = [
      () => w.appendEvent(2, 0, 0, ONLY, names.streamId, 0, names.eventType, undefined, undefined, new Uint8Array(frameBytesMax - overhead + 1)),
      () => w.appendEvent(2, 0, 0, ONLY, names.streamId + 'x', 0, names.eventType, undefined, undefined, new Uint8Array(frameBytesMax - overhead)),
      () => w.appendEvent(2, 0, 0, ONLY, names.streamId, 0, names.eventType, { commandIds: [] }, undefined, new Uint8Array(frameBytesMax - overhead - 5)),
      () => w.appendEvent(2, 0, 0, ONLY, names.streamId, 0, names.eventType, undefined, Uint8Array.of(1), new Uint8Array(frameBytesMax - overhead)),
    ];
    for (const attempt of attempts) {
      let error: unknown;
      try {
        attempt();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FrameTooLargeError);
      expect(error).toBeInstanceOf(FramingError);
      expect(error).toMatchObject({ frameBytes: frameBytesMax + 1, frameBytesMax, code: 'SLUICE_FRAME_TOO_LARGE' });
      expect((error as Error).message).toContain('[sluice/framing]');
    }
    expect(w.byteLength).toBe(length);
    expect(w.unsealedFrameCount).toBe(1);
  });

  it('defaults frameBytesMax to DEFAULT_FRAME_BYTES_MAX (4 MiB)', () => {
    const w = new FrameWriter({ initialBytes: 1024 });
    expect(w.frameBytesMax).toBe(DEFAULT_FRAME_BYTES_MAX);
    expect(DEFAULT_FRAME_BYTES_MAX).toBe(4 * 1024 * 1024);
    const payload = new Uint8Array(DEFAULT_FRAME_BYTES_MAX - overhead);
    w.appendEvent(1, 0, 0, ONLY, names.streamId, 0, names.eventType, undefined, undefined, payload);
    expect(w.byteLength).toBe(DEFAULT_FRAME_BYTES_MAX);
    expect(() =>
      w.appendEvent(2, 0, 0, ONLY, names.streamId, 0, names.eventType, undefined, undefined, new Uint8Array(payload.length + 1)),
    ).toThrow(FrameTooLargeError);
  });
});

describe('FrameWriter buffer growth', () => {
  it('grows for a batch bigger than initialBytes and keeps every earlier byte', () => {
    const w = new FrameWriter({ initialBytes: 256 });
    const payloads = Array.from({ length: 12 }, (_, i) => Uint8Array.from({ length: 700 + i * 13 }, (_, j) => (i * 31 + j) & 0xff));
    payloads.forEach((p, i) => w.appendEvent(i + 1, 2, 50 + i, ONLY, `s-${i}`, i, 'Grew', undefined, undefined, p));
    // One frame larger than twice the current buffer.
    const huge = Uint8Array.from({ length: 40_000 }, (_, j) => (j * 7) & 0xff);
    w.appendEvent(13, 2, 99, ONLY, 'huge', 0, 'Grew', undefined, undefined, huge);
    w.seal(2, 100);
    expect(w.byteLength).toBeGreaterThan(256 * 128);
    const { batches, report } = decodeBatches(w.bytes());
    expect(report).toMatchObject({ reason: 'end', validBytes: w.byteLength });
    expect(batches).toHaveLength(1);
    const decoded = batches[0].frames.map((f) => hex(f.payload));
    expect(decoded).toEqual([...payloads, huge].map(hex));
  });

  it('grows for a marker that does not fit', () => {
    const w = new FrameWriter({ initialBytes: 256 });
    // 256 - 56 - 7 bytes of names leaves a frame that fills the buffer to within a few bytes.
    w.appendEvent(1, 0, 0, ONLY, 'abc', 0, 'defg', undefined, undefined, new Uint8Array(256 - FRAME_BYTES_MIN - 7 - 2));
    expect(w.byteLength).toBe(254);
    w.seal(0, 0);
    expect(w.byteLength).toBe(254 + MARKER_BYTES);
    expect(decodeBatches(w.bytes()).report).toMatchObject({ reason: 'end', validBytes: 254 + MARKER_BYTES });
  });
});

describe('53-bit fields', () => {
  it('writeU53 stores what readU53 reads back, around every word boundary and up to 2^53 - 1', async () => {
    const { readU53, writeU53 } = await import('./layout.js');
    const b = new Uint8Array(8);
    const values = [0, 1, 0xffffffff, 0x1_0000_0000, 0x1_0000_0001, 1_700_000_000_000, 2 ** 52, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER];
    for (const v of values) {
      writeU53(b, 0, v);
      expect(readU53(b, 0)).toBe(v);
      expect(new DataView(b.buffer).getBigUint64(0, true)).toBe(BigInt(v));
    }
  });
});
