import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition } from '@sluice/store';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createFileStorage } from './index.js';
import { bundleChild, type BundledChild } from './testing/bundle-child.fixture.js';

/**
 * Invariant: after any SIGKILL of the writer, reopening the file store finds every
 * acknowledged commit, byte for byte, returns nothing corrupt, and no command id is ever
 * applied twice, even when commands in flight at the crash are sent again.
 *
 * SLUICE_CRASH_CYCLES raises the number of kill/restart cycles (default 100).
 */
const CYCLES = Number(process.env.SLUICE_CRASH_CYCLES ?? 100);
let directory: string;
let bundled: BundledChild | undefined;
let childScript: string;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-crash-'));
  // Bundle the child once so each restart is a plain `node` start (~50 ms), not a TS compile.
  bundled = await bundleChild(new URL('./crash-child.fixture.ts', import.meta.url), 'crash-child');
  childScript = bundled.script;
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
  await bundled?.dispose();
});

interface CycleOutcome {
  readonly acked: Map<string, [number, number]>;
  readonly sent: Set<string>;
}

/** Runs one child until it has acknowledged `ackTarget` commits after a random delay, then SIGKILLs it. */
function runChild(data: string, first: number, resend: string[], ackTarget: number): Promise<CycleOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childScript, data, String(first), resend.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked = new Map<string, [number, number]>();
    const sent = new Set<string>();
    let buffered = '';
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [verb, id, a, b] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (verb === 'send') sent.add(id);
        if (verb === 'ack') acked.set(id, [Number(a), Number(b)]);
        if (!killed && acked.size >= ackTarget) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ acked, sent });
      else reject(new Error(`crash child exited with ${code ?? signal} before being killed: ${stderr}`));
    });
  });
}

it(`keeps every acknowledged commit across ${CYCLES} SIGKILLs of the writer`, { timeout: 30_000 + CYCLES * 2_000 }, async () => {
  const data = join(directory, 'partition');
  const everAcked = new Map<string, [number, number]>();
  let next = 0;
  let inFlight: string[] = [];
  // A deterministic spread of kill points: right after opening, inside bursts, later on.
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const ackTarget = 1 + Math.floor(random() ** 2 * 400);
    const outcome = await runChild(data, next, inFlight, ackTarget);
    next += 100_000; // fresh command ids per cycle: cmd-<n> never repeats across cycles
    for (const [id, range] of outcome.acked) {
      const earlier = everAcked.get(id);
      // A resent command acknowledged twice must get the same commit both times.
      if (earlier !== undefined) expect(range, `command ${id} acknowledged twice with different commits`).toEqual(earlier);
      everAcked.set(id, range);
    }
    inFlight = [...outcome.sent].filter((id) => !outcome.acked.has(id)).slice(0, 50);

    // Reopen in this process and check the invariant.
    const partition = await openPartition({ storage: createFileStorage({ directory: data, segmentBytes: 256 * 1024 }) });
    try {
      // Plain comparisons per event (expect() per event would dominate the run); one assert per cycle.
      const problems: string[] = [];
      const seen = new Map<string, [number, number]>();
      const decoder = new TextDecoder();
      let expectSeq = 1;
      let commitFirst = 0;
      let commitId: string | undefined;
      for await (const event of partition.read()) {
        if (event.seq !== expectSeq) problems.push(`seq ${event.seq} where ${expectSeq} was expected`);
        expectSeq = event.seq + 1;
        if (event.commitFirst) {
          commitFirst = event.seq;
          commitId = event.headers?.commandIds[0];
        }
        if (decoder.decode(event.payload) !== `payload-of-${commitId}`.padEnd(100, '.')) problems.push(`seq ${event.seq}: payload is not ${commitId}'s`);
        if (event.commitLast && commitId !== undefined) {
          if (seen.has(commitId)) problems.push(`command ${commitId} applied twice`);
          seen.set(commitId, [commitFirst, event.seq]);
        }
      }
      if (expectSeq - 1 !== partition.lastSeq) problems.push(`read ended at ${expectSeq - 1}, lastSeq is ${partition.lastSeq}`);
      for (const [id, range] of everAcked) {
        const found = seen.get(id);
        if (found?.[0] !== range[0] || found[1] !== range[1]) problems.push(`acknowledged command ${id} ${JSON.stringify(range)} found as ${JSON.stringify(found)}`);
      }
      expect(problems.slice(0, 10), `after cycle ${cycle}`).toEqual([]);
    } finally {
      await partition.close();
    }
  }
  expect(everAcked.size).toBeGreaterThan(CYCLES);
});
