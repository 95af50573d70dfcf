import { createMemoryStorage, openPartition, type Partition, type RecordedEvent } from '@sluice/store';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkpointStreamId,
  createMemoryCheckpointStore,
  createMemoryParkingLot,
  createStreamCheckpointStore,
  isSubscriptionError,
  startProjection,
  startSagaHost,
  startSubscription,
  type CommandMessage,
  type DecodedEvent,
  type EventSource,
} from './index.js';

const open: Partition[] = [];
async function partition(name = 'p0'): Promise<Partition> {
  const p = await openPartition({ storage: createMemoryStorage(), name });
  open.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});
const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

async function fill(p: Partition, count: number, stream = (i: number) => `account-${i % 5}`): Promise<void> {
  const appends = [];
  for (let i = 0; i < count; i++) appends.push(p.append({ streamId: stream(i), events: [{ type: i % 2 === 0 ? 'Deposited' : 'Withdrawn', data: json({ amount: i }) }] }));
  await Promise.all(appends);
}

describe('subscription: catch-up, live, filters, checkpoints', () => {
  it('reads history in batches, then live commits, filtered by stream prefix and event type', async () => {
    const p = await partition();
    await fill(p, 500);
    await p.append({ streamId: 'other-1', events: [{ type: 'Deposited', data: json({ amount: 1 }) }] });
    const seen: number[] = [];
    const batches: number[] = [];
    const sub = startSubscription({
      subscriber: 'deposits',
      source: p,
      checkpoints: createStreamCheckpointStore(p),
      filter: { streamPrefixes: ['account-'], eventTypes: ['Deposited'] },
      batchSizeMax: 64,
      handle: (events) => {
        batches.push(events.length);
        for (const e of events) seen.push(e.seq);
      },
    });
    await sub.waitFor(p.lastSeq);
    await fill(p, 100); // live
    await sub.waitFor(p.lastSeq);
    await sub.stop();
    expect(seen).toHaveLength(300);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(Math.max(...batches)).toBeLessThanOrEqual(64);
    expect(await createStreamCheckpointStore(p).load('deposits')).toBe(sub.position);
  });

  it('resumes after its checkpoint; a second instance of the same subscriber cannot advance it', async () => {
    const p = await partition();
    await fill(p, 50);
    const checkpoints = createStreamCheckpointStore(p);
    const first = startSubscription({ subscriber: 's', source: p, checkpoints, handle: () => undefined });
    await first.waitFor(50);
    await first.stop();
    const resumed: number[] = [];
    await fill(p, 10);
    const second = startSubscription({ subscriber: 's', source: p, checkpoints: createStreamCheckpointStore(p), handle: (e) => void resumed.push(...e.map((x) => x.seq)) });
    const rival = startSubscription({ subscriber: 's', source: p, checkpoints: createStreamCheckpointStore(p), handle: () => undefined });
    // One of the two loses the race on the checkpoint stream's expected version and stops with a clear error.
    const loser = await Promise.race([second.done.then(() => undefined, (e: unknown) => e), rival.done.then(() => undefined, (e: unknown) => e)]);
    expect(isSubscriptionError(loser, 'CHECKPOINT_CONFLICT')).toBe(true);
    expect(String(loser)).toMatch(/advanced by another instance: stop the other instance/);
    expect(resumed[0] === undefined || resumed[0] > 50).toBe(true);
    await second.stop();
    await rival.stop();
  }, 10_000);

  it('a corrupt checkpoint stops the subscriber with a clear error; reset repairs it', async () => {
    const p = await partition();
    await fill(p, 5);
    await p.append({ streamId: checkpointStreamId('c'), events: [{ type: '$Checkpoint', data: new TextEncoder().encode('{"seq":') }] });
    const sub = startSubscription({ subscriber: 'c', source: p, checkpoints: createStreamCheckpointStore(p), handle: () => undefined });
    await expect(sub.done).rejects.toThrow(/checkpoint of "c" is corrupt \(not JSON\): repair it with checkpoints.reset/);
    await p.append({ streamId: checkpointStreamId('c'), events: [{ type: '$Checkpoint', data: json({ seq: -3 }) }] });
    await expect(createStreamCheckpointStore(p).load('c')).rejects.toSatisfy((e) => isSubscriptionError(e, 'CORRUPT_CHECKPOINT'));
    await createStreamCheckpointStore(p).reset('c', 3);
    const seen: number[] = [];
    const repaired = startSubscription({ subscriber: 'c', source: p, checkpoints: createStreamCheckpointStore(p), handle: (e) => void seen.push(...e.map((x) => x.seq)) });
    await repaired.waitFor(5);
    await repaired.stop();
    expect(seen).toEqual([4, 5]);
  });
});

