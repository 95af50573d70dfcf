import type { RecordedEvent } from '@sluice/store';
import { FAST, startBroker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

const data = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (event: RecordedEvent): string => new TextDecoder().decode(event.payload);

/** Pulls batches from a subscription until `count` events arrived. */
async function take(iterator: AsyncIterator<RecordedEvent[]>, count: number): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  while (out.length < count) {
    const next = await iterator.next();
    if (next.done === true) break;
    out.push(...next.value);
  }
  return out;
}

describe('push subscriptions (issue 10, item 6)', () => {
  it('catches up from a seq, then receives new commits as they are committed, without polling', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1' });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 20_000 });
    for (const n of [1, 2, 3]) await client.append({ streamId: 's', events: [{ type: 'E', data: data(String(n)) }] });

    const stop = new AbortController();
    // waitMs far above what a push takes: an event that arrives sooner was pushed, not polled.
    const waitMs = 15_000;
    const subscription = client.subscribe('p1', { fromSeq: 2, waitMs, signal: stop.signal })[Symbol.asyncIterator]();
    expect((await take(subscription, 2)).map((e) => [e.seq, text(e)])).toEqual([[2, '2'], [3, '3']]);

    const waiting = take(subscription, 1); // the node holds this request until the next commit
    const started = Date.now();
    await client.append({ streamId: 's', events: [{ type: 'E', data: data('4') }] });
    const [pushed] = await waiting;
    expect([pushed.seq, text(pushed)]).toEqual([4, '4']);
    expect(Date.now() - started).toBeLessThan(waitMs);
    stop.abort();
    expect(await subscription.next()).toMatchObject({ done: true });
  });

  it('keeps appends flowing while more subscribers wait than the subscription service has connections', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1', subscribeConcurrency: 2 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 20_000 });
    const stop = new AbortController();
    const subscribers = Array.from({ length: 6 }, () => take(client.subscribe('p1', { waitMs: 15_000, signal: stop.signal })[Symbol.asyncIterator](), 3));
    // Appends use the partition's own service: none waits behind a subscriber.
    for (const n of [1, 2, 3]) await client.append({ streamId: 's', events: [{ type: 'E', data: data(String(n)) }] });
    const received = await Promise.all(subscribers);
    stop.abort();
    for (const events of received) expect(events.map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('a subscriber that disappears mid-stream costs the node nothing lasting: it keeps serving others', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1', subscribeConcurrency: 1, subscribeWaitMsMax: 300 });
    const gone = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 20_000 });
    const iterator = gone.subscribe('p1', { waitMs: 10_000 })[Symbol.asyncIterator]();
    const pending = iterator.next().catch((error: unknown) => error);
    await gone.close(); // vanishes with its request held by the node
    await pending;
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 20_000 });
    await client.append({ streamId: 's', events: [{ type: 'E', data: data('x') }] });
    const stop = new AbortController();
    const events = await take(client.subscribe('p1', { waitMs: 5_000, signal: stop.signal })[Symbol.asyncIterator](), 1);
    stop.abort();
    expect(events.map((e) => e.seq)).toEqual([1]);
  });
});
