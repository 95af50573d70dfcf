/**
 * LMDB store benchmark: durable appends of 100-byte events on `@sluice/store-lmdb`, beside
 * raw lmdb-js transactions of pre-encoded values measured in the same run.
 *
 *   node dist/bench/lmdb-bench.js [--smoke] [--dir PATH]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openPartition } from '@sluice/store';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { open } from 'lmdb';
import { Latencies, formatBenchRows, row, type BenchRow } from './stats.js';
import { pipelinedBatches } from './store-bench.js';

const PAYLOAD_BYTES = 100;
const STREAMS = 10_000;

function payload(): Uint8Array {
  const p = new Uint8Array(PAYLOAD_BYTES);
  for (let i = 0; i < p.length; i++) p[i] = (i * 31) & 0xff;
  return p;
}

/**
 * Raw lmdb-js: one transaction per batch of `batch` pre-encoded 100-byte values (key = a
 * rising number), each transaction a synchronous, fdatasynced commit: the disk and lmdb-js's
 * limit for durable writes of this shape.
 */
export async function rawLmdb(directory: string, batch: number, events: number): Promise<BenchRow> {
  const db = open<Uint8Array, number>({ path: join(directory, `raw-lmdb-${batch}`), encoding: 'binary', overlappingSync: false, mapSize: 256 * 1024 * 1024 });
  try {
    const data = payload();
    const batches = Math.max(1, Math.floor(events / batch));
    const latencies = new Latencies();
    let key = 1;
    const start = performance.now();
    for (let b = 0; b < batches; b++) {
      const t = performance.now();
      let last: Promise<boolean> | undefined;
      // Puts issued in one event turn share one transaction (lmdb-js event-turn batching).
      for (let i = 0; i < batch; i++) last = db.put(key++, data);
      await last;
      latencies.record(performance.now() - t);
    }
    const ms = performance.now() - start;
    return row(`raw lmdb-js, ${batch} values per transaction`, batches * batch, batches * batch * PAYLOAD_BYTES, ms, latencies, 'pre-encoded 100-byte values, sync commit');
  } finally {
    await db.close();
  }
}

/** Appends of `batch` events each on the LMDB store (fsync "commit"); `pipeline` appends in flight so encoding overlaps the commit. */
export async function lmdbBatchedAppends(directory: string, batch: number, events: number, pipeline: number): Promise<BenchRow> {
  const partition = await openPartition({ storage: createLmdbStorage({ directory: join(directory, `lmdb-batch-${batch}`), fsync: 'commit' }), name: 'bench' });
  try {
    return await pipelinedBatches(partition, batch, events, pipeline, `sluice lmdb store, batches of ${batch}`, `${pipeline} appends in flight, fsync per commit`);
  } finally {
    await partition.close();
  }
}

/** Both rows, raw first, in a fresh folder under `directory`. */
export async function runLmdbBench(options: { smoke: boolean; directory: string }): Promise<BenchRow[]> {
  const events = options.smoke ? 10_000 : 3_000_000;
  const directory = await mkdtemp(join(options.directory, 'sluice-lmdb-bench-'));
  try {
    return [await rawLmdb(directory, 1000, events), await lmdbBatchedAppends(directory, 1000, events, 4)];
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' }, dir: { type: 'string' } } });
  const rows = await runLmdbBench({ smoke: values.smoke === true, directory: values.dir ?? tmpdir() });
  console.log(`\nSluice LMDB benchmark, ${PAYLOAD_BYTES}-byte payloads, Node ${process.version}\n`);
  console.log(formatBenchRows(rows));
}
