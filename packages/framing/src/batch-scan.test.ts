import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scanSealedBatches } from './batch-scan.js';
import { FrameWriter } from './frame-writer.js';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, ZERO_DIGEST } from './layout.js';
import { decodeBatches } from './stream-decoder.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** `batches` batches of `commits` commits of `perCommit` events each, from seq `firstSeq`. */
function log(batches: number, commits: number, perCommit: number, firstSeq = 1, formatVersion: 2 | 3 = 2): Uint8Array {
  const writer = new FrameWriter({ initialBytes: 256, formatVersion });
  let seq = firstSeq;
  for (let b = 0; b < batches; b++) {
    for (let c = 0; c < commits; c++) {
      for (let e = 0; e < perCommit; e++) {
        const flags = (e === 0 ? FLAG_COMMIT_FIRST : 0) | (e === perCommit - 1 ? FLAG_COMMIT_LAST : 0);
        const headers = e === 0 ? { commandIds: [`cmd-${seq}`], level: formatVersion === 3 ? 'standard' : undefined } : undefined;
        writer.appendEvent(seq, 1, 1_700_000_000_000 + seq, flags, `stream-${seq % 7}`, seq, 'Happened', headers, undefined, utf8(`payload ${seq}`));
        seq++;
      }
    }
    writer.seal(1, 1_700_000_000_000 + seq);
  }
  return writer.bytes();
}

/** What the full decoder says of the same bytes, in the scanner's terms. */
function decoded(bytes: Uint8Array, firstSeq: number, prevDigest = ZERO_DIGEST) {
  const { batches, report } = decodeBatches(bytes, { firstSeq, prevDigest });
  return {
    spans: batches.map((b) => ({ firstSeq: b.firstSeq, lastSeq: b.lastSeq, marker: b.marker, byteOffset: b.byteOffset, byteLength: b.byteLength })),
    // The decoder calls a clean end of input 'end' even with trailing zeros ('zero-fill'); the scanner is handed whole writes.
    reason: report.reason,
  };
}

function scanned(bytes: Uint8Array, firstSeq: number, prevDigest = ZERO_DIGEST) {
  const r = scanSealedBatches(bytes, { firstSeq, prevDigest });
  return { spans: r.spans, reason: r.reason };
}

describe('scanSealedBatches', () => {
  it('finds every batch of a valid log, with the identities and offsets the decoder gives', () => {
    for (const version of [2, 3] as const) {
      const bytes = log(5, 3, 4, 1, version);
      const result = scanned(bytes, 1);
      expect(result.reason).toBe('end');
      expect(result.spans).toHaveLength(5);
      expect(result).toEqual(decoded(bytes, 1));
    }
  });

  it('stops where the decoder stops, for the same reason, on any flipped byte', () => {
    const bytes = log(3, 2, 3, 10);
    const prefixDigest = ZERO_DIGEST;
    for (let i = 0; i < bytes.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const copy = Uint8Array.from(bytes);
        copy[i] ^= mask;
        const s = scanned(copy, 10, prefixDigest);
        const d = decoded(copy, 10, prefixDigest);
        expect(s.reason, `byte ${i} ^ ${mask}`).not.toBe('end');
        expect(s.spans, `byte ${i} ^ ${mask}`).toEqual(d.spans);
        expect(s.reason, `byte ${i} ^ ${mask}`).toBe(d.reason);
      }
    }
  });

  it('agrees with the decoder on truncated input, a wrong first seq and a foreign previous digest', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.nat(), (batches, commits, perCommit, cutSeed) => {
        const bytes = log(batches, commits, perCommit, 5);
        const cut = bytes.subarray(0, 1 + (cutSeed % bytes.length));
        const s = scanned(cut, 5);
        const d = decoded(cut, 5);
        expect(s.spans).toEqual(d.spans);
        // A cut right after a marker leaves whole batches: that input ends cleanly.
        const last = s.spans.at(-1);
        if (last !== undefined && last.byteOffset + last.byteLength === cut.length) expect(s.reason).toBe('end');
        else expect(s.reason).not.toBe('end');
      }),
      { numRuns: 300 },
    );
    const bytes = log(2, 1, 2, 5);
    expect(scanned(bytes, 6).reason).toBe('bad-sequence');
    expect(scanned(bytes, 5, new Uint8Array(20).fill(9))).toEqual({ spans: [], reason: 'broken-chain' });
  });

  it('refuses a batch whose frames are sound but whose marker digest is not theirs', () => {
    // The first frame replaced by one of the same length with another payload and its own
    // valid CRC: every frame checks, only the batch digest can tell.
    const mixed = log(1, 1, 2, 1);
    const writer = new FrameWriter({ initialBytes: 256 });
    writer.appendEvent(1, 1, 1_700_000_000_001, FLAG_COMMIT_FIRST, 'stream-1', 1, 'Happened', { commandIds: ['cmd-1'] }, undefined, utf8('payload 9'));
    const other = writer.bytes();
    mixed.set(other, 0);
    const r = scanSealedBatches(mixed, { firstSeq: 1, prevDigest: ZERO_DIGEST });
    expect(r.reason).toBe('bad-digest');
    expect(r.spans).toEqual([]);
  });
});
