import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readlinkSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, readFile, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter, crc32c } from '@sluice/framing';
import { EMPTY_IDENTITY, StorageError, openPartition, type BatchIdentity, type Partition, type PartitionStorage, type StorageReader } from '@sluice/store';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OPERATOR_LOG, SEGMENT_BYTES_MAX, createFileStorage, openFileReader, type FileStorageOptions } from './index.js';
import { SEGMENT_HEADER_BYTES, decodeHeaderPage, encodeHeaderPage, encodeSlot, slotOffset } from './segment-header.js';
import { segmentName } from './segment-log.js';

/**
 * Durability of the file store, checked on real files with real fsyncs. Invariants:
 * - recovery never silently shortens a log below the durable watermark it recorded: a deleted,
 *   truncated or damaged segment holding acknowledged commits is refused (`Corrupt`), by the
 *   writer and by readers in other processes;
 * - segments of another partition or another incarnation are refused, never merged;
 * - damage above the watermark (data never made durable) is cut at the first hole, reported;
 * - a recorded write/sync failure cuts back to the last synced batch on reopen;
 * - readers in other processes never see a batch above the durable watermark.
 */
const te = new TextEncoder();
let root: string;
let directory: string;
const open_: Array<{ close(): Promise<void> }> = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-durable-'));
  directory = join(root, 'p');
});
afterEach(async () => {
  for (const p of open_.splice(0).reverse()) await p.close().catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

async function openFile(options: Partial<FileStorageOptions> = {}): Promise<Partition> {
  const p = await openPartition({ storage: createFileStorage({ directory, segmentBytes: 64 * 1024, ...options }), name: 'd' });
  open_.push(p);
  return p;
}

async function fill(p: Partition, commits: number, from = 0): Promise<void> {
  for (let i = from; i < from + commits; i++) {
    await p.append({ streamId: `s-${i % 5}`, commandId: `c-${i}`, events: Array.from({ length: 5 }, (_, k) => ({ type: 'E', data: te.encode(`${i}.${k}`.padEnd(100, '-')) })) });
  }
}

async function segments(dir = directory): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort();
}

async function refusal(run: () => Promise<unknown>): Promise<StorageError> {
  const error = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'refused').toBeInstanceOf(StorageError);
  return error as StorageError;
}

async function readAllWith(reader: StorageReader): Promise<number> {
  let last = 0;
  for await (const b of reader.read(1, Number.MAX_SAFE_INTEGER)) last = b.lastSeq;
  return last;
}

/** Opens a cross-process reader (in this process: it shares no state with the writer) and reads everything. */
async function readerRefusal(): Promise<StorageError> {
  return refusal(async () => {
    const reader = await openFileReader({ directory });
    try {
      await readAllWith(reader);
    } finally {
      await reader.close();
    }
  });
}

describe('damage below the durable watermark is refused, never cut', () => {
  it('refuses a partition whose last segment was deleted (the one before it records a successor), and so does a reader', async () => {
    const p = await openFile();
    await fill(p, 250); // ~170 KiB over 64 KiB segments: several rolls
    await p.close();
    // The last segment the writer rolled into (a preallocated one after it holds nothing yet).
    const names: string[] = [];
    for (const name of await segments()) {
      if (decodeHeaderPage((await readFile(join(directory, name))).subarray(0, SEGMENT_HEADER_BYTES)).kind === 'v2') names.push(name);
    }
    expect(names.length).toBeGreaterThanOrEqual(3);
    await unlink(join(directory, names.at(-1) as string));
    const error = await refusal(() => openFile());
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/0000000\d\.seg records that 0000000\d\.seg followed it, but the log cannot continue there/);
    expect(error.message).toMatch(/restore the partition from a copy or a shipped archive/);
    expect((await readerRefusal()).reason).toBe('Corrupt');
  });

  it('refuses a partition whose last segment was truncated mid-file, and so does a reader', async () => {
    const p = await openFile({ segmentBytes: 1024 * 1024 });
    await fill(p, 100);
    await p.close();
    const [name] = await segments();
    await truncate(join(directory, name), SEGMENT_HEADER_BYTES + 20_000);
    const error = await refusal(() => openFile({ segmentBytes: 1024 * 1024 }));
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/holds seq 1\.\.\d+ .* had made seq 500 durable/);
    expect((await readerRefusal()).reason).toBe('Corrupt');
  });

  it('refuses a partition whose last acknowledged batch has a flipped byte (after a clean close), and so does a reader', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 1024 * 1024 });
    const p = await openPartition({ storage, name: 'd' });
    await fill(p, 10);
    const lastBatchEnd = SEGMENT_HEADER_BYTES + (await batchBytes(storage));
    await p.close();
    const handle = await open(join(directory, segmentName(1)), 'r+');
    const b = Buffer.alloc(1);
    await handle.read(b, 0, 1, lastBatchEnd - 150);
    b[0] ^= 0x40;
    await handle.write(b, 0, 1, lastBatchEnd - 150);
    await handle.close();
    const error = await refusal(() => openFile({ segmentBytes: 1024 * 1024 }));
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/holds seq 1\.\.45 .* had made seq 50 durable/);
    expect((await readerRefusal()).reason).toBe('Corrupt');
  });
});

