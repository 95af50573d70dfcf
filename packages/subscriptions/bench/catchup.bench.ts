// Projection catch-up: N events in a file-store partition, then a subscription and a projection read them all.
// Run: node --conditions=@sluice/source --import tsx packages/subscriptions/bench/catchup.bench.ts [events=1000000] [dir]
// ONLY=subscription or ONLY=projection runs that row alone (for `node --cpu-prof`).
// SLUICE_BENCH_JSON=1 adds one line `@sluice-bench {json}` per row (read by `npm run bench`).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createMemoryCheckpointStore, createMemoryParkingLot, startProjection, startSubscription } from '../src/index.js';

const events = Number(process.argv[2] ?? 1_000_000);
const keep = process.argv[3];
const directory = keep ?? (await mkdtemp(join(tmpdir(), 'sluice-bench-catchup-')));
// With its persisted index beside the log, as a node opens every partition: the reopen below then
// loads the index instead of replaying 10 M events and rebuilding tables while the catch-up runs.
const indexDirectory = `${directory}.index`;
let partition = await openPartition({ storage: createFileStorage({ directory, fsync: 'none' }), name: 'catchup', indexDirectory });
if (partition.lastSeq < events) {
  const started = performance.now();
  const perUnit = 1000;
  const pending: Promise<unknown>[] = [];
  for (let written = partition.lastSeq; written < events; written += perUnit) {
    const unit = [];
    for (let i = 0; i < perUnit; i++) {
      const n = written + i;
      unit.push({ type: n % 2 === 0 ? 'Deposited' : 'Withdrawn', data: new TextEncoder().encode(`{"amount":${n % 100}}`) });
    }
    pending.push(partition.append({ streamId: `account-${written % 1000}`, events: unit }));
    if (pending.length >= 64) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  const s = (performance.now() - started) / 1000;
  console.log(`wrote ${events.toLocaleString('en-US')} events in ${s.toFixed(1)} s`);
}
await partition.close();
partition = await openPartition({ storage: createFileStorage({ directory, fsync: 'none' }), name: 'catchup', indexDirectory });
const target = partition.lastSeq;
// A reopen may merge the index tables the first run left (on the checkpoint worker thread):
// measured apart, so the catch-up figures are the read path's alone (this process's CPU time
// counts every thread). Polled: the partition has no "index idle" event.
const mergeStarted = performance.now();
while (partition.indexStatus.busy) await new Promise((resolve) => setTimeout(resolve, 20));
console.log(
  `reopened: index replayed ${partition.indexStatus.replayedFrames.toLocaleString('en-US')} frames; ` +
    `${partition.indexStatus.mergesStarted} background table merges finished in ${(performance.now() - mergeStarted).toFixed(0)} ms before the catch-up`,
);

async function measure(label: string, start: () => { waitFor(seq: number): Promise<void>; stop(): Promise<void> }): Promise<void> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const sub = start();
  await sub.waitFor(target);
  const s = (performance.now() - started) / 1000;
  // The machine is shared: CPU time per event (user + system, this process) is what load does not skew.
  const used = process.cpuUsage(cpu);
  const cpuNs = ((used.user + used.system) * 1000) / target;
  await sub.stop();
  console.log(
    `${label}: ${target.toLocaleString('en-US')} events in ${s.toFixed(2)} s = ${Math.round(target / s).toLocaleString('en-US')} events/s; ` +
      `${cpuNs.toFixed(0)} ns CPU/event = ${Math.round(1e9 / cpuNs).toLocaleString('en-US')} events/CPU-s ` +
      `(user ${((used.user * 1000) / target).toFixed(0)}, system ${((used.system * 1000) / target).toFixed(0)} ns/event)`,
  );
  if (process.env.SLUICE_BENCH_JSON === '1') console.log(`@sluice-bench ${JSON.stringify({ row: label.split(' ')[0], events: target, seconds: s, perSecond: target / s, cpuNanosEach: cpuNs })}`);
}

const only = process.env.ONLY;
let count = 0;
if (only === undefined || only === 'subscription') await measure('subscription (frames, no decode)', () =>
  startSubscription({ subscriber: 'raw', source: partition, checkpoints: createMemoryCheckpointStore(), batchSizeMax: 10_000, handle: (e) => void (count += e.length) }),
);
const balances = new Map<string, number>();
if (only === undefined || only === 'projection') await measure('projection (JSON decode + apply)', () =>
  startProjection({
    source: partition,
    checkpoints: createMemoryCheckpointStore(),
    parking: createMemoryParkingLot(),
    batchSizeMax: 10_000,
    projection: {
      name: 'balances',
      apply: (e) => {
        const amount = (e.data as { amount: number }).amount;
        balances.set(e.streamId, (balances.get(e.streamId) ?? 0) + (e.type === 'Deposited' ? amount : -amount));
      },
    },
  }),
);
await partition.close();
if (keep === undefined) {
  await rm(directory, { recursive: true, force: true });
  await rm(indexDirectory, { recursive: true, force: true });
}
