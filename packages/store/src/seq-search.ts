/**
 * Index of the first batch whose last seq is >= `seq` in `lastSeqs` (ascending), or
 * `lastSeqs.length` when none is: where a read from `seq` starts. Backends that index their
 * batches by last seq share it.
 */
export function firstBatchEndingAtOrAfter(lastSeqs: ArrayLike<number>, seq: number): number {
  let lo = 0;
  let hi = lastSeqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (lastSeqs[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
