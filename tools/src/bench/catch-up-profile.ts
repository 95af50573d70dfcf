/**
 * Catch-up read profile: writes N 100-byte events (batches of 1000) to a file and an LMDB
 * partition, then times `partition.read()` and `partition.subscribe()` from seq 1 to the head
 * on each, in the same run. Run with `--cpu-prof` to see where the time goes:
 *
 *   node --conditions=@sluice/source --import tsx tools/src/bench/catch-up-profile.ts [events] [file|lmdb|memory]...
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryStorage, openPartition, type EventData, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';

const total = Number(process.argv[2] ?? 2_000_000);
const kinds = process.argv.slice(3).length > 0 ? process.argv.slice(3) : ['file', 'lmdb'];
const rounds = Number(process.env.ROUNDS ?? 3);
/** With KEEP_DIR, the log is written there once and reused by later runs (profile the reads alone). */
const keepDir = process.env.KEEP_DIR;

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
const rate = (events: number, ms: number): string => ((events / ms) * 1000 / 1e6).toFixed(2);

async function run(kind: string): Promise<void> {
  const reuse = keepDir !== undefined && kind !== 'memory' && existsSync(join(keepDir, kind));
  const dir = keepDir !== undefined && kind !== 'memory' ? join(keepDir, kind) : mkdtempSync(join(tmpdir(), `catch-up-${kind}-`));
  mkdirSync(dir, { recursive: true });
  const make = (): PartitionStorage =>
    kind === 'file'
      ? createFileStorage({ directory: dir, fsync: 'none' })
      : kind === 'lmdb'
        ? createLmdbStorage({ directory: dir, fsync: 'none' })
        : createMemoryStorage();
  try {
    let p = await openPartition({ storage: make(), name: kind });
    const payload = new Uint8Array(100).fill(7);
    const events: EventData[] = Array.from({ length: 1000 }, () => ({ type: 'Deposited', data: payload }));
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; !reuse && i < total / 1000; i++) {
      inFlight.push(p.append({ streamId: `s-${i % 1000}`, events }));
      if (inFlight.length >= 8) await inFlight.shift();
    }
    await Promise.all(inFlight);
    if (kind !== 'memory') {
      await p.close();
      p = await openPartition({ storage: make(), name: kind });
    }
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      let cpu = process.cpuUsage();
      let n = 0;
      let bytes = 0;
      for await (const e of p.read()) {
        n++;
        bytes += e.payload.length;
      }
      const readMs = performance.now() - t;
      const readCpuMs = cpuMs(process.cpuUsage(cpu));
      t = performance.now();
      cpu = process.cpuUsage();
      let m = 0;
      const head = p.lastSeq;
      for await (const batch of p.subscribe({ fromSeq: 1 })) {
        for (const e of batch) bytes += e.payload.length;
        m += batch.length;
        if (batch[batch.length - 1].seq >= head) break;
      }
      const subMs = performance.now() - t;
      const subCpuMs = cpuMs(process.cpuUsage(cpu));
      // The machine is shared: events per CPU second (user + system) is the figure that load does not skew.
      console.log(
        `${kind} round ${r}: read ${n} in ${readMs.toFixed(0)} ms = ${rate(n, readMs)} M/s (${rate(n, readCpuMs)} M/cpu-s); ` +
          `subscribe ${m} in ${subMs.toFixed(0)} ms = ${rate(m, subMs)} M/s (${rate(m, subCpuMs)} M/cpu-s)`,
      );
    }
    await p.close();
  } finally {
    if (keepDir === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

for (const kind of kinds) await run(kind);
