import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FrameWriter,
  MARKER_BYTES,
  StreamDecoder,
  crc32c,
  decodeBatches,
  type CommitHeaders,
  type DecodeReport,
  type SealedBatch,
  type StreamDecoderOptions,
} from './index.js';

// A failing property can take many minutes to shrink (the log arbitraries are large): cap a
// property's whole run, shrinking included, and report what was found by then as a failure.
fc.configureGlobal({ interruptAfterTimeLimit: 30_000, markInterruptAsFailure: true });

// ---------------------------------------------------------------------------------------
// Model: a log is batches (one marker each) of commits of events.

interface EventSpec {
  readonly streamId: string;
  readonly streamVersion: number;
  readonly eventType: string;
  readonly metadata: Uint8Array | undefined;
  readonly payload: Uint8Array;
}
interface CommitSpec {
  readonly headers: CommitHeaders | undefined;
  readonly events: readonly EventSpec[];
}
interface LogSpec {
  readonly firstSeq: number;
  readonly epoch: number;
  readonly timestamp: number;
  readonly batches: readonly (readonly CommitSpec[])[];
}
interface EncodedLog {
  readonly bytes: Uint8Array;
  readonly expected: unknown[];
  readonly batchEnds: number[];
  /** [start, end) of every event frame. */
  readonly events: [number, number][];
  /** Digest of the last batch. */
  readonly lastDigest: Uint8Array;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

// Names mix arbitrary code points with the awkward ones: a leading U+FEFF, NUL, astral
// characters; lengths cross the decoder's and writer's short-name fast paths (32 bytes, 48 units).
const nameUnit = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 3 },
  { arbitrary: fc.constantFrom('a', 'Z', '-', '/', 'é', 'ß', '東', '😀', '\uFEFF', '\u0000', '\u007f', '\u0080'), weight: 3 },
);
const nameArb = fc.oneof(fc.string({ unit: nameUnit, maxLength: 8 }), fc.string({ unit: nameUnit, minLength: 30, maxLength: 60 }));
const bytesArb = (maxLength: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });

const headersArb: fc.Arbitrary<CommitHeaders | undefined> = fc.option(
  fc.record({
    commandIds: fc.array(nameArb, { maxLength: 3 }),
    correlationId: fc.option(nameArb, { nil: undefined }),
    causationId: fc.option(nameArb, { nil: undefined }),
  }),
  { nil: undefined },
);
const eventArb: fc.Arbitrary<EventSpec> = fc.record({
  streamId: nameArb,
  streamVersion: fc.maxSafeNat(),
  eventType: nameArb,
  metadata: fc.option(bytesArb(24), { nil: undefined }),
  payload: bytesArb(120),
});
const commitArb: fc.Arbitrary<CommitSpec> = fc.record({ headers: headersArb, events: fc.array(eventArb, { minLength: 1, maxLength: 4 }) });
const logArb: fc.Arbitrary<LogSpec> = fc.record({
  firstSeq: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 100 }),
  epoch: fc.integer({ min: 0, max: 0xffffffff }),
  timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 100 }),
  batches: fc.array(fc.array(commitArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }),
});

