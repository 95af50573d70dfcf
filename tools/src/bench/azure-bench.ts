/**
 * Azure store benchmark: durable batched appends of 100-byte events on the Azure Blob store,
 * against an Azurite started for the run (in memory, on loopback). Each engine batch (many
 * frames) goes to Azure as one append block.
 *
 *   npm run bench:azure               full run
 *   npm run bench:azure -- --smoke    seconds-long check that it works (CI)
 *   --out FILE                        also write the rows as JSON
 *
 * Azurite is a single Node process sharing the machine with the benchmark: the figures measure
 * the engine and this backend's request path, not Azure's service limits.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { openPartition, type Partition } from '@sluice/store';
import { createAzureStorage } from '@sluice/store-azure';
import { startAzurite, type AzuriteInstance } from '@sluice/store-azure/testing';
import { formatBenchRows, type BenchRow } from './stats.js';
import { pipelinedBatches } from './store-bench.js';

const CONTAINER = 'sluice-bench';

export interface AzureBenchOptions {
  readonly smoke: boolean;
}

/** One configuration of {@link azureBatchedAppends}. */
export interface AzureBatchedAppendsOptions {
  /** Connection string of the Azure Storage account or Azurite to write to. */
  readonly connectionString: string;
  /** Events per append. */
  readonly batch: number;
  /** Events in total (rounded down to whole batches). */
  readonly events: number;
  /** Appends in flight, so encoding overlaps the write. */
  readonly pipeline: number;
  /**
   * The partition's group-commit size: one engine batch is one append block (up to the
   * storage's 4 MiB blockBytesMax).
   * @default 262144
   */
  readonly batchBytesMax?: number;
}

/** Starts an in-memory Azurite on a free loopback port for `run`, and stops it after. */
export async function withAzurite<T>(run: (azurite: AzuriteInstance) => Promise<T>): Promise<T> {
  const azurite = await startAzurite();
  try {
    return await run(azurite);
  } finally {
    await azurite.stop();
  }
}

async function withAzurePartition<T>(connectionString: string, prefix: string, batchBytesMax: number, run: (p: Partition) => Promise<T>): Promise<T> {
  const storage = createAzureStorage({ connectionString, container: CONTAINER, prefix, createContainer: true });
  const partition = await openPartition({ storage, name: prefix, batchBytesMax });
  try {
    return await run(partition);
  } finally {
    await partition.close();
  }
}

let runs = 0;

/**
 * Durable appends of `batch` 100-byte events each, `pipeline` appends in flight: the Azure
 * counterpart of `batchedAppends` in store-bench.ts. Each append resolves once Azure (here
 * Azurite) has committed its block.
 */
export async function azureBatchedAppends(options: AzureBatchedAppendsOptions): Promise<BenchRow> {
  const { connectionString, batch, events, pipeline } = options;
  const batchBytesMax = options.batchBytesMax ?? 256 * 1024;
  runs += 1;
  return withAzurePartition(connectionString, `batch-${batch}-${batchBytesMax}-${runs}`, batchBytesMax, async (partition) => {
    return pipelinedBatches(
      partition,
      batch,
      events,
      pipeline,
      `sluice azure store (Azurite), batches of ${batch}`,
      `${pipeline} appends in flight, engine batches up to ${batchBytesMax / 1024} KiB, one append block each`,
    );
  });
}

/**
 * Every Azure scenario, each against a fresh Azurite (an in-memory Azurite keeps every byte
 * written; a fresh one keeps one scenario's garbage collection out of the next one's figures).
 */
export async function runAzureBench(options: AzureBenchOptions): Promise<BenchRow[]> {
  const scale = options.smoke ? 0.01 : 1;
  const events = Math.max(10_000, 3_000_000 * scale);
  const scenarios: Omit<AzureBatchedAppendsOptions, 'connectionString'>[] = [
    { batch: 1000, events, pipeline: 4 },
    { batch: 1000, events, pipeline: 16, batchBytesMax: 2 * 1024 * 1024 },
    { batch: 1000, events, pipeline: 16, batchBytesMax: 4 * 1024 * 1024 },
  ];
  const rows: BenchRow[] = [];
  for (const scenario of scenarios) rows.push(await withAzurite(({ connectionString }) => azureBatchedAppends({ connectionString, ...scenario })));
  return rows;
}

export function formatAzureRows(rows: readonly BenchRow[]): string {
  return formatBenchRows(rows);
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' }, out: { type: 'string' } } });
  const rows = await runAzureBench({ smoke: values.smoke === true });
  console.log(`\nSluice Azure store benchmark (${values.smoke === true ? 'smoke' : 'full'}), 100-byte payloads, Azurite in memory, Node ${process.version}\n`);
  console.log(formatAzureRows(rows));
  if (values.out !== undefined) await writeFile(values.out, JSON.stringify(rows, null, 2));
}
