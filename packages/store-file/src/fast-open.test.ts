import { copyFile, mkdtemp, open, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventFrame } from '@sluice/framing';
import { StorageError, openPartition, scrubPartition, type Partition, type PartitionStorage, type StorageReader } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFileStorage, openFileReader } from './index.js';
import { SEGMENT_HEADER_BYTES, decodeHeaderPage } from './segment-header.js';
import { segmentName } from './segment-log.js';
import { decodeSidecar, sidecarName } from './segment-sidecar.js';

/**
 * Fast open and frame reads of the file store, on real files. Invariants:
 * - a sealed segment is loaded from its sidecar only when the sidecar verifies, is bound to
 *   that segment and matches the successor's chain; otherwise it is scanned and verified as
 *   without sidecars (damage below the watermark refused), and the sidecar is rewritten;
 * - readFrames returns exactly the frames read() holds for those seqs, CRC-checked, and a
 *   damaged frame rejects with Corrupt naming the file and the seq.
 */
const te = new TextEncoder();
let root: string;
let directory: string;
const opened: Array<{ close(): Promise<void> }> = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-fast-open-'));
  directory = join(root, 'p');
});
afterEach(async () => {
  for (const p of opened.splice(0).reverse()) await p.close().catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

async function openWriter(dir = directory): Promise<{ partition: Partition; storage: PartitionStorage }> {
  const storage = createFileStorage({ directory: dir, segmentBytes: 64 * 1024 });
  const partition = await openPartition({ storage, name: 'f' });
  opened.push(partition);
  return { partition, storage };
}

async function openStorage(dir = directory): Promise<PartitionStorage> {
  const storage = createFileStorage({ directory: dir, segmentBytes: 64 * 1024 });
  await storage.open();
  opened.push(storage);
  return storage;
}

/** Commits of 1–12 events over 7 streams, payloads of 20 B to 9 KiB (some frames span a frame-index interval). */
async function fill(partition: Partition, commits: number, tag = 'x'): Promise<void> {
  for (let i = 0; i < commits; i++) {
    const size = i % 11 === 5 ? 9000 : 20 + ((i * 37) % 300);
    await partition.append({
      streamId: `s-${i % 7}`,
      events: Array.from({ length: 1 + (i % 12) }, (_, k) => ({ type: `E${k}`, data: te.encode(`${tag}:${i}.${k}:`.padEnd(size, '-')) })),
    });
  }
}

async function sidecars(): Promise<string[]> {
  return (await readdir(directory)).filter((n) => n.endsWith('.idx')).sort();
}

async function segments(): Promise<string[]> {
  return (await readdir(directory)).filter((n) => n.endsWith('.seg')).sort();
}

async function flipByte(segment: number, offset: number): Promise<void> {
  const h = await open(join(directory, segmentName(segment)), 'r+');
  try {
    const b = Buffer.alloc(1);
    await h.read(b, 0, 1, offset);
    b[0] ^= 0x5a;
    await h.write(b, 0, 1, offset);
  } finally {
    await h.close();
  }
}

async function refusal(run: () => Promise<unknown>): Promise<StorageError> {
  const error = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'refused').toBeInstanceOf(StorageError);
  return error as StorageError;
}

async function closeAll(): Promise<void> {
  for (const p of opened.splice(0).reverse()) await p.close();
}

/** Writes a log of several sealed segments and closes it; returns its last seq. */
async function sealedLog(): Promise<number> {
  const { partition } = await openWriter();
  await fill(partition, 120);
  const last = partition.lastSeq;
  await closeAll();
  expect((await segments()).length).toBeGreaterThanOrEqual(4);
  return last;
}

describe('sidecars of sealed segments', () => {
  it('are written for every sealed segment, bound to it, and never for the last one (always scanned)', async () => {
    const { partition } = await openWriter();
    await fill(partition, 120);
    const used = async (): Promise<number> => {
      let n = 0;
      for (const name of await segments()) if (decodeHeaderPage(await readFile(join(directory, name))).kind === 'v2') n++;
      return n;
    };
    const current = await used();
    expect(current).toBeGreaterThanOrEqual(4);
    await partition.close();
    await closeAll();
    // Written in the background at each roll; close waits for them.
    expect(await sidecars()).toEqual(Array.from({ length: current - 1 }, (_, i) => sidecarName(i + 1)));
    await openStorage();
    expect(await sidecars()).toEqual(Array.from({ length: current - 1 }, (_, i) => sidecarName(i + 1)));
    const bytes = await readFile(join(directory, sidecarName(1)));
    const header = await readFile(join(directory, segmentName(1)));
    const incarnation = header.subarray(16, 32);
    const sidecar = decodeSidecar(bytes, { incarnation, segment: 1, baseSeq: 1 });
    expect(typeof sidecar).toBe('object');
    expect(decodeSidecar(bytes, { incarnation, segment: 2, baseSeq: 1 })).toMatch(/not segment 2/);
  });

  it('let open() skip sealed segments: a damaged byte in an old segment goes unnoticed by open() but scrub reports it; without the sidecar open() refuses as before', async () => {
    const last = await sealedLog();
    await flipByte(1, SEGMENT_HEADER_BYTES + 1000);
    const storage = await openStorage();
    expect((await storage.head()).lastSeq).toBe(last);
    const report = await scrubPartition(storage);
    expect(report.ok).toBe(false);
    expect(report.copies[0].damage?.seq).toBe(1);
    await closeAll();

    await unlink(join(directory, sidecarName(1)));
    const error = await refusal(() => openStorage());
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toMatch(/restore the partition/);
  });

  it('let a reader in another process skip sealed segments too, and it still reads everything', async () => {
    const last = await sealedLog();
    const reader = await openFileReader({ directory });
    opened.push(reader);
    expect((await reader.head()).lastSeq).toBe(last);
    let n = 0;
    for await (const b of reader.read(1, last)) n = b.lastSeq;
    expect(n).toBe(last);
  });

  describe('a sidecar that cannot be trusted is never used: the segment is scanned (damage refused) and the sidecar rewritten', () => {
    const cases: Array<{ name: string; segment: number; spoil: (path: string) => Promise<void> }> = [
      { name: 'missing', segment: 1, spoil: (path) => unlink(path) },
      { name: 'truncated', segment: 1, spoil: async (path) => truncate(path, 200) },
      {
        name: 'corrupt (one flipped byte in its frame positions)',
        segment: 1,
        spoil: async (path) => {
          const b = await readFile(path);
          b[b.length - 40] ^= 1;
          await writeFile(path, b);
        },
      },
      {
        name: 'foreign (copied from another partition)',
        segment: 1,
        spoil: async (path) => {
          const other = join(root, 'other');
          const { partition } = await openWriter(other);
          await fill(partition, 120);
          await partition.close();
          await copyFile(join(other, sidecarName(1)), path);
        },
      },
    ];
    for (const c of cases) {
      it(`${c.name}`, async () => {
        const last = await sealedLog();
        const path = join(directory, sidecarName(c.segment));
        const good = await readFile(path);
        await c.spoil(path);
        // Not trusted: a damaged byte in that segment makes open() refuse, as without sidecars.
        await flipByte(c.segment, SEGMENT_HEADER_BYTES + 1000);
        expect((await refusal(() => openStorage())).reason).toBe('Corrupt');
        await flipByte(c.segment, SEGMENT_HEADER_BYTES + 1000);
        // Undamaged: open() scans the segment and writes the sidecar again.
        const storage = await openStorage();
        expect((await storage.head()).lastSeq).toBe(last);
        await closeAll();
        expect(Buffer.compare(await readFile(path), good)).toBe(0);
      });
    }

    it('stale (left from an earlier history of the segment: its successor names another last batch)', async () => {
      const { partition } = await openWriter();
      await fill(partition, 120);
      await closeAll();
      const path = join(directory, sidecarName(2));
      const stale = await readFile(path);
      // Rewrite history from the middle of segment 2 on.
      const first = decodeSidecar(stale, { incarnation: (await readFile(join(directory, segmentName(2)))).subarray(16, 32), segment: 2, baseSeq: stale.readUInt32LE(40) });
      if (typeof first === 'string') throw new Error(first);
      const cutAt = first.lastSeqs[Math.floor(first.lastSeqs.length / 2)];
      const storage = await openStorage();
      await storage.truncate(cutAt, { operatorReason: 'test: rewrite history' });
      await closeAll();
      expect(await readdir(directory)).not.toContain(sidecarName(2));
      const again = await openWriter();
      await fill(again.partition, 120, 'y');
      const last = again.partition.lastSeq;
      await closeAll();
      const fresh = await readFile(path);
      expect(Buffer.compare(fresh, stale)).not.toBe(0);
      await writeFile(path, stale);
      await flipByte(2, SEGMENT_HEADER_BYTES + 1000);
      expect((await refusal(() => openStorage())).reason).toBe('Corrupt');
      await flipByte(2, SEGMENT_HEADER_BYTES + 1000);
      const reopened = await openStorage();
      expect((await reopened.head()).lastSeq).toBe(last);
      await closeAll();
      expect(Buffer.compare(await readFile(path), fresh)).toBe(0);
    });
  });
});

function same(frame: EventFrame, expected: EventFrame): void {
  expect({ seq: frame.seq, streamId: frame.streamId, streamVersion: frame.streamVersion, eventType: frame.eventType, frameBytes: frame.frameBytes }).toEqual({
    seq: expected.seq,
    streamId: expected.streamId,
    streamVersion: expected.streamVersion,
    eventType: expected.eventType,
    frameBytes: expected.frameBytes,
  });
  expect(Buffer.compare(Buffer.from(frame.payload), Buffer.from(expected.payload))).toBe(0);
}

async function allFrames(reader: StorageReader): Promise<EventFrame[]> {
  const out: EventFrame[] = [];
  for await (const b of reader.read(1, Number.MAX_SAFE_INTEGER)) out.push(...b.frames);
  return out;
}

async function collect(reader: StorageReader, seqs: number[]): Promise<EventFrame[]> {
  const out: EventFrame[] = [];
  for await (const f of (reader.readFrames as (s: number[]) => AsyncIterable<EventFrame>).call(reader, seqs)) out.push(f);
  return out;
}

describe('readFrames', () => {
  async function check(reader: StorageReader, all: EventFrame[]): Promise<void> {
    const last = all.length;
    const pick = (keep: (seq: number) => boolean): number[] => all.map((f) => f.seq).filter(keep);
    const lists = [
      pick(() => true),
      pick((s) => s % 7 === 3),
      all.filter((f) => f.streamId === 's-4').map((f) => f.seq),
      pick((s) => s > last / 3 && s < last / 3 + 300),
      [1, last],
      pick((s) => (s * 2654435761) % 97 < 3),
      [],
    ];
    for (const seqs of lists) {
      const got = await collect(reader, seqs);
      expect(got.map((f) => f.seq)).toEqual(seqs);
      for (const f of got) same(f, all[f.seq - 1]);
    }
  }

  it('returns exactly the frames read() holds, from the writer (positions built while writing), after reopening (from sidecars) and from a reader', async () => {
    const { partition, storage } = await openWriter();
    await fill(partition, 150);
    expect(storage.capabilities.frameReads).toBe(true);
    const all = await allFrames(storage);
    expect(all.length).toBe(partition.lastSeq);
    await check(storage, all);
    await closeAll();
    const reopened = await openStorage();
    await check(reopened, all);
    const reader = await openFileReader({ directory });
    opened.push(reader);
    await check(reader, all);
  });

  it('refuses bad seq lists with Invalid', async () => {
    const { partition, storage } = await openWriter();
    await fill(partition, 5);
    const head = partition.lastSeq;
    for (const seqs of [[2, 1], [3, 3], [0], [head + 1], [1.5]]) {
      const error = await refusal(() => collect(storage, seqs));
      expect(error.reason).toBe('Invalid');
      expect(error.message).toMatch(/readFrames/);
    }
  });

  it('rejects with Corrupt naming the file, the offset and the seq when a byte inside the frame is flipped', async () => {
    const { partition } = await openWriter();
    await fill(partition, 120);
    await closeAll();
    const seg = await readFile(join(directory, segmentName(1)));
    const at = seg.indexOf('x:3.2:');
    expect(at).toBeGreaterThan(SEGMENT_HEADER_BYTES);
    await flipByte(1, at + 3);
    const storage = await openStorage(); // segment 1 comes from its sidecar: open does not notice
    const all: number[] = [];
    // Find the seq of event 3.2: commit i holds 1 + (i % 12) events.
    let seq = 0;
    for (let i = 0; i < 3; i++) seq += 1 + (i % 12);
    seq += 3;
    all.push(seq);
    const error = await refusal(() => collect(storage, all));
    expect(error.reason).toBe('Corrupt');
    expect(error.message).toContain(segmentName(1));
    expect(error.message).toContain(`seq ${seq}`);
    expect(error.message).toMatch(/offset \d+/);
    // Its neighbours still read.
    expect((await collect(storage, [seq - 1, seq + 1])).map((f) => f.seq)).toEqual([seq - 1, seq + 1]);
  });
});
