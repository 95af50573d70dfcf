import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bundleChild, type BundledChild } from '@sluice/store-file/testing';
import { createStreamCheckpointStore } from './index.js';

let child: BundledChild;
let data: string;
const EVENTS = 3000;
beforeAll(async () => {
  child = await bundleChild(new URL('./resume-child.fixture.ts', import.meta.url), 'subscriptions-resume');
  data = await mkdtemp(join(tmpdir(), 'sluice-subscriptions-resume-'));
  const partition = await openPartition({ storage: createFileStorage({ directory: data, fsync: 'none' }), name: 'resume' });
  const appends = [];
  for (let i = 0; i < EVENTS; i++) appends.push(partition.append({ streamId: `s-${i % 7}`, events: [{ type: 'E', data: new Uint8Array([i & 255]) }] }));
  await Promise.all(appends);
  await partition.close();
});
afterAll(async () => {
  await child.dispose();
  await rm(data, { recursive: true, force: true });
});

/** Runs the child; SIGKILLs it once it has printed `killAfter` seqs. Returns the seqs it handled. */
function run(killAfter: number): Promise<{ seqs: number[]; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child.script, data], { stdio: ['ignore', 'pipe', 'pipe'] });
    const seqs: number[] = [];
    let buffered = '';
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) seqs.push(Number(line));
      if (seqs.length >= killAfter && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    });
    p.on('error', reject);
    p.on('close', (_code, signal) => resolve({ seqs, signal, stderr }));
  });
}

/**
 * Invariant: a subscriber killed with SIGKILL resumes from its durable checkpoint: every
 * event is handled, none is skipped, and what is handled twice is at most the one batch in
 * hand at the kill (at-least-once; deterministic ids make it harmless downstream).
 */
it('a subscriber resumes from its checkpoint after kill -9, skipping nothing', async () => {
  const first = await run(700);
  expect(first.signal, first.stderr).toBe('SIGKILL');
  const second = await run(Number.POSITIVE_INFINITY);
  expect(second.signal, second.stderr).toBe(null);
  const all = new Set([...first.seqs, ...second.seqs]);
  for (let seq = 1; seq <= EVENTS; seq++) expect(all.has(seq)).toBe(true);
  const firstSet = new Set(first.seqs);
  const twice = second.seqs.filter((s) => firstSet.has(s));
  expect(twice.length).toBeLessThanOrEqual(10);
  expect(second.seqs[0]).toBeGreaterThan(500);
  const partition = await openPartition({ storage: createFileStorage({ directory: data, fsync: 'none' }), name: 'resume' });
  try {
    expect(await createStreamCheckpointStore(partition).load('resumer')).toBeGreaterThanOrEqual(EVENTS);
  } finally {
    await partition.close();
  }
}, 60_000);
