import { createMemoryStorage, openPartition, type RecordedEvent } from '@sluice/store';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { createMemoryCheckpointStore, createMemoryParkingLot, decodeJson, startProjection, type DecodedEvent } from './index.js';
import { JsonRunDecoder } from './json-run.js';

const utf8 = new TextEncoder();
const withPayload = (payload: Uint8Array): RecordedEvent => ({ payload }) as RecordedEvent;

/** What decoding each event alone gives: the value, or that it throws. */
function alone(payload: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: decodeJson(payload, withPayload(payload)) };
  } catch {
    return { ok: false };
  }
}

/** Every event's value as the run decoder hands it out (`alone` where it hands the event back). */
function byRuns(decoder: JsonRunDecoder, payloads: readonly Uint8Array[]): Array<{ ok: true; value: unknown } | { ok: false }> {
  const events = payloads.map(withPayload);
  const out: Array<{ ok: true; value: unknown } | { ok: false }> = [];
  for (let i = 0; i < events.length; ) {
    const { values, count } = decoder.parseRun(events, i);
    expect(count).toBeGreaterThan(0);
    for (let k = 0; k < count; k++) out.push(values === undefined ? alone(payloads[i + k]) : { ok: true, value: values[k] });
    i += count;
  }
  return out;
}

/** As {@link byRuns} with `parseRanges`: the payloads laid out in one buffer, each between bytes that are not its own. */
function byRanges(decoder: JsonRunDecoder, payloads: readonly Uint8Array[]): Array<{ ok: true; value: unknown } | { ok: false }> {
  const bytes = new Uint8Array(payloads.reduce((n, p) => n + p.length + 3, 3)).fill(0x5d); // "]" between payloads: a copy past a range would show
  const at: number[] = [];
  const length: number[] = [];
  let o = 3;
  for (const p of payloads) {
    bytes.set(p, o);
    at.push(o);
    length.push(p.length);
    o += p.length + 3;
  }
  const out: Array<{ ok: true; value: unknown } | { ok: false }> = [];
  for (let i = 0; i < payloads.length; ) {
    const { values, count } = decoder.parseRanges(bytes, at, length, i, payloads.length);
    expect(count).toBeGreaterThan(0);
    for (let k = 0; k < count; k++) out.push(values === undefined ? alone(payloads[i + k]) : { ok: true, value: values[k] });
    i += count;
  }
  return out;
}

// Pieces that are not JSON alone but could make a valid array together if the scan let them in.
const fragments = ['[1', '2]', '3,4', '2],3', ']1[', '],[', '{"a":1', '}', '"x', 'y"', ',', '1 2', '', ' ', ']', '[', '\\', '"\\"', '"a,b"', '{"k":"]"}', '\uFEFF1', 'nul', 'true,'];
const payload = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.constantFrom(...fragments),
  fc.string({ maxLength: 12 }),
);

describe('JsonRunDecoder', () => {
  it('gives every event exactly what decoding it alone gives (value, or handed back to fail alone), whatever its neighbours', () => {
    const decoder = new JsonRunDecoder(512, 64);
    fc.assert(
      fc.property(fc.array(payload, { maxLength: 40 }), (texts) => {
        const payloads = texts.map((t) => utf8.encode(t));
        const got = byRuns(decoder, payloads);
        expect(got).toEqual(payloads.map(alone));
        expect(byRanges(decoder, payloads)).toEqual(got);
      }),
      { numRuns: 2000, seed: 20261206 },
    );
  });

  it('does not let payloads that balance only together into a run: "[1", "2]", "3,4" are each handed back, not parsed as [[1,2],3,4]', () => {
    const decoder = new JsonRunDecoder();
    const events = ['[1', '2]', '3,4'].map((t) => withPayload(utf8.encode(t)));
    for (let i = 0; i < events.length; i++) expect(decoder.parseRun(events, i)).toEqual({ values: undefined, count: 1 });
    // "[1" then "2],3" would parse as [[1,2],3]: two values for two payloads, neither of them theirs.
    const unbalanced = ['[1', '2],3'].map((t) => withPayload(utf8.encode(t)));
    expect(decoder.parseRun(unbalanced, 0)).toEqual({ values: undefined, count: 1 });
    // One that balances but closes the run's own array first fails the run as a whole.
    const dips = ['1', ']1[', '2'].map((t) => withPayload(utf8.encode(t)));
    expect(decoder.parseRun(dips, 0)).toEqual({ values: undefined, count: 3 });
  });

  it('parses a run of small payloads in one go and stops at a payload over payloadBytesMax or at runBytesMax', () => {
    const decoder = new JsonRunDecoder(64, 20);
    const events = ['{"a":1}', '[2,3]', '"s,t"', '4', `"${'x'.repeat(24)}"`, '5'].map((t) => withPayload(utf8.encode(t)));
    expect(decoder.parseRun(events, 0)).toEqual({ values: [{ a: 1 }, [2, 3], 's,t', 4], count: 4 });
    expect(decoder.parseRun(events, 4)).toEqual({ values: undefined, count: 1 });
    expect(decoder.parseRun(events, 5)).toEqual({ values: [5], count: 1 });
    // Escaped quotes and brackets inside strings stay inside them: "a\"],[b" is one string.
    const escapes = ['{"k":"a\\"],[b"}', '"\\\\"', '"\\"",1,"'].map((t) => withPayload(utf8.encode(t)));
    expect(decoder.parseRun(escapes, 0)).toEqual({ values: [{ k: 'a"],[b' }, '\\'], count: 2 });
    expect(decoder.parseRun(escapes, 2)).toEqual({ values: undefined, count: 1 });
    const many = Array.from({ length: 40 }, (_, i) => withPayload(utf8.encode(String(i % 10))));
    const first = decoder.parseRun(many, 0);
    expect(first.count).toBe(31); // "[" + 31 digits and 30 commas + "]" = 63 bytes of 64
    expect(first.values).toEqual(Array.from({ length: 31 }, (_, i) => i % 10));
  });
});

