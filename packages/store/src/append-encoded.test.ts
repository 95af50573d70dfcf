import { checkFramedEvents, decodeBatches, framedEventsBytesBound, writeFramedEvents, type CommitHeaders, type FramedEventInput } from '@sluice/framing';
import { describe, expect, it } from 'vitest';
import {
  CorruptFrameError,
  InvalidRequestError,
  MemoryLog,
  WrongExpectedVersionError,
  createMemoryStorage,
  openPartition,
  type RecordedEvent,
} from './index.js';

const enc = new TextEncoder();

function framed(streamId: string, events: readonly FramedEventInput[], headers?: CommitHeaders): Buffer {
  const target = Buffer.alloc(framedEventsBytesBound(streamId, events, headers));
  return target.subarray(0, writeFramedEvents(target, 0, streamId, events, headers, 4 * 1024 * 1024));
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const opened = { type: 'Opened', data: enc.encode('{"owner":"Ada"}'), metadata: enc.encode('m') };
const deposited = { type: 'Deposited', data: enc.encode('{"amount":10}') };

describe('Partition.appendEncoded (framed events, one encoding from client to disk)', () => {
  it('on a partition recording its level, copies framed events with the level inserted: the same bytes as append writes', async () => {
    const clock = (): number => 1_700_000_000_000;
    const plainLog = new MemoryLog();
    const plain = await openPartition({ storage: createMemoryStorage({ log: plainLog }), name: 'lvl', level: 'critical', clock });
    const framedLog = new MemoryLog();
    const copied = await openPartition({ storage: createMemoryStorage({ log: framedLog }), name: 'lvl', level: 'critical', clock });
    // With commit headers (a command id, a correlation id) and without any.
    await plain.commit({ changes: [{ streamId: 'acct-1', events: [opened, deposited] }], commandIds: ['cmd-1'], correlationId: 'corr' });
    await copied.appendEncoded({ frames: framed('acct-1', [opened, deposited], { commandIds: ['cmd-1'], correlationId: 'corr' }) });
    await plain.append({ streamId: 'acct-2', events: [deposited, opened, deposited] });
    await copied.appendEncoded({ frames: framed('acct-2', [deposited, opened, deposited]) });
    await plain.close();
    await copied.close();
    const bytes = (log: MemoryLog): Buffer => Buffer.concat(log.batches.map((b) => b.bytes));
    expect(bytes(framedLog).equals(bytes(plainLog))).toBe(true);
    const { batches, report } = decodeBatches(bytes(framedLog));
    expect(report.reason).toBe('end');
    expect(batches.map((b) => b.frames[0].headers?.level)).toEqual(['critical', 'critical']);
  });

  it('on a partition recording its level, commits framed events in format version 3 with the level, readable after reopen', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), name: 'enc', level: 'critical' });
    const r = await p.appendEncoded({ frames: framed('acct-1', [opened, deposited], { commandIds: ['cmd-9'] }), expectedVersion: 'no-stream' });
    expect(r).toMatchObject({ firstSeq: 1, lastSeq: 2, duplicate: false });
    await p.close();
    const { batches, report } = decodeBatches(Buffer.concat(log.batches.map((b) => b.bytes)));
    expect(report.reason).toBe('end');
    expect(batches[0].frames[0].headers).toEqual({ commandIds: ['cmd-9'], correlationId: undefined, causationId: undefined, level: 'critical' });
    expect(batches[0].frames.map((f) => [f.eventType, Buffer.from(f.payload).toString(), Buffer.from(f.metadata).toString()])).toEqual([
      ['Opened', '{"owner":"Ada"}', 'm'],
      ['Deposited', '{"amount":10}', ''],
    ]);
    const again = await openPartition({ storage: createMemoryStorage({ log }), name: 'enc', level: 'critical' });
    expect(await again.appendEncoded({ frames: framed('acct-1', [opened, deposited], { commandIds: ['cmd-9'] }), expectedVersion: 'no-stream' })).toMatchObject({ firstSeq: 1, duplicate: true });
    await again.close();
  });

  it('commits framed events beside plain appends: gapless seqs, stamped versions, CRC-valid on disk after reopen', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), name: 'enc' });
    const [a, b, c] = await Promise.all([
      p.append({ streamId: 'acct-1', events: [opened] }),
      p.appendEncoded({ frames: framed('acct-1', [deposited, deposited], { commandIds: ['cmd-1'], correlationId: 'corr-1' }), expectedVersion: 1 }),
      p.appendEncoded({ frames: framed('acct-2', [opened]), expectedVersion: 'no-stream' }),
    ]);
    expect(a).toMatchObject({ firstSeq: 1, lastSeq: 1 });
    expect(b).toMatchObject({ firstSeq: 2, lastSeq: 3, streams: [{ streamId: 'acct-1', firstVersion: 2, version: 3 }], duplicate: false });
    expect(c).toMatchObject({ firstSeq: 4, lastSeq: 4, streams: [{ streamId: 'acct-2', firstVersion: 1, version: 1 }] });
    const events = await all(p.readStream('acct-1'));
    expect(events.map((e: RecordedEvent) => [e.seq, e.streamVersion, e.eventType, e.commitFirst, e.commitLast])).toEqual([
      [1, 1, 'Opened', true, true],
      [2, 2, 'Deposited', true, false],
      [3, 3, 'Deposited', false, true],
    ]);
    expect(events[1].headers).toEqual({ commandIds: ['cmd-1'], correlationId: 'corr-1', causationId: undefined });
    expect(Buffer.from(events[1].payload).toString()).toBe('{"amount":10}');
    await p.close();
    // Every frame's CRC and every batch digest verify when the log is decoded from its bytes.
    const { report } = decodeBatches(Buffer.concat(log.batches.map((b) => b.bytes)));
    expect(report.reason).toBe('end');
    const again = await openPartition({ storage: createMemoryStorage({ log }), name: 'enc' });
    expect(again.lastSeq).toBe(4);
    expect(again.streamVersion('acct-1')).toBe(3);
    // The command id was indexed: resending the same framed append is a duplicate.
    const dup = await again.appendEncoded({ frames: framed('acct-1', [deposited, deposited], { commandIds: ['cmd-1'] }), expectedVersion: 1 });
    expect(dup).toMatchObject({ firstSeq: 2, lastSeq: 3, duplicate: true });
    await again.close();
  });

  it('checks the expected version and command ids like append', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'enc' });
    await p.appendEncoded({ frames: framed('s', [opened], { commandIds: ['c1'] }) });
    await expect(p.appendEncoded({ frames: framed('s', [deposited]), expectedVersion: 5 })).rejects.toBeInstanceOf(WrongExpectedVersionError);
    await expect(p.appendEncoded({ frames: framed('s', [deposited]), expectedVersion: 'no-stream' })).rejects.toBeInstanceOf(WrongExpectedVersionError);
    // The same command id through the plain path is the same command.
    expect(await p.append({ streamId: 's', commandId: 'c1', events: [deposited] })).toMatchObject({ firstSeq: 1, duplicate: true });
    await expect(p.appendEncoded({ frames: framed('s', [deposited]), expectedVersion: -1 as never })).rejects.toBeInstanceOf(InvalidRequestError);
    expect(p.lastSeq).toBe(1);
    await p.close();
  });

  it('refuses a framed event whose body CRC does not match with CorruptFrameError, and stores nothing of the append', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), name: 'enc' });
    const bytes = Buffer.from(framed('s', [opened, deposited]));
    bytes[bytes.readUInt32LE(0) + 60] ^= 0x40; // a bit of the second event's body
    const error = await p.appendEncoded({ frames: bytes }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptFrameError);
    expect(error).toMatchObject({ code: 'SLUICE_CORRUPT_FRAME', event: 1 });
    expect((error as Error).message).toMatch(/CRC-32C .*nothing was stored/);
    expect(p.lastSeq).toBe(0);
    await p.append({ streamId: 's', events: [opened] });
    expect(p.lastSeq).toBe(1);
    await p.close();
    expect(decodeBatches(Buffer.concat(log.batches.map((b) => b.bytes))).batches.flatMap((b) => b.frames).length).toBe(1);
  });

  it('holds framed appends to unitEventsMax, unitBytesMax and frameBytesMax', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'enc', unitEventsMax: 2, unitBytesMax: 40, frameBytesMax: 200 });
    await expect(p.appendEncoded({ frames: framed('s', [deposited, deposited, deposited]) })).rejects.toThrow(/more than 2 events.*unitEventsMax 2/);
    await expect(p.appendEncoded({ frames: framed('s', [{ type: 'T', data: new Uint8Array(41) }]) })).rejects.toThrow(/exceeds unitBytesMax \(40\)/);
    const big = framed('s', [{ type: 'T', data: new Uint8Array(150) }]);
    expect(checkFramedEvents(big, 1 << 20).ok).toBe(true);
    const p2 = await openPartition({ storage: createMemoryStorage(), name: 'enc2', frameBytesMax: 200 });
    await expect(p2.appendEncoded({ frames: big })).rejects.toThrow(/exceed frameBytesMax 200/);
    await expect(p.appendEncoded({ frames: 'nope' as never })).rejects.toThrow(/Uint8Array of framed events/);
    expect(p.lastSeq).toBe(0);
    await p.close();
    await p2.close();
  });
});
