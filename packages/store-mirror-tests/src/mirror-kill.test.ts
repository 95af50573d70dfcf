import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMirroredStorage, openPartition, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, it } from 'vitest';

/**
 * Invariants 2 and 5 on a mirror of real backends: a writer on a mirror of a file and an LMDB
 * location is SIGKILLed again and again mid-commit; every reopen finds every acknowledged
 * commit (the mirror completes a batch one location got and the other did not), both
 * locations hold the same bytes, and no command id is ever applied twice.
 *
 * SLUICE_MIRROR_KILL_CYCLES sets the number of kills (default 10).
 */
const CYCLES = Number(process.env.SLUICE_MIRROR_KILL_CYCLES ?? 10);
let root: string;
let bundleDirectory: string;
let childScript: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-mirror-kill-'));
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundleDirectory = await mkdtemp(join(cache, 'sluice-mirror-child-'));
  childScript = join(bundleDirectory, 'child.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./mirror-writer.fixture.ts', import.meta.url))],
    outfile: childScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    external: ['lmdb', 'fs-native-extensions'],
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(bundleDirectory, { recursive: true, force: true });
});

async function rawBatches(storage: PartitionStorage): Promise<number[][]> {
  await storage.open();
  try {
    const out: number[][] = [];
    for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) out.push(Array.from(b.bytes));
    return out;
  } finally {
    await storage.close();
  }
}

it(`keeps every acknowledged commit on both locations across ${CYCLES} kill -9s of a mirrored writer`, { timeout: 300_000 }, async () => {
  const fileDir = join(root, 'file');
  const lmdbDir = join(root, 'lmdb');
  await mkdir(fileDir);
  await mkdir(lmdbDir);
  const acked = new Map<string, number>();
  const opens: string[] = [];
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const child = spawn(process.execPath, [childScript, fileDir, lmdbDir, `k${cycle}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    let buffered = '';
    let acks = 0;
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('open ')) opens.push(line);
        const m = /^ack (\S+) (\d+)$/.exec(line);
        if (m !== null) {
          acked.set(m[1], Number(m[2]));
          acks++;
        }
      }
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await expect.poll(() => acks, { timeout: 60_000, interval: 5 }).toBeGreaterThan(50 + Math.floor(Math.random() * 300));
    child.kill('SIGKILL');
    await exited;
    expect(stderr).toBe('');
  }
  if (process.env.SLUICE_MIRROR_KILL_LOG !== undefined) await writeFile(process.env.SLUICE_MIRROR_KILL_LOG, opens.join('\n'));
  const mirror = (): PartitionStorage =>
    createMirroredStorage({ locations: [{ storage: createFileStorage({ directory: fileDir, segmentBytes: 256 * 1024 }), label: 'file' }, { storage: createLmdbStorage({ directory: lmdbDir }), label: 'lmdb' }] });
  const p = await openPartition({ storage: mirror(), name: 'mirror-crash' });
  const stored = new Map<string, number>();
  for await (const e of p.read()) {
    const id = e.headers?.commandIds[0] ?? '';
    expect(stored.has(id)).toBe(false); // applied once
    stored.set(id, e.seq);
  }
  // Every acknowledged commit is there, at the seq it was acknowledged with.
  for (const [id, seq] of acked) expect(stored.get(id)).toBe(seq);
  // A retried acknowledged command is a duplicate.
  const [someId] = acked.keys();
  expect((await p.append({ streamId: 's', commandId: someId, events: [{ type: 'E', data: new Uint8Array(1) }] })).duplicate).toBe(true);
  await p.close();
  expect(await rawBatches(createLmdbStorage({ directory: lmdbDir }))).toEqual(await rawBatches(createFileStorage({ directory: fileDir, segmentBytes: 256 * 1024 })));
});
