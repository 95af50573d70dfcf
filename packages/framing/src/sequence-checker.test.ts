import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SequenceChecker, type SequenceVerdict } from './index.js';

describe('SequenceChecker', () => {
  it('expects seq 1 first by default and classifies each following seq as next', () => {
    const c = new SequenceChecker();
    expect(c.nextSeq).toBe(1);
    for (let seq = 1; seq <= 5; seq++) expect(c.check(seq)).toEqual({ kind: 'next', seq });
    expect(c.nextSeq).toBe(6);
    expect(c.missingSeqs).toEqual([]);
  });

  it('starts from the nextSeq option', () => {
    const c = new SequenceChecker({ nextSeq: 1_000 });
    expect(c.check(1_000)).toEqual({ kind: 'next', seq: 1_000 });
    expect(c.check(999)).toEqual({ kind: 'duplicate', seq: 999 });
    expect(c.nextSeq).toBe(1_001);
  });

  it('reports a gap with the missing range and moves past it', () => {
    const c = new SequenceChecker();
    c.check(1);
    expect(c.check(4)).toEqual({ kind: 'gap', seq: 4, missingFrom: 2, missingTo: 3 });
    expect(c.nextSeq).toBe(5);
    expect(c.missingSeqs).toEqual([2, 3]);
    expect(c.check(5)).toEqual({ kind: 'next', seq: 5 });
    expect(c.check(7)).toEqual({ kind: 'gap', seq: 7, missingFrom: 6, missingTo: 6 });
    expect(c.missingSeqs).toEqual([2, 3, 6]);
  });

  it('reports a late seq that fills a gap as out-of-order, once; again it is a duplicate', () => {
    const c = new SequenceChecker();
    c.check(1);
    c.check(4);
    expect(c.check(3)).toEqual({ kind: 'out-of-order', seq: 3 });
    expect(c.missingSeqs).toEqual([2]);
    expect(c.check(3)).toEqual({ kind: 'duplicate', seq: 3 });
    expect(c.check(2)).toEqual({ kind: 'out-of-order', seq: 2 });
    expect(c.missingSeqs).toEqual([]);
    expect(c.nextSeq).toBe(5);
  });

  it('reports seqs already seen as duplicates, without moving', () => {
    const c = new SequenceChecker();
    c.check(1);
    c.check(2);
    expect(c.check(2)).toEqual({ kind: 'duplicate', seq: 2 });
    expect(c.check(1)).toEqual({ kind: 'duplicate', seq: 1 });
    expect(c.check(0)).toEqual({ kind: 'duplicate', seq: 0 });
    expect(c.nextSeq).toBe(3);
    expect(c.missingSeqs).toEqual([]);
    expect(c.check(3)).toEqual({ kind: 'next', seq: 3 });
  });

  it('behaves as its documented example', () => {
    const c = new SequenceChecker({ nextSeq: 1 });
    expect(c.check(1)).toEqual({ kind: 'next', seq: 1 });
    expect(c.check(4)).toEqual({ kind: 'gap', seq: 4, missingFrom: 2, missingTo: 3 });
    expect(c.check(2)).toEqual({ kind: 'out-of-order', seq: 2 });
    expect(c.check(2)).toEqual({ kind: 'duplicate', seq: 2 });
  });

  it('remembers at most missingMax missing seqs, forgetting the oldest first', () => {
    const c = new SequenceChecker({ missingMax: 3 });
    c.check(1);
    // The full range is still reported, only the memory is bounded.
    expect(c.check(10)).toEqual({ kind: 'gap', seq: 10, missingFrom: 2, missingTo: 9 });
    expect(c.missingSeqs).toEqual([7, 8, 9]);
    expect(c.check(5)).toEqual({ kind: 'duplicate', seq: 5 }); // forgotten: reported as a duplicate
    expect(c.check(8)).toEqual({ kind: 'out-of-order', seq: 8 });
    expect(c.missingSeqs).toEqual([7, 9]);
    expect(c.check(13)).toEqual({ kind: 'gap', seq: 13, missingFrom: 11, missingTo: 12 });
    expect(c.missingSeqs).toEqual([9, 11, 12]);
    expect(c.check(7)).toEqual({ kind: 'duplicate', seq: 7 });
    expect(c.check(9)).toEqual({ kind: 'out-of-order', seq: 9 });
  });

  it('keeps memory and time bounded on a huge gap', () => {
    const c = new SequenceChecker({ missingMax: 1000 });
    c.check(1);
    expect(c.check(1e12)).toEqual({ kind: 'gap', seq: 1e12, missingFrom: 2, missingTo: 1e12 - 1 });
    const missing = c.missingSeqs;
    expect(missing).toHaveLength(1000);
    expect(missing[0]).toBe(1e12 - 1000);
    expect(missing[999]).toBe(1e12 - 1);
    expect(c.nextSeq).toBe(1e12 + 1);
  });

  it('with missingMax 0 remembers nothing, so late seqs are duplicates', () => {
    const c = new SequenceChecker({ missingMax: 0 });
    c.check(1);
    expect(c.check(3)).toMatchObject({ kind: 'gap', missingFrom: 2, missingTo: 2 });
    expect(c.missingSeqs).toEqual([]);
    expect(c.check(2)).toEqual({ kind: 'duplicate', seq: 2 });
  });

  it('matches a simple model on any arrival order (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 60 }), { maxLength: 120 }), (arrivals) => {
        const c = new SequenceChecker();
        const seen = new Set<number>();
        let head = 0;
        for (const seq of arrivals) {
          const verdict = c.check(seq);
          let expected: SequenceVerdict;
          if (seq === head + 1) expected = { kind: 'next', seq };
          else if (seq > head + 1) expected = { kind: 'gap', seq, missingFrom: head + 1, missingTo: seq - 1 };
          else if (seen.has(seq)) expected = { kind: 'duplicate', seq };
          else expected = { kind: 'out-of-order', seq };
          expect(verdict).toEqual(expected);
          seen.add(seq);
          head = Math.max(head, seq);
          expect(c.nextSeq).toBe(head + 1);
        }
        const missing = Array.from({ length: head }, (_, i) => i + 1).filter((s) => !seen.has(s));
        expect(c.missingSeqs).toEqual(missing);
      }),
      { numRuns: 200 },
    );
  });

  it('checkRun counts what check() would say of each seq of the run, and leaves the checker in the same state', () => {
    let state = 12345;
    const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const byRun = new SequenceChecker({ missingMax: 50 });
    const bySeq = new SequenceChecker({ missingMax: 50 });
    let runs = 0;
    for (let i = 0; i < 2000; i++) {
      // Runs ahead, behind, overlapping and following the head.
      const first = Math.max(1, bySeq.nextSeq + Math.floor(random() * 40) - 25);
      const last = first + Math.floor(random() * 10);
      const counts = { next: 0, gaps: 0, duplicate: 0, outOfOrder: 0 };
      for (let s = first; s <= last; s++) {
        const v = bySeq.check(s);
        if (v.kind === 'next') counts.next++;
        else if (v.kind === 'gap') (counts.next++, counts.gaps++);
        else if (v.kind === 'duplicate') counts.duplicate++;
        else counts.outOfOrder++;
      }
      expect(byRun.checkRun(first, last)).toEqual(counts);
      expect(byRun.nextSeq).toBe(bySeq.nextSeq);
      expect(byRun.missingSeqs).toEqual(bySeq.missingSeqs);
      runs++;
    }
    expect(runs).toBe(2000);
  });

  it('remembers a gap of a billion seqs as a range: the gap, its repair in pieces and a duplicate of it cost no per-seq work', () => {
    // With one memory entry per missing seq this would allocate a billion of them (and time out).
    const c = new SequenceChecker({ missingMax: 2e9 });
    expect(c.checkRun(1, 10)).toEqual({ next: 10, gaps: 0, duplicate: 0, outOfOrder: 0 });
    expect(c.checkRun(1e9 + 11, 1e9 + 20)).toEqual({ next: 10, gaps: 1, duplicate: 0, outOfOrder: 0 });
    // The middle arrives late (splits the range), then the rest, then all of it again.
    expect(c.checkRun(5e8, 6e8 - 1)).toEqual({ next: 0, gaps: 0, duplicate: 0, outOfOrder: 1e8 });
    expect(c.checkRun(11, 1e9 + 10)).toEqual({ next: 0, gaps: 0, duplicate: 1e8, outOfOrder: 9e8 });
    expect(c.missingSeqs).toEqual([]);
    expect(c.checkRun(1, 1e9 + 30)).toEqual({ next: 10, gaps: 0, duplicate: 1e9 + 20, outOfOrder: 0 });
  });

  it('checkRun matches a per-seq model with a set of missing seqs, evictions included (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 12 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 80 }), fc.integer({ min: 0, max: 12 })), { maxLength: 60 }),
        (missingMax, runs) => {
          const c = new SequenceChecker({ missingMax });
          // The model: every seq on its own, missing seqs in a set in arrival (= ascending) order.
          const missing = new Set<number>();
          let head = 0;
          for (const [first, length] of runs) {
            const expected = { next: 0, gaps: 0, duplicate: 0, outOfOrder: 0 };
            for (let seq = first; seq <= first + length; seq++) {
              if (seq === head + 1) expected.next++;
              else if (seq > head + 1) {
                expected.next++;
                expected.gaps++;
                for (let m = Math.max(head + 1, seq - missingMax); m < seq; m++) {
                  if (missing.size >= missingMax) missing.delete(missing.values().next().value as number);
                  missing.add(m);
                }
              } else if (missing.delete(seq)) expected.outOfOrder++;
              else expected.duplicate++;
              head = Math.max(head, seq);
            }
            expect(c.checkRun(first, first + length)).toEqual(expected);
            expect(c.nextSeq).toBe(head + 1);
            expect(c.missingSeqs).toEqual([...missing].sort((a, b) => a - b));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
