import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter } from '@sluice/framing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFileStorage } from './index.js';
import { SEGMENT_HEADER_BYTES } from './segment-header.js';
import { segmentName } from './segment-log.js';

/**
 * How the file store's writes reach the kernel. Invariant: a small batch is handed to the
 * kernel before write() returns (no thread-pool round trip per small commit); a large one goes
 * through the pool; both are in the file, in order, and durable after sync().
 */
let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-write-path-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** One sealed batch of `events` events of `bytes` bytes each, from `seq`, chained to the writer's last batch. */
function batch(writer: FrameWriter, seq: number, events: number, bytes: number): Uint8Array {
  writer.reset();
  for (let i = 0; i < events; i++) {
    const flags = (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === events - 1 ? FLAG_COMMIT_LAST : 0);
    writer.appendEvent(seq + i, 1, 1_700_000_000_000, flags, 's', seq + i, 'E', undefined, undefined, new Uint8Array(bytes).fill(seq + i));
  }
  writer.seal(1, 1_700_000_000_000);
  return Uint8Array.from(writer.bytes());
}

/**
 * Occupies every thread of libuv's pool with an open() of a FIFO that has no writer yet, so no
 * thread-pool write can run until `release` opens their write ends. Deterministic: the test
 * does not race the pool.
 */
let blockings = 0;
async function blockThreadPool(): Promise<{ release(): Promise<void> }> {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const round = blockings++;
  const fifos = Array.from({ length: threads }, (_, i) => join(directory, `fifo-${round}-${i}`));
  for (const f of fifos) execFileSync('mkfifo', [f]);
  const readers = fifos.map((f) => open(f, 'r'));
  return {
    async release() {
      // Opened on this thread (the pool is blocked); O_RDWR on a FIFO never blocks on Linux.
      const writers = fifos.map((f) => openSync(f, 'r+'));
      for (const r of await Promise.all(readers)) await r.close();
      for (const w of writers) closeSync(w);
    },
  };
}

describe('file store writes', () => {
  it('writes a small batch into the file before write() returns, a large one through the thread pool; both are read back after sync()', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 1024 * 1024 });
    await storage.open();
    try {
      const writer = new FrameWriter();
      const small = batch(writer, 1, 3, 100);
      const pool = await blockThreadPool();
      const written = storage.write(small, 1, 3);
      // The pool is busy: the bytes can be in the file only if write() wrote them itself.
      const file = readFileSync(join(directory, segmentName(1)));
      const inFile = Buffer.compare(file.subarray(SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES + small.length), small) === 0;
      await pool.release();
      await written;
      expect(inFile, 'a small batch is in the file before write() returns').toBe(true);
      const large = batch(writer, 4, 200, 1024); // > 128 KiB: through the pool
      const blocked = await blockThreadPool();
      const writing = storage.write(large, 4, 203);
      const at = SEGMENT_HEADER_BYTES + small.length;
      const before = readFileSync(join(directory, segmentName(1))).subarray(at, at + large.length);
      await blocked.release();
      await writing;
      expect(Buffer.compare(before, large) === 0, 'a large batch waits for the thread pool').toBe(false);
      const head = await storage.sync();
      expect(head.lastSeq).toBe(203);
      const seqs: number[] = [];
      for await (const b of storage.read(1, 203)) for (const f of b.frames) seqs.push(f.seq);
      expect(seqs).toEqual(Array.from({ length: 203 }, (_, i) => i + 1));
    } finally {
      await storage.close();
    }
  });
});
