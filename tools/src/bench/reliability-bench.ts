/**
 * Reliability benchmark: commits on mirrored, ring and single locations, and shipping to
 * Azurite. Figures for the reliability report (issue 11), not timed tests.
 *
 *   npx tsx --conditions=@sluice/source tools/src/bench/reliability-bench.ts [--smoke] [--only ship|lag|mirror] [--dir PATH] [--out FILE]
 *
 * `--only lag`: shipper lag under a steady 100,000 events/s (issue 11's target: p99 < 1 s);
 * `--lag-rate N` paces it at N events/s instead (to see the lag where this machine's source keeps up).
 * `--only mirror`: the raw limits, file, LMDB and the mirrors only (the mirrored/file ratios).
 * A targets summary (issue 11's table, computed from the rows of the run) follows the rows.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import { createShipper } from '@sluice/shipper';
import { createMirroredStorage, createRingStorage, openPartition, type Partition, type PartitionStorage } from '@sluice/store';
import { createAzureStorage } from '@sluice/store-azure';
import { startAzurite } from '@sluice/store-azure/testing';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { open as openLmdb } from 'lmdb';
import { pipelinedBatches, rawFdatasync, rawFdatasyncSync } from './store-bench.js';
import { Latencies, formatBenchRows, row, timedConcurrently, type BenchRow } from './stats.js';

const STREAMS = 10_000;
let directRow: BenchRow | undefined;
let fileRow: BenchRow | undefined;

async function on<T>(storage: PartitionStorage, run: (p: Partition) => Promise<T>): Promise<T> {
  const p = await openPartition({ storage, name: 'bench' });
  try {
    return await run(p);
  } finally {
    await p.close();
  }
}

/** `concurrency` appenders of single-event commits: the commit rate group commit reaches. */
async function concurrentCommits(p: Partition, concurrency: number, events: number, name: string): Promise<BenchRow> {
  const data = new Uint8Array(100).fill(7);
  const { ms, latencies } = await timedConcurrently(concurrency, events, (n) => p.append({ streamId: `stream-${n % STREAMS}`, events: [{ type: 'BenchEvent', data }] }));
  return row(name, events, events * 100, ms, latencies, `${concurrency} concurrent single-event commits, fsync per group`);
}

async function sequentialCommits(p: Partition, events: number, name: string): Promise<BenchRow> {
  const data = new Uint8Array(100).fill(7);
  const latencies = new Latencies();
  const start = performance.now();
  for (let n = 0; n < events; n++) {
    const t = performance.now();
    await p.append({ streamId: `stream-${n % STREAMS}`, events: [{ type: 'BenchEvent', data }] });
    latencies.record(performance.now() - t);
  }
  return row(name, events, events * 100, performance.now() - start, latencies, 'one single-event commit at a time');
}

/** Bytes of one encoded single-event batch of a 100-byte event, about (frame, batch header, digest). */
const RAW_LMDB_VALUE_BYTES = 180;

/**
 * lmdb-js alone, no Sluice code: `concurrency` writers, each committing one pre-encoded value
 * of {@link RAW_LMDB_VALUE_BYTES} (appended under a rising key) and a 40-byte head record per
 * transaction, as one store-lmdb write does, opened with store-lmdb's flags. Each commit is
 * synchronous (data pages fdatasynced, then the meta page); lmdb-js commits the transactions
 * queued meanwhile together, as store-lmdb's group commit does. No mirror with an LMDB location
 * can commit faster than this on the disk.
 */
async function rawLmdbCommits(directory: string, concurrency: number, events: number, name: string): Promise<BenchRow> {
  const env = openLmdb({ path: directory, mapSize: 256 * 1024 * 1024, maxDbs: 4, eventTurnBatching: false, noMemInit: true, overlappingSync: false, noSync: false });
  try {
    const batches = env.openDB<Uint8Array, number>({ name: 'batches', keyEncoding: 'uint32', encoding: 'binary' });
    const meta = env.openDB<Uint8Array, string>({ name: 'meta', encoding: 'binary' });
    const value = new Uint8Array(RAW_LMDB_VALUE_BYTES).fill(7);
    const head = new Uint8Array(40).fill(1);
    const { ms, latencies } = await timedConcurrently(concurrency, events, (n) =>
      env.transaction(() => {
        batches.putSync(n + 1, value, { append: true });
        meta.putSync('head', head);
      }),
    );
    const note = concurrency === 1 ? 'one transaction at a time' : `${concurrency} concurrent transactions`;
    return row(name, events, events * 100, ms, latencies, `${note}, a pre-encoded value + a head record each, sync commit: lmdb-js's limit here`);
  } finally {
    await env.close();
  }
}