/** Total bytes of every batch the storage holds. */
async function batchBytes(storage: PartitionStorage): Promise<number> {
  let n = 0;
  for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) n += b.byteLength;
  return n;
}

describe('segments that are not this partition\'s', () => {
  it('refuses a segment copied in from another partition', async () => {
    const other = join(root, 'other');
    let p = await openPartition({ storage: createFileStorage({ directory: other, segmentBytes: 64 * 1024 }), name: 'o' });
    await fill(p, 120);
    await p.close();
    p = await openFile();
    await fill(p, 20);
    await p.close();
    const mine = await segments();
    const next = segmentName(Number(mine.at(-1)?.slice(0, 8)) + 1);
    await copyFile(join(other, segmentName(2)), join(directory, next));
    const error = await refusal(() => openFile());
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(new RegExp(`${next} belongs to another partition \\("other", incarnation [0-9a-f]{32}\\), not to "p"`));
    expect(error.message).toMatch(/move it out of/);
  });

  it('refuses a stale segment of an earlier incarnation left behind a recreated directory', async () => {
    let p = await openFile();
    await fill(p, 120);
    await p.close();
    const stale = join(root, 'stale.seg');
    await copyFile(join(directory, segmentName(2)), stale);
    await rm(directory, { recursive: true });
    p = await openFile();
    await fill(p, 5);
    await p.close();
    expect(await segments()).toEqual([segmentName(1)]);
    await copyFile(stale, join(directory, segmentName(2)));
    const error = await refusal(() => openFile());
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/00000002\.seg belongs to another partition/);
  });

  it('refuses a segment renamed to another number', async () => {
    const p = await openFile();
    await fill(p, 120);
    await p.close();
    const names = await segments();
    await copyFile(join(directory, names[1]), join(directory, segmentName(names.length + 1)));
    const error = await refusal(() => openFile());
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/says it is segment 2: it was renamed or copied over/);
  });

  it('refuses to open a partition under another partition name', async () => {
    await (await openFile({ partition: 'payments' })).close();
    const error = await refusal(() => openFile({ partition: 'orders' }));
    expect(error.reason).toBe('Invalid');
    expect(error.message).toMatch(/holds partition "payments", not "orders"/);
  });
});

