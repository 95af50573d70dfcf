import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition, type StorageReader } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLmdbStorage, openLmdbReader } from './index.js';
import { openWriterEnv } from './lmdb-env.js';
import { appendRawToLmdbLog } from './raw-tail.fixture.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-lmdb-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function seqsOf(reader: StorageReader, from: number, to: number): Promise<number[]> {
  const seqs: number[] = [];
  for await (const batch of reader.read(from, to)) for (const frame of batch.frames) seqs.push(frame.seq);
  return seqs;
}

/** Writes `commits` commits of `perCommit` events each, one append per commit. */
async function seed(commits: number, perCommit: number): Promise<void> {
  const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
  try {
    for (let i = 0; i < commits; i++) {
      await partition.append({ streamId: `s-${i % 4}`, events: Array.from({ length: perCommit }, (_, k) => ({ type: 'E', data: bytes(`${i}.${k}`) })) });
    }
  } finally {
    await partition.close();
  }
}

describe('openLmdbReader', () => {
  it('reads by key range the batches overlapping [fromSeq, toSeq], across many entries', async () => {
    await seed(100, 3); // 100 entries: more than one key lookup
    const reader = await openLmdbReader({ directory });
    try {
      expect(await reader.lastSeq()).toBe(300);
      // Batches hold whole commits: a range inside one yields that batch, frames outside included.
      expect(await seqsOf(reader, 152, 152)).toEqual([151, 152, 153]);
      expect(await seqsOf(reader, 149, 251)).toEqual(Array.from({ length: 252 - 148 + 1 }, (_, i) => 148 + i));
      expect(await seqsOf(reader, 1, 1_000_000)).toHaveLength(300);
      expect(await seqsOf(reader, 301, 400)).toEqual([]);
      expect(await seqsOf(reader, 10, 9)).toEqual([]);
    } finally {
      await reader.close();
    }
  });

  it('yields batches that stay valid after later reads (its values are copied out of lmdb reused buffer)', async () => {
    await seed(5, 2);
    const reader = await openLmdbReader({ directory });
    try {
      const kept = [];
      for await (const batch of reader.read(1, 10)) kept.push(batch);
      await seqsOf(reader, 1, 10); // more reads through the same lmdb buffer
      expect(kept.flatMap((b) => b.frames.map((f) => text(f.payload)))).toEqual(['0.0', '0.1', '1.0', '1.1', '2.0', '2.1', '3.0', '3.1', '4.0', '4.1']);
    } finally {
      await reader.close();
    }
  });

  it('stops quietly at a tail the writer has not recovered yet, and follows the writer once it has', async () => {
    await seed(10, 1);
    await appendRawToLmdbLog(directory, Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff));
    let reader = await openLmdbReader({ directory });
    expect(await reader.lastSeq()).toBe(10);
    expect(await seqsOf(reader, 1, 100)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    await reader.close();

    const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
    try {
      expect(partition.recovery.droppedBytes).toBe(300);
      reader = await openLmdbReader({ directory });
      await partition.append({ streamId: 's', events: [{ type: 'E', data: bytes('11') }] });
      expect(await reader.lastSeq()).toBe(11);
      expect(await seqsOf(reader, 11, 11)).toEqual([11]);
      await reader.close();
    } finally {
      await partition.close();
    }
  });

  it('refuses committed data that does not verify with reason Corrupt, in readers and when the writer opens', async () => {
    await seed(10, 1);
    const env = openWriterEnv(directory, { kind: 'commit' }, 1 << 20);
    const damaged = Uint8Array.from(env.batches.getBinaryFast(5) as Uint8Array);
    damaged[damaged.length - 30] ^= 0xff; // inside the marker's digest
    await env.batches.put(5, damaged);
    await env.close();

    const reader = await openLmdbReader({ directory });
    try {
      expect(await seqsOf(reader, 1, 4)).toEqual([1, 2, 3, 4]);
      await expect(seqsOf(reader, 1, 10)).rejects.toMatchObject({ reason: 'Corrupt', message: expect.stringMatching(/seq 5 does not verify.*restore/) });
    } finally {
      await reader.close();
    }
    await expect(openPartition({ storage: createLmdbStorage({ directory }) })).rejects.toMatchObject({ reason: 'Corrupt' });
  });

  it('tails: catches up from the batch holding fromSeq, follows new commits by polling, and ends when the reader closes', async () => {
    const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
    try {
      for (let i = 1; i <= 2; i++) await partition.append({ streamId: 's', events: [{ type: 'E', data: bytes(`${i}`) }] });
      const reader = await openLmdbReader({ directory, tailPollMs: [1, 10] });
      const seen: number[] = [];
      const tailing = (async () => {
        for await (const batch of reader.tail(2)) for (const frame of batch.frames) seen.push(frame.seq);
      })();
      await vi.waitFor(() => expect(seen).toEqual([2]));
      await partition.append({ streamId: 's', events: [{ type: 'E', data: bytes('3') }, { type: 'E', data: bytes('4') }] });
      await vi.waitFor(() => expect(seen).toEqual([2, 3, 4]));
      expect(await reader.identityAt(3)).toMatchObject({ lastSeq: 4 });
      expect(await reader.identityAt(5)).toBeUndefined();
      await reader.close();
      await tailing;
    } finally {
      await partition.close();
    }
  });

  it('refuses reads once closed with reason Closed', async () => {
    await seed(1, 1);
    const reader = await openLmdbReader({ directory });
    await reader.close();
    await expect(reader.lastSeq()).rejects.toMatchObject({ reason: 'Closed' });
    await expect(seqsOf(reader, 1, 1)).rejects.toMatchObject({ reason: 'Closed' });
    await reader.close();
  });
});
