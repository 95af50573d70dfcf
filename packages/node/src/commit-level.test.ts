import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSluiceConfig, type SluiceConfig } from '@sluice/config';
import { openPartition, type Partition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterEach, describe, expect, it } from 'vitest';
import { locationFactory } from './locations.js';
import { startNode } from './node.js';

const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

/** One partition on one file location, under the level named `level`. */
function configUnder(level: string, baseDir: string): SluiceConfig {
  return parseSluiceConfig(
    {
      brokers: ['tcp://127.0.0.1:1'],
      levels: { [level]: { locations: [{ file: './data/{partition}' }], fsync: 'commit' } },
      partitions: { 'ledger-1': level },
      routing: { hash: ['ledger-1'] },
    },
    baseDir,
  );
}

async function levelsOf(partition: Partition): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = [];
  for await (const e of partition.read()) if (e.commitFirst) out.push(e.headers?.level);
  return out;
}

describe('a node stamps each partition\'s configured level on every commit (issue 11)', () => {
  it('records the level per commit in the file log, across restarts under a changed level', async () => {
    const base = await mkdtemp(join(tmpdir(), 'sluice-commit-level-'));
    directories.push(base);
    const locations = { file: locationFactory('file', createFileStorage) };
    const append = (partition: Partition, i: number) => partition.append({ streamId: `s-${i}`, commandId: `c-${i}`, events: [{ type: 'E', data: new Uint8Array([i]) }] });
    for (const [run, level] of ['standard', 'critical'].entries()) {
      const node = await startNode({ config: configUnder(level, base), nodeName: 'n1', locations });
      try {
        const partition = node.partitions.get('ledger-1')!;
        expect(partition.level).toBe(level);
        await append(partition, run * 2 + 1);
        await append(partition, run * 2 + 2);
      } finally {
        await node.close();
      }
    }
    // Read back with the plain file storage: the levels are in the log itself.
    const reader = await openPartition({ storage: createFileStorage({ directory: join(base, 'data', 'ledger-1') }) });
    try {
      expect(await levelsOf(reader)).toEqual(['standard', 'standard', 'critical', 'critical']);
    } finally {
      await reader.close();
    }
  });
});
