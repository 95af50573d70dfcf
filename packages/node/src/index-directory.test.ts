import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FAST, startBroker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

/** Issue 9: a partition served by a node keeps its indexes on disk, so a restart replays only the tail. */
describe('a node persists each partition index where the config puts it', () => {
  it('opens with the index beside the file location and loads it on restart instead of replaying the log', async () => {
    const broker = await startBroker(FAST);
    const directory = await tempDir();
    const { config } = await writeConfig(directory, { brokers: [broker], partitions: ['p1'] });
    const indexDirectory = join(directory, 'data', 'p1.index');
    expect(config.partitions.p1.indexDirectory).toBe(indexDirectory);

    const first = await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 1 });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 10_000 });
    for (let i = 0; i < 20; i++) await client.append({ streamId: `s-${i % 4}`, events: [{ type: 'E', data: new Uint8Array([i]) }] });
    const opened = first.partitions.get('p1');
    expect(opened?.indexStatus.directory).toBe(indexDirectory);
    await first.close();
    // Closing checkpointed the index at the head: table files are on disk.
    expect((await readdir(indexDirectory)).length).toBeGreaterThan(0);

    const second = await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 1 });
    const status = second.partitions.get('p1')?.indexStatus;
    expect(status).toMatchObject({ directory: indexDirectory, persistedSeq: 20, replayedFrames: 0, discarded: [] });
    // The stream index loaded from disk serves reads.
    const versions: number[] = [];
    for await (const event of client.readStream('s-1')) versions.push(event.streamVersion);
    expect(versions).toEqual([1, 2, 3, 4, 5]);
  });
});
