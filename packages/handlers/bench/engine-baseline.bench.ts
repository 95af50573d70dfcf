// The engine alone, for comparison with commands.bench.ts: one commit per unit (one event, one command id), K in flight.
// Run: node --conditions=@sluice/source --import tsx packages/handlers/bench/engine-baseline.bench.ts [memory|file] [units] [inFlight] [fsync]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryStorage, openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';

const [kind = 'memory', unitsArg = '200000', inFlightArg = '500', fsync = 'none'] = process.argv.slice(2);
const units = Number(unitsArg);
const inFlightMax = Number(inFlightArg);
const directory = kind === 'file' ? await mkdtemp(join(tmpdir(), 'sluice-bench-engine-')) : '';
const partition = await openPartition({ storage: kind === 'file' ? createFileStorage({ directory, fsync: fsync as 'none' }) : createMemoryStorage(), name: 'bench' });
const data = new TextEncoder().encode(JSON.stringify({ type: 'Deposited', amount: 1 }));
const started = performance.now();
// CPU time of this process too: on a shared machine the rate per CPU-second is the steadier figure.
const cpuStarted = process.cpuUsage();
let inFlight = 0;
let wake: (() => void) | undefined;
const settled = () => {
  inFlight--;
  const w = wake;
  wake = undefined;
  w?.();
};
for (let i = 0; i < units; i++) {
  inFlight++;
  const streamId = `account-${i % 10000}`;
  partition.commit({ changes: [{ streamId, expectedVersion: partition.streamVersion(streamId), events: [{ type: 'Deposited', data }] }], commandIds: [`dep-${i}`] }).then(settled, (error: unknown) => {
    console.error(error);
    process.exit(1);
  });
  if (inFlight >= inFlightMax) await new Promise<void>((resolve) => (wake = resolve));
}
while (inFlight > 0) await new Promise<void>((resolve) => (wake = resolve));
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuStarted);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
console.log(`engine: ${units} units, ${inFlightMax} in flight, ${kind}${kind === 'file' ? ` fsync ${fsync}` : ''}: ${seconds.toFixed(2)} s, ${Math.round(units / seconds).toLocaleString('en-US')} commits/s; ${cpuSeconds.toFixed(2)} CPU-s, ${Math.round(units / cpuSeconds).toLocaleString('en-US')} commits per CPU-second`);
await partition.close();
if (directory !== '') await rm(directory, { recursive: true, force: true });
