import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNativeFrameCrcs, nativeFrameCrcs } from './crc32c.js';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter, crc32cJs, decodeBatches } from './index.js';

/**
 * The frame CRC addon (native/crc32c.c, built into build/ by native/build.mjs when the package
 * is installed) and the FrameWriter's deferred checksums that use it: every frame's trailer must
 * be written before any of its bytes are read, hashed or handed out.
 */

const ONLY = FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST;

/** Frames of `lengths` bytes laid end to end (length field set, body patterned, trailer zero). */
function frames(lengths: readonly number[]): { bytes: Uint8Array; offsets: Uint32Array } {
  const total = lengths.reduce((a, b) => a + b, 0);
  const bytes = new Uint8Array(total);
  for (let i = 0; i < total; i++) bytes[i] = (i * 73 + 11) & 0xff;
  const offsets = new Uint32Array(lengths.length);
  let o = 0;
  lengths.forEach((n, i) => {
    offsets[i] = o;
    new DataView(bytes.buffer).setUint32(o, n, true);
    new DataView(bytes.buffer).setUint32(o + n - 4, 0, true);
    o += n;
  });
  return { bytes, offsets };
}

const trailer = (b: Uint8Array, o: number): number => new DataView(b.buffer, b.byteOffset).getUint32(o, true);

describe('native frame CRC addon', () => {
  it('is built and loaded wherever it can be built (npm ci compiles it when a C compiler and the Node headers are there)', () => {
    // What native/build.mjs needs; on a machine without them the JavaScript CRC is the expected outcome.
    const include = [process.env.SLUICE_NODE_INCLUDE, resolve(process.execPath, '..', '..', 'include', 'node')].find((d) => d !== undefined && d !== '' && existsSync(join(d, 'node_api.h')));
    const compiler = (process.env.CC || 'cc').trim().split(/\s+/)[0];
    const buildable = process.platform !== 'win32' && include !== undefined && spawnSync(compiler, ['--version']).status === 0;
    if (process.env.SLUICE_CRC32C === 'js' || !buildable) {
      expect(process.env.SLUICE_CRC32C === 'js' ? nativeFrameCrcs : undefined).toBeUndefined();
      return;
    }
    expect(nativeFrameCrcs, 'run `node packages/framing/native/build.mjs` (npm ci runs it): the addon is missing').toBeDefined();
    if (process.arch === 'x64') expect(nativeFrameCrcs?.hardware).toBe(true);
  });

  it('writes the CRC-32C of each frame into its trailer, as the JavaScript CRC computes it', () => {
    const addon = nativeFrameCrcs;
    if (addon === undefined) return;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 8, max: 700 }), { minLength: 1, maxLength: 40 }), (lengths) => {
        const { bytes, offsets } = frames(lengths);
        addon.stampFrameCrcs(bytes, offsets, offsets.length);
        for (let i = 0; i < lengths.length; i++) {
          const o = offsets[i];
          expect(trailer(bytes, o + lengths[i] - 4)).toBe(crc32cJs(bytes, o, o + lengths[i] - 4));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a frame that runs past the buffer or is shorter than 8 bytes, writing nothing', () => {
    const addon = nativeFrameCrcs;
    if (addon === undefined) return;
    const { bytes, offsets } = frames([40, 40]);
    const before = Uint8Array.from(bytes);
    new DataView(bytes.buffer).setUint32(40, 41, true); // the second frame claims one byte more than there is
    expect(() => addon.stampFrameCrcs(bytes, offsets, 2)).toThrow(RangeError);
    new DataView(bytes.buffer).setUint32(40, 4, true);
    expect(() => addon.stampFrameCrcs(bytes, offsets, 2)).toThrow(RangeError);
    expect(() => addon.stampFrameCrcs(bytes, Uint32Array.of(0, 1 << 30), 2)).toThrow(RangeError);
    expect(() => addon.stampFrameCrcs(bytes, offsets, 3)).toThrow(RangeError);
    new DataView(bytes.buffer).setUint32(40, 40, true);
    // Overlapping frames: the first one's trailer would rewrite the second one's length.
    expect(() => addon.stampFrameCrcs(bytes, Uint32Array.of(0, 36), 2)).toThrow(RangeError);
    // Out of order.
    expect(() => addon.stampFrameCrcs(bytes, Uint32Array.of(40, 0), 2)).toThrow(RangeError);
    // Offsets inside the bytes themselves.
    expect(() => addon.stampFrameCrcs(bytes, new Uint32Array(bytes.buffer, 0, 1), 1)).toThrow(RangeError);
    expect(bytes).toEqual(before);
    // Wrong argument types throw instead of returning quietly.
    expect(() => (addon.stampFrameCrcs as unknown as (...a: unknown[]) => void)(bytes, offsets)).toThrow(TypeError);
    expect(() => (addon.stampFrameCrcs as unknown as (...a: unknown[]) => void)(bytes, [0], 1)).toThrow(TypeError);
    expect(() => (addon.stampFrameCrcs as unknown as (...a: unknown[]) => void)(bytes, offsets, 'two')).toThrow(TypeError);
  });

  it('falls back to the JavaScript CRC when the addon is missing, incomplete or answers wrong', () => {
    expect(
      loadNativeFrameCrcs(() => {
        throw new Error("Cannot find module '../build/sluice_crc32c.node'");
      }),
    ).toBeUndefined();
    expect(loadNativeFrameCrcs(() => ({}))).toBeUndefined();
    expect(loadNativeFrameCrcs(() => ({ stampFrameCrcs: () => undefined, hardware: true }))).toBeUndefined();
  });
});

