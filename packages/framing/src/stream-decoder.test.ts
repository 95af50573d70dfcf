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
  StreamDecoder,
  crc32c,
  decodeBatches,
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

function encodeLog(batches: readonly Batch[], firstSeq = 1, writer = new FrameWriter({ initialBytes: 256 })): EncodedLog {
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
    writer.seal(EPOCH + 1, timestampOf(seq));
    batchEnds.push(writer.byteLength);
    const bytes = writer.bytes();
    expected.push({
      firstSeq: seq - frames.length,
      lastSeq: seq - 1,
      byteOffset: batchStart,
      byteLength: writer.byteLength - batchStart,
      frames,
      marker: {
        firstSeq: seq - frames.length,
        lastSeq: seq - 1,
        frameCount: frames.length,
        epoch: EPOCH + 1,
        timestamp: timestampOf(seq),
        digestAlgorithm: 'sha1',
        digest: createHash('sha1').update(bytes.subarray(batchStart, markerStart)).digest('hex'),
      },
    });
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
    frames: b.frames.map((f) => ({ ...f, metadata: hex(f.metadata), payload: hex(f.payload) })),
    marker: { ...b.marker, digest: hex(b.marker.digest) },
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
    const damaged = patchFrame(LOG.bytes, start, (f) => f.setUint8(4, 2));
    const { batches, report } = decodeAll(damaged);
    expect(batches).toEqual(LOG.expected.slice(0, 1));
    expect(report).toMatchObject({ reason: 'unsupported-version', offset: start, validBytes: LOG.batchEnds[0] });
    expect(report.detail).toMatch(/version 2/);
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
      raw[44] ^= 1;
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
