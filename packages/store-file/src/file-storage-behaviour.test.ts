import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPartition, StorageError, type Partition } from '@sluice/store';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LOCK_FILE, createFileStorage, openFileReader } from './index.js';
import { segmentName } from './segment-log.js';
import { SEGMENT_HEADER_BYTES } from './segment-header.js';

const te = new TextEncoder();
let directory: string;
const partitions: Partition[] = [];

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-file-b-'));
});
afterEach(async () => {
  for (const p of partitions.splice(0)) await p.close();
  await rm(directory, { recursive: true, force: true });
});

async function openFile(options: Partial<Parameters<typeof createFileStorage>[0]> = {}): Promise<Partition> {
  const p = await openPartition({ storage: createFileStorage({ directory, segmentBytes: 64 * 1024, ...options }), name: 'b' });
  partitions.push(p);
  return p;
}

async function fill(p: Partition, commits: number, eventsPer = 10, bytes = 100): Promise<void> {
  for (let i = 0; i < commits; i++) {
    await p.append({ streamId: `s-${i % 5}`, events: Array.from({ length: eventsPer }, (_, k) => ({ type: 'E', data: te.encode(`${i}.${k}`.padEnd(bytes, '-')) })) });
  }
}

describe('segments', () => {
  it.each(['sparse', 'zero-fill'] as const)('%s: preallocates segments and rolls to the next one, reading across them after reopening', async (preallocate) => {
    let p = await openFile({ preallocate });
    // The first segment has its full size at once; zero-fill also has its blocks, sparse only the header's.
    const first = await stat(join(directory, segmentName(1)));
    expect(first.size).toBe(64 * 1024);
    if (preallocate === 'zero-fill') expect(first.blocks * 512).toBeGreaterThanOrEqual(64 * 1024);
    else expect(first.blocks * 512).toBeLessThan(64 * 1024);
    await fill(p, 100); // ~180 KB over 64 KiB segments
    const segments = (await readdir(directory)).filter((n) => n.endsWith('.seg')).sort();
    expect(segments.length).toBeGreaterThanOrEqual(3);
    expect((await stat(join(directory, segments[0]))).size).toBe(64 * 1024);
    await p.close();
    p = await openFile({ preallocate });
    expect(p.lastSeq).toBe(1000);
    let seq = 0;
    for await (const e of p.read()) expect(e.seq).toBe(++seq);
    expect(seq).toBe(1000);
    expect((await p.append({ streamId: 's-0', events: [{ type: 'E', data: te.encode('next') }] })).firstSeq).toBe(1001);
  });

  it('gives a batch larger than a segment a segment of its own', async () => {
    const p = await openFile();
    await fill(p, 1, 10, 10);
    const big = await p.append({ streamId: 'big', events: Array.from({ length: 3 }, () => ({ type: 'Big', data: new Uint8Array(40 * 1024) })) });
    expect(big.lastSeq).toBe(13);
    const sizes = (await readdir(directory)).filter((n) => n.endsWith('.seg')).length;
    expect(sizes).toBeGreaterThanOrEqual(2);
    expect((await collectSeqs(p))).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
  });

  it('refuses to open when committed data in an earlier segment is damaged', async () => {
    let p = await openFile();
    await fill(p, 60);
    await p.close();
    const handle = await open(join(directory, segmentName(1)), 'r+');
    await handle.write(Buffer.from('garbage!'), 0, 8, SEGMENT_HEADER_BYTES + 1000);
    await handle.close();
    const error = await openFile().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ reason: 'Corrupt' });
    expect((error as Error).message).toMatch(/restore the partition/);
  });

  it('refuses to open a log holding frames of a newer format version, and leaves them alone', async () => {
    let p = await openFile();
    await fill(p, 3);
    await p.close();
    // Append a sealed commit, then rewrite its first frame's version byte (and CRC) as version 4.
    const { FrameWriter, crc32c } = await import('@sluice/framing');
    const writer = new FrameWriter();
    writer.appendEvent(31, 0, 1, 3, 'future', 1, 'E', undefined, undefined, te.encode('from the future'));
    writer.seal(0, 1);
    const bytes = Buffer.from(writer.bytes());
    const frameBytes = bytes.readUInt32LE(0);
    bytes[4] = 4;
    bytes.writeUInt32LE(crc32c(bytes, 0, frameBytes - 4), frameBytes - 4);
    const { appendRawToFileLog } = await import('./raw-append.fixture.js');
    await appendRawToFileLog(directory, bytes);
    const error = await openFile().catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Unsupported' });
    expect((error as Error).message).toMatch(/newer @sluice\/store-file/);
    // Nothing was cut: the frame is still there for a newer reader.
    const { SegmentIndex } = await import('./segment-log.js');
    const index = new SegmentIndex(directory);
    const tail = await index.scanForward();
    await index.close();
    expect(tail.report?.reason).toBe('unsupported-version');
  });

  it('refuses to open when a zeroed length field hides the commits after it, instead of overwriting them', async () => {
    let p = await openFile();
    for (let i = 1; i <= 3; i++) await p.append({ streamId: 's', commandId: `c${i}`, events: [{ type: 'E', data: te.encode(`event-${i}`) }] });
    await p.close();
    const handle = await open(join(directory, segmentName(1)), 'r+');
    const head = Buffer.alloc(4096);
    await handle.read(head, 0, head.length, SEGMENT_HEADER_BYTES);
    const starts: number[] = [];
    for (let o = 0; head.readUInt32LE(o) !== 0; o += head.readUInt32LE(o)) starts.push(SEGMENT_HEADER_BYTES + o);
    await handle.write(Buffer.alloc(4), 0, 4, starts[2]); // commit 2's first frame: event, marker, *event*
    await handle.close();
    const error = await openFile().catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Corrupt' });
    expect((error as Error).message).toMatch(/holds seq 1\.\.1 .* had made seq 3 durable/);
  });

  it('drops a large torn, unsigned tail', async () => {
    let p = await openFile({ segmentBytes: 1024 * 1024 });
    await fill(p, 1);
    await p.close();
    const { FrameWriter } = await import('@sluice/framing');
    const writer = new FrameWriter();
    for (let i = 0; i < 4000; i++) writer.appendEvent(11 + i, 0, 1, i === 0 ? 1 : i === 3999 ? 2 : 0, 'torn', i + 1, 'E', undefined, undefined, te.encode('x'));
    const { appendRawToFileLog } = await import('./raw-append.fixture.js');
    await appendRawToFileLog(directory, writer.bytes());
    p = await openFile({ segmentBytes: 1024 * 1024 });
    expect(p.lastSeq).toBe(10);
    expect(p.recovery.droppedBytes).toBe(writer.bytes().length);
  });

  it('refuses to open when a commit in the middle of the last segment is damaged, instead of cutting the commits after it', async () => {
    let p = await openFile({ segmentBytes: 1024 * 1024 });
    await fill(p, 30);
    await p.close();
    const handle = await open(join(directory, segmentName(1)), 'r+');
    await handle.write(Buffer.from('bitrot'), 0, 6, SEGMENT_HEADER_BYTES + 5000);
    await handle.close();
    const error = await openFile({ segmentBytes: 1024 * 1024 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Corrupt' });
    expect((error as Error).message).toMatch(/had made seq 300 durable: acknowledged commits are missing or damaged; restore/);
  });
});

