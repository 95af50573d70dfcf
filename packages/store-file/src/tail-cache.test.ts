import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition, type PartitionStorage } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFileStorage } from './index.js';

// The partition's shared tail cache on real files (fsync on commit): live subscribers are
// served the batches just committed from memory, not by reading the segments again.

const te = new TextEncoder();
let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-file-tail-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function counting(inner: PartitionStorage): { storage: PartitionStorage; reads: number[] } {
  const reads: number[] = [];
  const storage = new Proxy(inner, {
    get(target, key) {
      if (key === 'read') {
        return (fromSeq: number, toSeq: number, options?: object) => {
          reads.push(fromSeq);
          return target.read(fromSeq, toSeq, options);
        };
      }
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { storage, reads };
}

describe('tail cache (file)', () => {
  for (const tailCacheBytes of [undefined, 0]) {
    it(`three live subscribers read the segments ${tailCacheBytes === 0 ? 'for every batch when it is off' : 'never for new commits'}`, async () => {
      const { storage, reads } = counting(createFileStorage({ directory, segmentBytes: 256 * 1024, fsync: 'commit' }));
      const p = await openPartition({ storage, name: 'tail', tailCacheBytes });
      const got = [0, 0, 0];
      const done = got.map(async (_, i) => {
        for await (const batch of p.subscribe({ fromSeq: 1 })) {
          got[i] += batch.length;
          if (got[i] >= 40) break;
        }
      });
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (let c = 0; c < 20; c++) await p.append({ streamId: `s-${c % 3}`, events: [{ type: 'E', data: te.encode(`a${c}`) }, { type: 'E', data: te.encode(`b${c}`) }] });
      await Promise.all(done);
      expect(got).toEqual([40, 40, 40]);
      if (tailCacheBytes === 0) expect(reads.length).toBeGreaterThanOrEqual(20);
      else expect(reads).toEqual([]);
      await p.close();
    });
  }
});
