import { describe, expect, it } from 'vitest';
import { RecentCommits } from './recent-commits.js';

describe('RecentCommits', () => {
  it('keeps the latest max commits by first seq, evicting the oldest, and finds each by binary search across the wrap', () => {
    const ring = new RecentCommits<string>(100);
    for (let i = 1; i <= 250; i++) {
      ring.add(i * 3, `c${i}`, 1);
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
    ring.add(1, 'c1', 1);
    expect(ring.get(1)).toBeUndefined();
  });

  it('bounds the weight held, not the commits: heavy commits evict several light ones, one heavier than max is not kept', () => {
    const ring = new RecentCommits<string>(1000);
    for (let i = 1; i <= 500; i++) ring.add(i, `light${i}`, 1);
    expect(ring.size).toBe(500);
    // 227 messages merged into one commit weigh 227 ids + 227 streams.
    ring.add(1000, 'heavy1', 454);
    ring.add(2000, 'heavy2', 454);
    // 500 + 908 > 1000: the oldest 408 light commits went, the latest 92 stay.
    expect(ring.size).toBe(94);
    expect(ring.get(408)).toBeUndefined();
    expect(ring.get(409)).toBe('light409');
    expect(ring.get(1000)).toBe('heavy1');
    ring.add(3000, 'heavy3', 454);
    expect([ring.get(500), ring.get(1000), ring.get(2000), ring.get(3000)]).toEqual([undefined, undefined, 'heavy2', 'heavy3']);
    ring.add(4000, 'huge', 1001);
    expect(ring.get(4000)).toBeUndefined();
    expect(ring.get(3000)).toBe('heavy3');
    // Light commits fill it again across the wrap; every one held is found.
    for (let i = 1; i <= 3000; i++) ring.add(10_000 + i, `l${i}`, 1 + (i % 3));
    for (let i = 3000; i > 2500; i--) expect(ring.get(10_000 + i)).toBe(`l${i}`);
    expect(ring.get(3000)).toBeUndefined();
  });
});
