import {
  CommandIdConflictError,
  InvalidRequestError as StoreInvalidRequestError,
  PartitionClosedError,
  PartitionFaultedError,
  PartitionOverloadedError,
  StorageError,
  WrongExpectedVersionError,
  isStorageError,
  isWrongExpectedVersionError,
  type RecordedEvent,
} from '@sluice/store';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedStoreRequestError, StoreServiceError, UnknownPartitionError, UnsupportedStoreProtocolError, errorFromStoreReply, storeErrorInfo } from './store-errors.js';
import {
  EventsPageBuilder,
  STORE_PROTOCOL_VERSION,
  decodeStoreReply,
  decodeStoreRequest,
  encodeCommittedManyReply,
  encodeCommittedReply,
  encodeErrorReply,
  encodeEventsReply,
  encodeHeadReply,
  encodeStoreRequest,
  type StoreErrorInfo,
  type StoreReply,
  type StoreRequest,
} from './store-protocol.js';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

// ---- arbitraries: canonical forms (what a decode gives back) ---------------------------------

const text = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.string({ unit: 'binary-ascii', maxLength: 40 }));
const name = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 });
const safe = fc.maxSafeNat();
const blob = fc.uint8Array({ maxLength: 48 });
const nonEmptyBlob = fc.uint8Array({ minLength: 1, maxLength: 48 });
const expected = fc.oneof(fc.constant('any' as const), fc.constant('no-stream' as const), fc.constant('exists' as const), safe);
const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
const positiveU32 = fc.integer({ min: 1, max: 0xffff_ffff });

const eventData = fc.record({ type: name, data: blob, metadata: optional(nonEmptyBlob) }).map(({ type, data, metadata }) =>
  metadata === undefined ? { type, data } : { type, data, metadata },
);
const unit = fc.record({
  changes: fc.array(fc.record({ streamId: text, expectedVersion: expected, events: fc.array(eventData, { maxLength: 4 }) }), { maxLength: 4 }),
  commandIds: optional(fc.array(text, { minLength: 1, maxLength: 3 })),
  correlationId: optional(text),
  causationId: optional(text),
});

const request: fc.Arbitrary<StoreRequest> = fc.oneof(
  fc.record({ op: fc.constant('append' as const), partition: text, unit }),
  fc.record({ op: fc.constant('append-many' as const), partition: text, units: fc.array(unit, { minLength: 1, maxLength: 4 }) }),
  fc.record({
    op: fc.constant('read' as const),
    partition: text,
    fromSeq: safe,
    toSeq: optional(safe),
    maxCount: optional(positiveU32),
    pageBytesMax: optional(positiveU32),
  }),
  fc.record({
    op: fc.constant('read-stream' as const),
    partition: text,
    streamId: text,
    fromVersion: safe,
    toVersion: optional(safe),
    maxCount: optional(positiveU32),
    pageBytesMax: optional(positiveU32),
  }),
  fc.record({ op: fc.constant('head' as const), partition: text, streamId: optional(text) }),
);

const recorded: fc.Arbitrary<RecordedEvent> = fc.record({
  seq: safe,
  epoch: fc.integer({ min: 0, max: 0xffff_ffff }),
  timestamp: safe,
  commitFirst: fc.boolean(),
  commitLast: fc.boolean(),
  streamId: text,
  streamVersion: safe,
  eventType: text,
  headers: optional(fc.record({ commandIds: fc.array(text, { maxLength: 3 }), correlationId: optional(text), causationId: optional(text), level: optional(text) })),
  metadata: blob,
  payload: blob,
  frameBytes: fc.integer({ min: 0, max: 0xffff_ffff }),
});

const errorBase = { partition: text, message: text, retryable: fc.boolean() };
const errorInfo: fc.Arbitrary<StoreErrorInfo> = fc.oneof(
  fc.record({
    ...errorBase,
    code: fc.constantFrom('malformed-request', 'unknown-partition', 'invalid-request', 'partition-closed', 'partition-faulted', 'internal'),
  }),
  fc.record({ ...errorBase, code: fc.constant('unsupported-version' as const), versionMin: fc.integer({ min: 0, max: 255 }), versionMax: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ ...errorBase, code: fc.constant('wrong-expected-version' as const), streamId: text, expectedVersion: expected, actualVersion: safe }),
  fc.record({ ...errorBase, code: fc.constant('command-id-conflict' as const), commandIds: fc.array(text, { maxLength: 4 }) }),
  fc.record({
    ...errorBase,
    code: fc.constant('storage-error' as const),
    reason: fc.constantFrom('Conflict', 'Locked', 'NotFound', 'Unavailable', 'Corrupt', 'Unsupported', 'Full', 'Unauthorized', 'Closed', 'Invalid'),
  }),
  fc.record({ ...errorBase, code: fc.constant('partition-overloaded' as const), queueMax: fc.integer({ min: 0, max: 0xffff_ffff }) }),
) as fc.Arbitrary<StoreErrorInfo>;

