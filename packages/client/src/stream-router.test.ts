import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UnroutableStreamError } from './store-errors.js';
import { StreamRouter, jumpHash, streamHash } from './stream-router.js';

describe('stream routing', () => {
  it('hashes with FNV-1a 64 (published test vectors)', () => {
    expect(streamHash('').toString(16)).toBe('cbf29ce484222325');
    expect(streamHash('a').toString(16)).toBe('af63dc4c8601ec8c');
    expect(streamHash('foobar').toString(16)).toBe('85944171f73967e8');
  });

  it('hashes the UTF-8 bytes of any id, ASCII or not, as plain FNV-1a 64 does', () => {
    const reference = (id: string): bigint => {
      let h = 0xcbf29ce484222325n;
      for (const byte of new TextEncoder().encode(id)) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
      return h;
    };
    for (const id of ['account-42', 'stream-9999', 'ünïcödé-1', 'a\u0080b', '日本-7', 'x'.repeat(300)]) expect(streamHash(id)).toBe(reference(id));
  });

  it('buckets with jump consistent hash (the reference implementation\'s vectors)', () => {
    expect([jumpHash(1n, 1), jumpHash(42n, 57), jumpHash(0xdead10ccn, 1), jumpHash(0xdead10ccn, 666), jumpHash(256n, 1024)]).toEqual([
      0, 43, 0, 361, 520,
    ]);
  });

  it('routes the same stream to the same partition in every release (golden values)', () => {
    const router = new StreamRouter({ hash: ['p1', 'p2', 'p3', 'p4'] });
    expect(['account-1', 'account-2', 'order-42', '', 'ü-stream'].map((s) => router.partitionOf(s))).toEqual(['p3', 'p4', 'p1', 'p2', 'p1']);
  });

  it('moves streams only to a partition appended to the hash list', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.integer({ min: 1, max: 40 }), (streamId, count) => {
        const names = Array.from({ length: count + 1 }, (_, i) => `p${i}`);
        const before = new StreamRouter({ hash: names.slice(0, count) }).partitionOf(streamId);
        const after = new StreamRouter({ hash: names }).partitionOf(streamId);
        expect(after === before || after === names[count]).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('spreads streams evenly', () => {
    const router = new StreamRouter({ hash: ['a', 'b', 'c', 'd'] });
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const partition = router.partitionOf(`stream-${i}`);
      counts.set(partition, (counts.get(partition) ?? 0) + 1);
    }
    for (const count of counts.values()) expect(Math.abs(count - 5000)).toBeLessThan(300);
  });

  it('takes the longest matching prefix first, then the hash', () => {
    const router = new StreamRouter({ prefixes: { 'acc': 'short', 'account-': 'accounts', 'account-vip-': 'vip' }, hash: ['h1', 'h2'] });
    expect(router.partitionOf('account-vip-1')).toBe('vip');
    expect(router.partitionOf('account-7')).toBe('accounts');
    expect(router.partitionOf('accrual')).toBe('short');
    expect(['h1', 'h2']).toContain(router.partitionOf('order-1'));
    expect(router.partitions).toEqual(['vip', 'accounts', 'short', 'h1', 'h2']);
  });

  it('throws UnroutableStreamError when only prefixes are given and none matches', () => {
    const router = new StreamRouter({ prefixes: { 'order-': 'shop' } });
    expect(() => router.partitionOf('account-1')).toThrow(UnroutableStreamError);
    expect(new StreamRouter({ prefixes: { '': 'all' } }).partitionOf('anything')).toBe('all');
  });
});
