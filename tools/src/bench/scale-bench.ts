/**
 * Scale benchmark of the file store (issue 9): writes N 100-byte events in batches of 1000
 * through `openPartition`, then measures, each in a fresh child process so time and RSS are
 * honest:
 * - open after a clean close (storage `open()`: time, RSS before and after);
 * - open after `kill -9` of a child that was writing (through the storage, and through the engine
 *   with its persisted index: `openPartition` recovers and replays the log after its checkpoint);
 * - reading a 100-event stream spread over the N events through `storage.readFrames` (and
 *   through `partition.readStream`, which uses the engine's own path until it adopts readFrames).
 *
 * Run: `npm run bench:scale -- --events 20000000` (default 20 M: about 4 GB in the directory;
 * `--dir` picks where, default the OS temp directory). `--smoke` runs a small N (CI test).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter, type EventFrame } from '@sluice/framing';
import { openPartition, type EventData, type Partition, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';

const PAYLOAD_BYTES = 100;
const BATCH_EVENTS = 1000;
const NEEDLE_EVENTS = 100;
const NEEDLE_STREAM = 'needle';
/** Commits in flight while writing (group commit). */
const IN_FLIGHT = 8;

/** Options of {@link runScaleBench}. */
export interface ScaleBenchOptions {
  /** Events to write (a multiple of 1000 is used). @default 20000000 */
  readonly events?: number;
  /** Parent directory of the partition's folder. @default os.tmpdir() */
  readonly directory?: string;
  /** The script children run (this module, compiled). @default this file */
  readonly childScript?: string;
  /** Milliseconds the writer child writes before it is killed with SIGKILL. @default 2000 */
  readonly killAfterMs?: number;
  /** Also open the partition through the engine (`openPartition`) and read the stream with readStream. @default true */
  readonly engine?: boolean;
}

/** One measured figure. */
export interface ScaleRow {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The target, when it has one. */
  readonly target?: string | undefined;
}

interface WriteResult {
  readonly writeMs: number;
  readonly lastSeq: number;
  readonly needleSeqs: number[];
}

interface OpenResult {
  readonly openMs: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly lastSeq: number;
  readonly readFramesColdMs: number;
  readonly readFramesWarmMs: number;
  /** The same 100 events through batch reads (`read(seq, seq)` per event: what a stream read costs without frame reads). */
  readonly readBatchesWarmMs: number;
  readonly frames: number;
}

interface EngineResult {
  readonly openMs: number;
  readonly rssAfterBytes: number;
  readonly readStreamMs: number;
  readonly events: number;
  readonly lastSeq: number;
}

function storageOf(directory: string): PartitionStorage {
  return createFileStorage({ directory, fsync: 'commit' });
}

/** Persisted indexes beside the log, where `sluice node` keeps them (`<directory>.index`). */
function indexOf(directory: string): string {
  return `${directory}.index`;
}

/** How many needle events batch `b` of `batches` carries: 100 spread evenly. */
function needlesIn(b: number, batches: number): number {
  let n = 0;
  for (let k = 0; k < NEEDLE_EVENTS; k++) if (Math.floor((k * batches) / NEEDLE_EVENTS) === b) n++;
  return n;
}

