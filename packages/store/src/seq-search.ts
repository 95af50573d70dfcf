import { firstAtOrAfter } from '@sluice/framing';

/**
 * Index of the first batch whose last seq is >= `seq` in `lastSeqs` (ascending), or
 * `lastSeqs.length` when none is: where a read from `seq` starts. Backends that index their
 * batches by last seq share it.
 */
export function firstBatchEndingAtOrAfter(lastSeqs: ArrayLike<number>, seq: number): number {
  return firstAtOrAfter(lastSeqs, seq);
}
