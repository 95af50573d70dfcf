/**
 * Segment preallocation benchmark: what preallocating a segment costs, and what it costs the
 * commits written into it afterwards (write + fdatasync of pre-encoded batches), for each way
 * of preallocating that works here:
 *
 * - `zero-fill`: write zeros over the whole segment, then fdatasync (what @sluice/store-file does);
 * - `fallocate`: fallocate(2) (via util-linux `fallocate`; no npm package in reach exposes it):
 *   blocks reserved as unwritten extents, so each first write converts extents — metadata that
 *   fdatasync must journal;
 * - `ftruncate (sparse)`: the size set, no blocks: each first write allocates;
 * - `none (append)`: the file grows with every write: fdatasync flushes the size too.
 *
 *   npm run bench:prealloc               full run
 *   npm run bench:prealloc -- --smoke    a quick check that it works (CI)
 *   --dir PATH   where the files go (default: the OS temp folder)
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, ftruncateSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { markdownTable } from './stats.js';

export type PreallocMethod = 'zero-fill' | 'fallocate' | 'ftruncate (sparse)' | 'none (append)';
export const PREALLOC_METHODS: readonly PreallocMethod[] = ['zero-fill', 'fallocate', 'ftruncate (sparse)', 'none (append)'];

export interface PreallocRow {
  readonly method: PreallocMethod;
  readonly segmentBytes: number;
  readonly preallocMs: number;
  readonly commits: number;
  readonly commitBytes: number;
  readonly commitsPerSecond: number;
  readonly mbPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function preallocate(method: PreallocMethod, path: string, bytes: number): number {
  const fd = openSync(path, 'w+');
  if (method === 'zero-fill') {
    const zeros = Buffer.alloc(1024 * 1024);
    for (let p = 0; p < bytes; p += zeros.length) writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - p), p);
  } else if (method === 'fallocate') {
    execFileSync('fallocate', ['-l', String(bytes), path]);
  } else if (method === 'ftruncate (sparse)') {
    ftruncateSync(fd, bytes);
  }
  fdatasyncSync(fd);
  return fd;
}

/** Preallocates one segment with `method`, then writes `commitBytes` at a time with an fdatasync after each, until it is full. */
export function measurePrealloc(directory: string, method: PreallocMethod, segmentBytes: number, commitBytes: number): PreallocRow {
  const path = join(directory, `segment-${method.replace(/\W+/g, '-')}.bin`);
  const t0 = performance.now();
  const fd = preallocate(method, path, segmentBytes);
  const preallocMs = performance.now() - t0;
  const batch = Buffer.alloc(commitBytes);
  for (let i = 0; i < batch.length; i++) batch[i] = (i * 31 + 7) & 0xff;
  const commits = Math.floor(segmentBytes / commitBytes);
  const latencies = new Float64Array(commits);
  try {
    const start = performance.now();
    for (let c = 0; c < commits; c++) {
      const t = performance.now();
      writeSync(fd, batch, 0, batch.length, c * commitBytes);
      fdatasyncSync(fd);
      latencies[c] = performance.now() - t;
    }
    const ms = performance.now() - start;
    latencies.sort();
    return {
      method,
      segmentBytes,
      preallocMs,
      commits,
      commitBytes,
      commitsPerSecond: (commits / ms) * 1000,
      mbPerSecond: (commits * commitBytes) / ms / 1000,
      p50Ms: latencies[Math.floor(commits * 0.5)],
      p99Ms: latencies[Math.min(commits - 1, Math.floor(commits * 0.99))],
    };
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
}

/** Every method, `rounds` times interleaved (the machine's load drifts): one row per method and round. */
export async function runPreallocBench(options: { readonly smoke: boolean; readonly directory: string }): Promise<PreallocRow[]> {
  const directory = await mkdtemp(join(options.directory, 'sluice-prealloc-'));
  const segmentBytes = options.smoke ? 1024 * 1024 : 64 * 1024 * 1024;
  const rows: PreallocRow[] = [];
  try {
    for (let round = 0; round < (options.smoke ? 1 : 2); round++) {
      for (const commitBytes of options.smoke ? [64 * 1024] : [4 * 1024, 128 * 1024]) {
        for (const method of PREALLOC_METHODS) rows.push(measurePrealloc(directory, method, commitBytes === 4096 && !options.smoke ? segmentBytes / 16 : segmentBytes, commitBytes));
      }
    }
    return rows;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

export function formatPreallocRows(rows: readonly PreallocRow[]): string {
  return markdownTable(
    ['method', 'segment MiB', 'prealloc ms', 'commit bytes', 'commits/s', 'MB/s', 'p50 ms', 'p99 ms'],
    rows.map((r) => [
      r.method,
      String(r.segmentBytes / 1024 / 1024),
      r.preallocMs.toFixed(0),
      String(r.commitBytes),
      Math.round(r.commitsPerSecond).toLocaleString('en-US'),
      r.mbPerSecond.toFixed(1),
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
    ]),
  );
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' }, dir: { type: 'string' } } });
  const rows = await runPreallocBench({ smoke: values.smoke === true, directory: values.dir ?? tmpdir() });
  console.log(`\nSegment preallocation (${values.smoke === true ? 'smoke' : 'full'}), write + fdatasync per commit, Node ${process.version}\n`);
  console.log(formatPreallocRows(rows));
}