describe('writers in another process', () => {
  let script: string;
  beforeAll(async () => {
    // Inside the workspace: the writer lock loads its native addon from node_modules at run time.
    const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
    await mkdir(cache, { recursive: true });
    script = join(cache, `sluice-durability-child-${process.pid}.mjs`);
    await build({
      stdin: {
        contents: `
          import { openPartition } from '@sluice/store';
          import { createFileStorage } from './src/index.ts';
          const [dir, fsync, count] = process.argv.slice(2);
          const p = await openPartition({ storage: createFileStorage({ directory: dir, segmentBytes: 1024 * 1024, fsync, watermarkFlushMs: 0 }) });
          for (let i = 0; i < Number(count); i++) {
            await p.append({ streamId: 's', commandId: 'c-' + i, events: [{ type: 'E', data: new TextEncoder().encode(String(i).padEnd(300, '.')) }] });
          }
          process.stdout.write('ok\\n');
          process.exit(0); // no close: what was not synced stays unsynced
        `,
        resolveDir: fileURLToPath(new URL('..', import.meta.url)),
        loader: 'ts',
      },
      outfile: script,
      bundle: true,
      platform: 'node',
      format: 'esm',
      conditions: ['@sluice/source'],
      external: ['fs-native-extensions'],
      logLevel: 'silent',
    });
  });
  afterAll(async () => {
    await rm(script, { force: true });
  });

  const runWriter = (fsync: string, count: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [script, directory, fsync, String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(out.trim()));
    });

  /** Zeroes one 4 KiB page of segment 1 in the middle of its data, as a lost write-back leaves it. */
  async function zeroMiddlePage(): Promise<void> {
    const handle = await open(join(directory, segmentName(1)), 'r+');
    await handle.write(Buffer.alloc(4096), 0, 4096, SEGMENT_HEADER_BYTES + 8 * 4096);
    await handle.close();
  }

  for (const fsync of ['none', 'interval:60000ms'] as const) {
    it(`${fsync}: cuts at a zeroed page in the unsynced window though a later batch survived, and reports the seqs`, async () => {
      expect(await runWriter(fsync, 300)).toBe('ok');
      await zeroMiddlePage();
      const p = await openFile({ fsync, segmentBytes: 1024 * 1024 });
      expect(p.lastSeq).toBeGreaterThan(50);
      expect(p.lastSeq).toBeLessThan(150);
      expect(p.recovery.droppedSeqs).toBe(300 - p.lastSeq);
      expect(p.recovery.droppedBytes).toBeGreaterThan(0);
      expect(p.recovery.droppedReason).toMatch(/never made durable .* has a hole/);
      let seq = 0;
      for await (const e of p.read()) expect(e.seq).toBe(++seq);
      expect(seq).toBe(p.lastSeq);
      // The cut tail is gone for good: the next commit takes the next seq, and reopening drops nothing.
      const next = await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('after') }] });
      expect(next.firstSeq).toBe(seq + 1);
      await p.close();
      const again = await openFile({ fsync, segmentBytes: 1024 * 1024 });
      expect(again.recovery).toMatchObject({ droppedBytes: 0, droppedSeqs: 0, lastSeq: seq + 1 });
    });
  }

  it('commit: the same zeroed page lies below the durable watermark and is refused', async () => {
    expect(await runWriter('commit', 300)).toBe('ok');
    await zeroMiddlePage();
    const error = await refusal(() => openFile({ segmentBytes: 1024 * 1024 }));
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/holds seq 1\.\.\d+ .* had made seq (29\d|300) durable/);
  });
});

describe('the durable watermark', () => {
  it('is recorded in the last segment\'s header: with watermarkFlushMs 0 at most one sync behind while busy, exact once the writer is idle', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 1024 * 1024, watermarkFlushMs: 0 });
    open_.push(storage);
    await storage.open();
    const slot = async (): Promise<number> => {
      const page = decodeHeaderPage((await readFile(join(directory, segmentName(1)))).subarray(0, SEGMENT_HEADER_BYTES));
      return page.kind === 'v2' ? (page.slot?.synced.lastSeq ?? -1) : -1;
    };
    let head = EMPTY_IDENTITY;
    for (const b of chained(EMPTY_IDENTITY, 50)) {
      await storage.write(b.bytes, b.firstSeq, b.lastSeq);
      const before = head.lastSeq;
      head = await storage.sync();
      expect(await slot()).toBeGreaterThanOrEqual(before);
    }
    await until(async () => (await slot()) === 100);
  });
});

describe('the durable watermark, rewritten at most every watermarkFlushMs', () => {
  it('skips rewrites while busy and catches up within watermarkFlushMs; readers in other processes follow', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 1024 * 1024, watermarkFlushMs: 200 });
    open_.push(storage);
    await storage.open();
    const counter = async (): Promise<{ counter: number; synced: number }> => {
      const page = decodeHeaderPage((await readFile(join(directory, segmentName(1)))).subarray(0, SEGMENT_HEADER_BYTES));
      return page.kind === 'v2' ? { counter: page.slot?.counter ?? -1, synced: page.slot?.synced.lastSeq ?? -1 } : { counter: -1, synced: -1 };
    };
    const start = await counter();
    const reader = await openFileReader({ directory, pollIntervalMs: 10 });
    open_.push(reader);
    for (const b of chained(EMPTY_IDENTITY, 20)) {
      await storage.write(b.bytes, b.firstSeq, b.lastSeq);
      await storage.sync();
    }
    const busy = await counter();
    expect(busy.counter - start.counter, 'twenty syncs within 200 ms rewrite the slot once or twice, not twenty times').toBeLessThanOrEqual(3);
    await until(async () => (await counter()).synced === 40);
    await until(async () => (await reader.lastSeq()) === 40);
  });
});

