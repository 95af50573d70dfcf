import { firstAtOrAfter } from './seq-search.js';

/** How a seq relates to what a reader expected. */
export type SequenceVerdict =
  /** Exactly the next seq. */
  | { readonly kind: 'next'; readonly seq: number }
  /** Ahead of the next expected seq: `missingFrom..missingTo` were skipped. */
  | { readonly kind: 'gap'; readonly seq: number; readonly missingFrom: number; readonly missingTo: number }
  /** Already seen. */
  | { readonly kind: 'duplicate'; readonly seq: number }
  /** Behind the head but never seen: it fills part of an earlier gap, late. */
  | { readonly kind: 'out-of-order'; readonly seq: number };

/** What {@link SequenceChecker.checkRun} found in a run of consecutive seqs: how many of each verdict. */
export interface SequenceRunVerdict {
  /** Seqs that were next or opened a gap (new seqs). */
  readonly next: number;
  /** Gaps opened (at most one per run: only its first new seq can skip). */
  readonly gaps: number;
  readonly duplicate: number;
  readonly outOfOrder: number;
}

/** Options of a {@link SequenceChecker}. */
export interface SequenceCheckerOptions {
  /**
   * The first seq expected.
   * @default 1
   */
  readonly nextSeq?: number;
  /**
   * Most missing seqs remembered; older gaps are forgotten first (a later arrival of a
   * forgotten seq is then reported as a duplicate). Bounds memory under heavy loss.
   * @default 65536
   */
  readonly missingMax?: number;
}

/**
 * Classifies each received seq as next, gap, duplicate or out-of-order, as a subscriber
 * on an unreliable transport must (the seeds' UDP fan-out case): on a gap it asks for a
 * replay of the missing range; on a duplicate it drops the message.
 *
 * @example
 * const checker = new SequenceChecker({ nextSeq: 1 });
 * checker.check(1); // { kind: 'next', seq: 1 }
 * checker.check(4); // { kind: 'gap', seq: 4, missingFrom: 2, missingTo: 3 }
 * checker.check(2); // { kind: 'out-of-order', seq: 2 }
 * checker.check(2); // { kind: 'duplicate', seq: 2 }
 */
export class SequenceChecker {
  private expected: number;
  /**
   * The missing seqs as disjoint ascending ranges `starts[i]..ends[i]` (inclusive): a lost
   * datagram of a thousand events is one range, not a thousand set entries, so a gap, its repair
   * and late or duplicate runs cost O(log ranges + ranges touched), not O(seqs).
   */
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private missingCount = 0;
  private readonly missingMax: number;

  constructor(options: SequenceCheckerOptions = {}) {
    this.expected = options.nextSeq ?? 1;
    this.missingMax = options.missingMax ?? 65536;
  }

  /** The seq after the highest one seen. */
  get nextSeq(): number {
    return this.expected;
  }

  /** Seqs below {@link nextSeq} not yet received, ascending. */
  get missingSeqs(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.starts.length; i++) for (let s = this.starts[i]; s <= this.ends[i]; s++) out.push(s);
    return out;
  }

  /**
   * Checks the contiguous run `firstSeq..lastSeq` (a datagram or batch of consecutive seqs) as
   * {@link check} would check each seq in turn, and counts the verdicts, in O(log ranges +
   * ranges touched) whatever the run's length: receivers of whole batches check their order
   * (and their repairs, and late or duplicate runs) without per-event work.
   */
  checkRun(firstSeq: number, lastSeq: number): SequenceRunVerdict {
    if (firstSeq === this.expected && lastSeq >= firstSeq) {
      this.expected = lastSeq + 1;
      return { next: lastSeq - firstSeq + 1, gaps: 0, duplicate: 0, outOfOrder: 0 };
    }
    let next = 0;
    let gaps = 0;
    let duplicate = 0;
    let outOfOrder = 0;
    // The part below the highest seen: late (it fills missing seqs) or duplicate.
    const below = Math.min(lastSeq, this.expected - 1);
    if (firstSeq <= below) {
      outOfOrder = this.take(firstSeq, below);
      duplicate = below - firstSeq + 1 - outOfOrder;
    }
    // The part from the highest seen on: new, after a gap if it starts beyond the next expected.
    if (lastSeq >= this.expected) {
      const from = Math.max(firstSeq, this.expected);
      if (from > this.expected) {
        this.openGap(this.expected, from - 1);
        gaps = 1;
      }
      next = lastSeq - from + 1;
      this.expected = lastSeq + 1;
    }
    return { next, gaps, duplicate, outOfOrder };
  }

  check(seq: number): SequenceVerdict {
    if (seq === this.expected) {
      this.expected += 1;
      return { kind: 'next', seq };
    }
    if (seq > this.expected) {
      const missingFrom = this.expected;
      const missingTo = seq - 1;
      this.openGap(missingFrom, missingTo);
      this.expected = seq + 1;
      return { kind: 'gap', seq, missingFrom, missingTo };
    }
    if (this.take(seq, seq) === 1) return { kind: 'out-of-order', seq };
    return { kind: 'duplicate', seq };
  }

  /** Remembers `from..to` (all above every remembered seq) as missing, then forgets the oldest (lowest) beyond `missingMax`. */
  private openGap(from: number, to: number): void {
    const lo = Math.max(from, to - this.missingMax + 1);
    const n = this.starts.length;
    if (n > 0 && this.ends[n - 1] === lo - 1) this.ends[n - 1] = to;
    else {
      this.starts.push(lo);
      this.ends.push(to);
    }
    this.missingCount += to - lo + 1;
    let excess = this.missingCount - this.missingMax;
    let drop = 0;
    while (excess > 0) {
      const size = this.ends[drop] - this.starts[drop] + 1;
      if (size > excess) {
        this.starts[drop] += excess;
        this.missingCount -= excess;
        break;
      }
      excess -= size;
      this.missingCount -= size;
      drop++;
    }
    if (drop > 0) {
      this.starts.splice(0, drop);
      this.ends.splice(0, drop);
    }
  }

  /** Forgets the missing seqs within `from..to` and returns how many there were. */
  private take(from: number, to: number): number {
    const { starts, ends } = this;
    let found = 0;
    // From the first range that ends at or after `from`.
    let i = firstAtOrAfter(ends, from);
    let removeFrom = -1;
    let removeCount = 0;
    while (i < starts.length && starts[i] <= to) {
      const s = starts[i];
      const e = ends[i];
      const a = Math.max(s, from);
      const b = Math.min(e, to);
      found += b - a + 1;
      if (s < a && e > b) {
        // Splits the range: its middle arrived.
        ends[i] = a - 1;
        starts.splice(i + 1, 0, b + 1);
        ends.splice(i + 1, 0, e);
        break;
      }
      if (s < a) ends[i] = a - 1;
      else if (e > b) starts[i] = b + 1;
      else {
        if (removeFrom < 0) removeFrom = i;
        removeCount++;
      }
      i++;
    }
    if (removeCount > 0) {
      starts.splice(removeFrom, removeCount);
      ends.splice(removeFrom, removeCount);
    }
    this.missingCount -= found;
    return found;
  }
}