async function writeBatches(partition: Partition, firstBatch: number, batches: number, needleSeqs: number[] | undefined, stop: () => boolean, onCommit?: () => void): Promise<void> {
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  let next = firstBatch;
  const worker = async (): Promise<void> => {
    while (next < firstBatch + batches && !stop()) {
      const b = next++;
      const needles = needleSeqs === undefined ? 0 : needlesIn(b - firstBatch, batches);
      const events: EventData[] = Array.from({ length: BATCH_EVENTS - needles }, () => ({ type: 'Filled', data: payload }));
      const changes = [{ streamId: `s-${b % 1000}`, events }];
      if (needles > 0) changes.push({ streamId: NEEDLE_STREAM, events: Array.from({ length: needles }, () => ({ type: 'Needle', data: payload })) });
      const result = await partition.commit({ changes });
      if (needles > 0) for (let s = result.lastSeq - needles + 1; s <= result.lastSeq; s++) needleSeqs?.push(s);
      onCommit?.();
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

// ── child phases ────────────────────────────────────────────────────────────────────────────

async function phaseWrite(directory: string, events: number, out: string): Promise<void> {
  const started = performance.now();
  const partition = await openPartition({ storage: storageOf(directory), name: 'scale', indexDirectory: indexOf(directory) });
  const needleSeqs: number[] = [];
  await writeBatches(partition, 0, Math.floor(events / BATCH_EVENTS), needleSeqs, () => false);
  const lastSeq = partition.lastSeq;
  await partition.close();
  needleSeqs.sort((a, b) => a - b);
  const result: WriteResult = { writeMs: performance.now() - started, lastSeq, needleSeqs };
  await writeFile(out, JSON.stringify(result));
}

async function phaseOpen(directory: string, needleFile: string, out: string): Promise<void> {
  const { needleSeqs } = JSON.parse(await readFile(needleFile, 'utf8')) as WriteResult;
  const rssBeforeBytes = process.memoryUsage().rss;
  const started = performance.now();
  const storage = storageOf(directory);
  const recovery = await storage.open();
  const openMs = performance.now() - started;
  const rssAfterBytes = process.memoryUsage().rss;
  const readAll = async (): Promise<EventFrame[]> => {
    const frames: EventFrame[] = [];
    for await (const f of (storage.readFrames as (seqs: number[]) => AsyncIterable<EventFrame>).call(storage, needleSeqs)) frames.push(f);
    return frames;
  };
  let t = performance.now();
  const frames = await readAll();
  const readFramesColdMs = performance.now() - t;
  if (frames.length !== needleSeqs.length || frames.some((f) => f.streamId !== NEEDLE_STREAM)) throw new Error('readFrames returned other frames than the needle stream');
  const warm: number[] = [];
  for (let i = 0; i < 5; i++) {
    t = performance.now();
    await readAll();
    warm.push(performance.now() - t);
  }
  warm.sort((a, b) => a - b);
  const batchWarm: number[] = [];
  for (let i = 0; i < 5; i++) {
    t = performance.now();
    let found = 0;
    for (const seq of needleSeqs) for await (const batch of storage.read(seq, seq)) for (const f of batch.frames) if (f.seq === seq) found++;
    batchWarm.push(performance.now() - t);
    if (found !== needleSeqs.length) throw new Error('batch reads missed needle events');
  }
  batchWarm.sort((a, b) => a - b);
  await storage.close();
  const result: OpenResult = {
    openMs,
    rssBeforeBytes,
    rssAfterBytes,
    lastSeq: recovery.lastSeq,
    readFramesColdMs,
    readFramesWarmMs: warm[2],
    readBatchesWarmMs: batchWarm[2],
    frames: frames.length,
  };
  await writeFile(out, JSON.stringify(result));
}

async function phaseEngine(directory: string, out: string): Promise<void> {
  const started = performance.now();
  const partition = await openPartition({ storage: storageOf(directory), name: 'scale', indexDirectory: indexOf(directory) });
  const openMs = performance.now() - started;
  const rssAfterBytes = process.memoryUsage().rss;
  const t = performance.now();
  let events = 0;
  for await (const e of partition.readStream(NEEDLE_STREAM)) if (e.streamId === NEEDLE_STREAM) events++;
  const readStreamMs = performance.now() - t;
  const lastSeq = partition.lastSeq;
  await partition.close();
  const result: EngineResult = { openMs, rssAfterBytes, readStreamMs, events, lastSeq };
  await writeFile(out, JSON.stringify(result));
}

/**
 * Writes batches of 1000 events until killed, straight through the storage (write + sync, as
 * the engine does; the engine's own open of a large log is measured in its own phase), and
 * prints "writing" once the first batch is durable.
 */
async function phaseWriteUntilKilled(directory: string): Promise<void> {
  const storage = storageOf(directory);
  const { head } = await storage.open();
  const writer = new FrameWriter({ initialBytes: 256 * 1024 });
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(9);
  let seq = head.lastSeq;
  for (let batch = 0; ; batch++) {
    writer.reset();
    const first = seq + 1;
    const now = Date.now();
    for (let k = 0; k < BATCH_EVENTS; k++) writer.appendEvent(++seq, head.epoch, now, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, 'killed', seq - head.lastSeq, 'Filled', undefined, undefined, payload);
    writer.seal(head.epoch, now, batch === 0 ? head.digest : undefined);
    await storage.write(writer.bytes(), first, seq);
    await storage.sync();
    if (batch === 0) process.stdout.write('writing\n');
  }
}

/**
 * Appends batches of 1000 events through the engine (`openPartition` with its persisted index,
 * several commits in flight) until killed; prints "writing" once the first commit is acknowledged.
 */
async function phaseEngineWriteUntilKilled(directory: string): Promise<void> {
  const partition = await openPartition({ storage: storageOf(directory), name: 'scale', indexDirectory: indexOf(directory) });
  const data = new Uint8Array(PAYLOAD_BYTES).fill(8);
  const events: EventData[] = Array.from({ length: BATCH_EVENTS }, () => ({ type: 'Filled', data }));
  const inFlight: Array<Promise<unknown>> = [];
  for (let batch = 0; ; batch++) {
    inFlight.push(partition.append({ streamId: `engine-killed-${batch % 1000}`, events }));
    if (inFlight.length >= IN_FLIGHT) await inFlight.shift();
    if (batch === IN_FLIGHT) process.stdout.write('writing\n');
  }
}

// ── parent ──────────────────────────────────────────────────────────────────────────────────

function runChild(script: string, args: string[], onLine?: (line: string, kill: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let buffered = '';
    let killed = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        onLine?.(line, () => {
          killed = true;
          child.kill('SIGKILL');
        });
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0 || (killed && signal === 'SIGKILL')) resolve();
      else reject(new Error(`scale bench child ${args[1]} exited with ${code ?? signal}: ${stderr}`));
    });
  });
}