describe('a power cut during a roll', () => {
  it('opens when the last segment has its header but neither watermark slot (the header write was torn), and continues there', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 64 * 1024 });
    const p = await openPartition({ storage, name: 'd' });
    await fill(p, 30);
    const head = storage.durableHead();
    await p.close();
    const page = decodeHeaderPage((await readFile(join(directory, segmentName(1)))).subarray(0, SEGMENT_HEADER_BYTES));
    if (page.kind !== 'v2') throw new Error('segment 1 has no header');
    const torn = encodeHeaderPage({ ...page.header, segment: 2, baseSeq: head.lastSeq + 1, previous: head }, { synced: head, acked: head, successor: false, cut: undefined });
    torn.fill(0, 1024, 2048); // both slots lost
    const file = Buffer.alloc(64 * 1024);
    torn.copy(file, 0);
    await writeFile(join(directory, segmentName(2)), file);
    const again = await openFile();
    expect(again.recovery).toMatchObject({ lastSeq: 150, droppedBytes: 0, droppedSeqs: 0 });
    await fill(again, 1, 30);
    await again.close();
    const slots = decodeHeaderPage((await readFile(join(directory, segmentName(2)))).subarray(0, SEGMENT_HEADER_BYTES));
    expect(slots).toMatchObject({ kind: 'v2', slot: { synced: { lastSeq: 155 }, acked: { lastSeq: 155 } } });
  });

  it('opens when the last segment\'s header is torn (fails its CRC) and nothing follows it', async () => {
    const p = await openFile();
    await fill(p, 30);
    await p.close();
    const torn = Buffer.alloc(64 * 1024);
    (await readFile(join(directory, segmentName(1)))).copy(torn, 0, 0, 300); // a header cut short
    await writeFile(join(directory, segmentName(2)), torn);
    const again = await openFile();
    expect(again.recovery).toMatchObject({ lastSeq: 150, droppedSeqs: 0 });
    expect(await segments()).toEqual([segmentName(1)]);
  });

  it('still refuses a segment before the last whose watermark slots are both damaged', async () => {
    const p = await openFile();
    await fill(p, 250);
    await p.close();
    const handle = await open(join(directory, segmentName(1)), 'r+');
    await handle.write(Buffer.alloc(1024, 0xee), 0, 1024, 1024);
    await handle.close();
    const error = await refusal(() => openFile());
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/both watermark slots of the segment header fail their checks/);
  });
});

describe('recovery records', () => {
  it('cuts back to a recorded write/sync failure on reopen, reports it, and clears the record', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 1024 * 1024 });
    let p = await openPartition({ storage, name: 'd' });
    await fill(p, 10);
    const at20 = (await storage.identityAt(20)) as BatchIdentity;
    await p.close();
    // What a writer whose fdatasync failed leaves: a cut record naming the last synced batch.
    await writeSlot(1, (slot) => ({ ...slot, cut: { after: at20, kind: 'fault' } }));
    p = await openFile({ segmentBytes: 1024 * 1024 });
    expect(p.recovery).toMatchObject({ lastSeq: 20, droppedSeqs: 30 });
    expect(p.recovery.droppedReason).toMatch(/a write or sync failed after seq 20/);
    // A retry of a cut command is a new commit, not a duplicate.
    expect((await p.append({ streamId: 's-4', commandId: 'c-4', events: [{ type: 'E', data: te.encode('again') }] })).duplicate).toBe(false);
    await p.close();
    p = await openFile({ segmentBytes: 1024 * 1024 });
    expect(p.recovery).toMatchObject({ lastSeq: 21, droppedSeqs: 0, droppedBytes: 0 });
  });

  it('zeroes stale bytes far behind the tail, beyond the first zero MiB', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 4 * 1024 * 1024 });
    let p = await openPartition({ storage, name: 'd' });
    await fill(p, 5);
    const end = SEGMENT_HEADER_BYTES + (await batchBytes(storage));
    await p.close();
    const path = join(directory, segmentName(1));
    const stale = Buffer.from('stale bytes from an earlier life');
    const at = 3 * 1024 * 1024;
    let handle = await open(path, 'r+');
    await handle.write(stale, 0, stale.length, at);
    await handle.close();
    p = await openFile({ segmentBytes: 4 * 1024 * 1024 });
    expect(p.lastSeq).toBe(25);
    expect(p.recovery.droppedBytes).toBe(at + stale.length - end);
    handle = await open(path, 'r');
    const back = Buffer.alloc(stale.length);
    await handle.read(back, 0, back.length, at);
    await handle.close();
    expect(back.equals(Buffer.alloc(stale.length))).toBe(true);
  });
});

