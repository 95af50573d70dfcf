import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { loadNativeCrc32c } from './crc32c.js';
import { crc32c, crc32cImplementation, crc32cJs, NATIVE_CRC32C_BYTES_MIN } from './index.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Bit-at-a-time CRC-32C, straight from the definition: the reference the fast table version must match. */
function referenceCrc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

const nativeCrc = loadNativeCrc32c(createRequire(import.meta.url));

/**
 * Every implementation under the one contract `(bytes, start, end, crc)`: the exported dispatcher,
 * the JavaScript one, and the native one called directly (on every length, not only long ones).
 */
const implementations: [string, (bytes: Uint8Array, start?: number, end?: number, crc?: number) => number][] = [
  ['crc32c', crc32c],
  ['crc32cJs', crc32cJs],
  ['native', (bytes, start = 0, end = bytes.length, crc = 0) => (nativeCrc as NonNullable<typeof nativeCrc>)(bytes.subarray(start, end), crc)],
];

const available = implementations.filter(([name]) => name !== 'native' || nativeCrc !== undefined);

describe('crc32c implementations', () => {
  it('loads the native @node-rs/crc32 on linux-x64 (prebuilt, an optional dependency of @sluice/framing)', () => {
    if (process.platform === 'linux' && process.arch === 'x64' && process.env.SLUICE_CRC32C !== 'js') {
      expect(nativeCrc).toBeDefined();
      expect(crc32cImplementation).toBe('native');
    }
  });

  it('falls back to JavaScript when the native module fails to load, is missing its function, or answers wrong', () => {
    expect(
      loadNativeCrc32c(() => {
        throw new Error('Cannot find module @node-rs/crc32-linux-x64-gnu');
      }),
    ).toBeUndefined();
    expect(loadNativeCrc32c(() => ({}))).toBeUndefined();
    expect(loadNativeCrc32c(() => ({ crc32c: () => 0 }))).toBeUndefined();
  });

  it('long ranges (native path) and short ones (JavaScript path) match the JavaScript reference on random ranges', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 4 * NATIVE_CRC32C_BYTES_MIN }), fc.nat(), fc.nat(), fc.nat(), (bytes, a, b, c) => {
        const n = bytes.length;
        const start = n === 0 ? 0 : a % (n + 1);
        const end = start + (n === 0 ? 0 : b % (n - start + 1));
        const split = start + (end === start ? 0 : c % (end - start + 1));
        const expected = crc32cJs(bytes, start, end);
        expect(crc32c(bytes, start, end)).toBe(expected);
        expect(crc32c(bytes, split, end, crc32c(bytes, start, split))).toBe(expected);
        if (nativeCrc !== undefined) expect(nativeCrc(bytes.subarray(start, end), 0)).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('a 1 MiB range gives the same checksum on every implementation', () => {
    const bytes = Uint8Array.from({ length: (1 << 20) + 9 }, (_, i) => (i * 2654435761) >>> 24);
    const expected = referenceCrc32c(bytes.subarray(3, 3 + (1 << 20)));
    for (const [, fn] of available) expect(fn(bytes, 3, 3 + (1 << 20))).toBe(expected);
  });
});

describe.each(available)('%s', (_impl, crc32c) => {
  it('gives the standard check value for "123456789"', () => {
    expect(crc32c(ascii('123456789'))).toBe(0xe3069283);
  });

  it('gives 0 for empty input', () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  // RFC 3720 (iSCSI) appendix B.4 and widely published vectors.
  it.each([
    ['32 zero bytes', new Uint8Array(32), 0x8a9136aa],
    ['32 bytes of 0xff', new Uint8Array(32).fill(0xff), 0x62a8ab43],
    ['32 ascending bytes 0..31', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
    ['32 descending bytes 31..0', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
    [
      'iSCSI read command PDU',
      Uint8Array.from([
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      ]),
      0xd9963a56,
    ],
    ['"a"', ascii('a'), 0xc1d04330],
    ['the quick brown fox', ascii('The quick brown fox jumps over the lazy dog'), 0x22620404],
  ])('matches the known vector for %s', (_name, bytes, expected) => {
    expect(crc32c(bytes)).toBe(expected);
    expect(referenceCrc32c(bytes)).toBe(expected);
  });

  it('returns an unsigned 32-bit integer', () => {
    // 0xe3069283 has its top bit set: a signed result would be negative.
    const value = crc32c(ascii('123456789'));
    expect(value).toBeGreaterThan(0x7fffffff);
    expect(Number.isInteger(value)).toBe(true);
  });

  it('checksums bytes[start, end) only', () => {
    const framed = ascii('xx123456789yyy');
    expect(crc32c(framed, 2, 11)).toBe(0xe3069283);
    expect(crc32c(framed, 5, 5)).toBe(0);
  });

  it('computing in pieces with the crc argument equals one pass, at every split point', () => {
    const bytes = Uint8Array.from({ length: 67 }, (_, i) => (i * 37 + 11) & 0xff);
    const whole = crc32c(bytes);
    for (let split = 0; split <= bytes.length; split++) {
      const first = crc32c(bytes, 0, split);
      expect(crc32c(bytes, split, bytes.length, first)).toBe(whole);
      // The same with the second piece in its own array.
      expect(crc32c(bytes.slice(split), 0, bytes.length - split, first)).toBe(whole);
    }
  });

  it('matches the bit-at-a-time reference for any bytes, range and split (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), fc.nat(), (bytes, a, b, c) => {
        const n = bytes.length;
        const start = n === 0 ? 0 : a % (n + 1);
        const end = start + (n === 0 ? 0 : b % (n - start + 1));
        const split = start + (end === start ? 0 : c % (end - start + 1));
        const expected = referenceCrc32c(bytes.subarray(start, end));
        expect(crc32c(bytes, start, end)).toBe(expected);
        expect(crc32c(bytes, split, end, crc32c(bytes, start, split))).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('detects every single-bit flip', () => {
    const bytes = ascii('a frame header, a payload and some metadata');
    const original = crc32c(bytes);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const flipped = bytes.slice();
      flipped[bit >> 3] ^= 1 << (bit & 7);
      expect(crc32c(flipped)).not.toBe(original);
    }
  });
});
