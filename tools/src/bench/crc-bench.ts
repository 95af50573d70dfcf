/**
 * CRC-32C microbenchmark: the implementations `@sluice/framing` can use, on 100 B, 1 KiB and
 * 1 MiB inputs, each as a whole array and as a range inside a larger one (the framing API is
 * `crc32c(bytes, start, end)`). Best of several rounds, MB/s.
 *
 *   npm run bench:crc               full run
 *   npm run bench:crc -- --smoke    a quick check that it works (CI)
 */
import { parseArgs } from 'node:util';
import { crc32c, crc32cImplementation, crc32cJs, nativeCrc32c, nativeFrameCrcs } from '@sluice/framing';
import { markdownTable } from './stats.js';

type Crc = (bytes: Uint8Array, start: number, end: number) => number;

/** The slicing-by-8 table version framing used before slicing-by-16: kept here as the baseline. */
const SLICE8 = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) for (let k = 1, c = t[n]; k < 8; k++) t[k * 256 + n] = c = t[c & 0xff] ^ (c >>> 8);
  return t;
})();

function crc32cSlicing8(bytes: Uint8Array, start: number, end: number): number {
  const t = SLICE8;
  let c = -1;
  let i = start;
  const end8 = end - ((end - start) & 7);
  while (i < end8) {
    const lo = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = t[1792 + (lo & 0xff)] ^ t[1536 + ((lo >>> 8) & 0xff)] ^ t[1280 + ((lo >>> 16) & 0xff)] ^ t[1024 + (lo >>> 24)] ^ t[768 + bytes[i + 4]] ^ t[512 + bytes[i + 5]] ^ t[256 + bytes[i + 6]] ^ t[bytes[i + 7]];
    i += 8;
  }
  while (i < end) c = t[(c ^ bytes[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

export interface CrcBenchRow {
  readonly implementation: string;
  /** MB/s per case, in {@link CRC_CASES} order, whole array then range. */
  readonly mbPerSecond: readonly number[];
}

export const CRC_CASES = [
  { name: '100 B', bytes: 100 },
  { name: '1 KiB', bytes: 1024 },
  { name: '1 MiB', bytes: 1024 * 1024 },
] as const;

export function crcImplementations(): [string, Crc][] {
  const list: [string, Crc][] = [
    ['JS slicing-by-8 (before)', crc32cSlicing8],
    ['JS slicing-by-16 (crc32cJs)', (b, s, e) => crc32cJs(b, s, e)],
  ];
  const native = nativeCrc32c;
  if (native !== undefined) list.push(['@node-rs/crc32 crc32c, called directly', (b, s, e) => native(s === 0 && e === b.length ? b : b.subarray(s, e), 0)]);
  list.push([`crc32c (framing: ${crc32cImplementation === 'native' ? 'native from 512 B, JS below' : 'JS only'})`, (b, s, e) => crc32c(b, s, e)]);
  return list;
}

/** Runs every implementation on every case; `budgetBytes` per measurement, best of `rounds`. */
export function runCrcBench(options: { readonly smoke: boolean }): CrcBenchRow[] {
  const rounds = options.smoke ? 1 : 5;
  const budgetBytes = options.smoke ? 1 << 20 : 32 << 20;
  const big = new Uint8Array((1 << 20) + 64);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  const impls = crcImplementations();
  const expected = crc32cJs(big, 7, 7 + 1000);
  for (const [name, fn] of impls) {
    if (fn(big, 7, 7 + 1000) !== expected) throw new Error(`[sluice/tools] crc-bench: ${name} disagrees with crc32cJs`);
  }
  const best = impls.map(() => new Array<number>(CRC_CASES.length * 2).fill(0));
  let sink = 0;
  for (let round = 0; round < rounds; round++) {
    impls.forEach(([, fn], k) => {
      CRC_CASES.forEach((c, j) => {
        for (const range of [false, true]) {
          const bytes = range ? big : big.subarray(0, c.bytes);
          const start = range ? 7 : 0;
          const end = start + c.bytes;
          const iterations = Math.max(1, Math.floor(budgetBytes / c.bytes));
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < iterations; i++) sink ^= fn(bytes, start, end);
          const ns = Number(process.hrtime.bigint() - t0);
          const col = j * 2 + (range ? 1 : 0);
          best[k][col] = Math.max(best[k][col], (iterations * c.bytes * 1e3) / ns);
        }
      });
    });
  }
  if (sink === 0.5) console.log(sink); // keeps the results observable
  const rows = impls.map(([name], k) => ({ implementation: name, mbPerSecond: best[k] }));
  const frames = frameCrcRow(rounds, budgetBytes);
  return frames === undefined ? rows : [...rows, frames];
}

/**
 * What FrameWriter does with the native frame CRC addon: frames of the case's size laid end to
 * end, their trailers written by one `stampFrameCrcs` call per 256 frames. Whole-array and range
 * columns hold the same figure (a frame is always a range of the writer's buffer).
 */
function frameCrcRow(rounds: number, budgetBytes: number): CrcBenchRow | undefined {
  const addon = nativeFrameCrcs;
  if (addon === undefined) return undefined;
  const best = new Array<number>(CRC_CASES.length * 2).fill(0);
  CRC_CASES.forEach((c, j) => {
    const count = Math.max(1, Math.min(256, Math.floor((4 << 20) / c.bytes)));
    const buffer = new Uint8Array(count * c.bytes);
    for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 2654435761) >>> 24;
    const offsets = new Uint32Array(count);
    const view = new DataView(buffer.buffer);
    for (let f = 0; f < count; f++) {
      offsets[f] = f * c.bytes;
      view.setUint32(f * c.bytes, c.bytes, true);
    }
    addon.stampFrameCrcs(buffer, offsets, count);
    if (view.getUint32(c.bytes - 4, true) !== crc32cJs(buffer, 0, c.bytes - 4)) throw new Error('[sluice/tools] crc-bench: the native frame CRC disagrees with crc32cJs');
    const iterations = Math.max(1, Math.floor(budgetBytes / buffer.length));
    for (let round = 0; round < rounds; round++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iterations; i++) addon.stampFrameCrcs(buffer, offsets, count);
      const ns = Number(process.hrtime.bigint() - t0);
      const mb = (iterations * buffer.length * 1e3) / ns;
      best[j * 2] = best[j * 2 + 1] = Math.max(best[j * 2], mb);
    }
  });
  return { implementation: `native frame CRCs, ${addon.hardware ? 'CRC32 instructions' : 'tables'}, up to 256 frames per call (FrameWriter.appendEvent)`, mbPerSecond: best };
}

export function formatCrcRows(rows: readonly CrcBenchRow[]): string {
  const headers = ['implementation (MB/s, best of rounds)', ...CRC_CASES.flatMap((c) => [c.name, `${c.name} range`])];
  return markdownTable(
    headers,
    rows.map((r) => [r.implementation, ...r.mbPerSecond.map((v) => Math.round(v).toLocaleString('en-US'))]),
  );
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' } } });
  const rows = runCrcBench({ smoke: values.smoke === true });
  console.log(`\nCRC-32C (${values.smoke === true ? 'smoke' : 'full'}), Node ${process.version}, ${process.arch}\n`);
  console.log(formatCrcRows(rows));
}