describe('subscription: batches in flight', () => {
  it('with handleConcurrencyMax > 1 later batches may finish first, but the checkpoint only passes a batch once all before it finished', async () => {
    const p = await partition();
    await fill(p, 200);
    const saved: number[] = [];
    const finished: number[] = [];
    const violations: string[] = [];
    const memory = createMemoryCheckpointStore();
    const checkpoints = {
      ...memory,
      save: async (subscriber: string, seq: number) => {
        // Every batch starting at or below the saved seq must have finished.
        for (let first = 1; first <= seq; first += 10) if (!finished.includes(first)) violations.push(`saved ${seq} before batch ${first} finished`);
        saved.push(seq);
        await memory.save(subscriber, seq);
      },
    };
    let inFlight = 0;
    let inFlightMax = 0;
    const sub = startSubscription({
      subscriber: 'c4',
      source: p,
      checkpoints,
      batchSizeMax: 10,
      handleConcurrencyMax: 4,
      handle: async (events) => {
        inFlight++;
        inFlightMax = Math.max(inFlightMax, inFlight);
        // Earlier batches take longer: they finish after later ones.
        await new Promise((resolve) => setTimeout(resolve, 20 - (events[0].seq % 40) / 2));
        finished.push(events[0].seq);
        inFlight--;
      },
    });
    await sub.waitFor(200);
    await sub.stop();
    expect(inFlightMax).toBeGreaterThan(1);
    expect(finished).not.toEqual([...finished].sort((a, b) => a - b)); // really out of order
    expect(violations).toEqual([]);
    expect(saved).toEqual([...saved].sort((a, b) => a - b));
    expect(saved.at(-1)).toBe(200);
    expect(finished.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i * 10 + 1));
  });
});

/** A source that loses, duplicates and reorders frames, as an unreliable transport (UDP fan-out) would. */
function lossy(p: Partition, drop: Set<number>, duplicate: Set<number>): EventSource {
  return {
    name: p.name,
    get lastSeq() {
      return p.lastSeq;
    },
    async *subscribe(options) {
      for await (const batch of p.subscribe(options)) {
        const out: RecordedEvent[] = [];
        for (const e of batch) {
          if (drop.has(e.seq)) continue;
          out.push(e);
          if (duplicate.has(e.seq)) out.push(e);
        }
        if (out.length > 0) yield out;
      }
    },
  };
}

describe('subscription: sequence checking', () => {
  it('an injected gap triggers a replay of the missing range from the replayer; duplicates are dropped', async () => {
    const p = await partition();
    await fill(p, 100);
    const seen: number[] = [];
    const sub = startSubscription({
      subscriber: 'g',
      source: lossy(p, new Set([10, 11, 12, 50]), new Set([20, 21])),
      replayer: p,
      checkpoints: createMemoryCheckpointStore(),
      filter: { streamPrefixes: [''] },
      handle: (events) => void seen.push(...events.map((e) => e.seq)),
    });
    await sub.waitFor(100);
    await sub.stop();
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(sub.stats).toMatchObject({ gapsRepaired: 2, replayedEvents: 4, duplicatesDropped: 2 });
  });

  it('with onGap "raise" a gap stops the subscriber with SequenceGapError naming the missing seqs', async () => {
    const p = await partition();
    await fill(p, 20);
    const sub = startSubscription({
      subscriber: 'strict',
      source: lossy(p, new Set([7]), new Set()),
      checkpoints: createMemoryCheckpointStore(),
      onGap: 'raise',
      handle: () => undefined,
    });
    await expect(sub.done).rejects.toThrow('[sluice/subscriptions] subscriber "strict": seqs 7..7 missing: onGap is "raise"');
    expect(sub.position).toBeLessThan(7);
  });
});

