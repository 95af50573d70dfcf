import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EVENT_SEQ_AT,
  EVENT_STREAM_VERSION_AT,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FrameTooLargeError,
  FrameWriter,
  checkFramedEvents,
  crc32c,
  decodeBatches,
  framedEventsBytesBound,
  readU32,
  readU53,
  writeFramedEvents,
  type CommitHeaders,
  type FramedEventInput,
} from './index.js';

const enc = new TextEncoder();
/** No lone surrogates (UTF-8 cannot carry them; the engine refuses such names). */
const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function framed(streamId: string, events: readonly FramedEventInput[], headers?: CommitHeaders, frameBytesMax = 1 << 22): Buffer {
  const target = Buffer.alloc(framedEventsBytesBound(streamId, events, headers));
  const end = writeFramedEvents(target, 0, streamId, events, headers, frameBytesMax);
  return target.subarray(0, end);
}

/** Stamps every framed event of `bytes` into `writer` as one commit from `firstSeq`. */
function stampAll(writer: FrameWriter, bytes: Uint8Array, firstSeq: number, firstVersion: number): void {
  let o = 0;
  let i = 0;
  while (o < bytes.length) {
    const n = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24);
    const last = o + n === bytes.length;
    writer.appendFramed(firstSeq + i, 7, 1_700_000_000_000, (i === 0 ? FLAG_COMMIT_FIRST : 0) | (last ? FLAG_COMMIT_LAST : 0), firstVersion + i, bytes, o, o + n);
    o += n;
    i++;
  }
}

const events: FramedEventInput[] = [
  { type: 'Opened', data: enc.encode('{"owner":"Ada"}') },
  { type: 'Deposited', data: enc.encode('{"amount":10}'), metadata: enc.encode('{"by":"teller"}') },
  { type: 'Ünïcödé', data: new Uint8Array(0) },
];
const headers: CommitHeaders = { commandIds: ['cmd-1', 'cmd-2'], correlationId: 'corr', causationId: undefined };

