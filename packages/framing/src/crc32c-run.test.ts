import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FRAME_CRC_RESIDUE, shiftCrc, verifyFrameRun, verifyFrameRunCombined } from './crc32c-run.js';
import { crc32c, crc32cCombine, nativeCrc32c, nativeFrameCrcs } from './index.js';
import { FrameWriter } from './frame-writer.js';
import { DEFAULT_FRAME_BYTES_MAX, FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FRAME_BYTES_MIN, readU32 } from './layout.js';
import { decodeBatches } from './stream-decoder.js';

/** Two batches of frames of several lengths (stream ids and payloads vary), as one chunk. */
function sampleLog(): Uint8Array {
  const writer = new FrameWriter();
  let seq = 1;
  for (let batch = 0; batch < 2; batch++) {
    for (let i = 0; i < 20; i++, seq++) {
      const flags = (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === 19 ? FLAG_COMMIT_LAST : 0);
      writer.appendEvent(seq, 1, 1_700_000_000_000, flags, `stream-${seq * 37}`, i + 1, 'Deposited', i === 0 ? { commandIds: [`c${batch}`] } : undefined, undefined, new Uint8Array(90 + ((seq * 13) % 300)).fill(seq));
    }
    writer.seal(1, 1_700_000_000_000);
  }
  return Uint8Array.from(writer.bytes());
}

/** Offsets where each frame (events and markers) of `bytes` starts. */
function frameStarts(bytes: Uint8Array): number[] {
  const starts: number[] = [];
  for (let o = 0; o < bytes.length; o += readU32(bytes, o)) starts.push(o);
  return starts;
}

// Where no native CRC-32C is loaded, runs are never verified at once: every frame is checked alone.
const wholeRun = (bytes: Uint8Array, end = bytes.length): number => (nativeCrc32c === undefined && nativeFrameCrcs === undefined ? 0 : end);
const wholeRunCombined = (bytes: Uint8Array, end = bytes.length): number => (nativeCrc32c === undefined ? 0 : end);

