/**
 * Index of the first value `>= seq` in `ascending`, or `ascending.length` when none is. The
 * store's backends find where a read from `seq` starts in their batches' last seqs with it;
 * the sequence checker finds the first missing range that ends at or after a seq.
 */
export function firstAtOrAfter(ascending: ArrayLike<number>, seq: number): number {
  let lo = 0;
  let hi = ascending.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ascending[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