/** Runs the benchmark and returns its figures. */
export async function runScaleBench(options: ScaleBenchOptions = {}): Promise<ScaleRow[]> {
  const events = Math.max(BATCH_EVENTS, Math.floor((options.events ?? 20_000_000) / BATCH_EVENTS) * BATCH_EVENTS);
  const script = options.childScript ?? fileURLToPath(import.meta.url);
  const root = await mkdtemp(join(options.directory ?? tmpdir(), 'sluice-scale-'));
  const directory = join(root, 'partition');
  const file = (name: string): string => join(root, name);
  const read = async <T>(name: string): Promise<T> => JSON.parse(await readFile(file(name), 'utf8')) as T;
  const mib = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;
  const rows: ScaleRow[] = [];
  try {
    await runChild(script, ['--phase', 'write', directory, String(events), file('write.json')]);
    const written = await read<WriteResult>('write.json');
    rows.push({ name: `write ${events} events of ${PAYLOAD_BYTES} B, batches of ${BATCH_EVENTS}`, value: Math.round(events / (written.writeMs / 1000)), unit: 'events/s' });

    await runChild(script, ['--phase', 'open', directory, file('write.json'), file('open.json')]);
    const clean = await read<OpenResult>('open.json');
    if (clean.lastSeq !== written.lastSeq) throw new Error(`open found seq ${clean.lastSeq}, ${written.lastSeq} were written`);
    rows.push({ name: 'storage open after clean close', value: Math.round(clean.openMs), unit: 'ms', target: '< 1000 ms (20 M events)' });
    rows.push({ name: 'RSS grown by that open', value: mib(clean.rssAfterBytes - clean.rssBeforeBytes), unit: 'MiB', target: '' });
    rows.push({ name: 'RSS of the process after that open', value: mib(clean.rssAfterBytes), unit: 'MiB', target: '< 200 MB' });
    rows.push({ name: `storage.readFrames of the ${clean.frames}-event stream, first read`, value: Math.round(clean.readFramesColdMs * 100) / 100, unit: 'ms', target: '< 5 ms' });
    rows.push({ name: `storage.readFrames of the ${clean.frames}-event stream, warm (median of 5)`, value: Math.round(clean.readFramesWarmMs * 100) / 100, unit: 'ms', target: '< 5 ms' });
    rows.push({ name: `the same ${clean.frames} events through batch reads, warm (median of 5)`, value: Math.round(clean.readBatchesWarmMs * 100) / 100, unit: 'ms', target: '' });

    if (options.engine !== false) {
      await runChild(script, ['--phase', 'engine', directory, file('engine.json')]);
      const engine = await read<EngineResult>('engine.json');
      rows.push({ name: 'openPartition (engine over the file store, index in <dir>.index) after clean close', value: Math.round(engine.openMs), unit: 'ms' });
      rows.push({ name: 'RSS of the process after openPartition', value: mib(engine.rssAfterBytes), unit: 'MiB' });
      rows.push({ name: `partition.readStream of the ${engine.events}-event stream`, value: Math.round(engine.readStreamMs * 100) / 100, unit: 'ms', target: '< 5 ms' });
    }

    const killAfterMs = options.killAfterMs ?? 2000;
    await runChild(script, ['--phase', 'write-until-killed', directory], (line, kill) => {
      if (line === 'writing') setTimeout(kill, killAfterMs);
    });
    await runChild(script, ['--phase', 'open', directory, file('write.json'), file('killed.json')]);
    const killed = await read<OpenResult>('killed.json');
    rows.push({ name: `storage open after kill -9 mid-write (${killed.lastSeq - written.lastSeq} events written before the kill)`, value: Math.round(killed.openMs), unit: 'ms', target: '< 3000 ms (20 M events)' });
    rows.push({ name: 'RSS of the process after that open', value: mib(killed.rssAfterBytes), unit: 'MiB' });

    if (options.engine !== false) {
      // The same through the engine: appends with its persisted index, SIGKILL, then openPartition
      // (storage recovery plus the index's replay of the log after its last checkpoint).
      const before = (await read<OpenResult>('killed.json')).lastSeq;
      await runChild(script, ['--phase', 'engine-write-until-killed', directory], (line, kill) => {
        if (line === 'writing') setTimeout(kill, killAfterMs);
      });
      await runChild(script, ['--phase', 'engine', directory, file('engine-killed.json')]);
      const engineKilled = await read<EngineResult>('engine-killed.json');
      rows.push({ name: `openPartition after kill -9 of an engine appending (${engineKilled.lastSeq - before} events appended before the kill)`, value: Math.round(engineKilled.openMs), unit: 'ms', target: '< 3000 ms (20 M events)' });
      rows.push({ name: 'RSS of the process after that openPartition', value: mib(engineKilled.rssAfterBytes), unit: 'MiB' });
    }
    return rows;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export function formatScaleRows(rows: readonly ScaleRow[]): string {
  const lines = ['| what | figure | target |', '|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.name} | ${r.value.toLocaleString('en-US')} ${r.unit} | ${r.target ?? ''} |`);
  return lines.join('\n');
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { phase: { type: 'string' }, events: { type: 'string' }, smoke: { type: 'boolean' }, dir: { type: 'string' }, out: { type: 'string' }, 'no-engine': { type: 'boolean' } },
  });
  const [a, b, c] = positionals;
  switch (values.phase) {
    case 'write':
      await phaseWrite(a, Number(b), c);
      break;
    case 'open':
      await phaseOpen(a, b, c);
      break;
    case 'engine':
      await phaseEngine(a, b);
      break;
    case 'write-until-killed':
      await phaseWriteUntilKilled(a);
      break;
    case 'engine-write-until-killed':
      await phaseEngineWriteUntilKilled(a);
      break;
    case undefined: {
      const events = values.smoke === true ? 20_000 : Number(values.events ?? 20_000_000);
      if (!Number.isSafeInteger(events) || events < BATCH_EVENTS) throw new Error(`--events must be an integer of at least ${BATCH_EVENTS}, got ${values.events}`);
      const rows = await runScaleBench({ events, directory: values.dir, engine: values['no-engine'] !== true });
      console.log(`\nSluice file store at scale: ${events} events of ${PAYLOAD_BYTES} B, Node ${process.version}\n`);
      console.log(formatScaleRows(rows));
      if (values.out !== undefined) await writeFile(values.out, JSON.stringify(rows, null, 2));
      break;
    }
    default:
      throw new Error(`unknown --phase ${values.phase}`);
  }
}
