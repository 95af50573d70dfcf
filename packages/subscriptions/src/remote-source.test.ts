import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStoreClient, type StoreClient } from '@sluice/client';
import { loadSluiceConfig } from '@sluice/config';
import { FAST, startBroker, waitForEvents } from '@sluice/majordomo/testing';
import type { MajordomoBroker } from '@sluice/majordomo';
import { locationFactory, startNode, type StoreNode } from '@sluice/node';
import type { RecordedEvent } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryCheckpointStore } from './checkpoint-store.js';
import type { EventSource } from './event-source.js';
import { createRemoteEventSource } from './remote-source.js';
import { startSubscription } from './subscription.js';

/**
 * A subscription over a partition served by a node, through a real broker on 127.0.0.1:
 * catch-up and live by push subscription, gaps repaired by reads through the broker.
 * Invariant: the subscriber sees every seq exactly once, in order, whatever the live feed lost.
 */

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

interface Served {
  readonly broker: MajordomoBroker;
  readonly node: StoreNode;
  readonly client: StoreClient;
}

async function serve(partition: string): Promise<Served> {
  const folder = await mkdtemp(join(tmpdir(), 'sluice-remote-source-'));
  cleanup.push(() => rm(folder, { recursive: true, force: true }));
  const broker = await startBroker(FAST);
  cleanup.push(() => broker.close());
  const path = join(folder, 'sluice.json');
  await writeFile(
    path,
    JSON.stringify({
      brokers: [broker.endpoint],
      levels: { durable: { locations: [{ file: join(folder, '{partition}') }], fsync: 'none' } },
      partitions: { [partition]: 'durable' },
      routing: { hash: [partition] },
    }),
  );
  const config = await loadSluiceConfig(path);
  const concurrency = 2;
  const ready = waitForEvents(broker, 'worker-ready', concurrency, (event) => event.service === config.partitions[partition].service, 20_000);
  const node = await startNode({ config, concurrency, heartbeatIntervalMs: FAST.heartbeatIntervalMs, heartbeatLiveness: FAST.heartbeatLiveness, locations: { file: locationFactory('file', createFileStorage) } });
  cleanup.push(() => node.close());
  await ready;
  const client = createStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000, retryDelayMs: 20 });
  cleanup.push(() => client.close());
  return { broker, node, client };
}

async function appendMany(client: StoreClient, commits: number, eventsPerCommit: number): Promise<void> {
  for (let c = 0; c < commits; c++) {
    const events = Array.from({ length: eventsPerCommit }, (_, i) => ({ type: 'Tick', data: new TextEncoder().encode(`${c}.${i}`) }));
    await client.append({ streamId: `s-${c % 7}`, events });
  }
}

/** The live feed of `source` with the given seqs dropped on the way (lost datagrams, a buggy relay). */
function dropping(source: EventSource, dropped: ReadonlySet<number>): EventSource {
  return {
    name: source.name,
    get lastSeq() {
      return source.lastSeq;
    },
    async *subscribe(options) {
      for await (const batch of source.subscribe(options)) {
        const kept = batch.filter((event) => !dropped.has(event.seq));
        if (kept.length > 0) yield kept;
      }
    },
  };
}

describe('remote event source over the client SDK (issue 12)', () => {
  it('catches up, follows live commits, and repairs injected gaps by reading through the broker', async () => {
    const { client } = await serve('p1');
    await appendMany(client, 40, 5); // seqs 1..200 before the subscriber starts: catch-up
    const remote = createRemoteEventSource({ client, partition: 'p1' });
    const dropped = new Set([3, 4, 5, 120, 181, 182, 183, 184, 260, 261]); // 260, 261: live, after it caught up
    const seen: number[] = [];
    const sub = startSubscription({
      subscriber: 'remote-audit',
      source: dropping(remote, dropped),
      replayer: remote,
      checkpoints: createMemoryCheckpointStore(),
      batchSizeMax: 64,
      handle: (events: RecordedEvent[]) => {
        for (const event of events) seen.push(event.seq);
      },
    });
    await sub.waitFor(200);
    await appendMany(client, 20, 5); // 201..300 live, pushed as they commit
    await sub.waitFor(300);
    await sub.stop();
    expect(seen).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(sub.stats.gapsRepaired).toBe(4); // 3..5, 120, 181..184, 260..261
    expect(sub.stats.replayedEvents).toBe(dropped.size);
    expect(remote.lastSeq).toBe(300);
  });

  it('resumes from a checkpoint: only what follows it is read', async () => {
    const { client } = await serve('p2');
    await appendMany(client, 10, 10);
    const checkpoints = createMemoryCheckpointStore();
    await checkpoints.save('resumer', 37);
    const seen: number[] = [];
    const remote = createRemoteEventSource({ client, partition: 'p2' });
    const sub = startSubscription({ subscriber: 'resumer', source: remote, checkpoints, handle: (events) => void seen.push(...events.map((e) => e.seq)) });
    await sub.waitFor(100);
    await sub.stop();
    expect(seen).toEqual(Array.from({ length: 63 }, (_, i) => i + 38));
    expect(checkpoints.saved.get('resumer')).toBe(100);
    expect(await remote.refresh()).toBe(100);
  });

  it('without a replayer that can read, a gap in a remote feed stops the subscriber with a SequenceGapError naming the seqs', async () => {
    const { client } = await serve('p3');
    await appendMany(client, 2, 5);
    const remote = createRemoteEventSource({ client, partition: 'p3' });
    const sub = startSubscription({ subscriber: 'strict', source: dropping(remote, new Set([4])), checkpoints: createMemoryCheckpointStore(), handle: () => undefined });
    await expect(sub.done).rejects.toThrow(/seqs 4\.\.4 missing: no replayer/);
  });
});