describe('verifyFrameRun', () => {
  it('checks each frame through the frame CRC addon when it is loaded, and its run ends at the first damaged frame', () => {
    const bytes = sampleLog();
    const starts = frameStarts(bytes);
    const damaged = Uint8Array.from(bytes);
    damaged[starts[7] + 60] ^= 1;
    expect(verifyFrameRun(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX)).toBe(nativeFrameCrcs !== undefined ? starts[7] : wholeRunCombined(bytes, 0));
    if (nativeFrameCrcs === undefined) return;
    // Every prefix of frames, from every frame start.
    for (const a of starts) {
      expect(nativeFrameCrcs.verifyFrames(bytes, a, bytes.length, FRAME_BYTES_MIN, DEFAULT_FRAME_BYTES_MAX)).toBe(bytes.length);
      expect(nativeFrameCrcs.verifyFrames(damaged, a, damaged.length, FRAME_BYTES_MIN, DEFAULT_FRAME_BYTES_MAX)).toBe(a <= starts[7] ? starts[7] : damaged.length);
    }
    // Lengths outside the bounds, and a torn last frame, end the walk; reading never writes.
    expect(nativeFrameCrcs.verifyFrames(bytes, 0, bytes.length, FRAME_BYTES_MIN, readU32(bytes, 0) - 1)).toBe(0);
    expect(nativeFrameCrcs.verifyFrames(bytes, 0, bytes.length - 1, FRAME_BYTES_MIN, DEFAULT_FRAME_BYTES_MAX)).toBe(starts[starts.length - 1]);
    const copy = Uint8Array.from(bytes);
    nativeFrameCrcs.verifyFrames(copy, 0, copy.length, FRAME_BYTES_MIN, DEFAULT_FRAME_BYTES_MAX);
    expect(copy).toEqual(bytes);
    expect(() => nativeFrameCrcs?.verifyFrames(bytes, 0, bytes.length + 1, FRAME_BYTES_MIN, DEFAULT_FRAME_BYTES_MAX)).toThrow(RangeError);
  });

  it('every valid frame, whatever its length, has the CRC residue', () => {
    const bytes = sampleLog();
    for (const o of frameStarts(bytes)) expect(crc32c(bytes, o, o + readU32(bytes, o))).toBe(FRAME_CRC_RESIDUE);
  });

  it('verifies every whole frame of a valid chunk with one call', () => {
    const bytes = sampleLog();
    expect(verifyFrameRun(bytes, 0, bytes.length, DEFAULT_FRAME_BYTES_MAX)).toBe(wholeRun(bytes));
  });

  it('stops its walk at zero-filled space and at a torn last frame', () => {
    const bytes = sampleLog();
    const withZeros = new Uint8Array(bytes.length + 4096);
    withZeros.set(bytes, 0);
    expect(verifyFrameRun(withZeros, 0, withZeros.length, DEFAULT_FRAME_BYTES_MAX)).toBe(wholeRun(bytes));
    const starts = frameStarts(bytes);
    const last = starts[starts.length - 1];
    expect(verifyFrameRun(bytes, 0, bytes.length - 1, DEFAULT_FRAME_BYTES_MAX)).toBe(wholeRun(bytes, last));
  });

  it('verifies nothing when any one byte of any frame is flipped, so each frame is then checked alone', () => {
    const bytes = sampleLog();
    for (let at = 0; at < bytes.length; at += 7) {
      const damaged = Uint8Array.from(bytes);
      damaged[at] ^= 0x10;
      const end = Math.max(verifyFrameRun(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX), verifyFrameRunCombined(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX));
      // A flipped length field may end the walk early; then only the frames before it pass.
      const before = frameStarts(bytes).filter((o) => o + readU32(bytes, o) <= at);
      const passedUpTo = before.length === 0 ? 0 : before[before.length - 1] + readU32(bytes, before[before.length - 1]);
      expect(end, `byte ${at} flipped`).toBeLessThanOrEqual(passedUpTo);
      // And the decoder still stops at the damaged frame, never later.
      const { report } = decodeBatches(damaged, { firstSeq: 1 });
      expect(report.validBytes, `byte ${at} flipped`).toBeLessThanOrEqual(at);
    }
  });

  it('catches a damaged frame in the middle of the run whose own CRC was recomputed over different bytes', () => {
    const bytes = sampleLog();
    const starts = frameStarts(bytes);
    const o = starts[5];
    const damaged = Uint8Array.from(bytes);
    damaged[o + 60] ^= 1; // the payload changes, the stored CRC does not
    expect(verifyFrameRunCombined(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX)).toBe(0);
    expect(verifyFrameRun(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX)).toBe(nativeFrameCrcs !== undefined ? o : 0);
    const { report } = decodeBatches(damaged, { firstSeq: 1 });
    expect(report.reason).toBe('bad-checksum');
    expect(report.offset).toBe(o);
  });
});

describe('verifyFrameRun, damage in several frames', () => {
  it('verifies nothing past the first damaged frame when one bit is flipped in each of two frames (property)', () => {
    const bytes = sampleLog();
    const starts = frameStarts(bytes);
    // Bits inside the frames' bodies (after the length field), so the walk still covers both.
    const bit = fc.record({ frame: fc.nat({ max: starts.length - 1 }), at: fc.nat(), bit: fc.nat({ max: 7 }) });
    fc.assert(
      fc.property(bit, bit, (a, b) => {
        fc.pre(a.frame !== b.frame);
        const damaged = Uint8Array.from(bytes);
        for (const d of [a, b]) {
          const o = starts[d.frame];
          damaged[o + 4 + (d.at % (readU32(bytes, o) - 4))] ^= 1 << d.bit;
        }
        expect(verifyFrameRunCombined(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX)).toBe(0);
        expect(verifyFrameRun(damaged, 0, damaged.length, DEFAULT_FRAME_BYTES_MAX)).toBe(nativeFrameCrcs !== undefined ? starts[Math.min(a.frame, b.frame)] : 0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('shiftCrc', () => {
  it('shifts a CRC past n zero bytes as crc32cCombine does, for any CRC and length (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 70_000 }), (crc, n) => {
        expect(shiftCrc(crc, n)).toBe(crc32cCombine(crc, 0, n));
      }),
      { numRuns: 2000 },
    );
  });

  it('stays exact when lengths that share a cache slot alternate', () => {
    for (let i = 0; i < 50; i++) {
      for (const n of [183, 183 + 256, 183 + 512]) expect(shiftCrc(0x9e3779b9 ^ i, n)).toBe(crc32cCombine(0x9e3779b9 ^ i, 0, n));
    }
  });
});
