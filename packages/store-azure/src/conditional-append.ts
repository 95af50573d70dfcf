import { StorageError } from '@sluice/store';
import { SOURCE, azureErrorCode, mapAzureError } from './azure-errors.js';
import type { LogBlobs } from './log-blobs.js';
import { backoff, isTransient } from './retry-policy.js';

/** One block to append at a known position of a log blob. */
export interface BlockAppend {
  readonly log: LogBlobs;
  readonly blob: number;
  /** The block's bytes (up to `blockBytesMax`). */
  readonly bytes: Uint8Array;
  /** Where the blob must end for this block to go in: the writer's own count of its bytes. */
  readonly position: number;
  /** The writer's lease id: an append without the lease fails (fencing). */
  readonly leaseId: string;
  /** The blob may not grow beyond this (the roll threshold; a guard against bookkeeping bugs). */
  readonly maxSize: number;
}

/**
 * Appends one block exactly once and resolves with the blob's committed block count.
 *
 * Every try is conditional on the lease and on the blob ending at `position`
 * (`appendPosition`), so a retry after an ambiguous failure (a network error or timeout whose
 * request may have reached Azure, or the SDK's own retry) can never write the block twice: if
 * the earlier try landed, the retry fails with 412 `AppendPositionConditionNotMet`, and the
 * block counts as appended only if the bytes at `position` are exactly this block's.
 * Otherwise it rejects with reason `Conflict`.
 */
export async function appendBlockOnce(append: BlockAppend): Promise<number> {
  const { log, blob, bytes, position, leaseId, maxSize } = append;
  const action = `append ${bytes.length} bytes at offset ${position} of ${log.describe(blob)}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await log
        .client(blob)
        .appendBlock(bytes, bytes.length, { conditions: { leaseId, appendPosition: position, maxSize }, abortSignal: AbortSignal.timeout(log.retry.requestTimeoutMs) });
      return response.blobCommittedBlockCount ?? 0;
    } catch (error) {
      if (azureErrorCode(error) === 'AppendPositionConditionNotMet') {
        const blocks = await landedBlockCount(append);
        if (blocks !== undefined) return blocks;
        throw new StorageError(
          'Conflict',
          `${SOURCE} ${action}: the blob no longer ends at offset ${position} and the bytes there are not this writer's: ` +
            `something else appended to the partition's blob; stop this writer and reopen the partition (recovery keeps only verified commits)`,
          { cause: mapAzureError(error, action, log.containerName), retryable: false },
        );
      }
      const mapped = mapAzureError(error, action, log.containerName);
      if (!isTransient(mapped) || attempt >= log.retry.attemptsMax) throw mapped;
      await backoff(log.retry, attempt);
    }
  }
}

/** The blob's block count if exactly `bytes` lie at `position`, else undefined. */
async function landedBlockCount(append: BlockAppend): Promise<number | undefined> {
  const { log, blob, bytes, position } = append;
  const properties = await log.properties(blob);
  if (properties.contentLength < position + bytes.length) return undefined;
  const there = await log.download(blob, position, bytes.length);
  return Buffer.compare(there, bytes) === 0 ? properties.blockCount : undefined;
}