describe('engine-driven writes', () => {
  it('keeps the chain across large groups written one at a time (the engine reuses its group buffers)', async () => {
    const p = await openPartition({ storage: createFileStorage({ directory, segmentBytes: 1024 * 1024 }), name: 'b', groupsInFlightMax: 1 });
    partitions.push(p);
    const data = new Uint8Array(100);
    const templates = Array.from({ length: 8 }, () => Array.from({ length: 1000 }, () => ({ type: 'E', data })));
    let next = 0;
    await Promise.all(
      templates.map(async (events) => {
        while (next < 30) {
          const n = next++;
          await p.append({ streamId: `s-${n}`, events });
        }
      }),
    );
    expect(p.lastSeq).toBe(30_000);
    expect((await collectSeqs(p)).length).toBe(30_000);
  });
});

async function collectSeqs(p: Partition): Promise<number[]> {
  const seqs: number[] = [];
  for await (const e of p.read()) seqs.push(e.seq);
  return seqs;
}

describe('options', () => {
  it('rejects invalid options with typed errors', () => {
    expect(() => createFileStorage({ directory: '' })).toThrow(StorageError);
    expect(() => createFileStorage({ directory, segmentBytes: 100 })).toThrow(/segmentBytes/);
    expect(() => createFileStorage({ directory, fsync: 'sometimes' as never })).toThrow(/interval:<ms>ms/);
    expect(() => createFileStorage({ directory, preallocate: 'fallocate' as never })).toThrow(/options\.preallocate must be "sparse" or "zero-fill", got "fallocate"/);
  });

  it('reports a missing directory when asked not to create it', async () => {
    const error = await openFile({ directory: join(directory, 'nope'), createDirectory: false }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'NotFound' });
  });

  for (const fsync of ['none', 'interval:5ms'] as const) {
    it(`keeps every commit with fsync "${fsync}" across a clean close`, async () => {
      let p = await openFile({ fsync });
      await fill(p, 20);
      await p.close();
      p = await openFile({ fsync });
      expect(p.lastSeq).toBe(200);
      const storage = createFileStorage({ directory, fsync });
      expect(storage.capabilities.durability).toEqual(fsync === 'none' ? { kind: 'none' } : { kind: 'interval', intervalMs: 5 });
    });
  }
});

