import type { PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { FAST, startBroker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { locationFactory, type LocationFactory } from './locations.js';
import type { EventEmitter } from 'node:events';
import type { NodeEvents, StoreNode } from './node.js';
import { startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

const data = (text: string): Uint8Array => new TextEncoder().encode(text);

/**
 * File storage whose next append (contract v1) or write (v2) fails once when `failNext` is set: a real fault that real
 * files cannot produce on demand (DESIGN.md "Real parts in tests": mocks for failures only).
 */
function flakyFileLocation(): { factory: LocationFactory; failNext: () => void; opened: () => number } {
  const file = locationFactory('file', createFileStorage);
  let fail = false;
  let opened = 0;
  const factory: LocationFactory = (location, context) => {
    opened += 1;
    const storage = file(location, context);
    return new Proxy(storage, {
      get(target, property, receiver) {
        // 'append' in storage contract v1, 'write' in v2 (being rewritten on main): fail either.
        if ((property === 'append' || property === 'write') && fail) {
          fail = false;
          return async () => {
            throw Object.assign(new Error('injected EIO on write'), { code: 'EIO' });
          };
        }
        const value = Reflect.get(target, property, receiver) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as PartitionStorage;
  };
  return { factory, failNext: () => (fail = true), opened: () => opened };
}

function nextEvent<K extends keyof NodeEvents>(node: StoreNode, name: K): Promise<NodeEvents[K][0]> {
  return new Promise((resolve) => {
    (node as unknown as EventEmitter).once(name, (event: NodeEvents[K][0]) => resolve(event));
  });
}

describe('faulted partitions (issue 10, item 7)', () => {
  it('reports a fault, answers appends meanwhile with a typed error, reopens the partition (recovery) and serves again', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    const flaky = flakyFileLocation();
    const node = await startStoreNode([broker], { config, nodeName: 'n1', locations: { file: flaky.factory }, reopenDelayMs: 200 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, retriesMax: 0 });
    await client.append({ streamId: 's', events: [{ type: 'E', data: data('before') }] });

    const faulted = nextEvent(node, 'partition-faulted');
    const reopened = nextEvent(node, 'partition-reopened');
    flaky.failNext();
    const failed = await client.append({ streamId: 's', events: [{ type: 'E', data: data('lost') }] }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    const fault = await faulted;
    expect(fault).toMatchObject({ partition: 'p1', nextAttemptInMs: 200 });
    expect(String((fault.error as Error).message)).toContain('injected EIO');

    expect(await reopened).toMatchObject({ partition: 'p1', attempt: 1, lastSeq: 1 });
    expect(flaky.opened()).toBe(2);
    const after = await client.append({ streamId: 's', expectedVersion: 1, events: [{ type: 'E', data: data('after') }] });
    expect(after).toMatchObject({ firstSeq: 2, lastSeq: 2 });
    expect(node.stats().partitions.p1).toMatchObject({ state: 'open', faults: 1, reopens: 1, lastFault: expect.stringContaining('injected EIO') });
    expect(await client.head('p1')).toMatchObject({ lastSeq: 2, writable: true });
  });

  it('with reopenAttemptsMax 0 the partition stays faulted, reported in stats and head (writable: false), and the node serves reads', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    const flaky = flakyFileLocation();
    const node = await startStoreNode([broker], { config, nodeName: 'n1', locations: { file: flaky.factory }, reopenAttemptsMax: 0 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, retriesMax: 0 });
    await client.append({ streamId: 's', events: [{ type: 'E', data: data('kept') }] });
    const faulted = nextEvent(node, 'partition-faulted');
    flaky.failNext();
    await client.append({ streamId: 's', events: [{ type: 'E', data: data('lost') }] }).catch(() => undefined);
    expect(await faulted).toMatchObject({ partition: 'p1', nextAttemptInMs: undefined });
    expect(node.stats().partitions.p1).toMatchObject({ state: 'given-up', faults: 1, reopens: 0 });
    expect(await client.head('p1')).toMatchObject({ lastSeq: 1, writable: false });
    const next = await client.append({ streamId: 's', events: [{ type: 'E', data: data('refused') }] }).catch((error: unknown) => error);
    expect(next).toMatchObject({ code: 'SLUICE_PARTITION_FAULTED' });
  });
});