/** A version 1 batch (68-byte marker, digest over the frames only) of single-event commits. */
function v1Batch(firstSeq: number, count: number): Buffer {
  const writer = new FrameWriter();
  for (let i = 0; i < count; i++) {
    const seq = firstSeq + i;
    writer.appendEvent(seq, 0, 1000 + seq, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 'legacy', seq, 'Old', undefined, undefined, te.encode(`v1-${seq}`));
  }
  const frames = Buffer.from(writer.bytes());
  for (let o = 0; o < frames.length; o += frames.readUInt32LE(o)) {
    const n = frames.readUInt32LE(o);
    frames[o + 4] = 1;
    frames.writeUInt32LE(crc32c(frames, o, o + n - 4), o + n - 4);
  }
  const marker = Buffer.alloc(68);
  marker.writeUInt32LE(68, 0);
  marker[4] = 1;
  marker[5] = 2;
  marker[6] = 1;
  marker.writeUInt32LE(firstSeq, 8);
  marker.writeUInt32LE(2000, 16);
  marker.writeUInt32LE(count, 28);
  marker.writeUInt32LE(firstSeq + count - 1, 32);
  marker.writeUInt32LE(20, 40);
  createHash('sha1').update(frames).digest().copy(marker, 44);
  marker.writeUInt32LE(crc32c(marker, 0, 64), 64);
  return Buffer.concat([frames, marker]);
}

describe('version 1 logs', () => {
  it('opens a version 1 log (no segment headers), reads it, and continues in a new version 2 segment', async () => {
    await mkdir(directory, { recursive: true });
    const v1 = Buffer.concat([v1Batch(1, 3), v1Batch(4, 2), v1Batch(6, 4)]);
    const segment = Buffer.alloc(64 * 1024);
    v1.copy(segment, 0);
    await writeFile(join(directory, segmentName(1)), segment);
    let p = await openFile();
    expect(p.recovery).toMatchObject({ lastSeq: 9, droppedBytes: 0, droppedSeqs: 0 });
    expect(p.recovery.head.lastSeq).toBe(9);
    expect((await collect(p)).map((e) => new TextDecoder().decode(e.payload))).toEqual(Array.from({ length: 9 }, (_, i) => `v1-${i + 1}`));
    expect(await segments()).toEqual([segmentName(1), segmentName(2)]);
    // The version 1 segment is history now: untouched; the writer went on in segment 2.
    expect((await readFile(join(directory, segmentName(1)))).subarray(0, v1.length).equals(v1)).toBe(true);
    const page = decodeHeaderPage((await readFile(join(directory, segmentName(2)))).subarray(0, SEGMENT_HEADER_BYTES));
    expect(page).toMatchObject({ kind: 'v2', header: { segment: 2, baseSeq: 10, partition: 'p' } });
    await fill(p, 2);
    expect(p.lastSeq).toBe(19);
    await p.close();
    p = await openFile();
    expect(p.recovery).toMatchObject({ lastSeq: 19, droppedBytes: 0, droppedSeqs: 0 });
    expect((await collect(p)).map((e) => e.seq)).toEqual(Array.from({ length: 19 }, (_, i) => i + 1));
    const reader = await openFileReader({ directory });
    open_.push(reader);
    expect(await readAllWith(reader)).toBe(19);
    expect(await reader.identityAt(5)).toMatchObject({ lastSeq: 5, epoch: 0 });
  });
});

