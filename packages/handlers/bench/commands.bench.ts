// Command handling on one partition: N deposits over M accounts, K in flight, after W deposits
// untimed (warm-up: a 2-second run is otherwise a third JIT compilation and cold caches, which a
// host that runs for hours pays once).
// Run: node --conditions=@sluice/source --import tsx packages/handlers/bench/commands.bench.ts [memory|file] [commands] [accounts] [inFlight] [fsync] [warmup=100000]
// SLUICE_BENCH_JSON=1 adds one line `@sluice-bench {json}` with the figures (read by `npm run bench`).
// Add --max-semi-space-size=64 to measure a host run as the README recommends (see "Young-generation size").
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryStorage, openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createHandlerHost } from '../src/index.js';
import { account } from '../src/test-domain.fixture.js';

const [kind = 'memory', commandsArg = '200000', accountsArg = '10000', inFlightArg = '5000', fsync = 'none', warmupArg = '100000'] = process.argv.slice(2);
const commands = Number(commandsArg);
const accounts = Number(accountsArg);
const inFlightMax = Number(inFlightArg);
const warmup = Number(warmupArg);
const directory = kind === 'file' ? await mkdtemp(join(tmpdir(), 'sluice-bench-handlers-')) : '';
const storage = kind === 'file' ? createFileStorage({ directory, fsync: fsync as 'none' }) : createMemoryStorage();
const partition = await openPartition({ storage, name: 'bench' });
// Units of work the engine is given (append goes through commit too): what the host amortizes.
let units = 0;
const commitUnit = partition.commit.bind(partition);
partition.commit = (unit) => {
  units++;
  return commitUnit(unit);
};
const host = createHandlerHost({ partition, entities: [account], cacheEntitiesMax: accounts * 2 });
await Promise.all(Array.from({ length: accounts }, (_, i) => host.execute({ id: `open-${i}`, commands: [{ recipient: `account-${i}`, command: { type: 'Open' } }] })));
let inFlight = 0;
let wake: (() => void) | undefined;
const settled = () => {
  inFlight--;
  const w = wake;
  wake = undefined;
  w?.();
};
/** Deposits `count` over the accounts, `inFlightMax` at a time, message ids `<prefix>-<i>`. */
async function deposit(prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    inFlight++;
    host.execute({ id: `${prefix}-${i}`, commands: [{ recipient: `account-${i % accounts}`, command: { type: 'Deposit', amount: 1 } }] }).then(settled, (error: unknown) => {
      console.error(error);
      process.exit(1);
    });
    if (inFlight >= inFlightMax) await new Promise<void>((resolve) => (wake = resolve));
  }
  while (inFlight > 0) await new Promise<void>((resolve) => (wake = resolve));
}
await deposit('warm', warmup);
const unitsBefore = units;
const started = performance.now();
// CPU time of this process too: on a shared machine the rate per CPU-second is the steadier figure.
const cpuStarted = process.cpuUsage();
await deposit('dep', commands);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuStarted);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
console.log(`handlers: ${commands} commands over ${accounts} accounts, ${inFlightMax} in flight, ${kind}${kind === 'file' ? ` fsync ${fsync}` : ''}: ${seconds.toFixed(2)} s, ${Math.round(commands / seconds).toLocaleString('en-US')} commands/s; ${cpuSeconds.toFixed(2)} CPU-s, ${Math.round(commands / cpuSeconds).toLocaleString('en-US')} commands per CPU-second; ${units - unitsBefore} units of work (${(Math.round(((units - unitsBefore) / commands) * 1e4) / 1e4).toString()} per command), after ${warmup.toLocaleString('en-US')} untimed`);
if (process.env.SLUICE_BENCH_JSON === '1') console.log(`@sluice-bench ${JSON.stringify({ commands, accounts, inFlight: inFlightMax, store: kind === 'file' ? `file (fsync ${fsync})` : kind, warmup, seconds, perSecond: commands / seconds, cpuMicrosEach: (cpuSeconds * 1e6) / commands })}`);
await host.close();
await partition.close();
if (directory !== '') await rm(directory, { recursive: true, force: true });
