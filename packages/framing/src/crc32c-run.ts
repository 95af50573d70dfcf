import { crc32cShiftFactor } from './crc32c-combine.js';
import { crc32cJs, nativeCrc32c, nativeFrameCrcs } from './crc32c.js';
import type { crc32cCombine } from './crc32c-combine.js';
import { FRAME_BYTES_MIN, readU32 } from './layout.js';

/**
 * CRC-32C of any frame whose trailer holds the CRC-32C of the bytes before it (little-endian):
 * the same constant for every such frame, whatever its length or content (the CRC's residue).
 */
export const FRAME_CRC_RESIDUE = crc32cJs(new Uint8Array(4));

const POLY = 0x82f63b78;

/**
 * Multiplying the run's expected CRC by x^(8n) once per frame of n bytes is what this check
 * costs beside the native call: done bit by bit it costs as much as the JavaScript CRC of a
 * small frame. Multiplication by a fixed factor is linear, so it is a table of 8 nibbles × 16
 * entries (512 bytes) per frame length, cached direct-mapped by the length's low byte:
 * SHIFT_SLOTS tables, 128 KiB in all, shared by every decoder in the process. A miss rebuilds
 * the slot's table (32 shifts and 128 XORs), so lengths that collide cost time, never memory.
 */
const SHIFT_SLOTS = 256;
const shiftTables = new Int32Array(SHIFT_SLOTS * 128);
// Float64: a length of 2^32 or more must not alias a small one.
const shiftLengths = new Float64Array(SHIFT_SLOTS).fill(-1);
const basis = new Int32Array(32);

/** Offset in {@link shiftTables} of the table multiplying by x^(8 × bytes). */
function shiftTable(bytes: number): number {
  const slot = bytes & (SHIFT_SLOTS - 1);
  const t = slot * 128;
  if (shiftLengths[slot] === bytes) return t;
  // basis[j] = x^j × factor; bit 31 − j of a (reflected) CRC stands for x^j.
  let v = crc32cShiftFactor(bytes);
  for (let j = 0; j < 32; j++) {
    basis[j] = v;
    v = v & 1 ? (v >>> 1) ^ POLY : v >>> 1;
  }
  for (let p = 0; p < 8; p++) {
    const at = t + p * 16;
    shiftTables[at] = 0;
    // Nibble p holds bits 4p..4p+3, standing for x^(31−4p−q), q = 0..3.
    for (let value = 1; value < 16; value++) {
      const q = 31 - Math.clz32(value); // highest bit of value
      shiftTables[at + value] = shiftTables[at + (value ^ (1 << q))] ^ basis[31 - 4 * p - q];
    }
  }
  shiftLengths[slot] = bytes;
  return t;
}

/** `crc × x^(8 × bytes) mod P`: the unconditioned CRC shifted past `bytes` zero bytes. */
export function shiftCrc(crc: number, bytes: number): number {
  const t = shiftTable(bytes);
  const s = shiftTables;
  return (
    (s[t + (crc & 15)] ^
      s[t + 16 + ((crc >>> 4) & 15)] ^
      s[t + 32 + ((crc >>> 8) & 15)] ^
      s[t + 48 + ((crc >>> 12) & 15)] ^
      s[t + 64 + ((crc >>> 16) & 15)] ^
      s[t + 80 + ((crc >>> 20) & 15)] ^
      s[t + 96 + ((crc >>> 24) & 15)] ^
      s[t + 112 + (crc >>> 28)]) >>>
    0
  );
}

/** Runs shorter than this are checked frame by frame (one native call would not pay for itself). */
const RUN_FRAMES_MIN = 2;

/**
 * Checks the CRC-32C of the whole frames from `b[start]` with one native call instead of one
 * call per frame, and returns where the verified run ends. Frames from the returned offset on
 * still need their own check.
 *
 * With the frame CRC addon (`nativeFrameCrcs`), the call checks each frame's own CRC, so the run
 * ends exactly at the first frame that fails. Without it, {@link verifyFrameRunCombined} checks
 * the CRC of the whole run through `@node-rs/crc32` and returns `start` when nothing was verified
 * (the native CRC is not loaded, the run is too short, or the run's CRC does not match).
 *
 * Why the combined check is the same check: a frame is valid when the CRC-32C of all its bytes, trailer
 * included, is {@link FRAME_CRC_RESIDUE}; the CRC of a run of valid frames is then fixed by
 * their lengths alone (combined as {@link crc32cCombine} does). A frame whose own CRC is wrong
 * leaves a non-zero remainder that the shift by the bytes after it cannot cancel (x is
 * invertible modulo the polynomial), so one damaged frame fails the run's check exactly when
 * it fails its own. Only damage to two or more frames whose remainders cancel could pass, as
 * likely as random damage passing one frame's CRC (2^-32). On a mismatch the caller checks the
 * frames one by one, so where and why decoding stops is unchanged.
 *
 * The walk reads length fields not yet verified: it stops at the first that cannot start a
 * frame (below the minimum, above `frameBytesMax`, or running past `end`), and a wrong length
 * that still fits makes the run's CRC mismatch.
 */
export function verifyFrameRun(b: Uint8Array, start: number, end: number, frameBytesMax: number): number {
  // The frame CRC addon checks each frame's own CRC in one call (exact, ~10 ns per small frame),
  // and its run ends at the first frame that fails.
  const frames = nativeFrameCrcs;
  if (frames !== undefined) return frames.verifyFrames(b, start, end, FRAME_BYTES_MIN, frameBytesMax);
  return verifyFrameRunCombined(b, start, end, frameBytesMax);
}

/**
 * @internal {@link verifyFrameRun} without the frame CRC addon: one `@node-rs/crc32` call over
 * the run, compared with the CRC the frames' lengths fix (see above). Exported for its tests.
 */
export function verifyFrameRunCombined(b: Uint8Array, start: number, end: number, frameBytesMax: number): number {
  const native = nativeCrc32c;
  if (native === undefined) return start;
  let o = start;
  let frames = 0;
  let expected = 0;
  while (end - o >= 4) {
    const n = readU32(b, o);
    if (n < FRAME_BYTES_MIN || n > frameBytesMax || n > end - o) break;
    expected = frames === 0 ? FRAME_CRC_RESIDUE : (shiftCrc(expected, n) ^ FRAME_CRC_RESIDUE) >>> 0;
    frames++;
    o += n;
  }
  if (frames < RUN_FRAMES_MIN) return start;
  const actual = native(b.subarray(start, o), 0);
  return actual === expected ? o : start;
}
