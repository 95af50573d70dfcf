import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCorrelation, encodeCorrelation, withCorrelationKind } from './correlation.js';
import {
  clientRequestFrames,
  parseClientMessage,
  parseRouterMessage,
  parseWorkerMessage,
  workerDisconnectFrames,
  workerHeartbeatFrames,
  workerReadyFrames,
  workerReplyFrames,
  workerRequestFrames,
} from './mdp.js';

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const hex = (frames: readonly Buffer[]): string[] => frames.map((frame) => frame.toString('hex'));
const id = Buffer.from([0x00, 0x6b, 0x8b, 0x45, 0x67]);
const E = Buffer.alloc(0);

describe('MDP/0.1 frames (golden, RFC 7)', () => {
  it('builds the client REQUEST exactly: empty, "MDPC01", service, body', () => {
    expect(hex(clientRequestFrames('echo', [b('hi')]))).toEqual(['', '4d4450433031', '6563686f', '6869']);
  });

  it('builds the worker commands exactly', () => {
    expect(hex(workerReadyFrames('echo'))).toEqual(['', '4d4450573031', '01', '6563686f']);
    expect(hex(workerRequestFrames(id, b('C'), [b('x')]))).toEqual([
      '006b8b4567', '', '4d4450573031', '02', '43', '', '78',
    ]);
    expect(hex(workerReplyFrames(b('C'), [b('x')]))).toEqual(['', '4d4450573031', '03', '43', '', '78']);
    expect(hex(workerHeartbeatFrames())).toEqual(['', '4d4450573031', '04']);
    expect(hex(workerDisconnectFrames())).toEqual(['', '4d4450573031', '05']);
    expect(hex(workerDisconnectFrames(id))).toEqual(['006b8b4567', '', '4d4450573031', '05']);
  });
});

describe('parseRouterMessage', () => {
  it('parses a client request with several body frames', () => {
    const result = parseRouterMessage([id, E, b('MDPC01'), b('echo'), b('a'), E, b('c')]);
    expect(result.ok).toBe(true);
    if (!result.ok || result.value.protocol !== 'client') throw new Error('expected a client message');
    expect(result.value.sender).toEqual(id);
    expect(result.value.message.service.toString()).toBe('echo');
    expect(text(result.value.message.body)).toEqual(['a', '', 'c']);
  });

  it('parses every worker command', () => {
    const parse = (...frames: Buffer[]) => parseRouterMessage([id, E, b('MDPW01'), ...frames]);
    expect(parse(Buffer.from([1]), b('echo'))).toMatchObject({ ok: true, value: { message: { command: 'ready' } } });
    expect(parse(Buffer.from([3]), b('C'), E, b('r'))).toMatchObject({
      ok: true,
      value: { message: { command: 'reply', client: b('C'), body: [b('r')] } },
    });
    expect(parse(Buffer.from([2]), b('C'), E, b('r'))).toMatchObject({ ok: true, value: { message: { command: 'request' } } });
    expect(parse(Buffer.from([4]))).toMatchObject({ ok: true, value: { message: { command: 'heartbeat' } } });
    expect(parse(Buffer.from([5]))).toMatchObject({ ok: true, value: { message: { command: 'disconnect' } } });
  });

  const cases: [string, Buffer[], string][] = [
    ['no frames', [], 'missing-delimiter'],
    ['only an identity', [id], 'too-few-frames'],
    ['garbage single frame after identity', [id, b('garbage')], 'too-few-frames'],
    ['non-empty delimiter', [id, b('x'), b('MDPC01'), b('echo'), b('hi')], 'missing-delimiter'],
    ['wrong header', [id, E, b('MDPC02'), b('echo'), b('hi')], 'unknown-protocol'],
    ['client without body', [id, E, b('MDPC01'), b('echo')], 'missing-body'],
    ['client with empty service', [id, E, b('MDPC01'), E, b('hi')], 'invalid-service-name'],
    ['client with control chars in service', [id, E, b('MDPC01'), b('a\nb'), b('hi')], 'invalid-service-name'],
    ['client with 256-byte service', [id, E, b('MDPC01'), Buffer.alloc(256, 0x61), b('hi')], 'invalid-service-name'],
    ['worker with 2-byte command', [id, E, b('MDPW01'), Buffer.from([1, 1]), b('echo')], 'invalid-command-frame'],
    ['worker with empty command', [id, E, b('MDPW01'), E], 'invalid-command-frame'],
    ['worker unknown command 0x07', [id, E, b('MDPW01'), Buffer.from([7])], 'unknown-command'],
    ['worker unknown command 0x00', [id, E, b('MDPW01'), Buffer.from([0])], 'unknown-command'],
    ['READY without service', [id, E, b('MDPW01'), Buffer.from([1])], 'too-few-frames'],
    ['READY with extra frame', [id, E, b('MDPW01'), Buffer.from([1]), b('echo'), b('x')], 'unexpected-frames'],
    ['HEARTBEAT with extra frame', [id, E, b('MDPW01'), Buffer.from([4]), b('x')], 'unexpected-frames'],
    ['REPLY without envelope', [id, E, b('MDPW01'), Buffer.from([3]), b('body')], 'missing-envelope'],
    ['REPLY with empty address', [id, E, b('MDPW01'), Buffer.from([3]), E, E, b('body')], 'missing-envelope'],
    ['REPLY with non-empty delimiter', [id, E, b('MDPW01'), Buffer.from([3]), b('C'), b('x'), b('body')], 'missing-envelope'],
    ['REPLY with two addresses', [id, E, b('MDPW01'), Buffer.from([3]), b('C'), b('D'), E, b('body')], 'missing-envelope'],
    ['REPLY without body', [id, E, b('MDPW01'), Buffer.from([3]), b('C'), E], 'missing-body'],
  ];
  it.each(cases)('rejects %s', (_name, frames, reason) => {
    expect(parseRouterMessage(frames)).toMatchObject({ ok: false, reason });
  });

  it('rejects more frames than framesMax', () => {
    const frames = [id, E, b('MDPC01'), b('echo'), ...Array.from({ length: 10 }, () => b('x'))];
    expect(parseRouterMessage(frames, { framesMax: 8 })).toMatchObject({ ok: false, reason: 'too-many-frames' });
    expect(parseRouterMessage(frames, { framesMax: 13 }).ok).toBe(true);
  });

  it('never throws and returns a reason or a value on arbitrary frames', () => {
    const frame = fc.oneof(
      fc.uint8Array({ maxLength: 12 }).map((bytes) => Buffer.from(bytes)),
      fc.constantFrom(E, b('MDPC01'), b('MDPW01'), ...[0, 1, 2, 3, 4, 5, 6].map((n) => Buffer.from([n]))),
    );
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 9 }), (frames) => {
        const result = parseRouterMessage(frames);
        expect(typeof result.ok).toBe('boolean');
        const client = parseClientMessage(frames);
        const worker = parseWorkerMessage(frames);
        expect(typeof client.ok && typeof worker.ok).toBe('boolean');
      }),
      { numRuns: 5000 },
    );
  });
});

