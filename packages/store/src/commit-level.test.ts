import { describe, expect, it } from 'vitest';
import {
  InvalidRequestError,
  LEVEL_NAME_BYTES_MAX,
  MemoryLog,
  createMemoryStorage,
  createMirroredStorage,
  openPartition,
  type Partition,
  type RecordedEvent,
} from './index.js';

const te = new TextEncoder();

async function all(p: Partition): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for await (const e of p.read()) out.push(e);
  return out;
}

/** The level recorded by each commit, read from the log (first event of each commit). */
async function levels(p: Partition): Promise<(string | undefined)[]> {
  return (await all(p)).filter((e) => e.commitFirst).map((e) => e.headers?.level);
}

const one = (streamId: string, commandId?: string) => ({ streamId, commandId, events: [{ type: 'E', data: te.encode(streamId) }] });

describe('each commit records the reliability level it was written under', () => {
  it('stamps the level on the first event of every commit, with or without command ids, in format version 3 frames', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }), level: 'standard' });
    expect(p.level).toBe('standard');
    await p.append(one('a'));
    await p.append({ streamId: 'b', commandId: 'cmd-b', correlationId: 'k', events: [{ type: 'E', data: te.encode('1') }, { type: 'E', data: te.encode('2') }] });
    const events = await all(p);
    expect(events.map((e) => e.headers)).toEqual([
      { commandIds: [], level: 'standard' },
      { commandIds: ['cmd-b'], correlationId: 'k', causationId: undefined, level: 'standard' },
      undefined,
    ]);
    for (const batch of log.batches) for (const at of [0, batch.bytes.length - 88]) expect(batch.bytes[at + 4]).toBe(3);
    // Stream reads (frame reads by position) decode the same headers.
    const stream: RecordedEvent[] = [];
    for await (const e of p.readStream('b')) stream.push(e);
    expect(stream[0].headers?.level).toBe('standard');
    await p.close();
  });

  it('survives reopen, and a partition whose level changes between runs keeps each commit\'s own', async () => {
    const log = new MemoryLog();
    let p = await openPartition({ storage: createMemoryStorage({ log }), level: 'commodity' });
    await p.append(one('a', 'c1'));
    await p.append(one('a'));
    await p.close();
    p = await openPartition({ storage: createMemoryStorage({ log }), level: 'critical' });
    expect(await levels(p)).toEqual(['commodity', 'commodity']);
    await p.append(one('a', 'c2'));
    await p.close();
    p = await openPartition({ storage: createMemoryStorage({ log }) });
    await p.append(one('a', 'c3'));
    expect(await levels(p)).toEqual(['commodity', 'commodity', 'critical', undefined]);
    // The third run recorded no level: its batch is format version 2, as before levels existed.
    expect(log.batches.map((b) => b.bytes[4])).toEqual([3, 3, 3, 2]);
    // A retried command gets its original result, and nothing new is written.
    expect((await p.append(one('a', 'c2'))).duplicate).toBe(true);
    expect(await levels(p)).toHaveLength(4);
    await p.close();
  });

  it('defaults to the level the storage reports (a mirror created with one); the option wins over it', async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    const mirror = () => createMirroredStorage({ level: 'critical', locations: logs.map((log, i) => ({ storage: createMemoryStorage({ log }), label: `disk${i + 1}` })) });
    let p = await openPartition({ storage: mirror() });
    const result = await p.append(one('a'));
    expect(result.reliability?.level).toBe('critical');
    await p.close();
    p = await openPartition({ storage: mirror(), level: 'override' });
    await p.append(one('a'));
    expect(await levels(p)).toEqual(['critical', 'override']);
    await p.close();
  });

  it('records nothing and writes format version 2 without a level', async () => {
    const log = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log }) });
    expect(p.level).toBeUndefined();
    await p.append(one('a', 'c1'));
    await p.append(one('a'));
    expect((await all(p)).map((e) => e.headers)).toEqual([{ commandIds: ['c1'], correlationId: undefined, causationId: undefined }, undefined]);
    expect(log.batches.every((b) => b.bytes[4] === 2)).toBe(true);
    await p.close();
  });

  it('refuses an empty or too long level name before opening, saying what a level is', async () => {
    for (const level of ['', 'x'.repeat(LEVEL_NAME_BYTES_MAX + 1)]) {
      const error = await openPartition({ storage: createMemoryStorage(), level }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidRequestError);
      expect((error as Error).message).toMatch(/level must be a reliability level name of 1 to 255 UTF-8 bytes/);
    }
  });
});
