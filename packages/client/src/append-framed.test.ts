import { checkFramedEvents } from '@sluice/framing';
import { CorruptFrameError, InvalidRequestError } from '@sluice/store';
import { describe, expect, it } from 'vitest';
import {
  decodeStoreReply,
  encodeAppendFramedRequest,
  decodeStoreRequest,
  encodeCommittedManyReply,
  encodeErrorReply,
  encodeFramedUnit,
  encodeStoreRequest,
  errorFromStoreReply,
  storeErrorInfo,
} from './index.js';

const data = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('append-framed (op 7) on the wire', () => {
  it('round-trips units of framed events, each a view of the request (no copy), with its expected version', () => {
    const a = encodeFramedUnit({ changes: [{ streamId: 'acct-1', expectedVersion: 3, events: [{ type: 'E', data: data('x'), metadata: data('m') }, { type: 'F', data: data('y') }] }], commandIds: ['c-1'], correlationId: 'k' });
    const b = encodeFramedUnit({ changes: [{ streamId: 'acct-2', expectedVersion: 'no-stream', events: [{ type: 'E', data: data('z') }] }] });
    expect(checkFramedEvents(a.frames, 1 << 20)).toMatchObject({ ok: true, count: 2, streamId: 'acct-1', headers: { commandIds: ['c-1'], correlationId: 'k' } });
    const frame = encodeStoreRequest({ op: 'append-framed', partition: 'p1', units: [a, b] });
    expect(frame[4]).toBe(7);
    const decoded = decodeStoreRequest([frame]);
    expect(decoded.ok).toBe(true);
    if (!decoded.ok || decoded.request.op !== 'append-framed') throw new Error('not append-framed');
    expect(decoded.request.units.map((u) => u.expectedVersion)).toEqual([3, 'no-stream']);
    expect(Buffer.from(decoded.request.units[0].frames).equals(Buffer.from(a.frames))).toBe(true);
    expect(decoded.request.units[1].frames.buffer).toBe(frame.buffer);
  });

  it('refuses what cannot be framed, and decodes a cut or empty request as malformed', () => {
    expect(() => encodeFramedUnit({ changes: [{ streamId: 'a', events: [{ type: 'E', data: data('') }] }, { streamId: 'b', events: [{ type: 'E', data: data('') }] }] })).toThrow(/one stream/);
    expect(() => encodeFramedUnit({ changes: [{ streamId: 'a', events: [{ type: '', data: data('') }] }] })).toThrow(/type must be a non-empty string/);
    expect(() => encodeFramedUnit({ changes: [{ streamId: 'a', events: [{ type: 'E', data: 'text' as never }] }] })).toThrow(/serialize it first/);
    expect(() => encodeStoreRequest({ op: 'append-framed', partition: 'p1', units: [] })).toThrow(/at least one unit/);
    const frame = encodeStoreRequest({ op: 'append-framed', partition: 'p1', units: [encodeFramedUnit({ changes: [{ streamId: 'a', events: [{ type: 'E', data: data('x') }] }] })] });
    expect(decodeStoreRequest([frame.subarray(0, frame.length - 1)])).toMatchObject({ ok: false, error: { code: 'malformed-request', partition: 'p1' } });
    const head = frame.subarray(0, 5 + 2 + 2); // magic, version, op, partition "p1"
    expect(decodeStoreRequest([Buffer.concat([head, Buffer.from([0, 0, 0, 0])])])).toMatchObject({
      ok: false,
      error: { code: 'malformed-request', message: expect.stringMatching(/append-framed needs at least one unit/) },
    });
  });

  it('carries a corrupt-frame outcome and reply, which the client turns into CorruptFrameError', () => {
    const info = storeErrorInfo(new CorruptFrameError('p1', 2, 'framed event 2: CRC-32C of its body does not match'), 'p1');
    expect(info).toMatchObject({ code: 'corrupt-frame', event: 2, retryable: false });
    const many = decodeStoreReply([encodeCommittedManyReply([{ ok: false, error: info }])]);
    expect(many).toMatchObject({ ok: true, reply: { kind: 'committed-many', outcomes: [{ ok: false, error: { code: 'corrupt-frame', event: 2 } }] } });
    const single = decodeStoreReply([encodeErrorReply(info)]);
    if (!single.ok || single.reply.kind !== 'error') throw new Error('not an error reply');
    const error = errorFromStoreReply(single.reply.error);
    expect(error).toBeInstanceOf(CorruptFrameError);
    expect(error).toMatchObject({ event: 2, partition: 'p1', message: expect.stringMatching(/CRC-32C/) });
    expect(error).not.toBeInstanceOf(InvalidRequestError);
  });
});

describe('encodeAppendFramedRequest (what the store client sends)', () => {
  it('frames units straight into the request: the same bytes as framing each unit first', () => {
    const units = [
      { changes: [{ streamId: 'acct-1', expectedVersion: 3, events: [{ type: 'E', data: data('x') }, { type: 'F', data: data('yy'), metadata: data('m') }] }], commandIds: ['c-1'], causationId: 'c' },
      { changes: [{ streamId: 'acct-2', events: [{ type: 'E', data: data('z') }] }], commandIds: ['c-2'] },
    ];
    const direct = encodeAppendFramedRequest('p1', units);
    const viaUnits = encodeStoreRequest({ op: 'append-framed', partition: 'p1', units: units.map(encodeFramedUnit) });
    expect(direct.equals(viaUnits)).toBe(true);
    expect(() => encodeAppendFramedRequest('p1', [])).toThrow(/at least one unit/);
    expect(() => encodeAppendFramedRequest('p1', [{ changes: [{ streamId: 'a', events: [{ type: 'E', data: 5 as never }] }] }])).toThrow(/serialize it first/);
  });
});
