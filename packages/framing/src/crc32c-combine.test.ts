import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cCombine } from './index.js';

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
};

describe('crc32cCombine', () => {
  it('joins "12345" and "6789" into the check value of "123456789"', () => {
    const enc = new TextEncoder();
    expect(crc32cCombine(crc32c(enc.encode('12345')), crc32c(enc.encode('6789')), 4)).toBe(0xe3069283);
  });

  it('returns crc(A) for an empty B, and crc(B) for an empty A', () => {
    const b = Uint8Array.from({ length: 100 }, (_, i) => i * 7);
    expect(crc32cCombine(0x12345678, 0, 0)).toBe(0x12345678);
    expect(crc32cCombine(0, crc32c(b), b.length)).toBe(crc32c(b));
  });

  it('equals the direct CRC of a 52-byte header followed by bodies of every size class', () => {
    const header = Uint8Array.from({ length: 52 }, (_, i) => (i * 13 + 1) & 0xff);
    for (const size of [1, 7, 8, 9, 63, 64, 100, 1024, 65_537, 1_048_576 + 3]) {
      const body = Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 0xff);
      expect(crc32cCombine(crc32c(header), crc32c(body), size), `body of ${size} bytes`).toBe(crc32c(concat(header, body)));
    }
  });

  it('equals the direct CRC for any split of any bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 600 }), (a, b) => {
        expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(concat(a, b)));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a length that is not a safe non-negative integer', () => {
    expect(() => crc32cCombine(0, 0, -1)).toThrow(RangeError);
    expect(() => crc32cCombine(0, 0, 1.5)).toThrow(RangeError);
  });
});