describe('framed events', () => {
  it('stamped by appendFramed, are byte for byte the frames appendEvent writes (CRC by combination)', () => {
    const direct = new FrameWriter();
    events.forEach((e, i) =>
      direct.appendEvent(10 + i, 7, 1_700_000_000_000, (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === 2 ? FLAG_COMMIT_LAST : 0), 'account-1', 5 + i, e.type, i === 0 ? headers : undefined, e.metadata, e.data),
    );
    const stamped = new FrameWriter();
    const bytes = framed('account-1', events, headers);
    const info = checkFramedEvents(bytes, 1 << 22);
    expect(info).toEqual({ ok: true, count: 3, streamId: 'account-1', headers, dataBytes: events.reduce((n, e) => n + e.data.length + (e.metadata?.length ?? 0), 0) });
    stampAll(stamped, bytes, 10, 5);
    expect(Buffer.from(stamped.bytes()).equals(Buffer.from(direct.bytes()))).toBe(true);
    direct.seal(7, 1_700_000_000_000);
    stamped.seal(7, 1_700_000_000_000);
    const { batches, report } = decodeBatches(stamped.bytes(), { firstSeq: 10 });
    expect(report.reason).toBe('end');
    expect(batches[0].frames.map((f) => [f.seq, f.streamVersion, f.eventType])).toEqual([
      [10, 5, 'Opened'],
      [11, 6, 'Deposited'],
      [12, 7, 'Ünïcödé'],
    ]);
  });

  it('stamped by a format version 3 writer with the commit level, are byte for byte what appendEvent writes there', () => {
    const headerCases: (CommitHeaders | undefined)[] = [headers, undefined, { commandIds: [], correlationId: undefined, causationId: 'cause' }];
    for (const [h, level] of headerCases.flatMap((h) => [[h, 'critical'], [h, 'ünï'], [h, undefined]] as const)) {
      const direct = new FrameWriter({ formatVersion: 3 });
      // As the partition does: the commit's first frame carries the headers with the level.
      const first: CommitHeaders | undefined = h === undefined ? (level === undefined ? undefined : { commandIds: [], level }) : { ...h, ...(level === undefined ? {} : { level }) };
      events.forEach((e, i) =>
        direct.appendEvent(10 + i, 7, 1_700_000_000_000, (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === 2 ? FLAG_COMMIT_LAST : 0), 'account-1', 5 + i, e.type, i === 0 ? first : undefined, e.metadata, e.data),
      );
      const stamped = new FrameWriter({ formatVersion: 3 });
      const bytes = framed('account-1', events, h);
      let o = 0;
      events.forEach((_, i) => {
        const n = bytes.readUInt32LE(o);
        stamped.appendFramed(10 + i, 7, 1_700_000_000_000, (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === 2 ? FLAG_COMMIT_LAST : 0), 5 + i, bytes, o, o + n, i === 0 ? level : undefined);
        o += n;
      });
      expect(Buffer.from(stamped.bytes()).equals(Buffer.from(direct.bytes())), `${JSON.stringify(h)} ${level}`).toBe(true);
      stamped.seal(7, 1_700_000_000_000);
      const { batches, report } = decodeBatches(stamped.bytes(), { firstSeq: 10 });
      expect(report.reason).toBe('end');
      expect(batches[0].frames[0].headers?.level).toBe(level);
    }
    // A version 2 writer cannot record a level.
    const bytes = framed('account-1', events, headers);
    expect(() => new FrameWriter().appendFramed(1, 1, 1, 1, 1, bytes, 0, bytes.readUInt32LE(0), 'critical')).toThrow(/cannot record a level/);
  });

  it('match appendEvent for any events (property)', () => {
    const event = fc.record({ type: fc.string({ minLength: 1, maxLength: 20 }).filter(wellFormed), data: fc.uint8Array({ maxLength: 200 }), metadata: fc.option(fc.uint8Array({ maxLength: 50 }), { nil: undefined }) });
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 30 }).filter(wellFormed), fc.array(event, { minLength: 1, maxLength: 6 }), (streamId, evs) => {
        const direct = new FrameWriter({ initialBytes: 256 });
        evs.forEach((e, i) => direct.appendEvent(1 + i, 1, 5, (i === 0 ? 1 : 0) | (i === evs.length - 1 ? 2 : 0), streamId, 1 + i, e.type, i === 0 ? headers : undefined, e.metadata, e.data));
        const bytes = framed(streamId, evs, headers);
        expect(checkFramedEvents(bytes, 1 << 22).ok).toBe(true);
        const stamped = new FrameWriter({ initialBytes: 256 });
        let o = 0;
        evs.forEach((_, i) => {
          const n = bytes.readUInt32LE(o);
          stamped.appendFramed(1 + i, 1, 5, (i === 0 ? 1 : 0) | (i === evs.length - 1 ? 2 : 0), 1 + i, bytes, o, o + n);
          o += n;
        });
        expect(Buffer.from(stamped.bytes()).equals(Buffer.from(direct.bytes()))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('stamped as a first frame plus one run (appendFramedRun), are byte for byte what appendEvent writes, in versions 2 and 3 (property)', () => {
    const event = fc.record({ type: fc.string({ minLength: 1, maxLength: 20 }).filter(wellFormed), data: fc.uint8Array({ maxLength: 300 }), metadata: fc.option(fc.uint8Array({ maxLength: 50 }), { nil: undefined }) });
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 30 }).filter(wellFormed),
        fc.array(event, { minLength: 2, maxLength: 8 }),
        fc.constantFrom(2 as const, 3 as const),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (streamId, evs, formatVersion, endsCommit, base) => {
          const level = formatVersion === 3 ? 'critical' : undefined;
          const last = evs.length - 1;
          const flags = (i: number): number => (i === 0 ? FLAG_COMMIT_FIRST : 0) | (endsCommit && i === last ? FLAG_COMMIT_LAST : 0);
          const direct = new FrameWriter({ initialBytes: 256, formatVersion });
          const first: CommitHeaders = level === undefined ? headers : { ...headers, level };
          evs.forEach((e, i) => direct.appendEvent(base + 1 + i, 3, 1_700_000_000_000, flags(i), streamId, base + 10 + i, e.type, i === 0 ? first : undefined, e.metadata, e.data));
          const bytes = framed(streamId, evs, headers);
          const stamped = new FrameWriter({ initialBytes: 256, formatVersion });
          const n = bytes.readUInt32LE(0);
          stamped.appendFramed(base + 1, 3, 1_700_000_000_000, flags(0), base + 10, bytes, 0, n, level);
          expect(stamped.appendFramedRun(base + 2, 3, 1_700_000_000_000, base + 11, bytes, n, bytes.length, endsCommit)).toBe(last);
          expect(stamped.unsealedFrameCount).toBe(evs.length);
          expect(Buffer.from(stamped.bytes()).equals(Buffer.from(direct.bytes()))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('appendFramedRun writes nothing when a frame of the run cannot be written', () => {
    const bytes = framed('account-1', events, headers);
    const first = bytes.readUInt32LE(0);
    const writer = new FrameWriter({ frameBytesMax: 1 << 22 });
    writer.appendFramed(1, 1, 5, FLAG_COMMIT_FIRST, 1, bytes, 0, first);
    const before = Buffer.from(writer.bytes());
    // The first frame carries the commit headers: not a run.
    expect(() => writer.appendFramedRun(2, 1, 5, 2, bytes, 0, bytes.length, true)).toThrow(/not a run of framed events without headers/);
    // A run cut in the middle of a frame.
    expect(() => writer.appendFramedRun(2, 1, 5, 2, bytes, first, bytes.length - 1, true)).toThrow(/not a run of framed events without headers/);
    // A seq that does not follow.
    expect(() => writer.appendFramedRun(5, 1, 5, 2, bytes, first, bytes.length, true)).toThrow(/does not follow/);
    // A frame over the writer's limit.
    const small = new FrameWriter({ frameBytesMax: 64 });
    expect(() => small.appendFramedRun(1, 1, 5, 1, bytes, first, bytes.length, true)).toThrow(FrameTooLargeError);
    // A run whose last stream version would pass 2^53 - 1 (its last seq would not).
    expect(() => writer.appendFramedRun(2, 1, 5, Number.MAX_SAFE_INTEGER, bytes, first, bytes.length, true)).toThrow(/streamVersion.*passes 2\^53 - 1/);
    expect(Buffer.from(writer.bytes()).equals(before)).toBe(true);
    expect([writer.byteLength, writer.unsealedFrameCount]).toEqual([before.length, 1]);
    expect(small.byteLength).toBe(0);
    expect(writer.appendFramedRun(2, 1, 5, 2, bytes, first, bytes.length, true)).toBe(2);
    // Up to the last safe integer exactly: a run ending at seq and stream version 2^53 - 1.
    const top = new FrameWriter();
    expect(top.appendFramedRun(Number.MAX_SAFE_INTEGER - 1, 1, 5, Number.MAX_SAFE_INTEGER - 1, bytes, first, bytes.length, true)).toBe(2);
    const out = top.bytes();
    const second = readU32(out, 0);
    expect([readU53(out, EVENT_SEQ_AT), readU53(out, EVENT_STREAM_VERSION_AT), readU53(out, second + EVENT_SEQ_AT), readU53(out, second + EVENT_STREAM_VERSION_AT)]).toEqual([
      Number.MAX_SAFE_INTEGER - 1,
      Number.MAX_SAFE_INTEGER - 1,
      Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
    ]);
  });

  it('with one flipped body byte are refused as corrupt, naming the event', () => {
    const bytes = Buffer.from(framed('account-1', events, headers));
    const second = bytes.readUInt32LE(0);
    bytes[second + 60] ^= 0x01; // inside the second event's body
    const verdict = checkFramedEvents(bytes, 1 << 22);
    expect(verdict).toMatchObject({ ok: false, corrupt: true, event: 1 });
    expect(!verdict.ok && verdict.problem).toMatch(/CRC-32C .* does not match/);
  });

  it('refuse a second stream, headers past the first event, bad lengths, truncation, empty input and the size limit', () => {
    const one = framed('a', [events[0]]);
    const other = framed('b', [events[1]]);
    expect(checkFramedEvents(Buffer.concat([one, other]), 1 << 22)).toMatchObject({ ok: false, corrupt: false, event: 1, problem: expect.stringMatching(/another stream/) });
    const withHeaders = framed('a', [events[1]], headers);
    expect(checkFramedEvents(Buffer.concat([one, withHeaders]), 1 << 22)).toMatchObject({ ok: false, problem: expect.stringMatching(/only the first event/) });
    expect(checkFramedEvents(one.subarray(0, one.length - 1), 1 << 22)).toMatchObject({ ok: false, problem: expect.stringMatching(/does not fit/) });
    expect(checkFramedEvents(one.subarray(0, 20), 1 << 22)).toMatchObject({ ok: false, problem: expect.stringMatching(/truncated/) });
    expect(checkFramedEvents(new Uint8Array(0), 1 << 22)).toMatchObject({ ok: false, problem: expect.stringMatching(/at least one event/) });
    const lengths = Buffer.from(one);
    lengths.writeUInt32LE(lengths.readUInt32LE(48) + 1, 48);
    expect(checkFramedEvents(lengths, 1 << 22)).toMatchObject({ ok: false, problem: expect.stringMatching(/do not add up/) });
    expect(checkFramedEvents(one, one.length)).toMatchObject({ ok: true });
    expect(checkFramedEvents(one, one.length - 1)).toMatchObject({ ok: false, problem: expect.stringMatching(/exceed frameBytesMax/) });
    expect(checkFramedEvents(Buffer.concat([one, framed('a', [events[1]])]), 1 << 22, 1)).toMatchObject({ ok: false, problem: expect.stringMatching(/more than 1 events/) });
  });

  it('refuse a stream id that is not well-formed UTF-8 (its CRC recomputed, so only the name is wrong)', () => {
    const bytes = Buffer.from(framed('ab', [events[0]]));
    bytes[52] = 0xff;
    const crcAt = bytes.length - 4;
    // Re-checksum the body so the refusal is for the name, not the CRC.
    const body = bytes.subarray(52, crcAt);
    bytes.writeUInt32LE(crc32c(body), crcAt);
    expect(checkFramedEvents(bytes, 1 << 22)).toMatchObject({ ok: false, corrupt: false, problem: expect.stringMatching(/stream id is not well-formed UTF-8/) });
  });

  it('the encoder refuses an event over frameBytesMax', () => {
    expect(() => framed('a', [{ type: 'T', data: new Uint8Array(100) }], undefined, 120)).toThrow(FrameTooLargeError);
  });
});