const reply: fc.Arbitrary<StoreReply> = fc.oneof(
  fc.record({
    kind: fc.constant('committed' as const),
    result: fc.record({
      firstSeq: safe,
      lastSeq: safe,
      streams: fc.array(fc.record({ streamId: text, firstVersion: safe, version: safe }), { maxLength: 4 }),
      timestamp: safe,
      duplicate: fc.boolean(),
    }),
  }),
  fc.record({
    kind: fc.constant('head' as const),
    head: fc.record({
      partition: text,
      lastSeq: safe,
      epoch: fc.integer({ min: 0, max: 0xffff_ffff }),
      writable: fc.boolean(),
      streamCount: safe,
      streamVersion: optional(safe),
      recovery: optional(fc.record({ droppedSeqs: safe, droppedBytes: safe, droppedReason: optional(fc.string({ minLength: 1, maxLength: 30 })) })),
    }),
  }),
  fc.record({ kind: fc.constant('events' as const), events: fc.array(recorded, { maxLength: 5 }), next: safe, more: fc.boolean(), lastSeq: safe }),
  fc.record({ kind: fc.constant('error' as const), error: errorInfo }),
  fc.record({
    kind: fc.constant('committed-many' as const),
    outcomes: fc.array(
      fc.oneof(
        fc.record({
          ok: fc.constant(true as const),
          result: fc.record({
            firstSeq: safe,
            lastSeq: safe,
            streams: fc.array(fc.record({ streamId: text, firstVersion: safe, version: safe }), { maxLength: 3 }),
            timestamp: safe,
            duplicate: fc.boolean(),
          }),
        }),
        fc.record({ ok: fc.constant(false as const), error: errorInfo }),
      ),
      { maxLength: 5 },
    ),
  }),
);

function encodeReply(value: StoreReply): Buffer {
  switch (value.kind) {
    case 'committed':
      return encodeCommittedReply(value.result);
    case 'head':
      return encodeHeadReply(value.head);
    case 'events':
      return encodeEventsReply(value);
    case 'error':
      return encodeErrorReply(value.error);
    case 'committed-many':
      return encodeCommittedManyReply(value.outcomes);
  }
}

