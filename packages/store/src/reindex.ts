import { InvalidRequestError } from './errors.js';
import type { IndexStatus } from './partition-index.js';
import { openPartition, type PartitionOptions } from './partition.js';

/** Options of {@link reindexPartition}: the partition's options, with its index directory. */
export interface ReindexOptions extends PartitionOptions {
  readonly indexDirectory: string;
}

/** What {@link reindexPartition} did. */
export interface ReindexReport {
  /** Last seq of the log, now covered by the index checkpoint. */
  readonly lastSeq: number;
  readonly streamCount: number;
  /** Index files removed before the rebuild, with why. */
  readonly discarded: readonly string[];
  /** The index after the rebuild (its checkpoint is the log's head). */
  readonly index: IndexStatus;
  readonly elapsedMs: number;
}

/**
 * Rebuilds a partition's persisted index from its log (what `sluice reindex` runs): takes the
 * partition's writer lock (so stop the node serving it first: a running writer makes this
 * reject with reason `Locked`), removes every index file in `indexDirectory`, replays the
 * whole log into new index tables, checkpoints at the head and closes. The log is only read.
 *
 * Never needed for correctness (a stale or damaged index is rebuilt on open anyway); use it
 * after restoring a log from an archive, to move the rebuild cost out of the next start, or
 * when an index error names it.
 *
 * @example
 * const report = await reindexPartition({ storage: createFileStorage({ directory: './data/bank-1' }), indexDirectory: './data/bank-1/index' });
 * console.log(`indexed seq 1..${report.lastSeq} in ${report.elapsedMs.toFixed(0)} ms`);
 */
export async function reindexPartition(options: ReindexOptions): Promise<ReindexReport> {
  if (typeof options?.indexDirectory !== 'string' || options.indexDirectory.length === 0) {
    throw new InvalidRequestError('[sluice/store] reindexPartition: indexDirectory is required (the directory the partition keeps its index files in)');
  }
  const started = performance.now();
  const partition = await openPartition({ ...options, indexRebuild: true } as PartitionOptions);
  const discarded = partition.indexStatus.discarded;
  const lastSeq = partition.lastSeq;
  const streamCount = partition.streamCount;
  await partition.close();
  const index = partition.indexStatus;
  if (index.lastError !== undefined) throw index.lastError;
  return { lastSeq, streamCount, discarded, index, elapsedMs: performance.now() - started };
}
