/**
 * Store benchmark: durable appends of 100-byte events on the file store, beside the raw
 * write+fdatasync rate of pre-encoded bytes measured in the same run.
 *
 *   npm run bench:store               full run
 *   npm run bench:store -- --smoke    seconds-long check that it works (CI)
 *   --dir PATH   where the files go (default: the OS temp folder)
 *   --out FILE   also write the rows as JSON
 *   --among N    events in the log of the "100-event stream among N events" rows (default 2,000,000)
 */
import { closeSync, fdatasyncSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter } from '@sluice/framing';
import { createMemoryStorage, openPartition, type EventData, type Partition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { Latencies, formatBenchRows, row, timedConcurrently, type BenchRow } from './stats.js';
import { streamReadAmong } from './stream-read-bench.js';

const PAYLOAD_BYTES = 100;
const STREAMS = 10_000;

export interface StoreBenchOptions {
  readonly smoke: boolean;
  readonly directory: string;
  /** Events in the log of the stream-read rows. @default 2,000,000 (20,000 in smoke mode) */
  readonly streamAmongEvents?: number;
}

function payload(bytes = PAYLOAD_BYTES): Uint8Array {
  const p = new Uint8Array(bytes);
  for (let i = 0; i < p.length; i++) p[i] = (i * 31) & 0xff;
  return p;
}

/**
 * write+fdatasync of pre-encoded frames, `perWrite` events per write: the disk's limit.
 * The row's bytes are the encoded frames written (payload plus frame overhead).
 */
export async function rawFdatasync(directory: string, perWrite: number, events: number, payloadBytes = PAYLOAD_BYTES, files = 1): Promise<BenchRow> {
  const bytes = preEncoded(perWrite, payloadBytes);
  const writes = Math.max(1, Math.floor(events / perWrite));
  const paths = Array.from({ length: files }, (_, i) => join(directory, `raw-${perWrite}-${payloadBytes}-${i}.bin`));
  const handles = await Promise.all(paths.map((path) => open(path, 'w+')));
  try {
    // Zero-filled ahead of the clock: the best case of the disk (no block is allocated inside an
    // fdatasync). The file store preallocates sparse by default and so allocates blocks as it
    // writes (its README, "Preallocation"): that cost is part of what these rows measure against.
    const zeros = Buffer.alloc(1024 * 1024);
    for (const handle of handles) {
      for (let p = 0; p < bytes.length * writes; p += zeros.length) await handle.write(zeros, 0, zeros.length, p);
      await handle.datasync();
    }
    const latencies = new Latencies();
    const start = performance.now();
    let position = 0;
    for (let w = 0; w < writes; w++) {
      const t = performance.now();
      // Several files (a mirror's limit): written, then fdatasync'ed, in parallel on the thread pool.
      await Promise.all(handles.map((h) => h.write(bytes, 0, bytes.length, position)));
      await Promise.all(handles.map((h) => h.datasync()));
      position += bytes.length;
      latencies.record(performance.now() - t);
    }
    const ms = performance.now() - start;
    const where = files === 1 ? '' : ` to ${files} files in parallel`;
    return row(`raw write+fdatasync${where}, ${perWrite} event(s) per write`, writes * perWrite, position, ms, latencies, 'pre-encoded bytes, preallocated file');
  } finally {
    await Promise.all(handles.map((h) => h.close()));
    await Promise.all(paths.map((path) => rm(path, { force: true })));
  }
}

/**
 * Synchronous writeSync + fdatasyncSync of pre-encoded frames into a preallocated file, `perWrite`
 * events per write: no event loop, no thread pool hop. The highest honest limit of the disk.
 *
 * `prepare` says how the file is made ready before the clock starts: `"zero-fill"` (zeros
 * written and synced: no write allocates a block, the disk's best case) or `"sparse"` (only its
 * size set: every write takes fresh blocks, whose allocation each fdatasync commits to the file
 * system's journal, as for any log that grows, and the file store's default segments).
 */
export async function rawFdatasyncSync(
  directory: string,
  perWrite: number,
  events: number,
  payloadBytes = PAYLOAD_BYTES,
  files = 1,
  prepare: 'zero-fill' | 'sparse' = 'zero-fill',
): Promise<BenchRow> {
  const bytes = preEncoded(perWrite, payloadBytes);
  const writes = Math.max(1, Math.floor(events / perWrite));
  const paths = Array.from({ length: files }, (_, i) => join(directory, `raw-sync-${prepare}-${perWrite}-${payloadBytes}-${i}.bin`));
  const fds = paths.map((path) => openSync(path, 'w+'));
  try {
    const zeros = Buffer.alloc(1024 * 1024);
    for (const fd of fds) {
      if (prepare === 'sparse') ftruncateSync(fd, bytes.length * writes);
      else for (let p = 0; p < bytes.length * writes; p += zeros.length) writeSync(fd, zeros, 0, zeros.length, p);
      fdatasyncSync(fd);
    }
    const latencies = new Latencies();
    const start = performance.now();
    let position = 0;
    for (let w = 0; w < writes; w++) {
      const t = performance.now();
      for (const fd of fds) writeSync(fd, bytes, 0, bytes.length, position);
      for (const fd of fds) fdatasyncSync(fd);
      position += bytes.length;
      latencies.record(performance.now() - t);
    }
    const ms = performance.now() - start;
    const where = files === 1 ? '' : ` to ${files} files one after the other`;
    const sparse = prepare === 'sparse' ? ' into a sparse file' : '';
    const note = prepare === 'sparse' ? 'synchronous loop, pre-encoded bytes, sparse file: the limit when every write takes fresh blocks' : 'synchronous loop, pre-encoded bytes, preallocated file: the disk limit';
    return row(`raw writeSync+fdatasyncSync${where}${sparse}, ${perWrite} event(s) per write`, writes * perWrite, position, ms, latencies, note);
  } finally {
    for (const fd of fds) closeSync(fd);
    for (const path of paths) rmSync(path, { force: true });
  }
}

/** `perWrite` pre-encoded 100-byte-stream events sealed as one batch: what the raw rows write. */
function preEncoded(perWrite: number, payloadBytes: number): Uint8Array {
  const writer = new FrameWriter({ initialBytes: 4 * 1024 * 1024 });
  const data = payload(payloadBytes);
  for (let i = 0; i < perWrite; i++) {
    writer.appendEvent(i + 1, 0, Date.now(), FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, `stream-${i % STREAMS}`, 1, 'BenchEvent', undefined, undefined, data);
  }
  writer.seal(0, Date.now());
  return writer.bytes();
}

async function withPartition<T>(directory: string, name: string, run: (p: Partition) => Promise<T>, groupsInFlightMax?: number): Promise<T> {
  const partition = await openPartition({ storage: createFileStorage({ directory: join(directory, name), fsync: 'commit' }), name, groupsInFlightMax });
  try {
    return await run(partition);
  } finally {
    await partition.close();
  }
}

/**
 * Appends of `batch` 100-byte events each on `partition`, `pipeline` appends in flight so
 * encoding overlaps the write; one stream per append, round-robin over 10,000 streams. Every
 * backend's batched row runs this same loop.
 */
export async function pipelinedBatches(partition: Partition, batch: number, events: number, pipeline: number, name: string, note: string): Promise<BenchRow> {
  const data = payload();
  const batches = Math.max(1, Math.floor(events / batch));
  const templates: EventData[][] = [];
  for (let t = 0; t < pipeline; t++) templates.push(Array.from({ length: batch }, () => ({ type: 'BenchEvent', data })));
  const latencies = new Latencies();
  let next = 0;
  const start = performance.now();
  await Promise.all(
    templates.map(async (events) => {
      while (next < batches) {
        const n = next++;
        const t = performance.now();
        await partition.append({ streamId: `stream-${n % STREAMS}`, events });
        latencies.record(performance.now() - t);
      }
    }),
  );
  const ms = performance.now() - start;
  const total = batches * batch;
  return row(name, total, total * PAYLOAD_BYTES, ms, latencies, note);
}

/**
 * (a) appends of `batch` events each on the file store. `groupsInFlightMax` 1 turns the
 * engine's write/sync pipelining off (one group written and synced at a time), for comparison.
 */
export async function batchedAppends(directory: string, batch: number, events: number, pipeline: number, groupsInFlightMax?: number): Promise<BenchRow> {
  const serial = groupsInFlightMax === 1;
  return withPartition(
    directory,
    `batch-${batch}${serial ? '-serial' : ''}`,
    (partition) =>
      pipelinedBatches(
        partition,
        batch,
        events,
        pipeline,
        `sluice file store, batches of ${batch}${serial ? ', one group in flight' : ''}`,
        `${pipeline} appends in flight, fsync per commit, ${serial ? 'write and sync of one group at a time' : 'group N+1 written while group N syncs'}`,
      ),
    groupsInFlightMax,
  );
}

/** (b) `concurrency` appenders, each sending single-event appends one after another. */
export async function concurrentSingles(directory: string, concurrency: number, events: number): Promise<BenchRow> {
  return withPartition(directory, `concurrent-${concurrency}`, async (partition) => {
    const data = payload();
    const { ms, latencies } = await timedConcurrently(concurrency, events, (n) => partition.append({ streamId: `stream-${n % STREAMS}`, events: [{ type: 'BenchEvent', data }] }));
    return row(`sluice file store, ${concurrency} concurrent single-event appends`, events, events * PAYLOAD_BYTES, ms, latencies, 'group commit, fsync per group');
  });
}

/** (c) one single-event append at a time. */
export async function sequentialSingles(directory: string, events: number): Promise<BenchRow> {
  return withPartition(directory, 'sequential', async (partition) => {
    const data = payload();
    const latencies = new Latencies();
    const start = performance.now();
    for (let n = 0; n < events; n++) {
      const t = performance.now();
      await partition.append({ streamId: `stream-${n % STREAMS}`, events: [{ type: 'BenchEvent', data }] });
      latencies.record(performance.now() - t);
    }
    const ms = performance.now() - start;
    return row('sluice file store, sequential single-event appends', events, events * PAYLOAD_BYTES, ms, latencies, 'fsync per commit');
  });
}

export async function runStoreBench(options: StoreBenchOptions): Promise<BenchRow[]> {
  const scale = options.smoke ? 0.01 : 1;
  const directory = await mkdtemp(join(options.directory, 'sluice-bench-'));
  try {
    const rows: BenchRow[] = [];
    rows.push(await rawFdatasyncSync(directory, 1000, Math.max(10_000, 3_000_000 * scale)));
    rows.push(await rawFdatasync(directory, 1000, Math.max(10_000, 3_000_000 * scale)));
    rows.push(await batchedAppends(directory, 1000, Math.max(10_000, 3_000_000 * scale), 8));
    rows.push(await batchedAppends(directory, 1000, Math.max(10_000, 3_000_000 * scale), 8, 1));
    rows.push(await rawFdatasync(directory, 1, Math.max(200, 10_000 * scale)));
    rows.push(await concurrentSingles(directory, 1000, Math.max(10_000, 1_000_000 * scale)));
    rows.push(await sequentialSingles(directory, Math.max(200, 10_000 * scale)));
    // Loading one aggregate from a big log: frame reads against batch reads, per backend.
    const among = options.streamAmongEvents ?? (options.smoke ? 20_000 : 2_000_000);
    const shape = options.smoke ? { commitEvents: 10, samples: 20 } : { commitEvents: 1000, samples: 200 };
    rows.push(...(await streamReadAmong({ backend: 'memory', totalEvents: among, ...shape, create: async () => ({ storage: createMemoryStorage(), cleanup: async () => undefined }) })));
    rows.push(
      ...(await streamReadAmong({
        backend: 'file',
        totalEvents: among,
        ...shape,
        create: async () => {
          const dir = join(directory, 'stream-read-file');
          return { storage: createFileStorage({ directory: dir, fsync: 'none' }), cleanup: () => rm(dir, { recursive: true, force: true }) };
        },
      })),
    );
    rows.push(
      ...(await streamReadAmong({
        backend: 'lmdb',
        totalEvents: among,
        ...shape,
        create: async () => {
          const dir = join(directory, 'stream-read-lmdb');
          return { storage: createLmdbStorage({ directory: dir, fsync: 'none' }), cleanup: () => rm(dir, { recursive: true, force: true }) };
        },
      })),
    );
    return rows;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

export function formatStoreRows(rows: readonly BenchRow[]): string {
  const rawSingle = rows.find((r) => r.name.startsWith('raw') && r.name.includes(' 1 event'));
  const rawSync = rows.find((r) => r.name.startsWith('raw writeSync') && r.name.includes(' 1000 event'));
  return formatBenchRows(rows, (r) => {
    if (r.name.includes('sequential') && rawSingle !== undefined) return `; ${((r.eventsPerSecond / rawSingle.eventsPerSecond) * 100).toFixed(0)}% of raw single fdatasync`;
    if (r.name.includes('batches of 1000') && rawSync !== undefined) return `; ${((r.eventsPerSecond / rawSync.eventsPerSecond) * 100).toFixed(0)}% of the synchronous raw limit`;
    return '';
  });
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' }, dir: { type: 'string' }, out: { type: 'string' }, among: { type: 'string' } } });
  const among = values.among === undefined ? undefined : Number(values.among);
  if (among !== undefined && !(Number.isSafeInteger(among) && among >= 20_000)) throw new Error(`--among must be an integer of at least 20000, got ${values.among}`);
  const rows = await runStoreBench({ smoke: values.smoke === true, directory: values.dir ?? tmpdir(), streamAmongEvents: among });
  console.log(`\nSluice store benchmark (${values.smoke === true ? 'smoke' : 'full'}), ${PAYLOAD_BYTES}-byte payloads, Node ${process.version}\n`);
  console.log(formatStoreRows(rows));
  if (values.out !== undefined) await writeFile(values.out, JSON.stringify(rows, null, 2));
}