/** Encodes `log`; its first batch names `prevDigest` (20 zero bytes: the start of a log). */
function encodeLog(log: LogSpec, prevDigest: Uint8Array = new Uint8Array(20)): EncodedLog {
  const w = new FrameWriter({ initialBytes: 256 });
  const expected: unknown[] = [];
  const batchEnds: number[] = [];
  const events: [number, number][] = [];
  let seq = log.firstSeq;
  for (const batch of log.batches) {
    const batchStart = w.byteLength;
    const frames: unknown[] = [];
    const batchFirstSeq = seq;
    for (const commit of batch) {
      commit.events.forEach((e, i) => {
        const first = i === 0;
        const last = i === commit.events.length - 1;
        const headers = first ? commit.headers : undefined;
        const start = w.byteLength;
        const timestamp = log.timestamp + (seq - log.firstSeq);
        w.appendEvent(seq, log.epoch, timestamp, (first ? FLAG_COMMIT_FIRST : 0) | (last ? FLAG_COMMIT_LAST : 0), e.streamId, e.streamVersion, e.eventType, headers, e.metadata, e.payload);
        events.push([start, w.byteLength]);
        frames.push({
          seq,
          epoch: log.epoch,
          timestamp,
          commitFirst: first,
          commitLast: last,
          streamId: e.streamId,
          streamVersion: e.streamVersion,
          eventType: e.eventType,
          headers:
            headers === undefined
              ? undefined
              : { commandIds: [...headers.commandIds], correlationId: headers.correlationId || undefined, causationId: headers.causationId || undefined },
          metadata: hex(e.metadata ?? new Uint8Array(0)),
          payload: hex(e.payload),
          frameBytes: w.byteLength - start,
        });
        seq += 1;
      });
    }
    w.seal(log.epoch, log.timestamp + (seq - log.firstSeq), batchEnds.length === 0 ? prevDigest : w.lastDigest);
    batchEnds.push(w.byteLength);
    const bytes = hex(w.bytes().subarray(batchStart, w.byteLength));
    expected.push({ firstSeq: batchFirstSeq, lastSeq: seq - 1, byteOffset: batchStart, byteLength: w.byteLength - batchStart, bytes, frames });
  }
  return { bytes: Uint8Array.from(w.bytes()), expected, batchEnds, events, lastDigest: Uint8Array.from(w.lastDigest) };
}

/** A decoded batch as plain values; the marker is checked against the batch's own range. */
function plainBatch(b: SealedBatch): unknown {
  expect(b.marker).toMatchObject({ firstSeq: b.firstSeq, lastSeq: b.lastSeq, frameCount: b.frames.length, formatVersion: 2, digestAlgorithm: 'sha1' });
  expect(b.marker.prevDigest).toHaveLength(20);
  return {
    firstSeq: b.firstSeq,
    lastSeq: b.lastSeq,
    byteOffset: b.byteOffset,
    byteLength: b.byteLength,
    bytes: hex(b.bytes),
    frames: b.frames.map((f) => ({ ...f, metadata: hex(f.metadata), payload: hex(f.payload) })),
  };
}

/** Cuts `bytes` at the given (unsorted, possibly repeated) positions. */
function chunk(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function decodeChunks(chunks: readonly Uint8Array[], options?: StreamDecoderOptions): { batches: unknown[]; report: DecodeReport } {
  const d = new StreamDecoder(options);
  const batches: unknown[] = [];
  for (const c of chunks) for (const b of d.push(c)) batches.push(plainBatch(b));
  return { batches, report: d.end() };
}

const cutsArb = fc.array(fc.nat(), { maxLength: 10 });
const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));

// ---------------------------------------------------------------------------------------

describe('properties: round trip', () => {
  it('any log FrameWriter writes decodes back exactly, under any chunking', () => {
    fc.assert(
      fc.property(logArb, cutsArb, (log, cuts) => {
        const encoded = encodeLog(log);
        const { batches, report } = decodeChunks(chunk(encoded.bytes, cuts), { firstSeq: log.firstSeq });
        expect(batches).toEqual(encoded.expected);
        expect(report).toMatchObject({ reason: 'end', clean: true, validBytes: encoded.bytes.length, unsealedFrames: 0 });
        expect(decodeBatches(encoded.bytes).batches.map(plainBatch)).toEqual(encoded.expected);
        // The batches chain: each names the digest of the one before it, the first 20 zero bytes.
        const decoded = decodeBatches(encoded.bytes, { prevDigest: new Uint8Array(20) }).batches;
        expect(decoded.map((b) => hex(b.marker.prevDigest!))).toEqual([hex(new Uint8Array(20)), ...decoded.slice(0, -1).map((b) => hex(b.marker.digest))]);
        expect(hex(decoded[decoded.length - 1].marker.digest)).toBe(hex(encoded.lastDigest));
      }),
      { numRuns: 150 },
    );
  });

  it('a log cut anywhere gives exactly the batches sealed before the cut', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), cutsArb, (log, cutAt, cuts) => {
        const encoded = encodeLog(log);
        const length = cutAt % (encoded.bytes.length + 1);
        const sealed = encoded.batchEnds.filter((end) => end <= length).length;
        const validBytes = sealed === 0 ? 0 : encoded.batchEnds[sealed - 1];
        const atEventEnd = encoded.events.some(([, end]) => end === length);
        const { batches, report } = decodeChunks(chunk(encoded.bytes.subarray(0, length), cuts));
        expect(batches).toEqual(encoded.expected.slice(0, sealed));
        expect(report.validBytes).toBe(validBytes);
        expect(report.reason).toBe(length === validBytes ? 'end' : atEventEnd ? 'unsigned-commit' : 'torn-frame');
      }),
      { numRuns: 150 },
    );
  });
});

