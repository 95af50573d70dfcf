/**
 * The 64-bit key of a stream id or command id in the index: two 32-bit multiply-xorshift
 * hashes (cyrb53's mixing, kept to 64 bits) over the string's UTF-16 code units, written into
 * `out[0]` (high half) and `out[1]` (low half). Ids are well-formed strings (the engine refuses
 * lone surrogates), so the code units are a stable function of the UTF-8 bytes on disk.
 *
 * Not cryptographic and not collision-free: the index stores hashes only, and every hit is
 * confirmed by reading the frame at the seq it names and comparing the id.
 */
export type Hash64 = (s: string, out: Uint32Array) => void;

export const hash64: Hash64 = (s, out) => {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  out[0] = h2 >>> 0;
  out[1] = h1 >>> 0;
};
