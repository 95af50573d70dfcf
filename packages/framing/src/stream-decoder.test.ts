import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FRAME_BYTES_MAX,
  EVENT_HEADER_BYTES,
  CRC_BYTES,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FRAME_BYTES_MIN,
  FrameWriter,
  MARKER_BYTES,
  MARKER_V1_BYTES,
  StreamDecoder,
  crc32c,
  decodeBatches,
  decodeEventFrameAt,
  type CommitHeaders,
  type DecodeReport,
  type SealedBatch,
  type StreamDecoderOptions,
} from './index.js';

// ---------------------------------------------------------------------------------------
// Fixtures: a log described as batches of commits of events, encoded with FrameWriter,
// together with what a decoder must give back.

interface EventSpec {
  readonly streamId: string;
  readonly streamVersion: number;
  readonly eventType: string;
  readonly headers?: CommitHeaders;
  readonly metadata?: Uint8Array;
  readonly payload: Uint8Array;
}
type Commit = readonly EventSpec[];
type Batch = readonly Commit[];

interface EncodedLog {
  readonly bytes: Uint8Array;
  /** The batches a decoder must return, as plain values (see {@link plainBatch}). */
  readonly expected: unknown[];
  /** End offset of each batch (after its marker). */
  readonly batchEnds: number[];
  /** End offset of each event frame. */
  readonly eventEnds: number[];
  /** Start offset of every frame, events and markers. */
  readonly frameStarts: number[];
  readonly lastSeq: number;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const timestampOf = (seq: number): number => 1_700_000_000_000 + seq * 10;
const EPOCH = 4;

const ZEROS_HEX = '00'.repeat(20);

/**
 * Encodes `batches` with `writer`; its first batch names `prevDigest` as the previous batch's digest
 * (20 zero bytes by default: the start of a log), later ones chain by themselves.
 */
function encodeLog(batches: readonly Batch[], firstSeq = 1, writer = new FrameWriter({ initialBytes: 256 }), prevDigest: Uint8Array = new Uint8Array(20)): EncodedLog {
  let prev = hex(prevDigest);
  const expected: unknown[] = [];
  const batchEnds: number[] = [];
  const eventEnds: number[] = [];
  const frameStarts: number[] = [];
  let seq = firstSeq;
  for (const batch of batches) {
    const batchStart = writer.byteLength;
    const frames: unknown[] = [];
    for (const commit of batch) {
      commit.forEach((e, i) => {
        const first = i === 0;
        const last = i === commit.length - 1;
        const flags = (first ? FLAG_COMMIT_FIRST : 0) | (last ? FLAG_COMMIT_LAST : 0);
        const start = writer.byteLength;
        frameStarts.push(start);
        writer.appendEvent(seq, EPOCH, timestampOf(seq), flags, e.streamId, e.streamVersion, e.eventType, e.headers, e.metadata, e.payload);
        eventEnds.push(writer.byteLength);
        frames.push({
          seq,
          epoch: EPOCH,
          timestamp: timestampOf(seq),
          commitFirst: first,
          commitLast: last,
          streamId: e.streamId,
          streamVersion: e.streamVersion,
          eventType: e.eventType,
          headers:
            e.headers === undefined
              ? undefined
              : {
                  commandIds: [...e.headers.commandIds],
                  correlationId: e.headers.correlationId || undefined,
                  causationId: e.headers.causationId || undefined,
                },
          metadata: hex(e.metadata ?? new Uint8Array(0)),
          payload: hex(e.payload),
          frameBytes: writer.byteLength - start,
        });
        seq += 1;
      });
    }
    const markerStart = writer.byteLength;
    frameStarts.push(markerStart);
    if (expected.length === 0) writer.seal(EPOCH + 1, timestampOf(seq), prevDigest);
    else writer.seal(EPOCH + 1, timestampOf(seq));
    batchEnds.push(writer.byteLength);
    const bytes = writer.bytes();
    // Version 2: the digest covers the sealed frames and the marker's first 64 bytes.
    const digest = createHash('sha1').update(bytes.subarray(batchStart, markerStart + 64)).digest('hex');
    expected.push({
      firstSeq: seq - frames.length,
      lastSeq: seq - 1,
      byteOffset: batchStart,
      byteLength: writer.byteLength - batchStart,
      bytes: hex(bytes.subarray(batchStart, writer.byteLength)),
      frames,
      marker: {
        firstSeq: seq - frames.length,
        lastSeq: seq - 1,
        frameCount: frames.length,
        epoch: EPOCH + 1,
        timestamp: timestampOf(seq),
        formatVersion: 2,
        digestAlgorithm: 'sha1',
        digest,
        prevDigest: prev,
      },
    });
    prev = digest;
  }
  return { bytes: Uint8Array.from(writer.bytes()), expected, batchEnds, eventEnds, frameStarts, lastSeq: seq - 1 };
}

/** A decoded batch as plain values: byte views become hex, so toEqual compares content. */
function plainBatch(b: SealedBatch): unknown {
  return {
    firstSeq: b.firstSeq,
    lastSeq: b.lastSeq,
    byteOffset: b.byteOffset,
    byteLength: b.byteLength,
    bytes: hex(b.bytes),
    frames: b.frames.map((f) => ({ ...f, metadata: hex(f.metadata), payload: hex(f.payload) })),
    marker: { ...b.marker, digest: hex(b.marker.digest), prevDigest: b.marker.prevDigest === undefined ? undefined : hex(b.marker.prevDigest) },
  };
}

/** Feeds `chunks` to one StreamDecoder and returns every batch and the final report. */
function decodeChunks(chunks: readonly Uint8Array[], options?: StreamDecoderOptions): { batches: unknown[]; report: DecodeReport } {
  const d = new StreamDecoder(options);
  const batches: unknown[] = [];
  for (const c of chunks) for (const b of d.push(c)) batches.push(plainBatch(b));
  return { batches, report: d.end() };
}

function decodeAll(bytes: Uint8Array, options?: StreamDecoderOptions): { batches: unknown[]; report: DecodeReport } {
  const { batches, report } = decodeBatches(bytes, options);
  return { batches: batches.map(plainBatch), report };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

/** A copy of `bytes` with the frame at `start` changed by `mutate`, its CRC recomputed so only deeper checks can catch it. */
function patchFrame(bytes: Uint8Array, start: number, mutate: (frame: DataView, raw: Uint8Array) => void): Uint8Array {
  const out = bytes.slice();
  const length = new DataView(out.buffer).getUint32(start, true);
  const frame = out.subarray(start, start + length);
  mutate(new DataView(out.buffer, start, length), frame);
  new DataView(out.buffer).setUint32(start + length - 4, crc32c(frame, 0, length - 4), true);
  return out;
}

const json = (v: unknown): Uint8Array => utf8(JSON.stringify(v));

/** Three batches: several commits per seal, multi-frame commits, full headers, non-ASCII names, empty payloads, metadata. */
const FIXTURE: Batch[] = [
  [
    [
      {
        streamId: 'account-1',
        streamVersion: 1,
        eventType: 'AccountOpened',
        headers: { commandIds: ['cmd-1'], correlationId: 'corr-1', causationId: 'cause-1' },
        metadata: json({ user: 'ana' }),
        payload: json({ owner: 'Ana', balance: 0 }),
      },
    ],
    [
      {
        streamId: 'Konto-Müller-東京',
        streamVersion: 7,
        eventType: 'Überweisung✓',
        headers: { commandIds: ['cmd-2', 'cmd-3'], correlationId: 'ünï' },
        payload: json({ amount: 10 }),
      },
      { streamId: 'Konto-Müller-東京', streamVersion: 8, eventType: 'Gebühr', payload: new Uint8Array(0) },
      { streamId: 'saga/transfer-9', streamVersion: 2, eventType: 'Step', metadata: Uint8Array.of(0, 1, 2), payload: Uint8Array.of(0xff) },
    ],
  ],
  [[{ streamId: '😀-stream', streamVersion: 0, eventType: 'Émoji', metadata: Uint8Array.of(9), payload: new Uint8Array(0) }]],
  [
    [
      { streamId: 'account-1', streamVersion: 2, eventType: 'Deposited', headers: { commandIds: [] }, payload: json({ amount: 5 }) },
      { streamId: 'account-1', streamVersion: 3, eventType: 'Deposited', payload: json({ amount: 6 }) },
    ],
    [
      {
        streamId: '\uFEFFbom-led',
        streamVersion: 1,
        eventType: '\uFEFF',
        headers: { commandIds: ['\uFEFFa', 'b', 'c'], causationId: '\uFEFF' },
        payload: Uint8Array.from({ length: 300 }, (_, i) => i & 0xff),
      },
    ],
  ],
];

const LOG = encodeLog(FIXTURE);
const LOG_END: DecodeReport = {
  validBytes: LOG.bytes.length,
  reason: 'end',
  clean: true,
  offset: LOG.bytes.length,
  detail: 'input ends after a verified marker',
  nextSeq: LOG.lastSeq + 1,
  unsealedFrames: 0,
};

/** A log of many small single-frame commits. */
function manyCommits(batches: number, commitsPerBatch: number, firstSeq = 1): EncodedLog {
  return encodeLog(
    Array.from({ length: batches }, (_, b) =>
      Array.from({ length: commitsPerBatch }, (_, c) => [
        { streamId: `s-${c % 3}`, streamVersion: b * commitsPerBatch + c, eventType: 'Tick', payload: utf8(`${b}.${c}`) },
      ]),
    ),
    firstSeq,
  );
}

// ---------------------------------------------------------------------------------------

describe('round trip', () => {
  it('decodes everything FrameWriter wrote, exactly', () => {
    expect(LOG.expected).toHaveLength(3);
    const { batches, report } = decodeAll(LOG.bytes);
    expect(batches).toEqual(LOG.expected);
    expect(report).toEqual(LOG_END);
  });

  it('keeps a leading U+FEFF in names and ids (it is not a byte-order mark to strip)', () => {
    const { batches } = decodeBatches(LOG.bytes);
    const frame = batches[2].frames[2];
    expect(frame.streamId).toBe('\uFEFFbom-led');
    expect(frame.eventType).toBe('\uFEFF');
    expect(frame.headers).toEqual({ commandIds: ['\uFEFFa', 'b', 'c'], correlationId: undefined, causationId: '\uFEFF' });
  });

  it('gives headers only to frames that recorded them, and empty views for absent metadata and payloads', () => {
    const { batches } = decodeBatches(LOG.bytes);
    const frames = batches.flatMap((b) => b.frames);
    expect(frames.map((f) => f.headers !== undefined)).toEqual([true, true, false, false, false, true, false, true]);
    expect(frames[4]).toMatchObject({ streamId: '😀-stream', eventType: 'Émoji' });
    expect(frames[4].payload.length).toBe(0);
    expect(frames[2].payload.length).toBe(0);
    expect(frames[1].metadata.length).toBe(0);
    expect(frames[5].headers).toEqual({ commandIds: [], correlationId: undefined, causationId: undefined });
  });

  it('hands out payloads as views into the input (zero-copy)', () => {
    const { batches } = decodeBatches(LOG.bytes);
    const frame = batches[0].frames[0];
    expect(frame.payload.buffer).toBe(LOG.bytes.buffer);
    expect(frame.metadata.buffer).toBe(LOG.bytes.buffer);
  });

  it('decodes input that is a subarray of a larger buffer, with offsets counted from the input', () => {
    const padded = new Uint8Array(LOG.bytes.length + 20).fill(0xee);
    padded.set(LOG.bytes, 13);
    const { batches, report } = decodeAll(padded.subarray(13, 13 + LOG.bytes.length));
    expect(batches).toEqual(LOG.expected);
    expect(report).toEqual(LOG_END);
  });

  it('decodes the same with verifyDigest off', () => {
    const { batches, report } = decodeAll(LOG.bytes, { verifyDigest: false });
    expect(batches).toEqual(LOG.expected);
    expect(report.reason).toBe('end');
  });

  it('accepts the first seq it was told to expect', () => {
    const log = encodeLog(FIXTURE, 1_000_000);
    const { batches, report } = decodeAll(log.bytes, { firstSeq: 1_000_000 });
    expect(batches).toEqual(log.expected);
    expect(report).toMatchObject({ reason: 'end', nextSeq: log.lastSeq + 1 });
  });

  it('reports validBytes and nextSeq while decoding, before end()', () => {
    const d = new StreamDecoder();
    expect(d.report()).toMatchObject({ validBytes: 0, reason: 'end', clean: true, nextSeq: undefined, unsealedFrames: 0 });
    d.push(LOG.bytes.subarray(0, LOG.batchEnds[0] + 10));
    expect(d.report()).toMatchObject({ validBytes: LOG.batchEnds[0], nextSeq: 5, unsealedFrames: 0 });
    expect(d.isStopped).toBe(false);
    d.push(LOG.bytes.subarray(LOG.batchEnds[0] + 10, LOG.eventEnds[4]));
    expect(d.report()).toMatchObject({ validBytes: LOG.batchEnds[0], nextSeq: 5, unsealedFrames: 1 });
  });
});

describe('chunking', () => {
  const oneChunk = decodeAll(LOG.bytes);

  it('decodes the same at every split point of a multi-batch buffer into two chunks', () => {
    for (let split = 0; split <= LOG.bytes.length; split++) {
      const result = decodeChunks([LOG.bytes.subarray(0, split), LOG.bytes.subarray(split)]);
      expect(result, `split at ${split}`).toEqual(oneChunk);
    }
  });

  it('decodes the same at every pair of split points around the first batch boundary (three chunks)', () => {
    const boundary = LOG.batchEnds[0];
    for (let a = boundary - 80; a <= boundary + 80; a++) {
      for (const b of [a + 1, a + 3, a + 4, a + 5, a + 70]) {
        const result = decodeChunks([LOG.bytes.subarray(0, a), LOG.bytes.subarray(a, b), LOG.bytes.subarray(b)]);
        expect(result, `splits at ${a}, ${b}`).toEqual(oneChunk);
      }
    }
  });

  it('decodes one byte at a time, handing out each batch exactly when its marker completes', () => {
    const d = new StreamDecoder();
    const batches: unknown[] = [];
    for (let i = 0; i < LOG.bytes.length; i++) {
      const out = d.push(LOG.bytes.subarray(i, i + 1));
      if (LOG.batchEnds.includes(i + 1)) {
        expect(out, `byte ${i}`).toHaveLength(1);
        expect(d.report().validBytes).toBe(i + 1);
      } else {
        expect(out, `byte ${i}`).toHaveLength(0);
      }
      batches.push(...out.map(plainBatch));
    }
    expect(batches).toEqual(LOG.expected);
    expect(d.end()).toEqual(LOG_END);
  });

  it('decodes many frames and batches from one chunk', () => {
    const log = manyCommits(40, 5);
    const d = new StreamDecoder();
    const out = d.push(log.bytes);
    expect(out).toHaveLength(40);
    expect(out.map(plainBatch)).toEqual(log.expected);
    expect(out.flatMap((b) => b.frames.map((f) => f.seq))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(d.end()).toMatchObject({ reason: 'end', validBytes: log.bytes.length, nextSeq: 201 });
  });

  it('decodes fixed-size chunks that cut frames everywhere', () => {
    const log = manyCommits(10, 4);
    for (const size of [2, 3, 5, 7, 13, 64, 67, 100, 1000]) {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < log.bytes.length; i += size) chunks.push(log.bytes.subarray(i, i + size));
      expect(decodeChunks(chunks), `chunk size ${size}`).toEqual({ batches: log.expected, report: expect.objectContaining({ reason: 'end' }) });
    }
  });

  it('ignores empty chunks', () => {
    const e = new Uint8Array(0);
    const mid = LOG.batchEnds[0] + 2;
    expect(decodeChunks([e, LOG.bytes.subarray(0, mid), e, e, LOG.bytes.subarray(mid), e])).toEqual(oneChunk);
  });
});

describe('size limit', () => {
  const frameBytesMax = 2048;
  // 52-byte header + "s" + "T" + payload + CRC
  const payloadFor = (frameBytes: number): Uint8Array => new Uint8Array(frameBytes - EVENT_HEADER_BYTES - 2 - CRC_BYTES).fill(0x5a);

  function logWith(frameBytes: number): EncodedLog {
    const writer = new FrameWriter({ frameBytesMax: frameBytes, initialBytes: 256 });
    return encodeLog([[[{ streamId: 'a', streamVersion: 0, eventType: 'Small', payload: utf8('x') }]], [[{ streamId: 's', streamVersion: 1, eventType: 'T', payload: payloadFor(frameBytes) }]]], 1, writer);
  }

  it('decodes a frame of exactly frameBytesMax bytes, whole and split', () => {
    const log = logWith(frameBytesMax);
    expect(log.eventEnds[1] - log.frameStarts[2]).toBe(frameBytesMax);
    expect(decodeAll(log.bytes, { frameBytesMax })).toEqual({ batches: log.expected, report: expect.objectContaining({ reason: 'end' }) });
    const start = log.frameStarts[2];
    for (const split of [start + 2, start + 4, start + 1000, start + frameBytesMax - 1]) {
      expect(decodeChunks([log.bytes.subarray(0, split), log.bytes.subarray(split)], { frameBytesMax }).batches).toEqual(log.expected);
    }
  });

  it("stops with 'frame-too-large' on a length field one byte over, before the frame arrives", () => {
    const log = logWith(frameBytesMax + 1);
    const start = log.frameStarts[2];
    const expected = {
      batches: [log.expected[0]],
      report: expect.objectContaining({ reason: 'frame-too-large', clean: false, offset: start, validBytes: log.batchEnds[0] }),
    };
    expect(decodeAll(log.bytes, { frameBytesMax })).toEqual(expected);
    // The length field alone decides, even split across pushes and with the rest never sent.
    for (const split of [start + 1, start + 3, start + 4]) {
      const d = new StreamDecoder({ frameBytesMax });
      d.push(log.bytes.subarray(0, split));
      d.push(log.bytes.subarray(split, start + 4));
      expect(d.isStopped).toBe(true);
      expect(d.report()).toMatchObject({ reason: 'frame-too-large', offset: start, validBytes: log.batchEnds[0] });
    }
  });

  it('defaults to DEFAULT_FRAME_BYTES_MAX: a 4 MiB frame decodes, a longer length field stops', () => {
    const writer = new FrameWriter({ initialBytes: 1024 });
    writer.appendEvent(1, 0, 0, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', 0, 'T', undefined, undefined, payloadFor(DEFAULT_FRAME_BYTES_MAX));
    writer.seal(0, 0);
    const { batches, report } = decodeBatches(writer.bytes());
    expect(report.reason).toBe('end');
    expect(batches[0].frames[0].frameBytes).toBe(DEFAULT_FRAME_BYTES_MAX);

    const header = new Uint8Array(16);
    new DataView(header.buffer).setUint32(0, DEFAULT_FRAME_BYTES_MAX + 1, true);
    expect(decodeBatches(header).report).toMatchObject({ reason: 'frame-too-large', offset: 0, validBytes: 0 });
  });
});

describe('truncated input', () => {
  it('reports torn-frame, unsigned-commit or end correctly at every possible length', () => {
    const { bytes, batchEnds, eventEnds } = LOG;
    for (let length = 0; length <= bytes.length; length++) {
      const sealed = batchEnds.filter((end) => end <= length);
      const validBytes = sealed.length === 0 ? 0 : sealed[sealed.length - 1];
      const reason = length === validBytes ? 'end' : eventEnds.includes(length) ? 'unsigned-commit' : 'torn-frame';
      const expected = {
        batches: LOG.expected.slice(0, sealed.length),
        report: expect.objectContaining({ reason, validBytes, clean: reason === 'end' }),
      };
      const truncated = bytes.subarray(0, length);
      expect(decodeAll(truncated), `length ${length}`).toEqual(expected);
      const half = length >> 1;
      expect(decodeChunks([truncated.subarray(0, half), truncated.subarray(half)]), `length ${length}, split`).toEqual(expected);
    }
  });

  it('counts the abandoned frames of an unsigned tail and says which seq comes next', () => {
    const cut = LOG.eventEnds[6]; // two of batch 3's frames written, its marker not
    const { report } = decodeAll(LOG.bytes.subarray(0, cut));
    expect(report).toMatchObject({ reason: 'unsigned-commit', validBytes: LOG.batchEnds[1], offset: cut, unsealedFrames: 2, nextSeq: 6 });
  });

  it('reports torn-frame for a tail shorter than a length field', () => {
    for (const extra of [1, 2, 3]) {
      const { report } = decodeAll(LOG.bytes.subarray(0, LOG.batchEnds[0] + extra));
      expect(report).toMatchObject({ reason: 'torn-frame', validBytes: LOG.batchEnds[0], offset: LOG.batchEnds[0] });
    }
  });
});

describe('corrupt input', () => {
  it('never decodes a flipped bit as a different valid commit', () => {
    const log = encodeLog(FIXTURE.slice(0, 2));
    const { bytes, batchEnds } = log;
    const frameStartOf = (i: number): number => log.frameStarts.filter((s) => s <= i).pop() ?? 0;
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const i = bit >> 3;
      const damaged = bytes.slice();
      damaged[i] ^= 1 << (bit & 7);
      const intact = batchEnds.filter((end) => end <= i).length;
      const { batches, report } = decodeAll(damaged);
      // Every batch before the damage, unchanged; the damaged batch and anything after it, never.
      expect(batches, `bit ${bit}`).toEqual(log.expected.slice(0, intact));
      expect(report.validBytes, `bit ${bit}`).toBe(intact === 0 ? 0 : batchEnds[intact - 1]);
      const start = frameStartOf(i);
      const lengthNowZero = i - start < 4 && new DataView(damaged.buffer).getUint32(start, true) === 0;
      if (lengthNowZero) expect(report.reason).toBe('zero-fill');
      else expect(report.clean, `bit ${bit}: ${report.reason}`).toBe(false);
    }
  });

  it("stops with 'bad-checksum' where a frame's CRC fails", () => {
    const start = LOG.frameStarts[5]; // the event frame of batch 2
    const damaged = LOG.bytes.slice();
    damaged[start + 60] ^= 0x10;
    expect(decodeAll(damaged)).toEqual({
      batches: LOG.expected.slice(0, 1),
      report: expect.objectContaining({ reason: 'bad-checksum', offset: start, validBytes: LOG.batchEnds[0], clean: false }),
    });
  });

  it.each([
    ['event frame', 5],
    ['marker', 6],
  ])("stops with 'unsupported-version' on a %s of another format version", (_name, frameIndex) => {
    const start = LOG.frameStarts[frameIndex];
    for (const version of [4, 255]) {
      const damaged = patchFrame(LOG.bytes, start, (f) => f.setUint8(4, version));
      const { batches, report } = decodeAll(damaged);
      expect(batches).toEqual(LOG.expected.slice(0, 1));
      expect(report).toMatchObject({ reason: 'unsupported-version', offset: start, validBytes: LOG.batchEnds[0] });
      expect(report.detail).toMatch(new RegExp(`version ${version}`));
    }
  });

  it("stops with 'malformed-frame' on an unknown frame kind", () => {
    const start = LOG.frameStarts[5];
    for (const kind of [0, 3, 255]) {
      const { batches, report } = decodeAll(patchFrame(LOG.bytes, start, (f) => f.setUint8(5, kind)));
      expect(batches).toEqual(LOG.expected.slice(0, 1));
      expect(report).toMatchObject({ reason: 'malformed-frame', offset: start, validBytes: LOG.batchEnds[0] });
      expect(report.detail).toContain(`unknown frame kind ${kind}`);
    }
  });

  it.each<[string, number, (f: DataView, raw: Uint8Array) => void]>([
    ['reserved flag bits', 5, (f) => f.setUint8(6, f.getUint8(6) | 4)],
    ['a reserved byte', 5, (f) => f.setUint8(7, 1)],
    ['field lengths that do not add up', 5, (f) => f.setUint32(48, f.getUint32(48, true) + 1, true)],
    ['an unsafe 64-bit seq', 5, (f) => f.setUint32(12, 0x200000, true)],
    ['an unsafe 64-bit timestamp', 5, (f) => f.setUint32(20, 0xffffffff, true)],
    ['invalid UTF-8 in the stream id', 5, (_f, raw) => raw.set([0xc3, 0x28], EVENT_HEADER_BYTES)],
    ['invalid UTF-8 in a command id', 0, (_f, raw) => raw.set([0xff], EVENT_HEADER_BYTES + 9 + 13 + 4)],
    ['headers that do not fill their length', 0, (f) => f.setUint16(EVENT_HEADER_BYTES + 9 + 13, 5, true)],
    ['a marker with an unknown digest algorithm', 6, (f) => f.setUint8(6, 2)],
    ['a marker with a wrong digest size', 6, (f) => f.setUint32(40, 32, true)],
    ['a marker with an unsafe 64-bit lastSeq', 6, (f) => f.setUint32(36, 0x200000, true)],
  ])("stops with 'malformed-frame' on %s", (_name, frameIndex, mutate) => {
    const start = LOG.frameStarts[frameIndex];
    const intact = LOG.batchEnds.filter((end) => end <= start).length;
    const { batches, report } = decodeAll(patchFrame(LOG.bytes, start, mutate));
    expect(batches).toEqual(LOG.expected.slice(0, intact));
    expect(report).toMatchObject({ reason: 'malformed-frame', offset: start, clean: false });
  });

  it("stops with 'malformed-frame' on a length field below the smallest frame", () => {
    for (const length of [1, 4, FRAME_BYTES_MIN - 1]) {
      const tail = new Uint8Array(64);
      new DataView(tail.buffer).setUint32(0, length, true);
      const { batches, report } = decodeAll(concat(LOG.bytes.subarray(0, LOG.batchEnds[0]), tail));
      expect(batches).toEqual(LOG.expected.slice(0, 1));
      expect(report).toMatchObject({ reason: 'malformed-frame', offset: LOG.batchEnds[0], validBytes: LOG.batchEnds[0] });
    }
  });

  it('ignores everything pushed after it stopped', () => {
    const d = new StreamDecoder();
    const damaged = LOG.bytes.slice();
    damaged[LOG.frameStarts[5] + 8] ^= 1;
    d.push(damaged.subarray(0, LOG.batchEnds[1]));
    expect(d.isStopped).toBe(true);
    const report = d.report();
    expect(d.push(LOG.bytes.subarray(LOG.batchEnds[1]))).toEqual([]);
    expect(d.end()).toEqual(report);
    expect(d.end()).toEqual(report);
  });
});

describe('zero-filled (unwritten) space', () => {
  it("ends cleanly with 'zero-fill' where preallocated zeros follow the last marker", () => {
    const bytes = concat(LOG.bytes, new Uint8Array(4096));
    const expected = {
      batches: LOG.expected,
      report: { ...LOG_END, reason: 'zero-fill', detail: expect.any(String) },
    };
    expect(decodeAll(bytes)).toEqual(expected);
    expect(decodeChunks([bytes.subarray(0, LOG.bytes.length + 2), bytes.subarray(LOG.bytes.length + 2)])).toEqual(expected);
    const d = new StreamDecoder();
    for (let i = 0; i < LOG.bytes.length + 8; i++) d.push(bytes.subarray(i, i + 1));
    expect(d.isStopped).toBe(true);
    expect(d.end()).toMatchObject({ reason: 'zero-fill', clean: true, validBytes: LOG.bytes.length });
  });

  it("ends cleanly with 'zero-fill' on an empty preallocated log", () => {
    expect(decodeAll(new Uint8Array(1024))).toEqual({
      batches: [],
      report: expect.objectContaining({ reason: 'zero-fill', clean: true, validBytes: 0, offset: 0 }),
    });
  });

  it("reports 'unsigned-commit' for unsealed frames followed by zeros", () => {
    const cut = LOG.eventEnds[5];
    const bytes = concat(LOG.bytes.subarray(0, cut), new Uint8Array(512));
    const { batches, report } = decodeAll(bytes);
    expect(batches).toEqual(LOG.expected.slice(0, 2));
    expect(report).toMatchObject({ reason: 'unsigned-commit', clean: false, validBytes: LOG.batchEnds[1], offset: cut, unsealedFrames: 1, nextSeq: 6 });
  });
});

describe('commit markers', () => {
  it("stops with 'bad-digest' when the marker's digest does not match the frames", () => {
    const start = LOG.frameStarts[6]; // marker of batch 2
    const damaged = patchFrame(LOG.bytes, start, (_f, raw) => {
      raw[64] ^= 1; // the digest (offset 64), not prevDigest (offset 44)
    });
    expect(decodeAll(damaged)).toEqual({
      batches: LOG.expected.slice(0, 1),
      report: expect.objectContaining({ reason: 'bad-digest', offset: start, validBytes: LOG.batchEnds[0], unsealedFrames: 1 }),
    });
  });

  it("catches an event frame whose bytes changed but whose CRC was recomputed ('bad-digest' at the marker)", () => {
    const eventStart = LOG.frameStarts[5];
    const damaged = patchFrame(LOG.bytes, eventStart, (f) => f.setUint32(24, EPOCH + 1, true)); // a different epoch
    for (const chunks of [[damaged], [damaged.subarray(0, eventStart + 30), damaged.subarray(eventStart + 30)]]) {
      const { batches, report } = decodeChunks(chunks);
      expect(batches).toEqual(LOG.expected.slice(0, 1));
      expect(report).toMatchObject({ reason: 'bad-digest', offset: LOG.frameStarts[6], validBytes: LOG.batchEnds[0] });
    }
    // With digest verification off, only the marker's counts are checked.
    expect(decodeAll(damaged, { verifyDigest: false }).batches).toHaveLength(3);
  });

  it.each<[string, (f: DataView) => void]>([
    ['frameCount', (f) => f.setUint32(28, 2, true)],
    ['firstSeq', (f) => f.setUint32(8, 4, true)],
    ['lastSeq', (f) => f.setUint32(32, 6, true)],
  ])("stops with 'bad-digest' when the marker's %s does not match the frames before it", (_name, mutate) => {
    const start = LOG.frameStarts[6];
    const { batches, report } = decodeAll(patchFrame(LOG.bytes, start, mutate));
    expect(batches).toEqual(LOG.expected.slice(0, 1));
    expect(report).toMatchObject({ reason: 'bad-digest', offset: start });
  });

  it("stops with 'bad-digest' on a marker that seals nothing", () => {
    const marker = LOG.bytes.subarray(LOG.frameStarts[6], LOG.batchEnds[1]);
    expect(marker.length).toBe(MARKER_BYTES);
    expect(decodeAll(marker).report).toMatchObject({ reason: 'bad-digest', offset: 0, validBytes: 0 });
    const twice = concat(LOG.bytes.subarray(0, LOG.batchEnds[1]), marker);
    expect(decodeAll(twice)).toEqual({
      batches: LOG.expected.slice(0, 2),
      report: expect.objectContaining({ reason: 'bad-digest', offset: LOG.batchEnds[1] }),
    });
  });
});

describe('sequence', () => {
  it("stops with 'bad-sequence' when the first frame is not the firstSeq expected", () => {
    for (const firstSeq of [0, 2, 100]) {
      expect(decodeAll(LOG.bytes, { firstSeq })).toEqual({
        batches: [],
        report: expect.objectContaining({ reason: 'bad-sequence', offset: 0, validBytes: 0, nextSeq: firstSeq }),
      });
    }
  });

  it("stops with 'bad-sequence' at a gap between batches", () => {
    const first = manyCommits(2, 2, 1); // seq 1..4
    const second = manyCommits(1, 2, 6); // seq 6..7: 5 is missing
    const { batches, report } = decodeAll(concat(first.bytes, second.bytes));
    expect(batches).toEqual(first.expected);
    expect(report).toMatchObject({ reason: 'bad-sequence', offset: first.bytes.length, validBytes: first.bytes.length, nextSeq: 5 });
    expect(report.detail).toContain('seq 6 where 5 was expected');
  });

  it("stops with 'bad-sequence' on a repeated batch", () => {
    const log = manyCommits(1, 3, 10);
    expect(decodeAll(concat(log.bytes, log.bytes))).toEqual({
      batches: log.expected,
      report: expect.objectContaining({ reason: 'bad-sequence', validBytes: log.bytes.length, nextSeq: 13 }),
    });
  });

  it("stops with 'bad-sequence' inside a batch", () => {
    const writer = new FrameWriter();
    writer.appendEvent(1, 0, 0, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', 0, 'T', undefined, undefined, utf8('a'));
    writer.appendEvent(2, 0, 0, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', 1, 'T', undefined, undefined, utf8('b'));
    const second = writer.byteLength - FRAME_BYTES_MIN - 3;
    writer.seal(0, 0);
    const damaged = patchFrame(writer.bytes(), second, (f) => f.setUint32(8, 3, true));
    expect(decodeAll(damaged).report).toMatchObject({ reason: 'bad-sequence', offset: second, validBytes: 0 });
  });
});

describe('commit grouping', () => {
  const FIRST = FLAG_COMMIT_FIRST;
  const LAST = FLAG_COMMIT_LAST;

  function framesWithFlags(flags: number[], seal = true): { bytes: Uint8Array; starts: number[] } {
    const writer = new FrameWriter();
    const starts: number[] = [];
    flags.forEach((f, i) => {
      starts.push(writer.byteLength);
      writer.appendEvent(i + 1, 0, 0, f, 's', i, 'T', undefined, undefined, utf8(`${i}`));
    });
    starts.push(writer.byteLength);
    if (seal) writer.seal(0, 0);
    return { bytes: Uint8Array.from(writer.bytes()), starts };
  }

  it('accepts first/middle/last commits and single-frame commits in one batch', () => {
    const { bytes } = framesWithFlags([FIRST | LAST, FIRST, 0, 0, LAST, FIRST, LAST]);
    const { batches, report } = decodeBatches(bytes);
    expect(report.reason).toBe('end');
    expect(batches[0].frames.map((f) => [f.commitFirst, f.commitLast])).toEqual([
      [true, true],
      [true, false],
      [false, false],
      [false, false],
      [false, true],
      [true, false],
      [false, true],
    ]);
  });

  it.each([
    ['a commit that starts before the previous one ended', [FIRST, FIRST | LAST], 1],
    ['a commit that starts before the previous one ended (middle frame)', [FIRST, 0, FIRST, LAST], 2],
    ['a frame that continues a commit that never started', [0, LAST], 0],
    ['a last frame after a completed commit', [FIRST | LAST, LAST], 1],
  ])("stops with 'bad-commit-grouping' on %s", (_name, flags, badIndex) => {
    const { bytes, starts } = framesWithFlags(flags);
    const { batches, report } = decodeBatches(bytes);
    expect(batches).toEqual([]);
    expect(report).toMatchObject({ reason: 'bad-commit-grouping', offset: starts[badIndex], validBytes: 0 });
  });

  it("stops with 'bad-commit-grouping' on a marker that seals a commit that never ended", () => {
    const { bytes, starts } = framesWithFlags([FIRST | LAST, FIRST, 0]);
    expect(decodeBatches(bytes).report).toMatchObject({ reason: 'bad-commit-grouping', offset: starts[3], validBytes: 0 });
  });

  it('checks grouping across batches: a batch cannot start in the middle of a commit', () => {
    const first = framesWithFlags([FIRST | LAST]);
    const writer = new FrameWriter();
    writer.appendEvent(2, 0, 0, LAST, 's', 1, 'T', undefined, undefined, utf8('x'));
    writer.seal(0, 0);
    const { batches, report } = decodeBatches(concat(first.bytes, writer.bytes()));
    expect(batches).toHaveLength(1);
    expect(report).toMatchObject({ reason: 'bad-commit-grouping', offset: first.bytes.length });
  });
});

// ---------------------------------------------------------------------------------------
// Format version 2: hash chain, batch bytes, version 1 compatibility.

const sha1 = (b: Uint8Array): Uint8Array => Uint8Array.from(createHash('sha1').update(b).digest());

/** Start offset of batch `i` of an encoded log. */
const batchStartOf = (log: EncodedLog, i: number): number => (i === 0 ? 0 : log.batchEnds[i - 1]);

/**
 * A copy of `bytes` whose version 2 marker ending at `batchEnd` (batch starting at `batchStart`) was changed by
 * `mutate`, then resealed: digest and CRC recomputed, so only a check the digest does not cover can catch it.
 */
function reseal(bytes: Uint8Array, batchStart: number, batchEnd: number, mutate: (marker: Uint8Array) => void): Uint8Array {
  const out = bytes.slice();
  const markerStart = batchEnd - MARKER_BYTES;
  const marker = out.subarray(markerStart, batchEnd);
  mutate(marker);
  marker.set(sha1(out.subarray(batchStart, markerStart + 64)), 64);
  new DataView(out.buffer).setUint32(markerStart + 84, crc32c(marker, 0, 84), true);
  return out;
}

/** Pushes `chunks` and returns the decoded SealedBatch objects themselves and the report. */
function decodeRaw(chunks: readonly Uint8Array[], options?: StreamDecoderOptions): { batches: SealedBatch[]; report: DecodeReport } {
  const d = new StreamDecoder(options);
  const batches: SealedBatch[] = [];
  for (const c of chunks) batches.push(...d.push(c));
  return { batches, report: d.end() };
}

/** `bytes` cut into chunks of `size`; copies (each in its own buffer) or views of `bytes`. */
function chunksOf(bytes: Uint8Array, size: number, copy: boolean): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(copy ? bytes.slice(i, i + size) : bytes.subarray(i, i + size));
  return out;
}

describe('hash chain (format version 2)', () => {
  it('decodes a chain of batches whose markers each name the previous digest, the first naming 20 zero bytes', () => {
    for (const log of [LOG, manyCommits(40, 5)]) {
      const d = new StreamDecoder();
      const batches = d.push(log.bytes);
      expect(d.end()).toMatchObject({ reason: 'end', validBytes: log.bytes.length });
      expect(batches).toHaveLength(log.batchEnds.length);
      let prev = new Uint8Array(20);
      for (const [i, b] of batches.entries()) {
        expect(b.marker.formatVersion).toBe(2);
        expect(hex(b.marker.prevDigest!), `batch ${i}`).toBe(hex(prev));
        // The digest covers the frames and the marker's first 64 bytes (prevDigest included).
        expect(hex(b.marker.digest), `batch ${i}`).toBe(hex(sha1(log.bytes.subarray(batchStartOf(log, i), log.batchEnds[i] - MARKER_BYTES + 64))));
        prev = Uint8Array.from(b.marker.digest);
      }
      expect(hex(d.lastDigest!)).toBe(hex(prev));
    }
  });

  it("stops with 'broken-chain' at a batch whose prevDigest was altered (digest and CRC recomputed), validBytes at its start", () => {
    for (const i of [1, 2]) {
      const start = batchStartOf(LOG, i);
      const markerStart = LOG.batchEnds[i] - MARKER_BYTES;
      const altered = reseal(LOG.bytes, start, LOG.batchEnds[i], (m) => {
        m[44 + i] ^= 0x40;
      });
      // Only the chain is wrong: alone, the altered batch decodes (nothing tells it what came before).
      const alone = decodeAll(altered.subarray(start, LOG.batchEnds[i]));
      expect(alone.report.reason, `batch ${i} alone`).toBe('end');
      expect(alone.batches).toHaveLength(1);
      const expected = {
        batches: LOG.expected.slice(0, i),
        report: expect.objectContaining({ reason: 'broken-chain', clean: false, offset: markerStart, validBytes: start }),
      };
      expect(decodeAll(altered), `batch ${i}`).toEqual(expected);
      expect(decodeChunks(chunksOf(altered, 1, false)), `batch ${i}, byte at a time`).toEqual(expected);
      expect(decodeChunks([altered.subarray(0, markerStart + 50), altered.subarray(markerStart + 50)]), `batch ${i}, split in the marker`).toEqual(expected);
      // The chain is checked even with digest verification off.
      expect(decodeAll(altered, { verifyDigest: false }).report).toMatchObject({ reason: 'broken-chain', offset: markerStart, validBytes: start });
    }
  });

  it("stops with 'broken-chain' at a whole batch spliced in from another log (its own digest verifies)", () => {
    const other = encodeLog([[[{ streamId: 'x', streamVersion: 0, eventType: 'Other', payload: utf8('o') }]]], LOG.lastSeq + 1);
    expect(decodeAll(other.bytes, { firstSeq: LOG.lastSeq + 1 }).report.reason).toBe('end');
    const { batches, report } = decodeAll(concat(LOG.bytes, other.bytes));
    expect(batches).toEqual(LOG.expected);
    expect(report).toMatchObject({ reason: 'broken-chain', offset: LOG.bytes.length + other.frameStarts[1], validBytes: LOG.bytes.length });
  });

  it('enforces the prevDigest option on the first batch', () => {
    const zeros = new Uint8Array(20);
    expect(decodeAll(LOG.bytes, { prevDigest: zeros })).toEqual({ batches: LOG.expected, report: LOG_END });
    for (const wrong of [Uint8Array.from({ length: 20 }, (_, i) => i), Uint8Array.of(1, ...new Uint8Array(19))]) {
      const d = new StreamDecoder({ prevDigest: wrong });
      expect(hex(d.lastDigest!)).toBe(hex(wrong));
      expect(d.push(LOG.bytes)).toEqual([]);
      expect(d.end()).toMatchObject({ reason: 'broken-chain', clean: false, offset: LOG.frameStarts[4], validBytes: 0 });
    }
    // A log that starts mid-chain: decodes with the digest of the batch before it, not with zeros.
    const given = sha1(utf8('the batch before'));
    const log = encodeLog(FIXTURE, 1, new FrameWriter({ initialBytes: 256 }), given);
    expect((log.expected[0] as { marker: { prevDigest: string } }).marker.prevDigest).toBe(hex(given));
    expect(decodeAll(log.bytes, { prevDigest: given })).toEqual({ batches: log.expected, report: expect.objectContaining({ reason: 'end' }) });
    expect(decodeAll(log.bytes)).toEqual({ batches: log.expected, report: expect.objectContaining({ reason: 'end' }) });
    expect(decodeAll(log.bytes, { prevDigest: zeros })).toEqual({
      batches: [],
      report: expect.objectContaining({ reason: 'broken-chain', offset: log.frameStarts[4], validBytes: 0 }),
    });
  });

  it('resumes decoding mid-log with prevDigest set to the digest of the batch before', () => {
    const { batches } = decodeBatches(LOG.bytes);
    const from = LOG.batchEnds[0];
    const rest = LOG.bytes.subarray(from);
    const resumed = decodeAll(rest, { prevDigest: Uint8Array.from(batches[0].marker.digest), firstSeq: 5 });
    expect(resumed.report).toMatchObject({ reason: 'end', validBytes: rest.length });
    expect(resumed.batches).toEqual(
      LOG.expected.slice(1).map((b) => ({ ...(b as object), byteOffset: (b as { byteOffset: number }).byteOffset - from })),
    );
    expect(decodeAll(rest, { prevDigest: Uint8Array.from(batches[1].marker.digest) }).report).toMatchObject({ reason: 'broken-chain', validBytes: 0 });
  });
});

describe('batch bytes', () => {
  const logs: [string, EncodedLog][] = [
    ['fixture', LOG],
    ['many commits', manyCommits(10, 4)],
  ];
  const joined = (batches: readonly SealedBatch[]): string => hex(concat(...batches.map((b) => b.bytes)));

  it('are, concatenated, the whole input byte for byte; each is input[byteOffset, byteOffset + byteLength)', () => {
    for (const [name, log] of logs) {
      const { batches, report } = decodeRaw([log.bytes]);
      expect(report.reason).toBe('end');
      expect(joined(batches), name).toBe(hex(log.bytes));
      for (const b of batches) {
        expect(b.bytes.length).toBe(b.byteLength);
        expect(hex(b.bytes)).toBe(hex(log.bytes.subarray(b.byteOffset, b.byteOffset + b.byteLength)));
      }
    }
  });

  it('are views into the input when the batch arrived in one chunk', () => {
    const { batches } = decodeRaw([LOG.bytes]);
    for (const b of batches) {
      expect(b.bytes.buffer).toBe(LOG.bytes.buffer);
      expect(b.bytes.byteOffset).toBe(LOG.bytes.byteOffset + b.byteOffset);
    }
  });

  it('are the input byte for byte one byte at a time and in fixed chunks (each chunk its own buffer)', () => {
    for (const [name, log] of logs) {
      for (const size of [1, 2, 3, 4, 5, 7, 13, 64, 67, 87, 88, 89, 100, 1000]) {
        const { batches, report } = decodeRaw(chunksOf(log.bytes, size, true));
        expect(report.reason, `${name}, chunks of ${size}`).toBe('end');
        expect(joined(batches), `${name}, chunks of ${size}`).toBe(hex(log.bytes));
      }
    }
  });

  it('are the input byte for byte one byte at a time and in fixed chunks (chunks are views of one buffer)', () => {
    for (const [name, log] of logs) {
      for (const size of [1, 2, 3, 4, 5, 7, 13, 64, 67, 87, 88, 89, 100, 1000]) {
        const { batches, report } = decodeRaw(chunksOf(log.bytes, size, false));
        expect(report.reason, `${name}, chunks of ${size}`).toBe('end');
        expect(joined(batches), `${name}, chunks of ${size}`).toBe(hex(log.bytes));
      }
    }
  });

  it('are the input byte for byte at every split point into two chunks, copied or views of one buffer', () => {
    for (const copy of [true, false]) {
      for (let split = 0; split <= LOG.bytes.length; split++) {
        const chunks = copy ? [LOG.bytes.slice(0, split), LOG.bytes.slice(split)] : [LOG.bytes.subarray(0, split), LOG.bytes.subarray(split)];
        const { batches } = decodeRaw(chunks);
        expect(joined(batches), `${copy ? 'copies' : 'views'}, split at ${split}`).toBe(hex(LOG.bytes));
      }
    }
  });

  it('stay correct after the decoder has moved on (the marker and frames are not overwritten)', () => {
    const d = new StreamDecoder();
    const kept: SealedBatch[] = [];
    for (const c of chunksOf(LOG.bytes, 5, true)) kept.push(...d.push(c));
    expect(kept.map((b) => hex(b.bytes))).toEqual(LOG.expected.map((b) => (b as { bytes: string }).bytes));
  });
});

// Version 1 frames built by hand, independently of FrameWriter: event frames with version
// byte 1 (same layout as version 2) and 68-byte markers whose digest covers the frames only.

interface V1Event {
  readonly seq: number;
  readonly flags: number;
  readonly streamId: string;
  readonly eventType: string;
  readonly payload: Uint8Array;
}

function v1EventFrame(e: V1Event, version = 1): Uint8Array {
  const id = utf8(e.streamId);
  const type = utf8(e.eventType);
  const n = EVENT_HEADER_BYTES + id.length + type.length + e.payload.length + CRC_BYTES;
  const b = new Uint8Array(n);
  const v = new DataView(b.buffer);
  v.setUint32(0, n, true);
  b[4] = version;
  b[5] = 1; // event
  b[6] = e.flags;
  v.setUint32(8, e.seq, true); // seq (high half 0)
  v.setUint32(16, 1_000 + e.seq, true); // timestamp
  v.setUint32(24, 2, true); // epoch
  v.setUint16(28, id.length, true);
  v.setUint16(30, type.length, true);
  v.setUint32(32, e.seq * 10, true); // streamVersion
  v.setUint32(40, 0, true); // no headers
  v.setUint32(44, 0, true); // no metadata
  v.setUint32(48, e.payload.length, true);
  b.set(id, 52);
  b.set(type, 52 + id.length);
  b.set(e.payload, 52 + id.length + type.length);
  v.setUint32(n - 4, crc32c(b, 0, n - 4), true);
  return b;
}

function v1Marker(frames: Uint8Array, firstSeq: number, lastSeq: number, frameCount: number): Uint8Array {
  const b = new Uint8Array(68);
  const v = new DataView(b.buffer);
  v.setUint32(0, 68, true);
  b[4] = 1; // version 1
  b[5] = 2; // marker
  b[6] = 1; // SHA-1
  v.setUint32(8, firstSeq, true);
  v.setUint32(16, 5_000 + lastSeq, true); // timestamp
  v.setUint32(24, 2, true); // epoch
  v.setUint32(28, frameCount, true);
  v.setUint32(32, lastSeq, true);
  v.setUint32(40, 20, true);
  b.set(sha1(frames), 44); // over the frames only
  v.setUint32(64, crc32c(b, 0, 64), true);
  return b;
}

/** A version 1 batch of single-frame commits `firstSeq`..`lastSeq`. */
function v1Batch(firstSeq: number, lastSeq: number): { bytes: Uint8Array; digest: Uint8Array; events: V1Event[] } {
  const events: V1Event[] = [];
  for (let seq = firstSeq; seq <= lastSeq; seq++) {
    events.push({ seq, flags: FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, streamId: `v1-${seq % 2}`, eventType: 'Old', payload: utf8(`old ${seq}`) });
  }
  const frames = concat(...events.map((e) => v1EventFrame(e)));
  const marker = v1Marker(frames, firstSeq, lastSeq, events.length);
  return { bytes: concat(frames, marker), digest: marker.slice(44, 64), events };
}

describe('version 1 logs', () => {
  const first = v1Batch(1, 3);
  const second = v1Batch(4, 5);
  const V1_LOG = concat(first.bytes, second.bytes);

  it('decodes a version-1 log: 68-byte markers, digest over the frames only, no prevDigest', () => {
    expect(MARKER_V1_BYTES).toBe(68);
    for (const chunks of [[V1_LOG], chunksOf(V1_LOG, 1, true), chunksOf(V1_LOG, 7, false), chunksOf(V1_LOG, 68, true)]) {
      const { batches, report } = decodeRaw(chunks);
      expect(report).toMatchObject({ reason: 'end', clean: true, validBytes: V1_LOG.length, nextSeq: 6 });
      expect(batches).toHaveLength(2);
      for (const [i, batch] of [first, second].entries()) {
        const b = batches[i];
        expect(b).toMatchObject({ firstSeq: batch.events[0].seq, lastSeq: batch.events[batch.events.length - 1].seq, byteOffset: i === 0 ? 0 : first.bytes.length, byteLength: batch.bytes.length });
        expect(hex(b.bytes)).toBe(hex(batch.bytes));
        expect(b.marker).toMatchObject({ formatVersion: 1, digestAlgorithm: 'sha1', prevDigest: undefined, frameCount: batch.events.length, epoch: 2 });
        expect(hex(b.marker.digest)).toBe(hex(batch.digest));
        expect(b.frames.map((f) => [f.seq, f.streamId, f.eventType, f.streamVersion, Buffer.from(f.payload).toString()])).toEqual(
          batch.events.map((e) => [e.seq, e.streamId, e.eventType, e.seq * 10, `old ${e.seq}`]),
        );
      }
    }
  });

  it("stops with 'bad-digest' on a version-1 batch whose frame changed (CRC recomputed)", () => {
    const damaged = patchFrame(V1_LOG, first.bytes.length, (f) => f.setUint32(24, 3, true));
    expect(decodeAll(damaged).report).toMatchObject({ reason: 'bad-digest', validBytes: first.bytes.length, offset: V1_LOG.length - 68 });
  });

  function continuation(prevDigest: Uint8Array): Uint8Array {
    const w = new FrameWriter();
    w.appendEvent(6, 3, 2_000, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 'v2', 0, 'New', undefined, undefined, utf8('new 6'));
    w.appendEvent(7, 3, 2_001, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 'v2', 1, 'New', undefined, undefined, utf8('new 7'));
    w.seal(3, 2_002, prevDigest);
    w.appendEvent(8, 3, 2_003, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 'v2', 2, 'New', undefined, undefined, utf8('new 8'));
    w.seal(3, 2_004);
    return Uint8Array.from(w.bytes());
  }

  it('continues a version-1 log with version-2 batches whose first prevDigest is the last version-1 digest', () => {
    const v2 = continuation(second.digest);
    const input = concat(V1_LOG, v2);
    for (const chunks of [[input], chunksOf(input, 1, true), chunksOf(input, 13, true)]) {
      const { batches, report } = decodeRaw(chunks, { firstSeq: 1 });
      expect(report).toMatchObject({ reason: 'end', validBytes: input.length, nextSeq: 9 });
      expect(batches.map((b) => [b.firstSeq, b.lastSeq, b.marker.formatVersion])).toEqual([
        [1, 3, 1],
        [4, 5, 1],
        [6, 7, 2],
        [8, 8, 2],
      ]);
      expect(hex(batches[2].marker.prevDigest!)).toBe(hex(second.digest));
      expect(hex(batches[2].marker.digest)).toBe(hex(sha1(input.subarray(V1_LOG.length, batches[2].byteOffset + batches[2].byteLength - 24))));
      expect(hex(batches[3].marker.prevDigest!)).toBe(hex(batches[2].marker.digest));
      expect(joinedHex(batches)).toBe(hex(input));
    }
  });

  it("stops with 'broken-chain' where the version-2 continuation does not name the last version-1 digest", () => {
    for (const wrong of [new Uint8Array(20), first.digest]) {
      const input = concat(V1_LOG, continuation(wrong));
      const { batches, report } = decodeRaw([input]);
      expect(batches).toHaveLength(2);
      expect(report).toMatchObject({ reason: 'broken-chain', validBytes: V1_LOG.length });
    }
  });

  it("stops with 'broken-chain' at a version-1 batch after chained batches (the chain cannot be bypassed)", () => {
    const v2 = continuation(second.digest);
    const input = concat(V1_LOG, v2, v1Batch(9, 9).bytes);
    const { batches, report } = decodeRaw([input], { firstSeq: 1 });
    expect(batches.map((b) => b.lastSeq)).toEqual([3, 5, 7, 8]);
    expect(report).toMatchObject({ reason: 'broken-chain', validBytes: V1_LOG.length + v2.length });
  });

  it("stops with 'malformed-frame' when one batch mixes frames of versions 1 and 2", () => {
    const w = new FrameWriter();
    w.appendEvent(7, 2, 1, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', 2, 'T', undefined, undefined, utf8('y'));
    const v1Frame = v1EventFrame({ seq: 6, flags: FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, streamId: 's', eventType: 'T', payload: utf8('x') });
    const input = concat(V1_LOG, v1Frame, Uint8Array.from(w.bytes()));
    const { report } = decodeRaw([input], { firstSeq: 1 });
    expect(report).toMatchObject({ reason: 'malformed-frame', validBytes: V1_LOG.length, offset: V1_LOG.length + v1Frame.length });
    expect(report.detail).toMatch(/version 2 inside a batch of version 1/);
  });

  it('refuses a prevDigest option that is not 20 bytes', () => {
    expect(() => new StreamDecoder({ prevDigest: new Uint8Array(19) })).toThrow(/20-byte/);
  });

  it("stops with 'unsupported-version' on a frame of version 4, and 'malformed-frame' on version 0", () => {
    const e: V1Event = { seq: 6, flags: FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, streamId: 's', eventType: 'T', payload: utf8('x') };
    for (const [version, reason] of [
      [4, 'unsupported-version'],
      [0, 'malformed-frame'],
    ] as const) {
      const { batches, report } = decodeAll(concat(V1_LOG, v1EventFrame(e, version)));
      expect(batches).toHaveLength(2);
      expect(report).toMatchObject({ reason, offset: V1_LOG.length, validBytes: V1_LOG.length, clean: false });
      expect(report.detail).toContain(`version ${version}`);
    }
  });

  it("stops with 'malformed-frame' on a version-1 marker of 88 bytes or a version-2 marker of 68 bytes", () => {
    // A version 1 marker relabelled version 2 (CRC recomputed) has the wrong size for version 2.
    const relabelled = patchFrame(V1_LOG, first.bytes.length - 68, (f) => f.setUint8(4, 2));
    expect(decodeAll(relabelled).report).toMatchObject({ reason: 'malformed-frame', offset: first.bytes.length - 68, validBytes: 0 });
    const w = new FrameWriter();
    w.appendEvent(1, 0, 0, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', 0, 'T', undefined, undefined, utf8('x'));
    w.seal(0, 0);
    const markerStart = w.byteLength - MARKER_BYTES;
    const downgraded = patchFrame(w.bytes(), markerStart, (f) => f.setUint8(4, 1));
    expect(decodeAll(downgraded).report).toMatchObject({ reason: 'malformed-frame', offset: markerStart, validBytes: 0 });
  });
});

function joinedHex(batches: readonly SealedBatch[]): string {
  return hex(concat(...batches.map((b) => b.bytes)));
}

describe('decodeEventFrameAt', () => {
  it('checks the frame CRC unless the caller verified the bytes already (checkCrc false); every other check still runs', () => {
    const writer = new FrameWriter();
    writer.appendEvent(7, 1, 2, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 's', 3, 'T', undefined, undefined, new TextEncoder().encode('abc'));
    const bytes = Uint8Array.from(writer.bytes());
    expect(decodeEventFrameAt(bytes, 0)).toMatchObject({ seq: 7, streamId: 's', streamVersion: 3, eventType: 'T' });
    bytes[bytes.length - 1] ^= 1; // the CRC itself
    expect(decodeEventFrameAt(bytes, 0)).toMatch(/fails its CRC-32C/);
    expect(decodeEventFrameAt(bytes, 0, DEFAULT_FRAME_BYTES_MAX, false)).toMatchObject({ seq: 7 });
    bytes[7] = 1; // reserved byte
    expect(decodeEventFrameAt(bytes, 0, DEFAULT_FRAME_BYTES_MAX, false)).toMatch(/reserved/);
  });
});
