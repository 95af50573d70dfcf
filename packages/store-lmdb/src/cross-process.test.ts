import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isStorageError, openPartition, sameIdentity, type BatchIdentity, type Partition } from '@sluice/store';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLmdbStorage } from './index.js';

let bundleDirectory: string;
let childScript: string;
let directory: string;

beforeAll(async () => {
  // Inside the workspace: the writer lock loads its native addon from node_modules at run time.
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundleDirectory = await mkdtemp(join(cache, 'sluice-lmdb-child-'));
  childScript = join(bundleDirectory, 'child.mjs');
  // lmdb is a native module: keep it out of the bundle and import it by absolute path, so the
  // bundle runs from a temp folder with plain `node`.
  const lmdbEntry = join(dirname(createRequire(import.meta.url).resolve('lmdb')), '..', 'node-index.js');
  await build({
    entryPoints: [fileURLToPath(new URL('./lmdb-child.fixture.ts', import.meta.url))],
    outfile: childScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    logLevel: 'silent',
    plugins: [{ name: 'external-lmdb', setup: (b) => b.onResolve({ filter: /^lmdb$/ }, () => ({ path: lmdbEntry, external: true })) }],
  });
});

afterAll(async () => {
  await rm(bundleDirectory, { recursive: true, force: true });
});

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-lmdb-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const POLICIES = ['commit', 'interval:20ms', 'none'] as const;

/** Runs a child to completion, returning its stdout. */
function runChild(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`child ${args[0]} exited with ${code}: ${stderr}`))));
  });
}

/** A running child writer and the commands it has reported acknowledged. */
interface ChildWriter {
  readonly child: ChildProcess;
  readonly acked: Map<string, [number, number]>;
  /** Resolves once `count` commands are acknowledged. */
  acknowledged(count: number): Promise<void>;
  /** SIGKILLs the child and resolves when it is gone. */
  kill(): Promise<void>;
}

function startWriter(fsync: string): ChildWriter {
  const child = spawn(process.execPath, [childScript, 'writer', directory, fsync], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked = new Map<string, [number, number]>();
  const waiters: Array<{ count: number; resolve: () => void; reject: (e: Error) => void }> = [];
  let stderr = '';
  let buffered = '';
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const settle = (): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (acked.size >= waiters[i].count) waiters.splice(i, 1)[0].resolve();
    }
  };
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const [verb, id, first, last] = buffered.slice(0, nl).split(' ');
      buffered = buffered.slice(nl + 1);
      if (verb === 'ack') acked.set(id, [Number(first), Number(last)]);
    }
    settle();
  });
  child.on('exit', (code, signal) => {
    exited = true;
    for (const w of waiters.splice(0)) w.reject(new Error(`child writer exited (${code ?? signal}) before ${w.count} acks: ${stderr}`));
  });
  return {
    child,
    acked,
    acknowledged: (count) =>
      new Promise<void>((resolve, reject) => {
        if (exited) return reject(new Error(`child writer already exited: ${stderr}`));
        waiters.push({ count, resolve, reject });
        settle();
      }),
    kill: async () => {
      if (!exited) child.kill('SIGKILL');
      await exit;
    },
  };
}

