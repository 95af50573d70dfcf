import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommitResult } from '@sluice/store';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MajordomoBroker } from '@sluice/majordomo';
import { FAST, startBroker, track, waitForEvents } from '@sluice/majordomo/testing';
import { collect, commitsOf, startStoreClient, tempDir, writeConfig } from './testing/store-harness.js';

/**
 * Invariant: a node SIGKILLed with appends in flight loses nothing acknowledged and applies
 * nothing twice. Its clients retry (same command ids) until a restarted node serves the
 * partition; afterwards the log holds every acknowledged append exactly once, at the seqs
 * its acknowledgement reported, and every append sent was acknowledged.
 *
 * SLUICE_NODE_CRASH_CYCLES raises the number of kill/restart cycles (default 3).
 */
const CYCLES = Number(process.env.SLUICE_NODE_CRASH_CYCLES ?? 3);
const CONCURRENCY = 4;
const APPENDERS = 32;
let bundleDir: string;
let childScript: string;

beforeAll(async () => {
  // Inside the workspace: the writer lock loads its native addon from node_modules at run time.
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundleDir = await mkdtemp(join(cache, 'sluice-node-crash-'));
  childScript = join(bundleDir, 'node-child.mjs');
  // zeromq is a native addon: keep it out of the bundle and load it from the workspace by path.
  const zeromq = createRequire(import.meta.url).resolve('zeromq');
  await build({
    entryPoints: [fileURLToPath(new URL('./testing/node-child.ts', import.meta.url))],
    outfile: childScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    logLevel: 'silent',
    plugins: [
      {
        name: 'external-zeromq',
        setup(builder) {
          builder.onResolve({ filter: /^zeromq$/ }, () => ({ path: zeromq, external: true }));
        },
      },
    ],
  });
});

afterAll(async () => {
  await rm(bundleDir, { recursive: true, force: true });
});

/** Spawns a node process and resolves once the broker has registered all its workers. */
async function spawnNode(broker: MajordomoBroker, configPath: string): Promise<ChildProcess> {
  const registered = waitForEvents(broker, 'worker-ready', CONCURRENCY, (event) => event.service === 'sluice.partition.p1', 20_000);
  const child = spawn(process.execPath, [childScript, configPath, 'n1', String(FAST.heartbeatIntervalMs), String(CONCURRENCY)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<never>((_, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`node child exited (${code ?? signal}) before registering: ${stderr}`)));
  });
  track({ close: () => stop(child) });
  await Promise.race([registered, exited]);
  child.removeAllListeners('exit');
  return child;
}

/** Kills a child (if still running) and resolves when it has exited. */
function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

it(`keeps every acknowledged append exactly once across ${CYCLES} SIGKILLs of a node with appends in flight`, { timeout: 30_000 + CYCLES * 10_000 }, async () => {
  // A SIGKILLed node's busy workers may never have heartbeated while busy: the broker then
  // waits busyTimeoutMs before redelivering what they held; short here to keep cycles brisk.
  const broker = await startBroker({ ...FAST, busyTimeoutMs: 500 });
  const { path, config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'], fsync: 'commit' });
  const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, timeoutMs: 2000, attemptsMax: 5, retriesMax: 5 });
  let child = await spawnNode(broker, path);

  const sent = new Set<string>();
  const acked = new Map<string, CommitResult>();
  let duplicates = 0;
  let next = 0;
  let running = true;
  let onAck: (() => void) | undefined;
  const appenders = Array.from({ length: APPENDERS }, async () => {
    while (running) {
      const id = `cmd-${next++}`;
      sent.add(id);
      const result = await client.append({ streamId: `stream-${next % 13}`, commandId: id, events: [{ type: 'E', data: new TextEncoder().encode(id) }] });
      if (result.duplicate) duplicates += 1;
      acked.set(id, result);
      onAck?.();
    }
  });
  const acks = (count: number): Promise<void> =>
    new Promise((resolve) => {
      onAck = () => {
        if (acked.size >= count) {
          onAck = undefined;
          resolve();
        }
      };
    });

  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await acks(acked.size + 50 + cycle * 37);
    const inFlight = sent.size - acked.size;
    expect(inFlight, 'appends in flight at the kill').toBeGreaterThan(0);
    await stop(child);
    child = await spawnNode(broker, path);
  }
  await acks(acked.size + 50);
  running = false;
  await Promise.all(appenders);

  const { commits, problems } = commitsOf(await collect(client.read('p1')));
  expect(problems.slice(0, 10)).toEqual([]);
  expect(acked.size).toBe(sent.size);
  expect(commits.size).toBe(acked.size);
  const mismatches = [...acked].filter(([id, result]) => {
    const found = commits.get(id);
    return found?.[0] !== result.firstSeq || found[1] !== result.lastSeq;
  });
  expect(mismatches.slice(0, 5)).toEqual([]);
  // Replies lost with the killed node come back as duplicates from the restarted one (the
  // broker redelivers what a dead worker held): about 1.5 per kill here, so not asserted.
  expect(duplicates).toBeLessThan(acked.size);
  await stop(child, 'SIGTERM');
});
