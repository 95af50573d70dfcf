import { describe, expect, it } from 'vitest';
import { RecentCommits } from './recent-commits.js';

describe('RecentCommits', () => {
  it('keeps the latest max commits by first seq, evicting the oldest, and finds each by binary search across the wrap', () => {
    const ring = new RecentCommits<string>(100);
    for (let i = 1; i <= 250; i++) {
      ring.add(i * 3, `c${i}`);
      // Every commit still held is found; the evicted ones and seqs between commits are not.
      const oldest = Math.max(1, i - 99);
      for (const j of [oldest, Math.floor((oldest + i) / 2), i]) expect(ring.get(j * 3)).toBe(`c${j}`);
      if (oldest > 1) expect(ring.get((oldest - 1) * 3)).toBeUndefined();
      expect(ring.get(i * 3 + 1)).toBeUndefined();
      expect(ring.get(1)).toBeUndefined();
    }
  });

  it('holds nothing with max 0', () => {
    const ring = new RecentCommits<string>(0);
    ring.add(1, 'c1');
    expect(ring.get(1)).toBeUndefined();
  });
});
