/**
 * CRC-32C combination: the CRC of `A ‖ B` from `crc(A)`, `crc(B)` and `B`'s length, without
 * reading either. A frame's checksum covers its header and its body; the client checksums the
 * body once and the node, which stamps the header, derives the whole frame's CRC from the two
 * (so the CRC on disk covers the client's own bytes).
 *
 * Arithmetic in GF(2)[x] modulo the CRC-32C polynomial, bit-reflected as the CRC itself is:
 * appending n zero bytes to a message multiplies its (unconditioned) CRC by x^(8n). The
 * pre- and post-inversion of the standard CRC cancel out in the combination.
 */
const POLY = 0x82f63b78;

/** `a × b mod P`, both reflected (bit 31 is x^0). */
function multiplyModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) mod P, reflected. */
const X2N: Uint32Array = (() => {
  const t = new Uint32Array(32);
  let p = 0x40000000; // x^1
  t[0] = p;
  for (let k = 1; k < 32; k++) t[k] = p = multiplyModP(p, p);
  return t;
})();

/** x^(8 × bytes) mod P: the factor that shifts a CRC past `bytes` zero bytes. */
function shiftFactor(bytes: number): number {
  let p = 0x80000000; // x^0
  let k = 3; // 8 = 2^3
  let n = bytes;
  while (n > 0) {
    if (n % 2 === 1) p = multiplyModP(X2N[k & 31], p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/**
 * Shift factors of body lengths below this, memoised (a fixed 256 KiB table, filled as lengths
 * are met): a stamped frame then costs one 32-step multiplication instead of ~log2(length).
 */
const MEMO_BYTES_MAX = 65_536;
const MEMO = new Uint32Array(MEMO_BYTES_MAX);

/**
 * @internal x^(8 × bytes) mod P (reflected), memoised below {@link MEMO_BYTES_MAX}: multiplying
 * an unconditioned CRC by it appends `bytes` zero bytes. `bytes` must be a safe integer ≥ 0.
 */
export function crc32cShiftFactor(bytes: number): number {
  if (bytes >= MEMO_BYTES_MAX) return shiftFactor(bytes);
  // 0 is never a factor (x^n mod P is never 0): it marks a length not met yet.
  let factor = MEMO[bytes];
  if (factor === 0) MEMO[bytes] = factor = shiftFactor(bytes);
  return factor;
}

/**
 * CRC-32C of `A ‖ B`, given `crcA` = CRC-32C of A, `crcB` = CRC-32C of B and `bytesB` = B's
 * length. Costs O(log bytesB) small steps, independent of the data.
 *
 * @example
 * crc32cCombine(crc32c(header), crc32c(body), body.length) === crc32c(Buffer.concat([header, body]))
 */
export function crc32cCombine(crcA: number, crcB: number, bytesB: number): number {
  if (!Number.isSafeInteger(bytesB) || bytesB < 0) throw new RangeError(`[sluice/framing] crc32cCombine: length ${bytesB} is not a safe non-negative integer`);
  if (bytesB === 0) return crcA >>> 0;
  const factor = crc32cShiftFactor(bytesB);
  if ((crcA >>> 0) === 0) return crcB >>> 0;
  return (multiplyModP(factor, crcA >>> 0) ^ crcB) >>> 0;
}
