import { FAST, startBroker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

const data = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('a partition served with the credit extension (issue 10, item 5)', () => {
  it('one worker connection with credit 16 has several appends handled at once (never more than 16), each committed once, gapless', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    const node = await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 1, credit: 16 });
    // Not coalesced: each append is its own request, so only the credit lets them overlap.
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000, coalesceAppends: false });
    await client.head('p1');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.append({ streamId: `s-${i % 7}`, events: [{ type: 'E', data: data(String(i)) }] })),
    );
    expect(results.map((r) => r.firstSeq).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // The handler's own high-water mark: sampling inFlight from a timer sees nothing when the
    // appends complete without leaving the event loop (fsync none, small writes written in place).
    const most = node.stats().partitions.p1?.inFlightMost ?? 0;
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(16);
    expect(broker.stats().workers).toBe(1 + 4); // the partition's one credit connection + 4 subscribe connections
  });

  it('by default, requests and replies on a credit connection travel several to a message (batch extension)', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 1, credit: 16 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000, coalesceAppends: false });
    await client.head('p1');
    const before = broker.stats();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.append({ streamId: `s-${i % 7}`, events: [{ type: 'E', data: data(String(i)) }] })),
    );
    const after = broker.stats();
    expect(results.map((r) => r.firstSeq).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const replies = after.repliesRouted - before.repliesRouted;
    expect(replies).toBe(200);
    // Each append is one client message; what the worker sent (replies, heartbeats) took the rest.
    const fromWorker = after.messagesReceived - before.messagesReceived - 200;
    expect(fromWorker).toBeLessThan(replies / 2);
  });
});
