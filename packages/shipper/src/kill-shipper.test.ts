import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import type { SealedBatch } from '@sluice/framing';
import { openPartition, type PartitionStorage } from '@sluice/store';
import { createAzureStorage } from '@sluice/store-azure';
import { azuriteConnectionString } from '@sluice/store-azure/testing';
import { createFileStorage } from '@sluice/store-file';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Port of the in-memory Azurite started by store-azure's global setup. */
    azuriteBlobPort: number;
  }
}

/**
 * Invariant 7 across crashes of the shipper: a shipper process is SIGKILLed again and again
 * while the partition keeps committing (often between the writes of one shipping round); each
 * restart resumes every target from its own durable head after the identity check, so at the
 * end every acknowledged commit is on every target exactly once, in order, byte for byte, and
 * no target was ever refused as diverged.
 *
 * SLUICE_SHIPPER_KILL_CYCLES sets the number of kills (default 8).
 */
const CYCLES = Number(process.env.SLUICE_SHIPPER_KILL_CYCLES ?? 8);
let root: string;
let bundleDirectory: string;
let childScript: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-ship-kill-'));
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundleDirectory = await mkdtemp(join(cache, 'sluice-shipper-child-'));
  childScript = join(bundleDirectory, 'child.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./shipper-child.fixture.ts', import.meta.url))],
    outfile: childScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    external: ['@azure/storage-blob', 'fs-native-extensions'],
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(bundleDirectory, { recursive: true, force: true });
});

interface Child {
  readonly process: ChildProcess;
  readonly lines: string[];
  readonly held: Map<string, number>;
  readonly exited: Promise<void>;
  ready: Promise<void>;
}

function startChild(args: readonly string[]): Child {
  const child = spawn(process.execPath, [childScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const held = new Map<string, number>();
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  let buffered = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    buffered += s;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (line === 'ready') markReady();
      const m = /^progress (\S+) (\d+)$/.exec(line);
      if (m !== null) held.set(m[1], Number(m[2]));
    }
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => {
    if (stderr.trim() !== '' && !/SIGKILL/.test(stderr)) lines.push(`stderr ${stderr.trim()}`);
  });
  return { process: child, lines, held, exited, ready };
}

async function batchesOf(storage: PartitionStorage): Promise<SealedBatch[]> {
  await storage.open();
  try {
    const out: SealedBatch[] = [];
    for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) out.push({ ...b, bytes: Uint8Array.from(b.bytes) });
    return out;
  } finally {
    await storage.close();
  }
}

it(`every acknowledged commit reaches every target exactly once, in order, across ${CYCLES} kill -9s of the shipper`, { timeout: 300_000 }, async () => {
  const connectionString = azuriteConnectionString(`http://127.0.0.1:${inject('azuriteBlobPort')}/devstoreaccount1`);
  const container = `kill-${process.pid}`;
  const containerClient = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container);
  await containerClient.create();
  // A supervisor that knows the old shipper is dead breaks its blob lease, so the next one need
  // not wait for it to expire.
  const breakLeases = async (): Promise<void> => {
    for await (const blob of containerClient.listBlobsFlat({ prefix: 'crash/' })) {
      if (blob.properties.leaseState === 'leased') await containerClient.getBlobClient(blob.name).getBlobLeaseClient().breakLease(0);
    }
  };
  const sourceDir = join(root, 'source');
  const fileTarget = join(root, 'target');
  const args = [sourceDir, fileTarget, connectionString, container];
  const sourceStorage = createFileStorage({ directory: sourceDir });
  const partition = await openPartition({ storage: sourceStorage, name: 'crash' });
  let writing = true;
  let sent = 0;
  let acknowledged = 0;
  const writer = (async () => {
    while (writing) {
      await Promise.all(
        Array.from({ length: 8 }, () => partition.append({ streamId: `s-${sent % 5}`, commandId: `c-${sent}`, events: [{ type: 'E', data: new TextEncoder().encode(`commit-${sent++}`.padEnd(300, '.')) }] }).then(() => void acknowledged++)),
      );
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  const outputs: string[] = [];
  let killedWhileShipping = 0;
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const child = startChild(args);
      await child.ready;
      // Kill it once it is shipping (both targets open), at a random point of its rounds.
      await expect.poll(() => child.held.size, { timeout: 30_000, interval: 5 }).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 300)));
      child.process.kill('SIGKILL');
      await child.exited;
      outputs.push(...child.lines);
      if (child.held.size === 2) killedWhileShipping++;
      await breakLeases();
    }
    if (process.env.SLUICE_SHIPPER_KILL_LOG !== undefined) await writeFile(process.env.SLUICE_SHIPPER_KILL_LOG, outputs.join('\n'));
    writing = false;
    await writer;
    const last = partition.lastSeq;
    expect(acknowledged).toBe(last);
    const final = startChild(args);
    await final.ready;
    await expect.poll(() => [final.held.get('file'), final.held.get('azure')], { timeout: 120_000, interval: 100 }).toEqual([last, last]);
    final.process.kill('SIGKILL');
    await final.exited;
    outputs.push(...final.lines);
    await breakLeases();

    const source: SealedBatch[] = [];
    for await (const b of sourceStorage.read(1, last)) source.push({ ...b, bytes: Uint8Array.from(b.bytes) });
    const onFile = await batchesOf(createFileStorage({ directory: fileTarget }));
    const onAzure = await batchesOf(createAzureStorage({ connectionString, container, prefix: 'crash' }));
    for (const copy of [onFile, onAzure]) {
      expect(copy.map((b) => [b.firstSeq, b.lastSeq])).toEqual(source.map((b) => [b.firstSeq, b.lastSeq]));
      expect(copy.every((b, i) => Buffer.compare(b.bytes, source[i].bytes) === 0)).toBe(true);
    }
    expect(outputs.filter((l) => /^alert (diverged|ahead)|^stderr/.test(l))).toEqual([]);
    // The kills really landed while batches were being shipped, not before the first one.
    expect(killedWhileShipping).toBe(CYCLES);
  } finally {
    writing = false;
    await writer.catch(() => undefined);
    await partition.close();
    await containerClient.deleteIfExists();
  }
});
