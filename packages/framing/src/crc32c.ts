import { createRequire } from 'node:module';
import { readU32 } from './layout.js';

/**
 * CRC-32C (Castagnoli, polynomial 0x82F63B78 reflected).
 *
 * Two implementations, one answer:
 * - portable JavaScript, slicing-by-16 (sixteen 256-entry tables, sixteen bytes per step);
 * - the optional native `@node-rs/crc32` (prebuilt N-API binaries, SSE 4.2 / ARMv8 CRC
 *   instructions), used for ranges of {@link NATIVE_CRC32C_BYTES_MIN} bytes and more.
 *
 * Measured (`tools/src/bench/crc-bench.ts`): the native call costs more than the JavaScript
 * loop below about 512 bytes (a frame of a 100-byte event checksums faster in JS) and is 2–5×
 * faster from 1 KiB on. When the native module is missing or fails to load (another platform, a
 * bundle without it), everything runs on the JavaScript version.
 */
const POLY = 0x82f63b78;
const TABLES = buildTables();

/** Ranges at least this long go to the native implementation when it is loaded. */
export const NATIVE_CRC32C_BYTES_MIN = 512;

function buildTables(): Int32Array {
  const t = new Int32Array(16 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 16; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
}

/**
 * CRC-32C in plain JavaScript (slicing-by-16): the reference and the fallback of {@link crc32c}.
 * Same contract as {@link crc32c}.
 */
export function crc32cJs(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
  const t = TABLES;
  let c = ~crc;
  let i = start;
  const end16 = end - ((end - start) & 15);
  while (i < end16) {
    const lo = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c =
      t[3840 + (lo & 0xff)] ^
      t[3584 + ((lo >>> 8) & 0xff)] ^
      t[3328 + ((lo >>> 16) & 0xff)] ^
      t[3072 + (lo >>> 24)] ^
      t[2816 + bytes[i + 4]] ^
      t[2560 + bytes[i + 5]] ^
      t[2304 + bytes[i + 6]] ^
      t[2048 + bytes[i + 7]] ^
      t[1792 + bytes[i + 8]] ^
      t[1536 + bytes[i + 9]] ^
      t[1280 + bytes[i + 10]] ^
      t[1024 + bytes[i + 11]] ^
      t[768 + bytes[i + 12]] ^
      t[512 + bytes[i + 13]] ^
      t[256 + bytes[i + 14]] ^
      t[bytes[i + 15]];
    i += 16;
  }
  while (i < end) c = t[(c ^ bytes[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** The native CRC-32C: `(bytes, previous crc) → crc`, continuing like {@link crc32c}'s `crc`. */
export type NativeCrc32c = (bytes: Uint8Array, crc: number) => number;

/**
 * Loads `@node-rs/crc32` through `load` (a `require`) and checks it on the standard vector;
 * undefined when it is missing, fails to load or answers wrong.
 * @internal exported for the tests of the fallback
 */
export function loadNativeCrc32c(load: (id: string) => unknown): NativeCrc32c | undefined {
  try {
    const mod = load('@node-rs/crc32') as { crc32c?: (input: Uint8Array, initialState?: number) => number };
    const fn = mod.crc32c;
    if (typeof fn !== 'function') return undefined;
    const check = new Uint8Array([0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39]);
    if (fn(check, 0) >>> 0 !== 0xe3069283 || fn(check.subarray(4), fn(check.subarray(0, 4), 0)) >>> 0 !== 0xe3069283) return undefined;
    return (bytes, crc) => fn(bytes, crc) >>> 0;
  } catch {
    return undefined;
  }
}

function defaultNative(): NativeCrc32c | undefined {
  if (process.env.SLUICE_CRC32C === 'js') return undefined;
  return loadNativeCrc32c(createRequire(import.meta.url));
}

const native = defaultNative();

/**
 * The CRC-32C of many frames in one native call: `build/sluice_crc32c.node`, compiled from
 * `native/crc32c.c` when the package is installed (SSE 4.2 instructions where the CPU has them).
 * A frame of a 100-byte event costs ~20 ns this way against 140-180 ns in JavaScript and
 * 120-140 ns per call through `@node-rs/crc32`, whose cost is the call itself.
 */
export interface NativeFrameCrcs {
  /**
   * For each of the first `count` offsets: the frame there is `length` bytes (u32 LE at the
   * offset, its 4-byte trailer included); writes the CRC-32C of its bytes before the trailer
   * into the trailer. Throws a RangeError, writing nothing, when a frame runs past `bytes`.
   */
  stampFrameCrcs(bytes: Uint8Array, offsets: Uint32Array, count: number): void;
  /**
   * Walks the frames from `start` and returns where the run of whole frames whose trailer holds
   * the CRC-32C of their other bytes ends: at the first frame that fails its CRC, has a length
   * outside `[frameBytesMin, frameBytesMax]` or runs past `end`. Reads only.
   */
  verifyFrames(bytes: Uint8Array, start: number, end: number, frameBytesMin: number, frameBytesMax: number): number;
  /** True when it runs on the CPU's CRC-32C instructions, false on tables. */
  readonly hardware: boolean;
}

/**
 * Loads the frame CRC addon through `load` (a `require`) and checks it against the JavaScript
 * CRC on two frames; undefined when it was not built, fails to load or answers wrong.
 * @internal exported for the tests of the fallback
 */
export function loadNativeFrameCrcs(load: (id: string) => unknown): NativeFrameCrcs | undefined {
  try {
    const mod = load('../build/sluice_crc32c.node') as Partial<NativeFrameCrcs>;
    if (typeof mod.stampFrameCrcs !== 'function' || typeof mod.verifyFrames !== 'function') return undefined;
    const check = new Uint8Array(64 + 300);
    for (let i = 0; i < check.length; i++) check[i] = (i * 151 + 7) & 0xff;
    check.set([64, 0, 0, 0], 0);
    check.set([44, 1, 0, 0], 64);
    mod.stampFrameCrcs(check, Uint32Array.of(0, 64), 2);
    if (readU32(check, 60) !== crc32cJs(check, 0, 60) || readU32(check, 360) !== crc32cJs(check, 64, 360)) return undefined;
    if (mod.verifyFrames(check, 0, check.length, 8, 1024) !== check.length) return undefined;
    check[100] ^= 1;
    if (mod.verifyFrames(check, 0, check.length, 8, 1024) !== 64) return undefined;
    return { stampFrameCrcs: mod.stampFrameCrcs, verifyFrames: mod.verifyFrames, hardware: mod.hardware === true };
  } catch {
    return undefined;
  }
}

/**
 * The frame CRC addon when it was built and loads (undefined otherwise, or with
 * `SLUICE_CRC32C=js`): {@link FrameWriter} checksums its frames in batches through it.
 */
export const nativeFrameCrcs: NativeFrameCrcs | undefined =
  process.env.SLUICE_CRC32C === 'js' ? undefined : loadNativeFrameCrcs(createRequire(import.meta.url));

/** The native CRC-32C when `@node-rs/crc32` loaded (undefined otherwise): for benchmarks and tests. */
export const nativeCrc32c: NativeCrc32c | undefined = native;

/** Which implementation {@link crc32c} uses for long ranges: `native` (`@node-rs/crc32`) or `js`. */
export const crc32cImplementation: 'native' | 'js' = native === undefined ? 'js' : 'native';

/**
 * CRC-32C of `bytes[start, end)`, continuing from `crc` (pass the previous result to
 * checksum data in pieces). Returns an unsigned 32-bit integer.
 *
 * @example
 * crc32c(new TextEncoder().encode('123456789')) // 0xe3069283
 */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
  if (native !== undefined && end - start >= NATIVE_CRC32C_BYTES_MIN) {
    // One view per long range (≥ 512 bytes): its cost is lost in the checksum's.
    return native(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end), crc);
  }
  return crc32cJs(bytes, start, end, crc);
}
