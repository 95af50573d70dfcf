import { tmpdir } from 'node:os';
import { expect, it } from 'vitest';
import { cpuNote, formatBrokerRows, runBrokerBench, usageBetween } from './broker-bench.js';

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

it('reports each server process\'s CPU time and context switches per request', () => {
  const reading = (cpuUs: number, voluntary: number, involuntary: number) =>
    ({ ...process.resourceUsage(), userCPUTime: cpuUs, systemCPUTime: cpuUs / 2, voluntaryContextSwitches: voluntary, involuntaryContextSwitches: involuntary });
  const broker = usageBetween(reading(1_000, 10, 5), reading(201_000, 1_610, 105));
  expect(broker).toEqual({ cpuMs: 300, contextSwitches: 1_700 });
  expect(cpuNote(200, { broker, worker: undefined })).toBe('; CPU and context switches per request: broker 1500 µs, 8.5 cs');
  expect(cpuNote(200, { node: undefined })).toBe('');
});