describe('parseClientMessage / parseWorkerMessage (no routing id)', () => {
  it('parses a reply as the client receives it', () => {
    const parsed = parseClientMessage([E, b('MDPC01'), b('echo'), b('r')]);
    expect(parsed).toMatchObject({ ok: true, value: { service: b('echo'), body: [b('r')] } });
  });

  it('parses a REQUEST as the worker receives it', () => {
    const parsed = parseWorkerMessage([E, b('MDPW01'), Buffer.from([2]), b('C'), E, b('x'), b('y')]);
    expect(parsed).toMatchObject({ ok: true, value: { command: 'request', client: b('C'), body: [b('x'), b('y')] } });
  });

  it('rejects a missing delimiter', () => {
    expect(parseClientMessage([b('MDPC01'), b('echo'), b('r')])).toMatchObject({ ok: false, reason: 'missing-delimiter' });
    expect(parseWorkerMessage([b('MDPW01'), Buffer.from([4]), E])).toMatchObject({ ok: false, reason: 'missing-delimiter' });
  });
});

describe('correlation frame', () => {
  it('round-trips and is 13 bytes', () => {
    const frame = encodeCorrelation('message', 0x0102030405060708n);
    expect(frame.toString('hex')).toBe('534c4301000102030405060708');
    expect(decodeCorrelation(frame)).toEqual({ kind: 'message', id: 0x0102030405060708n });
    expect(decodeCorrelation(withCorrelationKind(frame, 'broker-rejected'))).toEqual({
      kind: 'broker-rejected',
      id: 0x0102030405060708n,
    });
  });

  it('does not mistake other frames for one', () => {
    expect(decodeCorrelation(undefined)).toBeUndefined();
    expect(decodeCorrelation(b('hello'))).toBeUndefined();
    expect(decodeCorrelation(Buffer.from('534c4302000102030405060708', 'hex'))).toBeUndefined();
    expect(decodeCorrelation(Buffer.from('534c4301090102030405060708', 'hex'))).toBeUndefined();
    expect(decodeCorrelation(Buffer.from('534c430100010203040506070809', 'hex'))).toBeUndefined();
  });
});

function text(frames: readonly Buffer[]): string[] {
  return frames.map((frame) => frame.toString('latin1'));
}
