import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageError, openPartition } from '@sluice/store';
import { afterEach, describe, expect, it } from 'vitest';
import { createFileStorage } from './file-storage.js';
import { openFileReader } from './file-reader.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('readHandlesMax', () => {
  it('is validated by the storage and the reader', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-handles-'));
    dirs.push(directory);
    for (const bad of [0, 1.5, 70_000]) {
      expect(() => createFileStorage({ directory, readHandlesMax: bad })).toThrow(/readHandlesMax must be an integer from 1 to 65536/);
      await expect(openFileReader({ directory, readHandlesMax: bad })).rejects.toBeInstanceOf(StorageError);
    }
  });

  it('frame reads across more segments than open handles still return every frame', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-handles-'));
    dirs.push(directory);
    const p = await openPartition({ storage: createFileStorage({ directory, segmentBytes: 16 * 1024, readHandlesMax: 2 }) });
    for (let i = 0; i < 60; i++) await p.append({ streamId: i % 2 === 0 ? 'even' : 'odd', events: [{ type: 'E', data: new Uint8Array(2000).fill(i) }] });
    const versions: number[] = [];
    for await (const e of p.readStream('even')) versions.push(e.payload[0]);
    expect(versions).toEqual(Array.from({ length: 30 }, (_, i) => 2 * i));
    await p.close();
    const reader = await openFileReader({ directory, readHandlesMax: 2 });
    const frames = [];
    for await (const f of reader.readFrames?.([1, 20, 40, 59]) ?? []) frames.push(f.payload[0]);
    expect(frames).toEqual([0, 19, 39, 58]);
    await reader.close();
  });
});
