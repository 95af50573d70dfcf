import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises';
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

/** A closed partition of 40 single-event batches of 2 KB over several 16 KiB segments. */
async function writtenLog(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'sluice-read-ahead-'));
  dirs.push(directory);
  const p = await openPartition({ storage: createFileStorage({ directory, segmentBytes: 16 * 1024 }) });
  for (let i = 0; i < 40; i++) await p.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(2000).fill(i) }] });
  await p.close();
  const segments = (await readdir(directory)).filter((n) => n.endsWith('.seg')).sort();
  expect(segments.length).toBeGreaterThan(3);
  return directory;
}

describe('batch reads read the next chunk ahead', () => {
  it('a reader that pauses and stops early leaves no failed read behind (the next chunk, in a missing segment)', async () => {
    const directory = await writtenLog();
    const reader = await openFileReader({ directory, readHandlesMax: 1 });
    // The second segment's file goes; its read handle is not open (one handle kept, at most:
    // the open's checks used it for other segments). The first chunk is all
    // of segment 1; handing out its first batch starts the read of the next chunk, in segment
    // 2, which fails. The reader then lets the event loop turn before it stops: without the
    // read-ahead's own rejection handler, that failure is unhandled (and ends the process).
    await unlink(join(directory, '00000002.seg'));
    const seqs: number[] = [];
    for await (const batch of reader.read(1, await reader.lastSeq())) {
      seqs.push(batch.lastSeq);
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (seqs.length === 1) break;
    }
    expect(seqs).toEqual([1]);
    await reader.close();
  });

  it('a read that fails ahead is reported where the reader reaches it, after every batch before it', async () => {
    const directory = await writtenLog();
    const reader = await openFileReader({ directory, readHandlesMax: 1 });
    await unlink(join(directory, '00000002.seg'));
    const seqs: number[] = [];
    let failure: unknown;
    try {
      for await (const batch of reader.read(1, await reader.lastSeq())) seqs.push(batch.lastSeq);
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(StorageError);
    // Every batch of segment 1, in order, then the error.
    expect(seqs.length).toBeGreaterThan(1);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    await reader.close();
  });

  it('batches across segments and chunks come back whole and in order', async () => {
    const directory = await writtenLog();
    const reader = await openFileReader({ directory, readHandlesMax: 1 });
    const firsts: number[] = [];
    for await (const batch of reader.read(1, await reader.lastSeq())) {
      expect(batch.frames?.[0]?.payload[0]).toBe(batch.firstSeq - 1);
      firsts.push(batch.firstSeq);
    }
    expect(firsts).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    await reader.close();
  });
});

describe('frame reads', () => {
  it('hand out frames that stay whole while other frame reads run, interleaved or after', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-frame-reads-'));
    dirs.push(directory);
    const p = await openPartition({ storage: createFileStorage({ directory, segmentBytes: 64 * 1024 }) });
    // Two streams, ten events per append, alternating: each append of a stream is one small
    // run of frames (a synchronous read), and a reader stops inside one after its first frame.
    for (let i = 0; i < 12; i++) {
      const fill = i % 2 === 0 ? 0xaa : 0xbb;
      await p.append({ streamId: i % 2 === 0 ? 'a' : 'b', events: Array.from({ length: 10 }, () => ({ type: 'E', data: new Uint8Array(300).fill(fill) })) });
    }
    await p.close();
    const reader = await openFileReader({ directory });
    const seqsOf = (odd: boolean) => Array.from({ length: 120 }, (_, i) => i + 1).filter((s) => (Math.floor((s - 1) / 10) % 2 === 0) === odd);
    const seqsA = seqsOf(true);
    const seqsB = seqsOf(false);
    const frames = [];
    // A first read leaves its buffer for the next ones. Then interleaved: one frame of A, all of
    // B, the rest of A; then another read after.
    if (reader.readFrames === undefined) throw new Error('the file reader reads frames');
    for await (const f of reader.readFrames(seqsB)) expect(f.streamId).toBe('b');
    const readsA = reader.readFrames(seqsA)[Symbol.asyncIterator]();
    const first = await readsA.next();
    if (first.done === true) throw new Error('no frame');
    frames.push(first.value);
    for await (const f of reader.readFrames(seqsB)) frames.push(f);
    for (let next = await readsA.next(); next.done !== true; next = await readsA.next()) frames.push(next.value);
    for await (const f of reader.readFrames(seqsB)) expect(f.payload[0]).toBe(0xbb);
    expect(frames).toHaveLength(120);
    for (const f of frames) expect([...new Set(f.payload)], `seq ${f.seq}`).toEqual([f.streamId === 'a' ? 0xaa : 0xbb]);
    await reader.close();
  });
});