describe('projection host', () => {
  function balances() {
    const state = new Map<string, number>();
    return {
      state,
      projection: {
        name: 'balances',
        filter: { streamPrefixes: ['account-'] },
        apply(e: DecodedEvent) {
          const { amount } = e.data as { amount: number };
          if (typeof amount !== 'number') throw new TypeError(`amount is ${typeof amount}`);
          state.set(e.streamId, (state.get(e.streamId) ?? 0) + (e.type === 'Deposited' ? amount : -amount));
        },
      },
    };
  }

  it('events it cannot parse or apply are parked with the reason; the rest is projected; a rebuild from scratch equals the live projection', async () => {
    const p = await partition();
    const live = balances();
    const parking = createMemoryParkingLot();
    const host = startProjection({ projection: live.projection, source: p, checkpoints: createMemoryCheckpointStore(), parking });
    await fill(p, 300);
    await p.append({ streamId: 'account-bad', events: [{ type: 'Deposited', data: new TextEncoder().encode('not json') }] });
    await p.append({ streamId: 'account-bad', events: [{ type: 'Deposited', data: json({ amount: 'ten' }) }] });
    await fill(p, 300);
    await host.waitFor(p.lastSeq);
    await host.stop();
    expect(parking.parked.map((m) => [m.seq, m.stage, m.reason.split(':')[0]])).toEqual([
      [301, 'decode', 'SyntaxError'],
      [302, 'handle', 'TypeError'],
    ]);
    expect(live.state.size).toBe(5);
    const rebuilt = balances();
    const again = startProjection({ projection: rebuilt.projection, source: p, checkpoints: createMemoryCheckpointStore(), parking: createMemoryParkingLot() });
    await again.waitFor(p.lastSeq);
    await again.stop();
    expect(rebuilt.state).toEqual(live.state);
  });
});

