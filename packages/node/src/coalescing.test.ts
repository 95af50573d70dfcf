import { isWrongExpectedVersionError, type CommitResult } from '@sluice/store';
import { FAST, startBroker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { collect, commitsOf, startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

const data = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('the client coalesces concurrent appends (issue 10, item 5)', () => {
  it('sends 1000 concurrent appends in a few append-many requests; each keeps its own result, expected version and command id', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 2 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000 });

    await client.append({ streamId: 'fixed', events: [{ type: 'E', data: data('0') }] });
    const appends = Array.from({ length: 1000 }, (_, i) =>
      i === 500
        ? // This unit's expected version is wrong: it alone fails.
          client.append({ streamId: 'fixed', expectedVersion: 7, events: [{ type: 'E', data: data('wrong') }] })
        : client.append({ streamId: `s-${i % 50}`, commandId: `cmd-${i}`, events: [{ type: 'E', data: data(String(i)) }] }),
    );
    const settled = await Promise.allSettled(appends);
    const failed = settled.flatMap((outcome, index) => (outcome.status === 'rejected' ? [{ index, error: outcome.reason as unknown }] : []));
    expect(failed.map((f) => f.index)).toEqual([500]);
    expect(isWrongExpectedVersionError(failed[0].error)).toBe(true);

    const results = settled.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
    const seqs = results.map((result) => result.firstSeq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 999 }, (_, i) => i + 2)); // gapless, one seq each
    const stats = client.stats();
    expect(stats.coalescedUnits).toBeGreaterThanOrEqual(900);
    expect(stats.coalescedRequests).toBeLessThan(50);

    // A retried command id in a coalesced request gets the original result.
    const again = await Promise.all([3, 4].map((i) => client.append({ streamId: `s-${i % 50}`, commandId: `cmd-${i}`, events: [{ type: 'E', data: data(String(i)) }] })));
    const original = (i: number): CommitResult => (settled[i] as PromiseFulfilledResult<CommitResult>).value;
    expect(again).toEqual([{ ...original(3), duplicate: true }, { ...original(4), duplicate: true }]);

    // Expected versions of units in one request chain within it (applied in order).
    const chained = await Promise.all([1, 2, 3].map((n) => client.append({ streamId: 'chain', expectedVersion: n - 1, events: [{ type: 'E', data: data(String(n)) }] })));
    expect(chained.map((r) => r.streams[0].version)).toEqual([1, 2, 3]);

    const { commits, problems } = commitsOf(await collect(client.read('p1')));
    expect(problems).toEqual([]);
    expect(commits.size).toBe(1 + 999 + 3); // 'fixed', the coalesced ones, the chain
  });

  it('spreads a burst over the free request slots: 1000 appends go as 4 requests of 250 in flight at once, not 1 of 1000', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 4 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000, appendBatchesInFlightMax: 4 });
    await client.head('p1');

    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => client.append({ streamId: `s-${i}`, events: [{ type: 'E', data: data(String(i)) }] })));
    expect(results.map((r) => r.firstSeq).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(client.stats()).toMatchObject({ coalescedRequests: 4, coalescedUnits: 1000 });

    // A small burst (under 64 units a slot) still goes as one request.
    await Promise.all(Array.from({ length: 40 }, (_, i) => client.append({ streamId: `s-${i}`, events: [{ type: 'E', data: data('again') }] })));
    expect(client.stats()).toMatchObject({ coalescedRequests: 5, coalescedUnits: 1040 });
  });
});