describe('writer lock', () => {
  it('takes over a lock left with this very PID by an earlier life (a restarted container reuses PIDs)', async () => {
    const { hostname } = await import('node:os');
    await writeFile(join(directory, LOCK_FILE), `${process.pid}\n${hostname()}\nearlier-life\n`);
    const p = await openFile();
    expect(p.lastSeq).toBe(0);
    const second = await openFile().catch((e: unknown) => e);
    expect(second).toMatchObject({ reason: 'Locked' });
  });

  it('takes over the lock of a writer process that is gone', async () => {
    await writeFile(join(directory, LOCK_FILE), '999999999\n\nstale\n');
    const p = await openFile();
    expect((await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('x') }] })).firstSeq).toBe(1);
  });
});

describe('other processes', () => {
  let script: string;
  beforeAll(async () => {
    // Inside the workspace: the writer lock loads its native addon from node_modules at run time.
    const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
    await mkdir(cache, { recursive: true });
    script = join(cache, `sluice-file-child-${process.pid}.mjs`);
    await build({
      stdin: {
        contents: `
          import { openPartition } from '@sluice/store';
          import { createFileStorage } from './src/index.ts';
          const [dir, mode, count] = process.argv.slice(2);
          try {
            const p = await openPartition({ storage: createFileStorage({ directory: dir, segmentBytes: 64 * 1024 }) });
            if (mode === 'write') {
              for (let i = 0; i < Number(count); i++) await p.append({ streamId: 'child', events: [{ type: 'C', data: new TextEncoder().encode(String(i)) }] });
            }
            await p.close();
            process.stdout.write('ok\\n');
          } catch (e) {
            process.stdout.write((e.reason ?? 'error') + ' ' + e.message + '\\n');
          }`,
        resolveDir: fileURLToPath(new URL('..', import.meta.url)),
        loader: 'ts',
      },
      outfile: script,
      bundle: true,
      platform: 'node',
      format: 'esm',
      conditions: ['@sluice/source'],
      logLevel: 'silent',
    });
  });
  afterAll(async () => {
    await rm(script, { force: true });
  });

  const runChild = (mode: string, count = 0): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [script, directory, mode, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(out.trim()));
    });

  it('refuses a second writer in another process', async () => {
    const p = await openFile();
    await fill(p, 1);
    const answer = await runChild('write', 1);
    expect(answer).toMatch(/^Locked .*another writer \(pid \d+\)/);
    expect(p.lastSeq).toBe(10);
  });

  it('lets a reader tail the log while another process writes it', async () => {
    await openFile().then((p) => p.close()); // create the directory and first segment
    const reader = await openFileReader({ directory, pollIntervalMs: 20 });
    const controller = new AbortController();
    const seen: string[] = [];
    const tail = (async () => {
      for await (const batch of reader.tail(1, { signal: controller.signal })) {
        for (const frame of batch.frames) seen.push(new TextDecoder().decode(frame.payload));
        if (seen.length === 300) controller.abort();
      }
    })();
    expect(await runChild('write', 300)).toBe('ok');
    await tail;
    await reader.close();
    expect(seen).toEqual(Array.from({ length: 300 }, (_, i) => String(i)));
  });
});
