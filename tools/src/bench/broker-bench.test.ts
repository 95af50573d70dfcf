import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { SERVER_MALLOC_TUNABLES, cpuNote, formatBrokerRows, runBrokerBench, sequentialTraceRows, serverEnvironment, sluiceBrokerBenchSystem, usageBetween, useServerMallocTunables } from './broker-bench.js';

// Smoke mode only, servers inline: proves the benchmark runs end to end. No timing assertions.
it('runs every broker benchmark scenario in smoke mode', { timeout: 120_000 }, async () => {
  const rows = await runBrokerBench({ smoke: true, directory: tmpdir(), placement: 'inline' });
  expect(rows.map((r) => r.name)).toEqual([
    'direct: DEALER ↔ echo ROUTER',
    'via broker: DEALER speaking MDP → broker → MajordomoWorker',
    'via broker: MajordomoClient → broker → MajordomoWorker',
    // The same two with the batch extension.
    'via broker: DEALER speaking MDP → broker → MajordomoWorker',
    'via broker: MajordomoClient → broker → MajordomoWorker',
    'in-process partition (no broker), file store',
    'via broker: store client → broker → node, file store',
  ]);
  for (const r of rows) {
    expect(r.events).toBeGreaterThan(0);
    expect(r.eventsPerSecond).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  }
  expect(rows.map((r) => r.note?.includes('batches of ≤ 64') ?? false)).toEqual([false, false, false, true, true, false, false]);
  const table = formatBrokerRows(rows);
  expect(table.split('\n')).toHaveLength(rows.length + 2);
  expect(table).toMatch(/direct is [\d.]+× this/);
});

it('reports each server process\'s CPU time, context switches and page faults per request', () => {
  const reading = (cpuUs: number, voluntary: number, involuntary: number, faults: number) =>
    ({ ...process.resourceUsage(), userCPUTime: cpuUs, systemCPUTime: cpuUs / 2, voluntaryContextSwitches: voluntary, involuntaryContextSwitches: involuntary, minorPageFault: faults });
  const broker = usageBetween(reading(1_000, 10, 5, 100), reading(201_000, 1_610, 105, 8_700));
  expect(broker).toEqual({ cpuMs: 300, contextSwitches: 1_700, pageFaults: 8_600 });
  expect(cpuNote(200, { broker, worker: undefined })).toBe('; CPU, context switches and page faults per request: broker 1500 µs, 8.5 cs, 43.0 pf');
  expect(cpuNote(200, { node: undefined })).toBe('');
});

// Servers inline (a spawned server runs the built file, which a test run may not have): every
// socket is in this process, so the records all say "client"; hopBreakdown's own test checks
// how records of several processes line up.
it('traces sequential appends through the broker, step by step', { timeout: 120_000 }, async () => {
  const directory = await mkdtemp(join(tmpdir(), 'sluice-trace-test-'));
  try {
    const { rows, hops } = await sequentialTraceRows(directory, 20, 'inline');
    expect(rows.map((r) => r.name)).toEqual([
      'in-process partition append',
      'echo: MajordomoClient → broker → MajordomoWorker',
      'echo: MajordomoClient → broker → MajordomoWorker',
      'the same, the handler fdatasyncs a 100-byte write',
      'the same, the handler appends to an in-process partition',
      'store client → broker → node',
    ]);
    for (const r of rows) expect(r.events).toBe(20);
    const steps = hops.map((h) => h.step);
    // The client's send, the broker's forward (recorded here too), the reply, in that order.
    expect(steps[0]).toBe('client op-start → client send');
    expect(steps).toContain('client send → client recv');
    expect(steps.at(-2)).toBe('client recv → client op-end');
    expect(hops.at(-1)).toMatchObject({ step: 'total', count: 20 });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

it('spawns servers with the malloc settings the READMEs advise, after none or before the caller\'s own', () => {
  expect(serverEnvironment({ PATH: '/bin' }, true)).toEqual({ PATH: '/bin', GLIBC_TUNABLES: SERVER_MALLOC_TUNABLES });
  expect(SERVER_MALLOC_TUNABLES).toMatch(/glibc\.malloc\.mmap_threshold=4194304/);
  // glibc takes the last value of a tunable: one the caller set wins.
  expect(serverEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=1048576' }, true).GLIBC_TUNABLES).toBe(`${SERVER_MALLOC_TUNABLES}:glibc.malloc.mmap_threshold=1048576`);
  const env = { PATH: '/bin' };
  expect(serverEnvironment(env, false)).toBe(env);
});

it('names the malloc settings in the comparison row only when its servers run with them', async () => {
  const context = (mode: 'smoke' | 'quick') => ({ directory: tmpdir(), mode, installMissing: false, log: () => undefined });
  expect(sluiceBrokerBenchSystem.configuration).toContain(`GLIBC_TUNABLES=${SERVER_MALLOC_TUNABLES}`);
  // Nothing is started before a scenario runs: setting up and tearing down is free.
  const spawned = await sluiceBrokerBenchSystem.setup(context('quick'));
  expect(spawned.configuration).toBeUndefined();
  await spawned.teardown();
  const inline = await sluiceBrokerBenchSystem.setup(context('smoke'));
  expect(inline.configuration).toMatch(/^store client \(coalescing, framed appends, op 7\) → Majordomo broker/);
  expect(inline.configuration).not.toContain('GLIBC_TUNABLES');
  await inline.teardown();
  useServerMallocTunables(false);
  try {
    const defaults = await sluiceBrokerBenchSystem.setup(context('quick'));
    expect(defaults.configuration).not.toContain('GLIBC_TUNABLES');
    await defaults.teardown();
  } finally {
    useServerMallocTunables(true);
  }
});
