import { measurementOf, type BenchSystem, type Measurement, type NotApplicable, type Scenario } from '../bench-system.js';
import { rawFdatasync, rawFdatasyncSync } from '../store-bench.js';
import { withinTimeLimit } from '../within-time-limit.js';
import { cappedEvents } from '../workload.js';

/**
 * A raw write limit: pre-encoded frames written with one `write` + `fdatasync` per batch into
 * a preallocated file. No encoding, no index, no checks: what any durable log on this disk could
 * at best do with one writer. Through the thread pool (`rawFdatasync`, as an event loop does)
 * and synchronously on one thread (`rawFdatasyncSync`: no hand-over between threads, the highest
 * figure here), both into a zero-filled file; and synchronously into a sparse file (`sparse`),
 * where every write takes fresh blocks and each fdatasync commits their allocation to the file
 * system's journal, as for any log that grows (the file store's default segments are sparse:
 * its README, "Preallocation"). All three run in every run.
 */
function rawSystem(sync: boolean, sparse = false): BenchSystem {
  const file = sparse ? 'sparse file (fresh blocks at every write)' : 'preallocated (zero-filled) file';
  return {
    id: sparse ? 'raw-fdatasync-sync-sparse' : sync ? 'raw-fdatasync-sync' : 'raw-fdatasync',
    label: sparse ? 'raw writeSync+fdatasyncSync, sparse file' : sync ? 'raw writeSync+fdatasyncSync' : 'raw write+fdatasync',
    group: 'limit',
    configuration: sync
      ? `pre-encoded frames, one writeSync + fdatasyncSync per batch on one thread, ${file}, one writer${sparse ? '' : ': the disk\'s limit'}`
      : `pre-encoded frames, one write + fdatasync per batch, ${file}, one writer`,
    durability: 'fdatasync per write: survives power loss',
    async setup(context) {
      return {
        async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
          if (scenario.kind === 'catch-up') return { notApplicable: 'a write limit: nothing to read back' };
          if (scenario.concurrent) return { notApplicable: 'one writer: the sequential single-event row is its limit' };
          // The workload caps every scenario's bytes already (SCENARIO_BYTES_MAX, what this preallocates); kept for a scenario made elsewhere.
          const events = cappedEvents(scenario.events, scenario.payloadBytes, scenario.batch);
          const measure = (n: number) =>
            sync ? rawFdatasyncSync(context.directory, scenario.batch, n, scenario.payloadBytes, 1, sparse ? 'sparse' : 'zero-fill') : rawFdatasync(context.directory, scenario.batch, n, scenario.payloadBytes);
          const row = await withinTimeLimit({ ...scenario, appenders: 1, events }, measure);
          return measurementOf(row, scenario.payloadBytes, scenario.appenders > 1 ? 'one write in flight' : undefined);
        },
        async teardown() {},
      };
    },
  };
}

/** The write limit through the thread pool (as an event loop writes). */
export const rawFdatasyncSystem: BenchSystem = rawSystem(false);
/** The disk's limit: the same writes, synchronous, on one thread. */
export const rawFdatasyncSyncSystem: BenchSystem = rawSystem(true);
/** The same synchronous loop into a sparse file: the limit when every write takes fresh blocks. */
export const rawFdatasyncSyncSparseSystem: BenchSystem = rawSystem(true, true);