export async function runReliabilityBench(smoke: boolean, base: string, only?: string, lagEventsPerSecond?: number): Promise<BenchRow[]> {
  const scale = smoke ? 0.02 : 1;
  const dir = await mkdtemp(join(base, 'sluice-rel-bench-'));
  let n = 0;
  const fresh = async (): Promise<string> => {
    const d = join(dir, `d${n++}`);
    await mkdir(d);
    return d;
  };
  const file = async (): Promise<PartitionStorage> => createFileStorage({ directory: await fresh(), fsync: 'commit' });
  const lmdb = async (): Promise<PartitionStorage> => createLmdbStorage({ directory: await fresh(), fsync: 'commit' });
  const rows: BenchRow[] = [];
  try {
    const batched = Math.max(20_000, 1_000_000 * scale);
    const commits = Math.max(5_000, 200_000 * scale);
    const sequential = Math.max(200, 5_000 * scale);
    const configs: Array<[string, () => Promise<PartitionStorage>]> = [
      ['file', file],
      ['lmdb', lmdb],
      ['mirror(file, file)', async () => createMirroredStorage({ locations: [await file(), await file()] })],
      ['mirror(file, lmdb)', async () => createMirroredStorage({ locations: [await file(), await lmdb()] })],
      ['ring(acknowledge) → file', async () => createRingStorage({ mode: 'acknowledge', durable: await file(), capacityBytes: 64 << 20 })],
      // The same file without fdatasync per commit (and one segment, so no roll flushes either):
      // what the engine and the file cost in CPU alone. A ring that must drain into that file
      // during the run cannot go faster; one whose run fits in it drains at close, untimed.
      [NO_FSYNC, async () => createFileStorage({ directory: await fresh(), fsync: 'none', segmentBytes: 1024 * 1024 * 1024 })],
    ];
    if (only === undefined || only === 'mirror') {
      // The disk's limits for single-event commits to one and to two files, in the same run.
      rows.push(await rawFdatasyncSync(await fresh(), 1, sequential * 2));
      rows.push(await rawFdatasync(await fresh(), 1, sequential * 2));
      rows.push(await rawFdatasync(await fresh(), 1, sequential * 2, 100, 2));
      rows.push(await rawFdatasyncSync(await fresh(), 1, sequential * 2, 100, 2));
      // lmdb-js's own limit for the scenarios that commit one event at a time.
      rows.push(await rawLmdbCommits(await fresh(), 16, commits / 4, `${RAW_LMDB}: 16 concurrent commits`));
      rows.push(await rawLmdbCommits(await fresh(), 1, sequential, `${RAW_LMDB}: sequential commits`));
    }
    if (only === 'lag') {
      rows.push(...(await steadyLag(fresh, smoke ? 2 : 12, lagEventsPerSecond)));
      return rows;
    }
    const chosen = only === 'ship' ? [] : only === 'mirror' ? configs.filter(([name]) => !name.startsWith('ring') && name !== NO_FSYNC) : configs;
    // Scenario by scenario, every configuration back to back: the ratios compare rows measured
    // seconds apart, so a busy moment of the machine skews them less. Printed by configuration.
    const scenarios: Array<(p: Partition, name: string) => Promise<BenchRow>> = [
      (p, name) => pipelinedBatches(p, 1000, batched, 8, `${name}: batches of 1000`, '8 appends in flight, fsync per commit'),
      (p, name) => concurrentCommits(p, 1000, commits, `${name}: 1000 concurrent commits`),
      (p, name) => concurrentCommits(p, 16, commits / 4, `${name}: 16 concurrent commits`),
      (p, name) => sequentialCommits(p, sequential, `${name}: sequential commits`),
    ];
    const measured = new Map<string, BenchRow[]>(chosen.map(([name]) => [name, []]));
    for (const scenario of scenarios) {
      for (const [name, make] of chosen) measured.get(name)?.push(await on(await make(), (p) => scenario(p, name)));
    }
    for (const list of measured.values()) rows.push(...list);
    if (only === 'mirror') return rows;
    rows.push(await shipToAzurite(await fresh(), smoke));
    rows.push(...(await steadyLag(fresh, smoke ? 2 : 12)));
    if (directRow !== undefined) rows.push(directRow);
    if (fileRow !== undefined) rows.push(fileRow);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

/** A line of the targets summary: what issue 11 asks, the figure of this run, and whether it meets it. */
export interface ReliabilityVerdict {
  readonly target: string;
  readonly figure: string;
  readonly meets: boolean | undefined;
}

/** The file configuration that never waits for the disk, and the lmdb-js-alone rows. */
const NO_FSYNC = 'file, fsync none';
const RAW_LMDB = 'lmdb-js alone';

const SCENARIOS = ['batches of 1000', '1000 concurrent commits', '16 concurrent commits', 'sequential commits'] as const;

/**
 * Issue 11's targets computed from the rows of one run: each ratio per scenario, beside the disk's
 * own ratio where the scenario is bound by fsync latency (a mirror of two files on one disk cannot
 * beat two parallel raw fdatasyncs on it).
 */
export function reliabilityVerdicts(rows: readonly BenchRow[]): ReliabilityVerdict[] {
  const rate = (name: string): number | undefined => rows.find((r) => r.name === name)?.eventsPerSecond;
  const verdicts: ReliabilityVerdict[] = [];
  const ratio = (target: string, over: string, under: string, min: number | undefined, times = false): void => {
    for (const scenario of SCENARIOS) {
      const a = rate(`${over}: ${scenario}`);
      const b = rate(`${under}: ${scenario}`);
      if (a === undefined || b === undefined) continue;
      verdicts.push({ target: `${target}, ${scenario}`, figure: times ? `${(a / b).toFixed(2)}×` : `${((a / b) * 100).toFixed(0)} %`, meets: min === undefined ? undefined : a / b >= min });
    }
  };
  ratio('2 file locations vs 1 (≥ 70 %)', 'mirror(file, file)', 'file', 0.7);
  const raw1 = rate('raw write+fdatasync, 1 event(s) per write');
  const raw2 = Math.max(rate('raw write+fdatasync to 2 files in parallel, 1 event(s) per write') ?? 0, rate('raw writeSync+fdatasyncSync to 2 files one after the other, 1 event(s) per write') ?? 0);
  if (raw1 !== undefined && raw2 > 0) verdicts.push({ target: "the disk's own ratio: raw commits to 2 files vs 1 (same run)", figure: `${((raw2 / raw1) * 100).toFixed(0)} %`, meets: undefined });
  ratio('file + LMDB mirrored vs file alone (≥ 60 %)', 'mirror(file, lmdb)', 'file', 0.6);
  ratio('file + LMDB mirrored vs LMDB alone (its slowest location)', 'mirror(file, lmdb)', 'lmdb', undefined);
  ratio('the bound of any file + LMDB mirror here: lmdb-js alone (no Sluice code) vs file', RAW_LMDB, 'file', undefined);
  ratio('acknowledged from the ring vs durable file (≥ 2×)', 'ring(acknowledge) → file', 'file', 2, true);
  ratio('the bound of the ring here, where it drains during the run: the same file without fdatasync (fsync none) vs durable file', NO_FSYNC, 'file', undefined, true);
  const ship = rows.find((r) => r.name.startsWith('shipper → Azurite'));
  if (ship !== undefined) verdicts.push({ target: 'shipper to Azurite (≥ 50 MB/s of frames)', figure: `${(ship.bytesPerSecond / 1e6).toFixed(1)} MB/s`, meets: ship.bytesPerSecond >= 50e6 });
  for (const r of rows.filter((x) => x.name.startsWith('lag at'))) {
    verdicts.push({ target: `${r.name.replace('lag at', 'lag p99 at')} (< 1 s)`, figure: `${r.p99Ms.toFixed(0)} ms`, meets: r.p99Ms < 1000 });
  }
  return verdicts;
}

/** The targets summary as a Markdown table. */
export function formatVerdicts(verdicts: readonly ReliabilityVerdict[]): string {
  const lines = ['| target | this run | |', '| --- | --- | --- |'];
  for (const v of verdicts) lines.push(`| ${v.target} | ${v.figure} | ${v.meets === undefined ? '' : v.meets ? 'meets' : 'misses'} |`);
  return lines.join('\n');
}

/** Events per second the steady producer aims at by default (issue 11's target load), and events per commit. */
const STEADY_EVENTS_PER_SECOND = 100_000;
const STEADY_EVENTS_PER_COMMIT = 1_000;
/** Commits the producer lets be in flight before it waits (it then falls behind its schedule, and the row says so). */
const STEADY_IN_FLIGHT_MAX = 64;

/**
 * Shipper lag under a steady load: a paced producer commits 1,000-event batches every 10 ms
 * (100,000 events/s of 100-byte events) to a file partition (fsync per commit) for `seconds`,
 * while one shipper ships to a second file location and to an in-memory Azurite. Lag of a
 * commit at a target = time from its acknowledgement at the source to the target's sync that
 * holds it (what `TargetStatus.lagMs` bounds: the recovery point). One row per target, p50/p99
 * in ms; the note gives the rate the producer really reached.
 */
async function steadyLag(fresh: () => Promise<string>, seconds: number, eventsPerSecond = STEADY_EVENTS_PER_SECOND): Promise<BenchRow[]> {
  const source = createFileStorage({ directory: await fresh(), fsync: 'commit' });
  const partition = await openPartition({ storage: source, name: 'lag' });
  const azurite = await startAzurite();
  try {
    await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('lag').create();
    const fileTarget = await fresh();
    const shipper = createShipper({
      source,
      partition: 'lag',
      targets: [
        { label: 'file', createStorage: () => createFileStorage({ directory: fileTarget, fsync: 'commit' }) },
        { label: 'azurite', createStorage: () => createAzureStorage({ connectionString: azurite.connectionString, container: 'lag', prefix: 'lag' }) },
      ],
    });
    // Acknowledged commits in seq order; each target drains them as its synced head passes them.
    const ackedLastSeq: number[] = [];
    const ackedAt: number[] = [];
    const targets = new Map(['file', 'azurite'].map((label) => [label, { head: 0, next: 0, latencies: new Latencies() }]));
    const drain = (now: number): void => {
      for (const t of targets.values()) {
        while (t.next < ackedLastSeq.length && ackedLastSeq[t.next] <= t.head) {
          t.latencies.record(now - ackedAt[t.next]);
          t.next++;
        }
      }
    };
    shipper.on('progress', (status) => {
      const t = targets.get(status.target);
      if (t === undefined) return;
      t.head = status.head.lastSeq;
      drain(performance.now());
    });
    shipper.start();
    const data = new Uint8Array(100).fill(5);
    const events = Array.from({ length: STEADY_EVENTS_PER_COMMIT }, () => ({ type: 'Steady', data }));
    const periodMs = (STEADY_EVENTS_PER_COMMIT / eventsPerSecond) * 1000;
    const commits = Math.round((seconds * 1000) / periodMs);
    const inFlight = new Set<Promise<void>>();
    let behindMs = 0;
    const start = performance.now();
    for (let k = 0; k < commits; k++) {
      const due = start + k * periodMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      else behindMs = Math.max(behindMs, -wait);
      if (inFlight.size >= STEADY_IN_FLIGHT_MAX) await Promise.race(inFlight);
      const p = partition.append({ streamId: `steady-${k % 100}`, events }).then((r) => {
        ackedLastSeq.push(r.lastSeq);
        ackedAt.push(performance.now());
        drain(performance.now());
      });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    await Promise.all(inFlight);
    const producedMs = performance.now() - start;
    await shipper.waitFor(partition.lastSeq, { timeoutMs: 120_000 });
    drain(performance.now());
    await shipper.stop();
    const total = commits * STEADY_EVENTS_PER_COMMIT;
    const rate = (total / producedMs) * 1000;
    return [...targets].map(([label, t]) => {
      const r = row(`lag at ${eventsPerSecond.toLocaleString('en-US')} events/s → ${label} target`, total, total * 100, producedMs, t.latencies);
      const verdict = t.latencies.percentile(99) < 1000 ? 'meets' : 'misses';
      return {
        ...r,
        note: `${commits} commits of ${STEADY_EVENTS_PER_COMMIT} events over ${(producedMs / 1000).toFixed(1)} s (producer reached ${Math.round(rate).toLocaleString('en-US')} events/s, at most ${behindMs.toFixed(0)} ms behind schedule); p50/p99 = lag per commit from source ack to target sync, ${verdict} p99 < 1 s`,
      };
    });
  } finally {
    await partition.close();
    await azurite.stop();
  }
}

/** Ships a pre-filled file partition to an in-memory Azurite: MB/s of raw batches. */
async function shipToAzurite(directory: string, smoke: boolean): Promise<BenchRow> {
  const events = smoke ? 20_000 : 200_000;
  const payloadBytes = 1000;
  const source = createFileStorage({ directory, fsync: 'none' });
  const partition = await openPartition({ storage: source, name: 'ship' });
  const data = new Uint8Array(payloadBytes).fill(3);
  const per = 100;
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < events / per; i++) {
    inFlight.push(partition.append({ streamId: `s-${i % 1000}`, events: Array.from({ length: per }, () => ({ type: 'E', data })) }));
    if (inFlight.length >= 16) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight);
  let bytes = 0;
  for await (const b of source.read(1, partition.lastSeq)) bytes += b.bytes.length;
  const azurite = await startAzurite();
  try {
    await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('bench').create();
    // The same bytes written straight to an Azure storage (no shipper): the target's own limit.
    const direct = createAzureStorage({ connectionString: azurite.connectionString, container: 'bench', prefix: 'direct' });
    await direct.open();
    const t0 = performance.now();
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    let first = 1;
    let lastSeq = 0;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      const joined = Buffer.concat(chunk);
      await direct.write(joined, first, lastSeq);
      chunk = [];
      chunkBytes = 0;
      first = lastSeq + 1;
    };
    for await (const b of source.read(1, partition.lastSeq)) {
      if (chunkBytes + b.bytes.length > 4 * 1024 * 1024) await flush();
      chunk.push(Uint8Array.from(b.bytes));
      chunkBytes += b.bytes.length;
      lastSeq = b.lastSeq;
    }
    await flush();
    await direct.sync();
    const directMs = performance.now() - t0;
    await direct.close();
    const directLatencies = new Latencies();
    directLatencies.record(directMs);
    directRow = row('read source + write to Azure storage directly (no shipper)', events, bytes, directMs, directLatencies, 'the same batches in 4 MiB writes, one sync: the limit of Azurite + the Azure backend here');
    // The shipper's own rate: to a file target (fsync per round) on this machine.
    const fileShipper = createShipper({ source, targets: [{ label: 'file', createStorage: () => createFileStorage({ directory: `${directory}-target`, fsync: 'commit' }) }] });
    const tf = performance.now();
    fileShipper.start();
    await fileShipper.waitFor(partition.lastSeq, { timeoutMs: 600_000 });
    const fileMs = performance.now() - tf;
    await fileShipper.stop();
    const fileLatencies = new Latencies();
    fileLatencies.record(fileMs);
    fileRow = row('shipper → file target, 1 target', events, bytes, fileMs, fileLatencies, 'same batches, 4 MiB writes, fdatasync per 16 MiB: the shipper itself with a fast target');
    const shipper = createShipper({
      source,
      targets: [{ label: 'azurite', createStorage: () => createAzureStorage({ connectionString: azurite.connectionString, container: 'bench', prefix: 'ship' }) }],
    });
    const latencies = new Latencies();
    const start = performance.now();
    shipper.start();
    await shipper.waitFor(partition.lastSeq, { timeoutMs: 600_000 });
    const ms = performance.now() - start;
    latencies.record(ms);
    await shipper.stop();
    return row('shipper → Azurite (in-memory), 1 target', events, bytes, ms, latencies, `raw batches of ${per} × ${payloadBytes}-byte events, 4 MiB writes; bytes = stored batch bytes`);
  } finally {
    await partition.close();
    await azurite.stop();
  }
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' }, dir: { type: 'string' }, out: { type: 'string' }, only: { type: 'string' }, 'lag-rate': { type: 'string' } } });
  const lagRate = values['lag-rate'] === undefined ? undefined : Number(values['lag-rate']);
  if (lagRate !== undefined && !(Number.isFinite(lagRate) && lagRate >= STEADY_EVENTS_PER_COMMIT)) {
    throw new Error(`--lag-rate must be a number of events per second of at least ${STEADY_EVENTS_PER_COMMIT}, got ${values['lag-rate']}`);
  }
  const rows = await runReliabilityBench(values.smoke === true, values.dir ?? tmpdir(), values.only, lagRate);
  console.log(`\nSluice reliability benchmark (${values.smoke === true ? 'smoke' : 'full'}), Node ${process.version}\n`);
  console.log(formatBenchRows(rows, () => ''));
  console.log(`\nIssue 11 targets, from the rows above\n\n${formatVerdicts(reliabilityVerdicts(rows))}`);
  if (values.out !== undefined) await writeFile(values.out, JSON.stringify(rows, null, 2));
}
