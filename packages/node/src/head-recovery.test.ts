import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { FAST, startBroker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

/** Issue 13 item 5: what recovery dropped is told by the node to `head` (and so `sluice head`). */
describe('head reports what recovery dropped', () => {
  it('names the torn bytes the node dropped when it opened the partition, and nothing on a clean one', async () => {
    const broker = await startBroker(FAST);
    const directory = await tempDir();
    const { config } = await writeConfig(directory, { brokers: [broker], partitions: ['p1', 'p2'] });
    const data = join(directory, 'data', 'p1');
    const p = await openPartition({ storage: createFileStorage({ directory: data, partition: 'p1' }), name: 'p1' });
    for (let i = 0; i < 3; i++) await p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array([i]) }] });
    await p.close();
    // A torn write after the last batch, as a crash in the middle of a write leaves it.
    const segment = join(data, '00000001.seg');
    const bytes = await readFile(segment);
    let end = bytes.length - 1;
    while (bytes[end] === 0) end--;
    const handle = await open(segment, 'r+');
    await handle.write(Buffer.from([200, 0, 0, 0, 2, 1, 3, 0, 9, 9, 9]), 0, 11, end + 1);
    await handle.close();

    await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 1 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000 });
    const head = await client.head('p1');
    expect(head).toMatchObject({ lastSeq: 3, writable: true, recovery: { droppedSeqs: 0 } });
    expect(head.recovery?.droppedBytes).toBeGreaterThan(0);
    expect(head.recovery?.droppedReason).toMatch(/torn|frame|checksum/);
    expect((await client.head('p2')).recovery).toBeUndefined();
  });
});
