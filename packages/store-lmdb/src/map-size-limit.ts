import { StorageError } from '@sluice/store';
import type { LmdbRoot } from './lmdb-env.js';

/**
 * Pages a commit may take besides the value's own overflow pages: copies of the B-tree path
 * (batches, main and free-list databases) and free-list growth. Generous on purpose: the check
 * must refuse before LMDB runs out, never after.
 */
const SLACK_PAGES = 32;
/** An overflow value's page header. */
const PAGE_HEADER_BYTES = 16;

/**
 * Enforces `mapSize` as the partition's size limit. lmdb-js (3.x) grows LMDB's memory map on
 * demand instead of failing with MDB_MAP_FULL, so without this check a partition grows until
 * the disk is full. Before each append it reads the environment's last used page and refuses
 * the append with reason `Full` when the data file could pass the limit.
 */
export class MapSizeLimit {
  constructor(
    private readonly root: LmdbRoot,
    readonly mapSize: number,
    private readonly directory: string,
  ) {}

  /** Throws `StorageError` reason `Full` when writing `bytes` more could pass `mapSize`. */
  check(bytes: number): void {
    const { pageSize, lastPageNumber } = this.root.getStats();
    const usedBytes = (lastPageNumber + 1) * pageSize;
    const neededBytes = (Math.ceil((bytes + PAGE_HEADER_BYTES) / pageSize) + SLACK_PAGES) * pageSize;
    if (usedBytes + neededBytes > this.mapSize) {
      throw new StorageError(
        'Full',
        `[sluice/store-lmdb] ${this.directory}: the LMDB map is full: appending ${bytes} bytes could grow the data file past mapSize ` +
          `(${this.mapSize} bytes, ${usedBytes} in use): raise mapSize and reopen the partition`,
        { retryable: false },
      );
    }
  }
}