describe('projection host: sealed batches', () => {
  /** `p` as a source, counting which read path a subscriber takes; `sealed: false` hides `subscribeSealed` (the event-object path). */
  function counted(p: Partition, sealed: boolean): { source: EventSource; calls: { subscribe: number; subscribeSealed: number } } {
    const calls = { subscribe: 0, subscribeSealed: 0 };
    const source: EventSource = {
      name: p.name,
      get lastSeq() {
        return p.lastSeq;
      },
      subscribe: (options) => {
        calls.subscribe++;
        return p.subscribe(options);
      },
      ...(sealed
        ? {
            subscribeSealed: (options: { readonly fromSeq?: number; readonly signal?: AbortSignal }) => {
              calls.subscribeSealed++;
              return p.subscribeSealed(options);
            },
          }
        : {}),
    };
    return { source, calls };
  }

  function recorder(filter?: { streamPrefixes?: string[]; eventTypes?: string[] }) {
    const seen: DecodedEvent[] = [];
    return { seen, projection: { name: 'rec', filter, apply: (e: DecodedEvent) => void seen.push(e) } };
  }

  async function project(source: EventSource, projection: ReturnType<typeof recorder>['projection'], lastSeq: number, checkpoints = createMemoryCheckpointStore()) {
    const parking = createMemoryParkingLot();
    const host = startProjection({ projection, source, checkpoints, parking, batchSizeMax: 7 });
    await host.waitFor(lastSeq);
    await host.stop();
    return { host, parking, checkpoints };
  }

  it('hands the projection exactly the events the event-object path does: fields, command ids, filter, parked failures, checkpoint', async () => {
    const p = await partition();
    await fill(p, 40);
    await p.append({ streamId: 'account-9', commandId: 'cmd-1', correlationId: 'corr', events: [{ type: 'Deposited', data: json({ amount: 1 }) }, { type: 'Deposited', data: json({ amount: 2 }) }] });
    await p.append({ streamId: '$internal', events: [{ type: 'Deposited', data: json({ amount: 3 }) }] });
    await p.append({ streamId: 'account-bad', events: [{ type: 'Deposited', data: new TextEncoder().encode('not json') }] });
    await p.append({ streamId: 'ledger-1', events: [{ type: 'Opened', data: json({ big: 'x'.repeat(200) }) }] });
    await fill(p, 40);
    for (const filter of [undefined, { streamPrefixes: ['account-'], eventTypes: ['Deposited'] }]) {
      const viaEvents = recorder(filter);
      const objects = counted(p, false);
      const a = await project(objects.source, viaEvents.projection, p.lastSeq);
      const viaSealed = recorder(filter);
      const sealed = counted(p, true);
      const b = await project(sealed.source, viaSealed.projection, p.lastSeq);
      expect(sealed.calls).toEqual({ subscribe: 0, subscribeSealed: 1 });
      expect(objects.calls).toEqual({ subscribe: 1, subscribeSealed: 0 });
      expect(viaSealed.seen).toEqual(viaEvents.seen);
      expect(viaSealed.seen.length).toBe(filter === undefined ? 83 : 43); // the second also sees the event appended by the first
      expect(viaSealed.seen.find((e) => e.streamId === 'account-9')).toMatchObject({ seq: 41, streamVersion: 1, commandIds: ['cmd-1'], data: { amount: 1 } });
      expect(b.parking.parked).toEqual(a.parking.parked);
      expect(b.parking.parked.map((m) => [m.streamId, m.stage])).toEqual([['account-bad', 'decode']]);
      // Chunk boundaries (so how many checkpoint saves) may differ; every count of events may not.
      expect({ ...b.host.stats, checkpointsSaved: 0 }).toEqual({ ...a.host.stats, checkpointsSaved: 0 });
      expect(await b.checkpoints.load('rec')).toBe(p.lastSeq);
      // Resumed from its checkpoint: only what follows it.
      await p.append({ streamId: 'account-1', events: [{ type: 'Deposited', data: json({ amount: 5 }) }] });
      const resumed = recorder(filter);
      await project(counted(p, true).source, resumed.projection, p.lastSeq, b.checkpoints);
      expect(resumed.seen.map((e) => e.seq)).toEqual([p.lastSeq]);
    }
  });

  it('fills a gap in the sealed batches from the replayer and drops duplicated batches, in seq order', async () => {
    const p = await partition();
    // One batch per append (each awaited): drop the batches holding seqs 10 and 30, repeat the one holding 20.
    for (let i = 0; i < 60; i++) await p.append({ streamId: `account-${i % 3}`, events: [{ type: 'Deposited', data: json({ amount: i }) }] });
    const source: EventSource = {
      name: p.name,
      get lastSeq() {
        return p.lastSeq;
      },
      subscribe: () => {
        throw new Error('the sealed path should be taken');
      },
      async *subscribeSealed(options) {
        for await (const batch of p.subscribeSealed(options)) {
          const holds = (seq: number) => batch.firstSeq <= seq && seq <= batch.lastSeq;
          if (holds(10) || holds(30)) continue;
          yield batch;
          if (holds(20)) yield batch;
        }
      },
    };
    const seen = recorder();
    const { host } = await (async () => {
      const host = startProjection({ projection: seen.projection, source, replayer: p, checkpoints: createMemoryCheckpointStore(), parking: createMemoryParkingLot(), batchSizeMax: 7 });
      await host.waitFor(p.lastSeq);
      await host.stop();
      return { host };
    })();
    expect(seen.seen.map((e) => e.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(host.stats).toMatchObject({ gapsRepaired: 2, replayedEvents: 2, duplicatesDropped: 1 });
  });
});

describe('saga host', () => {
  it('turns events into commands with deterministic ids; a down target is retried, then parked with the reason, and the rest goes on', async () => {
    const p = await partition('src');
    await fill(p, 20);
    const delivered = new Map<string, CommandMessage>();
    const parking = createMemoryParkingLot();
    const host = startSagaHost({
      saga: {
        name: 'mirror',
        filter: { eventTypes: ['Deposited'] },
        handle: (e) => [{ recipient: `mirror-${e.streamId}`, command: { type: 'Mirror', amount: (e.data as { amount: number }).amount } }],
      },
      source: p,
      checkpoints: createMemoryCheckpointStore(),
      parking,
      retryDelayMs: 1,
      sendAttemptsMax: 3,
      sender: {
        async send(message) {
          if (message.commands[0].recipient === 'mirror-account-3') throw new Error('partition "p3" is not available');
          delivered.set(message.id, message);
        },
      },
    });
    await host.waitFor(p.lastSeq);
    await host.stop();
    expect(delivered.size).toBe(8);
    expect([...delivered.keys()]).toContain('src:1:mirror');
    expect(parking.parked).toHaveLength(2);
    expect(parking.parked[0]).toMatchObject({ stage: 'send', seq: 9, subscriber: 'mirror' });
    expect(parking.parked[0].reason).toMatch(/3 attempts to deliver src:9:mirror failed: Error: partition "p3" is not available/);
  });
});