type Step =
  | { kind: 'event'; payload: number; stream: number }
  | { kind: 'digest' }
  | { kind: 'rollback' }
  | { kind: 'seal' }
  | { kind: 'reset' }
  | { kind: 'bytes' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('event' as const), payload: fc.integer({ min: 0, max: 900 }), stream: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'digest' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'rollback' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'seal' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'bytes' as const }) },
);

/**
 * Runs `steps` on a writer; returns every view it handed out (bytes() and seal results), copied,
 * and the last sealed one (what must decode whole).
 */
function run(writer: FrameWriter, steps: readonly Step[]): { seen: Uint8Array[]; sealed: Uint8Array | undefined } {
  const seen: Uint8Array[] = [];
  let sealed: Uint8Array | undefined;
  let seq = 1;
  let mark = { at: writer.mark(), frames: 0, lastSeq: 0, seq: 1 };
  let unsealed = 0;
  for (const s of steps) {
    if (s.kind === 'event') {
      if (unsealed === 0 || seq % 3 === 0) mark = { at: writer.mark(), frames: writer.unsealedFrameCount, lastSeq: seq - 1, seq };
      const payload = new Uint8Array(s.payload).fill(seq & 0xff);
      writer.appendEvent(seq, 1, 1000 + seq, ONLY, `stream-${s.stream}`, seq, 'Happened', undefined, undefined, payload);
      seq++;
      unsealed++;
    } else if (s.kind === 'digest') {
      writer.digestWritten();
      mark = { at: writer.mark(), frames: writer.unsealedFrameCount, lastSeq: seq - 1, seq };
    } else if (s.kind === 'rollback') {
      writer.rollback(mark.at, mark.frames, mark.lastSeq);
      unsealed = mark.frames;
      seq = mark.seq;
    } else if (s.kind === 'seal') {
      if (writer.seal(1, 5000)) seen.push((sealed = Uint8Array.from(writer.bytes())));
      unsealed = 0;
      mark = { at: writer.mark(), frames: 0, lastSeq: seq - 1, seq };
    } else if (s.kind === 'reset') {
      // Frames still pending are dropped with the rest: none may be stamped into the reused buffer later.
      writer.reset();
      sealed = undefined;
      unsealed = 0;
      mark = { at: writer.mark(), frames: 0, lastSeq: seq - 1, seq };
    } else {
      seen.push(Uint8Array.from(writer.bytes()));
    }
  }
  if (writer.seal(1, 5000)) seen.push((sealed = Uint8Array.from(writer.bytes())));
  return { seen, sealed };
}

describe('FrameWriter with deferred frame CRCs', () => {
  it('hands out byte for byte what the writer checksumming each frame in JavaScript does, across digests, rollbacks, seals and growth', () => {
    if (nativeFrameCrcs === undefined) return;
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 120 }), (steps) => {
        const deferred = run(new FrameWriter({ initialBytes: 256 }), steps);
        const inline = run(new FrameWriter({ initialBytes: 256, nativeFrameCrcs: false }), steps);
        expect(deferred.seen).toEqual(inline.seen);
        // And the last sealed buffer decodes whole, every frame's CRC checked (a reset restarts the
        // buffer, not the digest chain: it decodes from the chain's digest before it).
        if (deferred.sealed !== undefined && !steps.some((s) => s.kind === 'reset')) expect(decodeBatches(deferred.sealed).report.reason).toBe('end');
      }),
      { numRuns: 150 },
    );
  });

  it('checksums in batches of a bounded number of frames: 10,000 events before one seal decode intact', () => {
    const writer = new FrameWriter();
    const payload = new Uint8Array(20).fill(9);
    for (let seq = 1; seq <= 10_000; seq++) writer.appendEvent(seq, 0, 1, ONLY, 's', seq, 'E', undefined, undefined, payload);
    writer.seal(0, 1);
    const decoded = decodeBatches(writer.bytes());
    expect(decoded.report.reason).toBe('end');
    expect(decoded.batches[0].frames).toHaveLength(10_000);
  });
});