describe('projection host, default JSON decoder', () => {
  it('parks each payload that is not JSON alone, even where neighbours would complete it, and applies the others in order', async () => {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'p' });
    try {
      const texts = ['{"amount":1}', '[1', '2]', '3,4', '{"amount":2}', 'not json', '{"amount":3}', '\uFEFF{"amount":4}'];
      for (const t of texts) await p.append({ streamId: 'account-1', events: [{ type: 'Deposited', data: utf8.encode(t) }] });
      const applied: Array<[number, unknown]> = [];
      const parking = createMemoryParkingLot();
      const host = startProjection({
        source: p,
        checkpoints: createMemoryCheckpointStore(),
        parking,
        projection: { name: 'sum', apply: (e: DecodedEvent) => void applied.push([e.seq, e.data]) },
      });
      await host.waitFor(p.lastSeq);
      await host.stop();
      expect(applied).toEqual([
        [1, { amount: 1 }],
        [5, { amount: 2 }],
        [7, { amount: 3 }],
        [8, { amount: 4 }], // a byte-order mark is dropped by the UTF-8 decoder, as before
      ]);
      expect(parking.parked.map((m) => [m.seq, m.stage, m.reason.split(':')[0]])).toEqual([
        [2, 'decode', 'SyntaxError'],
        [3, 'decode', 'SyntaxError'],
        [4, 'decode', 'SyntaxError'],
        [6, 'decode', 'SyntaxError'],
      ]);
    } finally {
      await p.close();
    }
  });
});

describe('projection host, jsonRunBytesMax', () => {
  async function project(options: { jsonRunBytesMax?: number }): Promise<{ parses: number; applied: number[] }> {
    const p = await openPartition({ storage: createMemoryStorage(), name: 'p' });
    const parse = vi.spyOn(JSON, 'parse');
    try {
      await p.append({ streamId: 'account-1', events: Array.from({ length: 100 }, (_, i) => ({ type: 'Deposited', data: utf8.encode(`{"amount":${i}}`) })) });
      const applied: number[] = [];
      const host = startProjection({
        source: p,
        checkpoints: createMemoryCheckpointStore(),
        parking: createMemoryParkingLot(),
        projection: { name: 'sum', apply: (e: DecodedEvent) => void applied.push((e.data as { amount: number }).amount) },
        ...options,
      });
      await host.waitFor(p.lastSeq);
      await host.stop();
      return { parses: parse.mock.calls.length, applied };
    } finally {
      parse.mockRestore();
      await p.close();
    }
  }

  it('parses 100 small payloads with one call by default, one call each with 0; same events either way; refuses a negative size', async () => {
    const runs = await project({});
    const alone = await project({ jsonRunBytesMax: 0 });
    expect(runs.applied).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(alone.applied).toEqual(runs.applied);
    expect(runs.parses).toBe(1);
    expect(alone.parses).toBe(100);
    expect(() => startProjection({ source: {} as never, checkpoints: createMemoryCheckpointStore(), parking: createMemoryParkingLot(), projection: { name: 'x', apply: () => undefined }, jsonRunBytesMax: -1 })).toThrow(/jsonRunBytesMax must be/);
  });
});