describe('readers in other processes', () => {
  for (const fsync of POLICIES) {
    it(`tail every acknowledged commit, verified, while the writer runs, and agree with it on head and identityAt (fsync ${fsync})`, async () => {
      const storage = createLmdbStorage({ directory, fsync });
      const partition = await openPartition({ storage });
      try {
        for (let i = 1; i <= 5; i++) await partition.append({ streamId: 's', events: [{ type: 'E', data: bytes(`v${i}`) }] });
        // The child opens the environment read-only now and must also see what comes after.
        const reading = runChild(['reader', directory, '12']);
        for (let i = 6; i <= 10; i++) await partition.append({ streamId: 's', events: [{ type: 'E', data: bytes(`v${i}`) }] });
        await partition.append({ streamId: 't', events: [{ type: 'E', data: bytes('v11') }, { type: 'E', data: bytes('v12') }] });
        const lines = (await reading).trim().split('\n');
        const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
        const identity = (await storage.identityAt(12)) as BatchIdentity;
        expect(lines.slice(-4)).toEqual([
          `head 12 0 ${hex(identity.digest)}`,
          `identity 12 0 ${hex(identity.digest)}`,
          'beyond none',
          'done 12',
        ]);
        expect(sameIdentity(identity, storage.durableHead())).toBe(true);
        expect(lines.slice(0, -4)).toEqual(Array.from({ length: 12 }, (_, i) => `event ${i + 1} v${i + 1}`));
      } finally {
        await partition.close();
      }
    });
  }

  it('read single frames by seq while the writer runs, never above the durable head', async () => {
    const partition = await openPartition({ storage: createLmdbStorage({ directory }) });
    try {
      for (let i = 1; i <= 30; i++) await partition.append({ streamId: `s-${i % 3}`, events: [{ type: 'E', data: bytes(`v${i}`) }, { type: 'E', data: bytes(`w${i}`) }] });
      // Frame 2i-1 holds v<i>, frame 2i holds w<i>; stream s-(i mod 3) is at version 2*ceil(i/3) by then.
      const out = await runChild(['frames', directory, '1,4,5,6,33,60']);
      expect(out.trim().split('\n')).toEqual(['frame 1 s-1 1 v1', 'frame 4 s-2 2 w2', 'frame 5 s-0 1 v3', 'frame 6 s-0 2 w3', 'frame 33 s-2 11 v17', 'frame 60 s-0 20 w30', 'done']);
      expect((await runChild(['frames', directory, '59,61'])).trim()).toBe('refused Invalid');
    } finally {
      await partition.close();
    }
  });

  it('are refused with NotFound where no writer has created the partition', async () => {
    await expect(runChild(['reader', join(directory, 'nothing-here'), '1'])).rejects.toThrow(/NotFound|holds no LMDB partition/);
  });
});

/**
 * Invariant: one Sluice writer per partition across processes; after a writer process is
 * SIGKILLed, the next writer takes the partition over and finds every commit the dead one
 * acknowledged, byte for byte, with no gap, and no command applied twice.
 */
describe('one writer across processes', () => {
  for (const fsync of POLICIES) {
    it(`refuses a second writer while the first lives, and keeps every acknowledged commit across SIGKILLs (fsync ${fsync})`, async () => {
      const everAcked = new Map<string, [number, number]>();
      for (let cycle = 0; cycle < 3; cycle++) {
        const writer = startWriter(fsync);
        let partition: Partition | undefined;
        try {
          await writer.acknowledged(50 + cycle * 37);
          const refused = await openPartition({ storage: createLmdbStorage({ directory, fsync }) }).catch((e: unknown) => e);
          expect(isStorageError(refused)).toBe(true);
          expect(refused).toMatchObject({ reason: 'Locked' });
          expect((refused as Error).message).toContain(`pid ${writer.child.pid}`);
          expect((refused as Error).message).toMatch(/writer/);
        } finally {
          await writer.kill();
        }
        for (const [id, range] of writer.acked) everAcked.set(id, range);

        partition = await openPartition({ storage: createLmdbStorage({ directory, fsync }) });
        try {
          const problems: string[] = [];
          const found = new Map<string, [number, number]>();
          let expectSeq = 1;
          for await (const event of partition.read()) {
            if (event.seq !== expectSeq) problems.push(`seq ${event.seq} where ${expectSeq} was expected`);
            expectSeq = event.seq + 1;
            const id = new TextDecoder().decode(event.payload);
            if (found.has(id)) problems.push(`command ${id} applied twice`);
            found.set(id, [event.seq, event.seq]);
          }
          for (const [id, range] of everAcked) {
            if (JSON.stringify(found.get(id)) !== JSON.stringify(range)) problems.push(`acknowledged ${id} ${JSON.stringify(range)} found as ${JSON.stringify(found.get(id))}`);
          }
          expect(problems.slice(0, 10), `after cycle ${cycle}`).toEqual([]);
          expect(partition.lastSeq).toBe(expectSeq - 1);
        } finally {
          await partition.close();
        }
      }
    });
  }
});