async function collect(p: Partition): Promise<Array<{ seq: number; payload: Uint8Array }>> {
  const out: Array<{ seq: number; payload: Uint8Array }> = [];
  for await (const e of p.read()) out.push(e);
  return out;
}

/** `count` chained batches of two single-event commits each, after `head`. */
function chained(head: BatchIdentity, count: number): Array<{ bytes: Uint8Array; firstSeq: number; lastSeq: number; identity: BatchIdentity }> {
  const out: Array<{ bytes: Uint8Array; firstSeq: number; lastSeq: number; identity: BatchIdentity }> = [];
  let prev = head;
  for (let b = 0; b < count; b++) {
    const writer = new FrameWriter();
    const firstSeq = prev.lastSeq + 1;
    for (let i = 0; i < 2; i++) writer.appendEvent(firstSeq + i, 0, 1, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, `b-${b}`, i + 1, 'E', undefined, undefined, te.encode(`b-${b}-${i}`));
    writer.seal(0, 1, prev.digest);
    const identity = { lastSeq: firstSeq + 1, epoch: 0, digest: Uint8Array.from(writer.lastDigest) };
    out.push({ bytes: Uint8Array.from(writer.bytes()), firstSeq, lastSeq: firstSeq + 1, identity });
    prev = identity;
  }
  return out;
}

async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('readers in other processes', () => {
  it('never return a batch above the durable watermark, though its bytes are already in the file', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 64 * 1024 });
    open_.push(storage);
    await storage.open();
    const [first, second] = chained(EMPTY_IDENTITY, 2);
    await storage.write(first.bytes, first.firstSeq, first.lastSeq);
    await storage.sync();
    const reader = await openFileReader({ directory, pollIntervalMs: 10 });
    open_.push(reader);
    await until(async () => (await reader.lastSeq()) === 2);
    await storage.write(second.bytes, second.firstSeq, second.lastSeq);
    const file = await readFile(join(directory, segmentName(1)));
    expect(file.includes(Buffer.from(second.bytes)), 'the unsynced batch is in the file').toBe(true);
    await new Promise((r) => setTimeout(r, 30));
    expect(await reader.lastSeq()).toBe(2);
    expect(await readAllWith(reader)).toBe(2);
    expect(await reader.identityAt(3)).toBeUndefined();
    await storage.sync();
    await until(async () => (await reader.lastSeq()) === 4);
    expect(await reader.identityAt(3)).toEqual(second.identity);
    expect(await readAllWith(reader)).toBe(4);
  });
});

describe('readers when the writer cuts its log', () => {
  it('start over after an operator\'s truncate instead of serving the removed batches', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 8192, watermarkFlushMs: 0 });
    open_.push(storage);
    await storage.open();
    const batches = chained(EMPTY_IDENTITY, 40);
    for (const b of batches) await storage.write(b.bytes, b.firstSeq, b.lastSeq);
    await storage.sync();
    const reader = await openFileReader({ directory, pollIntervalMs: 10 });
    open_.push(reader);
    await until(async () => (await reader.lastSeq()) === 80);
    await storage.truncate(10, { operatorReason: 'test: cut and rewrite' });
    const other = chained(batches[4].identity, 3).map((b, i) => ({ ...b, tag: i }));
    for (const b of other) await storage.write(b.bytes, b.firstSeq, b.lastSeq);
    await storage.sync();
    await until(async () => (await reader.lastSeq()) === 16);
    const read: Uint8Array[] = [];
    for await (const b of reader.read(11, 16)) read.push(b.bytes);
    expect(read.map((b) => Buffer.from(b).toString('hex'))).toEqual(other.map((b) => Buffer.from(b.bytes).toString('hex')));
    expect(await reader.identityAt(16)).toEqual(other[2].identity);
  });
});