/** Undefined-valued keys and typed-array classes do not matter for equality. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return hex(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

// ---- tests ----------------------------------------------------------------------------------

describe('store protocol: requests', () => {
  it('round-trips every request', () => {
    fc.assert(
      fc.property(request, (value) => {
        const decoded = decodeStoreRequest([encodeStoreRequest(value)]);
        expect(decoded.ok).toBe(true);
        if (decoded.ok) expect(plain(decoded.request)).toEqual(plain(value));
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips an append-many of empty units (the smallest unit is 9 bytes; fast-check seed 1957607602 found it)', () => {
    const value: StoreRequest = { op: 'append-many', partition: '', units: [{ changes: [] }, { changes: [] }] };
    const decoded = decodeStoreRequest([encodeStoreRequest(value)]);
    expect(decoded.ok).toBe(true);
  });

  it('matches the golden bytes of PROTOCOL.md', () => {
    expect(hex(encodeStoreRequest({ op: 'head', partition: 'p1' }))).toBe('534c530104020070310' + '0');
    expect(hex(encodeStoreRequest({ op: 'head', partition: 'p1', streamId: 'a' }))).toBe('534c53010402007031010100' + '61');
    expect(hex(encodeStoreRequest({ op: 'read', partition: 'p', fromSeq: 2, toSeq: 0x1_0000_0001, maxCount: 10 }))).toBe(
      '534c5301020100' + '70' + '0200000000000000' + '01' + '0100000001000000' + '0a000000' + '00000000',
    );
    expect(
      hex(
        encodeStoreRequest({
          op: 'append',
          partition: 'p',
          unit: { commandIds: ['c'], changes: [{ streamId: 's', expectedVersion: 3, events: [{ type: 'E', data: bytes('hi') }] }] },
        }),
      ),
    ).toBe(
      '534c5301010100' + '70' + // header, partition "p"
        '01000000' + '0100' + '63' + // one command id "c"
        '00' + // no correlation / causation
        '01000000' + '0100' + '73' + '03' + '0300000000000000' + // one change: "s", exact version 3
        '01000000' + '0100' + '45' + '00000000' + '02000000' + '6869', // one event: "E", no metadata, "hi"
    );
  });

  it('decodes an absent expected version as "any" and empty metadata as absent', () => {
    const frame = encodeStoreRequest({
      op: 'append',
      partition: 'p',
      unit: { changes: [{ streamId: 's', events: [{ type: 'E', data: bytes('x'), metadata: new Uint8Array(0) }] }] },
    });
    const decoded = decodeStoreRequest([frame]);
    expect(plain(decoded.ok && decoded.request.op === 'append' && decoded.request.unit)).toEqual(plain({
      changes: [{ streamId: 's', expectedVersion: 'any', events: [{ type: 'E', data: bytes('x') }] }],
      commandIds: undefined,
      correlationId: undefined,
      causationId: undefined,
    }));
  });

  it('returns payloads as views into the frame (zero-copy)', () => {
    const frame = encodeStoreRequest({ op: 'append', partition: 'p', unit: { changes: [{ streamId: 's', events: [{ type: 'E', data: bytes('abc') }] }] } });
    const decoded = decodeStoreRequest([frame]);
    if (!decoded.ok || decoded.request.op !== 'append') throw new Error('expected an append');
    expect(decoded.request.unit.changes[0].events[0].data.buffer).toBe(frame.buffer);
  });

  it('never throws on garbage: random bytes, random bytes after a valid header, byte flips, truncations', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => {
        const decoded = decodeStoreRequest([Buffer.from(garbage)]);
        if (!decoded.ok) expect(decoded.error.code).toMatch(/^(malformed-request|unsupported-version)$/);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 200 }), (op, tail) => {
        const frame = Buffer.concat([Buffer.from([0x53, 0x4c, 0x53, STORE_PROTOCOL_VERSION, op]), tail]);
        decodeStoreRequest([frame]); // must not throw
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(request, fc.nat(), fc.integer({ min: 1, max: 255 }), (value, at, xor) => {
        const frame = Buffer.from(encodeStoreRequest(value));
        frame[at % frame.length] ^= xor;
        decodeStoreRequest([frame]); // may decode to another request, must not throw
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(request, (value) => {
        const frame = encodeStoreRequest(value);
        for (let length = 0; length < frame.length; length++) {
          const decoded = decodeStoreRequest([frame.subarray(0, length)]);
          expect(decoded.ok).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a huge count in a tiny frame without allocating for it', () => {
    // An append whose change count claims 4 billion changes.
    const frame = Buffer.from('534c5301010100' + '70' + '00000000' + '00' + 'ffffffff', 'hex');
    const decoded = decodeStoreRequest([frame]);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.error.message).toMatch(/change count 4294967295 cannot fit/);
  });

  it('names the problem: frame count, magic, unknown operation, trailing bytes, invalid UTF-8', () => {
    const problem = (frames: Uint8Array[]): string => {
      const decoded = decodeStoreRequest(frames);
      if (decoded.ok) throw new Error('expected an error');
      expect(decoded.error.code).toBe('malformed-request');
      return decoded.error.message;
    };
    const head = encodeStoreRequest({ op: 'head', partition: 'p' });
    expect(problem([])).toMatch(/exactly one frame, got 0/);
    expect(problem([head, head])).toMatch(/exactly one frame, got 2/);
    expect(problem([Buffer.from('GET / HTTP/1.1')])).toMatch(/not a Sluice store protocol frame/);
    expect(problem([Buffer.from('534c530109', 'hex')])).toMatch(/unknown operation 9/);
    expect(problem([Buffer.concat([head, Buffer.from([0])])])).toMatch(/unexpected byte/);
    expect(problem([Buffer.from('534c530104' + '0200' + 'c328' + '00', 'hex')])).toMatch(/not valid UTF-8/);
    // The partition is reported when it could be read.
    const decoded = decodeStoreRequest([Buffer.from('534c530104' + '0100' + '70' + '07', 'hex')]);
    expect(!decoded.ok && decoded.error.partition).toBe('p');
  });

  it('answers another protocol version with unsupported-version and the supported range', () => {
    const frame = Buffer.from(encodeStoreRequest({ op: 'head', partition: 'p' }));
    frame[3] = 2;
    const decoded = decodeStoreRequest([frame]);
    expect(decoded).toMatchObject({ ok: false, error: { code: 'unsupported-version', versionMin: 1, versionMax: 1 } });
    frame[3] = 0;
    expect(decodeStoreRequest([frame])).toMatchObject({ ok: false, error: { code: 'unsupported-version' } });
  });

  it('refuses to encode what it cannot carry', () => {
    expect(() => encodeStoreRequest({ op: 'head', partition: 'x'.repeat(70_000) })).toThrow(/longer than 65535/);
    expect(() => encodeStoreRequest({ op: 'read', partition: 'p', fromSeq: -1 })).toThrow(/safe non-negative/);
    expect(() => encodeStoreRequest({ op: 'read', partition: 'p', fromSeq: 2 ** 53 })).toThrow(/safe non-negative/);
    expect(() =>
      encodeStoreRequest({ op: 'append', partition: 'p', unit: { changes: [{ streamId: 's', events: [{ type: 'E', data: 'x' as unknown as Uint8Array }] }] } }),
    ).toThrow(/Uint8Array/);
  });
});

describe('store protocol: replies', () => {
  it('round-trips every reply', () => {
    fc.assert(
      fc.property(reply, (value) => {
        const decoded = decodeStoreReply([encodeReply(value)]);
        expect(decoded.ok).toBe(true);
        if (decoded.ok) expect(plain(decoded.reply)).toEqual(plain(value));
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on garbage or damaged replies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => {
        decodeStoreReply([Buffer.from(garbage)]);
        decodeStoreReply([Buffer.concat([Buffer.from([0x53, 0x4c, 0x53, 1]), garbage])]);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(reply, fc.nat(), fc.integer({ min: 1, max: 255 }), (value, at, xor) => {
        const frame = Buffer.from(encodeReply(value));
        for (let length = 0; length < frame.length; length++) expect(decodeStoreReply([frame.subarray(0, length)]).ok).toBe(false);
        frame[at % frame.length] ^= xor;
        decodeStoreReply([frame]);
      }),
      { numRuns: 300 },
    );
    expect(decodeStoreReply([])).toEqual({ ok: false, problem: 'a store reply is exactly one frame, got 0' });
  });

  it('keeps an error code from a newer revision as "other" with its message', () => {
    const frame = Buffer.from(encodeErrorReply({ code: 'internal', partition: 'p', message: 'new thing', retryable: true }));
    frame.writeUInt16LE(999, 5);
    const withExtra = Buffer.concat([frame, Buffer.from([1, 2, 3])]);
    expect(decodeStoreReply([withExtra])).toEqual({
      ok: true,
      reply: { kind: 'error', error: { code: 'other', wireCode: 999, partition: 'p', message: 'new thing', retryable: true } },
    });
  });

  it('bounds a page by bytes and events, but always takes the first event', () => {
    const event = (seq: number, size: number): RecordedEvent => ({
      seq,
      epoch: 0,
      timestamp: 1,
      commitFirst: true,
      commitLast: true,
      streamId: 's',
      streamVersion: seq,
      eventType: 'E',
      headers: undefined,
      metadata: new Uint8Array(0),
      payload: new Uint8Array(size),
      frameBytes: 60 + size,
    });
    const big = new EventsPageBuilder(1000, 100);
    expect(big.tryAdd(event(1, 5000))).toBe(true); // alone, over the budget
    expect(big.tryAdd(event(2, 1))).toBe(false);
    const bySize = new EventsPageBuilder(1000, 100);
    let added = 0;
    while (bySize.tryAdd(event(added + 1, 100))) added++;
    const frame = bySize.finish({ next: added + 1, more: true, lastSeq: 99 });
    expect(frame.length).toBeLessThanOrEqual(1000);
    expect(frame.length + 100 + 50).toBeGreaterThan(1000);
    const byCount = new EventsPageBuilder(1_000_000, 3);
    for (let i = 1; i <= 3; i++) expect(byCount.tryAdd(event(i, 1))).toBe(true);
    expect(byCount.tryAdd(event(4, 1))).toBe(false);
    const decoded = decodeStoreReply([byCount.finish({ next: 4, more: true, lastSeq: 10 })]);
    expect(decoded.ok && decoded.reply.kind === 'events' && decoded.reply.events.map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('carries the reliability level a commit recorded (tracing flag bit 2), sized exactly, and refuses unknown tracing flags', () => {
    const event: RecordedEvent = {
      seq: 1,
      epoch: 0,
      timestamp: 1,
      commitFirst: true,
      commitLast: true,
      streamId: 's',
      streamVersion: 1,
      eventType: 'E',
      headers: { commandIds: ['c'], correlationId: 'k', causationId: undefined, level: 'critical' },
      metadata: new Uint8Array(0),
      payload: new Uint8Array([7]),
      frameBytes: 80,
    };
    const page = new EventsPageBuilder(1_000_000, 10);
    expect(page.tryAdd(event)).toBe(true);
    const frame = page.finish({ next: 2, more: false, lastSeq: 1 });
    const decoded = decodeStoreReply([frame]);
    expect(decoded.ok && decoded.reply.kind === 'events' && decoded.reply.events[0].headers).toEqual(event.headers);
    // The level's bytes count towards the page budget: a page just too small for it holds only the first event.
    const tight = new EventsPageBuilder(frame.length + 1, 10);
    tight.tryAdd({ ...event, headers: undefined });
    expect(tight.tryAdd(event)).toBe(false);
    // Tracing flags sit right after the command ids; an unknown bit is refused, not misread.
    const at = Buffer.from(frame).indexOf(Buffer.from('critical')) - 2 - 1 - 2 - 1;
    expect(frame[at]).toBe(1 | 4);
    const patched = Buffer.from(frame);
    patched[at] = 1 | 4 | 8;
    const refused = decodeStoreReply([patched]);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.problem).toMatch(/unknown event tracing flags 13/);
  });
});

describe('store protocol: errors map to @sluice/store classes and back', () => {
  const through = (error: unknown): Error => {
    const decoded = decodeStoreReply([encodeErrorReply(storeErrorInfo(error, 'bank-1'))]);
    if (!decoded.ok || decoded.reply.kind !== 'error') throw new Error('expected an error reply');
    return errorFromStoreReply(decoded.reply.error);
  };

  it('WrongExpectedVersionError keeps stream, expected and actual version', () => {
    const error = through(new WrongExpectedVersionError('bank-1', 'account-1', 3, 5));
    expect(isWrongExpectedVersionError(error)).toBe(true);
    expect(error).toBeInstanceOf(WrongExpectedVersionError);
    expect(error).toMatchObject({ partition: 'bank-1', streamId: 'account-1', expectedVersion: 3, actualVersion: 5 });
    expect(error.message).toMatch(/reload the stream/);
    expect(through(new WrongExpectedVersionError('bank-1', 's', 'no-stream', 1))).toMatchObject({ expectedVersion: 'no-stream' });
  });

  it('maps every store error class', () => {
    expect(through(new CommandIdConflictError('bank-1', ['a', 'b']))).toMatchObject({ name: 'CommandIdConflictError', commandIds: ['a', 'b'] });
    expect(through(new StoreInvalidRequestError('[sluice/store] bad'))).toBeInstanceOf(StoreInvalidRequestError);
    const storage = through(new StorageError('Unavailable', 'disk busy'));
    expect(isStorageError(storage)).toBe(true);
    expect(storage).toMatchObject({ reason: 'Unavailable', retryable: true, message: 'disk busy' });
    expect(through(new StorageError('Full', 'disk full'))).toMatchObject({ reason: 'Full', retryable: false });
    expect(through(new PartitionClosedError('bank-1'))).toBeInstanceOf(PartitionClosedError);
    const faulted = through(new PartitionFaultedError('bank-1', { cause: new Error('EIO') }));
    expect(faulted).toBeInstanceOf(PartitionFaultedError);
    expect(faulted.message).toMatch(/EIO/);
    expect(through(new PartitionOverloadedError('bank-1', 77))).toMatchObject({ name: 'PartitionOverloadedError', queueMax: 77 });
    const internal = through(new TypeError('oops'));
    expect(internal).toBeInstanceOf(StoreServiceError);
    expect(internal.message).toMatch(/failed unexpectedly: oops/);
  });

  it('marks overloaded and closed partitions retryable, and protocol errors not', () => {
    expect(storeErrorInfo(new PartitionOverloadedError('p', 1), 'p').retryable).toBe(true);
    expect(storeErrorInfo(new PartitionClosedError('p'), 'p').retryable).toBe(true);
    expect(storeErrorInfo(new WrongExpectedVersionError('p', 's', 1, 2), 'p').retryable).toBe(false);
    expect(errorFromStoreReply({ code: 'unknown-partition', partition: 'x', message: 'm', retryable: false })).toBeInstanceOf(UnknownPartitionError);
    expect(errorFromStoreReply({ code: 'malformed-request', partition: '', message: 'm', retryable: false })).toBeInstanceOf(MalformedStoreRequestError);
    expect(
      errorFromStoreReply({ code: 'unsupported-version', partition: '', message: 'm', retryable: false, versionMin: 1, versionMax: 3 }),
    ).toMatchObject({ name: 'UnsupportedStoreProtocolError', versionMin: 1, versionMax: 3 });
    expect(UnsupportedStoreProtocolError).toBeDefined();
  });
});
