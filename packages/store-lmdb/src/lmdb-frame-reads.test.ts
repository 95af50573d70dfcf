import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventFrame } from '@sluice/framing';
import { openPartition, type StorageReader } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLmdbStorage, openLmdbReader } from './index.js';
import { openWriterEnv } from './lmdb-env.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-lmdb-frames-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function frames(reader: StorageReader, seqs: readonly number[]): Promise<EventFrame[]> {
  const out: EventFrame[] = [];
  for await (const f of (reader.readFrames as NonNullable<StorageReader['readFrames']>)(seqs)) out.push(f);
  return out;
}

/** 20 appends of 5 events (entries of one batch each): payload `i.k`, stream `s-(i mod 3)`. */
async function seed(): Promise<void> {
  const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
  try {
    for (let i = 0; i < 20; i++) {
      await partition.append({ streamId: `s-${i % 3}`, events: Array.from({ length: 5 }, (_, k) => ({ type: 'E', data: bytes(`${i}.${k}`) })) });
    }
  } finally {
    await partition.close();
  }
}

describe('LMDB frame reads', () => {
  it('yields frames that stay valid after later reads through the same lmdb buffer', async () => {
    await seed();
    const reader = await openLmdbReader({ directory });
    try {
      const kept = await frames(reader, [1, 7, 8, 50, 100]);
      await frames(reader, [2, 3, 60, 99]);
      for await (const batch of reader.read(1, 100)) expect(batch.frames.length).toBe(5);
      expect(kept.map((f) => text(f.payload))).toEqual(['0.0', '1.1', '1.2', '9.4', '19.4']);
    } finally {
      await reader.close();
    }
  });

  it('checks each frame it reads (CRC-32C), not the batch: a damaged frame is Corrupt, a damaged marker elsewhere is not read', async () => {
    await seed();
    const env = openWriterEnv(directory, { kind: 'commit' }, 1 << 20);
    const value = Uint8Array.from(env.batches.getBinaryFast(46) as Uint8Array); // seqs 46..50
    const damaged = Uint8Array.from(value);
    damaged[60] ^= 0xff; // inside the first frame (seq 46), after its header
    await env.batches.put(46, damaged);
    const marker = Uint8Array.from(env.batches.getBinaryFast(51) as Uint8Array); // seqs 51..55
    marker[marker.length - 30] ^= 0xff; // inside the marker's digest
    await env.batches.put(51, marker);
    await env.close();

    const reader = await openLmdbReader({ directory });
    try {
      await expect(frames(reader, [45, 46])).rejects.toMatchObject({ reason: 'Corrupt', message: expect.stringMatching(/seq 46.*CRC-32C.*restore/) });
      // Frames after the damaged one in the same entry are found by their length fields and verify.
      expect((await frames(reader, [47, 50])).map((f) => f.seq)).toEqual([47, 50]);
      // A frame read does not hash its batch: the marker's damage is found by batch reads.
      expect((await frames(reader, [52])).map((f) => text(f.payload))).toEqual(['10.1']);
      await expect((async () => {
        for await (const _ of reader.read(51, 55)) void _;
      })()).rejects.toMatchObject({ reason: 'Corrupt' });
    } finally {
      await reader.close();
    }
  });

  it('serves stream reads of a partition from frames, also after reopening', async () => {
    await seed();
    const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
    try {
      expect(partition['storage'].capabilities.frameReads).toBe(true);
      const events: string[] = [];
      for await (const e of partition.readStream('s-1', { fromVersion: 6, maxCount: 7 })) events.push(text(e.payload));
      // s-1 holds appends 1, 4, 7, 10, ...: versions 6..12 are appends 4 (k=0..4) and 7 (k=0..1).
      expect(events).toEqual(['4.0', '4.1', '4.2', '4.3', '4.4', '7.0', '7.1']);
    } finally {
      await partition.close();
    }
  });
});