describe('truncate', () => {
  it('refuses to cut below the durable watermark without an operator reason, and records the reason when given', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 8192 });
    open_.push(storage);
    await storage.open();
    const batches = chained(EMPTY_IDENTITY, 40); // several 8 KiB segments
    for (const b of batches) await storage.write(b.bytes, b.firstSeq, b.lastSeq);
    await storage.sync();
    expect((await segments()).length).toBeGreaterThan(2);
    const refused = await refusal(() => storage.truncate(4));
    expect(refused.reason).toBe('Invalid');
    expect(refused.message).toMatch(/pass operatorReason/);
    const cutting = storage.truncate(4, { operatorReason: 'ops: restore drill 2026-12-05' });
    const [late] = chained(batches[39].identity, 1);
    expect((await refusal(() => storage.write(late.bytes, late.firstSeq, late.lastSeq))).message).toMatch(/while a truncate runs/);
    expect((await refusal(() => storage.sync())).reason).toBe('Invalid');
    expect(await cutting).toEqual(batches[1].identity);
    expect(await segments()).toEqual([segmentName(1)]);
    expect(await readFile(join(directory, OPERATOR_LOG), 'utf8')).toMatch(/truncate after seq 4: removes seq 5\.\.80 \(durable up to 80\): ops: restore drill 2026-12-05\n$/);
    const [next] = chained(batches[1].identity, 1);
    await storage.write(next.bytes, next.firstSeq, next.lastSeq);
    await storage.sync();
    await storage.close();
    const again = createFileStorage({ directory, segmentBytes: 8192 });
    open_.push(again);
    expect(await again.open()).toMatchObject({ lastSeq: 6, droppedBytes: 0, droppedSeqs: 0 });
  });
});

describe('limits and interruptions', () => {
  it('refuses segmentBytes above 1 GiB, naming the option and the bound', () => {
    expect(() => createFileStorage({ directory, segmentBytes: SEGMENT_BYTES_MAX + 1 })).toThrow(/options\.segmentBytes must be an integer from 8192 to 1073741824 \(1 GiB\)/);
    expect(() => createFileStorage({ directory, segmentBytes: SEGMENT_BYTES_MAX })).not.toThrow();
  });

  it('zero-fill: leaves no partial segment behind when preallocation runs out of space (2 MiB tmpfs)', () =>
    onSmallTmpfs('small', async (mnt) => {
      const dir = join(mnt, 'p');
      const error = await refusal(() => createFileStorage({ directory: dir, segmentBytes: 4 * 1024 * 1024, preallocate: 'zero-fill' }).open());
      expect(error.reason).toBe('Full');
      expect(error.message).toMatch(/out of space preallocating a segment of 4194304 bytes .* free at least \d+ bytes .* or lower segmentBytes; the partial segment was removed/);
      expect(await segments(dir)).toEqual([]);
      // A segment that fits, then a roll into one that does not: the write fails as Full, no partial segment.
      const storage = await openStorage({ directory: dir, segmentBytes: 1536 * 1024, preallocate: 'zero-fill' });
      const { head, failed } = await appendUntilFailure(storage, EMPTY_IDENTITY);
      expect(failed).toMatchObject({ reason: 'Full' });
      expect(await segments(dir)).toEqual([segmentName(1)]);
      await storage.close();
      const again = await openStorage({ directory: dir, segmentBytes: 1536 * 1024, preallocate: 'zero-fill' }, { lastSeq: head.lastSeq, droppedSeqs: 0 });
      await again.close();
    }));

  it('sparse: a disk that fills up under the writer fails the write as Full, and the partition reopens at its last synced batch (2 MiB tmpfs)', () =>
    onSmallTmpfs('small-sparse', async (mnt) => {
      const dir = join(mnt, 'p');
      // Segments larger than the disk: their size is set, no block is taken until written.
      const storage = await openStorage({ directory: dir, segmentBytes: 4 * 1024 * 1024 });
      expect((await stat(join(dir, segmentName(1)))).size).toBe(4 * 1024 * 1024);
      const { head, failed } = await appendUntilFailure(storage, EMPTY_IDENTITY);
      expect(failed).toMatchObject({ reason: 'Full' });
      expect((failed as Error).message).toMatch(/out of space .*free disk space or move the partition/);
      expect(head.lastSeq).toBeGreaterThan(1000);
      await storage.close();
      const again = await openStorage({ directory: dir, segmentBytes: 4 * 1024 * 1024 }, { lastSeq: head.lastSeq, droppedSeqs: 0 });
      await again.close();
    }));

  it('sparse: a roll into a full disk fails as Full, leaves no file open and no partial segment, and the partition reopens at its last synced batch (2 MiB tmpfs)', () =>
    onSmallTmpfs('small-roll', async (mnt) => {
      const dir = join(mnt, 'p');
      // Segments of one 4 KiB data page: the first batch takes the page, later ones fit in it.
      const storage = await openStorage({ directory: dir, segmentBytes: 8192 });
      const first = await appendUntilFailure(storage, EMPTY_IDENTITY, 1);
      expect(first.failed).toBeUndefined();
      // Then the disk fills up: only the blocks the partition already has remain writable.
      const filler = openSync(join(mnt, 'filler'), 'w');
      const chunk = Buffer.alloc(4096, 1);
      try {
        for (;;) writeSync(filler, chunk);
      } catch (error) {
        expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        closeSync(filler);
      }
      // The batches that fit the segment's page are written; the roll's header needs a block.
      const { head, failed } = await appendUntilFailure(storage, first.head, 1000);
      expect(head.lastSeq).toBeGreaterThan(first.head.lastSeq + 2);
      expect(failed).toMatchObject({ reason: 'Full' });
      expect(await segments(dir)).toEqual([segmentName(1)]);
      await storage.close();
      const openUnder = readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(mnt);
        } catch {
          return false;
        }
      });
      expect(openUnder).toEqual([]);
      await unlink(join(mnt, 'filler'));
      const again = await openStorage({ directory: dir, segmentBytes: 8192 }, { lastSeq: head.lastSeq, droppedSeqs: 0 });
      await again.close();
    }));

  it('zero-fill: stops preallocating when the signal aborts during open(), and removes the partial segment', async () => {
    const controller = new AbortController();
    const storage = createFileStorage({ directory, segmentBytes: SEGMENT_BYTES_MAX, preallocate: 'zero-fill', signal: controller.signal });
    const opening = storage.open().then(
      () => undefined,
      (e: unknown) => e,
    );
    await until(() => stat(join(directory, segmentName(1))).then((s) => s.size > 0, () => false), 10_000);
    controller.abort(new Error('shutting down'));
    const error = (await opening) as StorageError;
    expect(error).toBeInstanceOf(StorageError);
    expect(error.reason).toBe('Closed');
    expect(error.message).toMatch(/interrupted .* the partial segment was removed/);
    expect(await segments()).toEqual([]);
    const p = await openFile();
    expect(p.lastSeq).toBe(0);
  });
});

