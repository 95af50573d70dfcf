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
  private readonly missing = new Set<number>();
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
    return [...this.missing].sort((a, b) => a - b);
  }

  /**
   * Checks the contiguous run `firstSeq..lastSeq` (a datagram or batch of consecutive seqs) as
   * {@link check} would check each seq in turn, and counts the verdicts. A run that follows
   * the highest seq seen costs O(1), not one verdict per seq: receivers of whole batches check
   * their order without per-event work.
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
    for (let seq = firstSeq; seq <= lastSeq; seq++) {
      if (seq === this.expected) {
        // The rest of the run follows: one step.
        next += lastSeq - seq + 1;
        this.expected = lastSeq + 1;
        break;
      }
      const v = this.check(seq);
      if (v.kind === 'gap') {
        gaps++;
        next++;
      } else if (v.kind === 'next') next++;
      else if (v.kind === 'duplicate') duplicate++;
      else outOfOrder++;
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
      for (let s = Math.max(missingFrom, missingTo - this.missingMax + 1); s <= missingTo; s++) this.remember(s);
      this.expected = seq + 1;
      return { kind: 'gap', seq, missingFrom, missingTo };
    }
    if (this.missing.delete(seq)) return { kind: 'out-of-order', seq };
    return { kind: 'duplicate', seq };
  }

  private remember(seq: number): void {
    if (this.missing.size >= this.missingMax) {
      const oldest = this.missing.values().next().value as number;
      this.missing.delete(oldest);
    }
    this.missing.add(seq);
  }
}