describe('properties: no garbage input is ever decoded as a valid commit', () => {
  it('random bytes never yield a batch, and the decoder never throws', () => {
    fc.assert(
      fc.property(bytesArb(2048), cutsArb, (garbage, cuts) => {
        const { batches, report } = decodeBatches(garbage);
        expect(batches).toEqual([]);
        expect(report.validBytes).toBe(0);
        expect(decodeChunks(chunk(garbage, cuts)).batches).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('garbage shaped like frames (plausible length, version and kind) never yields a batch', () => {
    const frameLike = fc
      .tuple(fc.integer({ min: 1, max: 400 }), fc.constantFrom(1, 2), fc.integer({ min: 0, max: 3 }), bytesArb(400), fc.constantFrom(1, 2))
      .map(([length, kind, flags, rest, version]) => {
        const b = new Uint8Array(Math.max(length, 8));
        b.set(rest.subarray(0, b.length - 8), 8);
        new DataView(b.buffer).setUint32(0, length, true);
        b[4] = version;
        b[5] = kind;
        b[6] = flags;
        return b;
      });
    fc.assert(
      fc.property(fc.array(frameLike, { minLength: 1, maxLength: 6 }), cutsArb, (frames, cuts) => {
        const garbage = concat(...frames);
        expect(decodeBatches(garbage).batches).toEqual([]);
        expect(decodeChunks(chunk(garbage, cuts)).batches).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('random bytes spliced after valid data never add a batch, even when valid data follows them', () => {
    fc.assert(
      fc.property(logArb, bytesArb(600), fc.boolean(), cutsArb, (log, garbage, thenValid, cuts) => {
        const prefix = encodeLog(log);
        // A continuation with the right next seq and previous digest, so only the garbage can stop it.
        const continuation = encodeLog({ ...log, firstSeq: log.firstSeq + prefix.events.length }, prefix.lastDigest);
        const input = thenValid ? concat(prefix.bytes, garbage, continuation.bytes) : concat(prefix.bytes, garbage);
        const { batches, report } = decodeChunks(chunk(input, cuts));
        if (garbage.length > 0 || !thenValid) {
          expect(batches).toEqual(prefix.expected);
          expect(report.validBytes).toBe(prefix.bytes.length);
        } else {
          expect(batches).toHaveLength(prefix.expected.length + continuation.expected.length);
          expect(report).toMatchObject({ reason: 'end', validBytes: input.length });
        }
        if (garbage.length > 0 && garbage.some((b) => b !== 0)) expect(report.reason).not.toBe('end');
      }),
      { numRuns: 150 },
    );
  });

  it('a byte changed anywhere keeps every batch before it intact and yields nothing from it on', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.integer({ min: 1, max: 255 }), cutsArb, (log, at, xor, cuts) => {
        const encoded = encodeLog(log);
        const i = at % encoded.bytes.length;
        const damaged = encoded.bytes.slice();
        damaged[i] ^= xor;
        const intact = encoded.batchEnds.filter((end) => end <= i).length;
        const { batches, report } = decodeChunks(chunk(damaged, cuts));
        expect(batches).toEqual(encoded.expected.slice(0, intact));
        expect(report.validBytes).toBe(intact === 0 ? 0 : encoded.batchEnds[intact - 1]);
        expect(report.reason).not.toBe('end');
      }),
      { numRuns: 200 },
    );
  });

  it('an event frame altered with its CRC recomputed is never accepted: the marker digest catches it', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), cutsArb, (log, which, at, xor, cuts) => {
        const encoded = encodeLog(log);
        const [start, end] = encoded.events[which % encoded.events.length];
        // Any byte between the length field and the CRC.
        const i = start + 4 + (at % (end - start - 8));
        const damaged = encoded.bytes.slice();
        damaged[i] ^= xor;
        new DataView(damaged.buffer).setUint32(end - 4, crc32c(damaged, start, end - 4), true);
        const intact = encoded.batchEnds.filter((e) => e <= start).length;
        const { batches, report } = decodeChunks(chunk(damaged, cuts));
        expect(batches).toEqual(encoded.expected.slice(0, intact));
        expect(report.clean).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it("a flipped bit in a marker's prevDigest never verifies, whether or not the CRC and digest were recomputed", () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.integer({ min: 0, max: 159 }), fc.constantFrom('flip', 'crc', 'reseal'), fc.boolean(), cutsArb, (log, which, bit, how, withOption, cuts) => {
        const encoded = encodeLog(log);
        const k = which % encoded.batchEnds.length;
        const batchStart = k === 0 ? 0 : encoded.batchEnds[k - 1];
        const markerStart = encoded.batchEnds[k] - MARKER_BYTES;
        const damaged = encoded.bytes.slice();
        damaged[markerStart + 44 + (bit >> 3)] ^= 1 << (bit & 7);
        const view = new DataView(damaged.buffer);
        if (how === 'reseal') damaged.set(createHash('sha1').update(damaged.subarray(batchStart, markerStart + 64)).digest(), markerStart + 64);
        if (how !== 'flip') view.setUint32(markerStart + 84, crc32c(damaged, markerStart, markerStart + 84), true);
        const { batches, report } = decodeChunks(chunk(damaged, cuts), withOption ? { prevDigest: new Uint8Array(20) } : {});
        if (how === 'reseal' && k === 0 && !withOption) {
          // Nothing says what precedes a log's first batch, so the resealed batch is self-consistent and
          // decodes (naming the altered prevDigest); but its digest changed, so the next batch breaks the chain.
          const decoded = decodeBatches(damaged).batches;
          expect(hex(decoded[0].marker.prevDigest!)).not.toBe(hex(new Uint8Array(20)));
          if (encoded.batchEnds.length > 1) {
            expect(batches).toHaveLength(1);
            expect(report).toMatchObject({ reason: 'broken-chain', validBytes: encoded.batchEnds[0], offset: encoded.batchEnds[1] - MARKER_BYTES });
          } else {
            expect(report.reason).toBe('end');
          }
          return;
        }
        expect(batches).toEqual(encoded.expected.slice(0, k));
        expect(report).toMatchObject({ validBytes: batchStart, offset: markerStart, clean: false });
        // Without recomputing, the CRC catches it; with the CRC recomputed, the chain (or, for a log's first
        // batch with nothing said about what precedes it, the digest, which covers prevDigest); resealed, the chain.
        const expectedReason = how === 'flip' ? 'bad-checksum' : how === 'crc' ? (k > 0 || withOption ? 'broken-chain' : 'bad-digest') : 'broken-chain';
        expect(report.reason).toBe(expectedReason);
      }),
      { numRuns: 300 },
    );
  });

  it('the decoder never throws, whatever the options and chunking', () => {
    fc.assert(
      fc.property(
        fc.oneof(bytesArb(1024), logArb.map((l) => encodeLog(l).bytes)),
        fc.record({
          frameBytesMax: fc.option(fc.integer({ min: 0, max: 4096 }), { nil: undefined }),
          firstSeq: fc.option(fc.maxSafeNat(), { nil: undefined }),
          verifyDigest: fc.option(fc.boolean(), { nil: undefined }),
        }),
        cutsArb,
        (bytes, options, cuts) => {
          const d = new StreamDecoder(options);
          for (const c of chunk(bytes, cuts)) d.push(c);
          const report = d.end();
          expect(report.validBytes).toBeLessThanOrEqual(bytes.length);
          expect(report.clean).toBe(report.reason === 'end' || report.reason === 'zero-fill');
        },
      ),
      { numRuns: 200 },
    );
  });
});