/** Runs `test` on a 2 MiB tmpfs mounted for it (a disk that fills up), then closes what it opened and unmounts. */
async function onSmallTmpfs(name: string, test: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(root, name);
  await mkdir(mnt);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  try {
    await test(mnt);
  } finally {
    for (const s of open_.splice(0)) await s.close().catch(() => undefined);
    await run('umount', [mnt]);
  }
}

/** Opens a file storage (closed by {@link onSmallTmpfs} if the test does not), expecting `recovery` when given. */
async function openStorage(options: FileStorageOptions, recovery?: object): Promise<PartitionStorage> {
  const storage = createFileStorage(options);
  open_.push(storage);
  const opened = await storage.open();
  if (recovery !== undefined) expect(opened).toMatchObject(recovery);
  return storage;
}

/** Writes and syncs one batch at a time after `head` until one fails or `max` succeeded: the last synced head and the failure. */
async function appendUntilFailure(storage: PartitionStorage, head: BatchIdentity, max = 20_000): Promise<{ head: BatchIdentity; failed: unknown }> {
  for (let i = 0; i < max; i++) {
    const [b] = chained(head, 1);
    try {
      await storage.write(b.bytes, b.firstSeq, b.lastSeq);
      head = await storage.sync();
    } catch (error) {
      return { head, failed: error };
    }
  }
  return { head, failed: undefined };
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

/** Rewrites the newest watermark slot of a segment (as a writer would: the next counter). */
async function writeSlot(segment: number, change: (slot: Parameters<typeof encodeSlot>[0]) => Parameters<typeof encodeSlot>[0]): Promise<void> {
  const path = join(directory, segmentName(segment));
  const page = decodeHeaderPage(await readFile(path).then((b) => b.subarray(0, SEGMENT_HEADER_BYTES)));
  if (page.kind !== 'v2' || page.slot === undefined) throw new Error(`${path} has no watermark slot`);
  const slot = change({ ...page.slot, counter: page.slot.counter + 1 });
  const handle = await open(path, 'r+');
  await handle.write(encodeSlot(slot), 0, 512, slotOffset(slot.counter));
  await handle.close();
}

