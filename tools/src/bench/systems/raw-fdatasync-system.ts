import type { BenchSystem, Measurement, NotApplicable, Scenario } from '../bench-system.js';
import { rawFdatasync } from '../store-bench.js';
import { withinTimeLimit } from '../within-time-limit.js';

/** Bytes one raw scenario may preallocate: keeps 1 KiB × millions of events off the disk. */
const RAW_FILE_BYTES_MAX = 512 * 1024 * 1024;
/** Frame bytes per event beyond the payload, roughly (envelope, stream id, type, checksum). */
const FRAME_OVERHEAD_BYTES = 80;

/**
 * The disk's limit: pre-encoded frames written with one `write` + `fdatasync` per batch into
 * a preallocated file (`rawFdatasync` of the store bench). No encoding, no index, no checks:
 * what any durable log on this disk could at best do with one writer.
 */
export const rawFdatasyncSystem: BenchSystem = {
  id: 'raw-fdatasync',
  label: 'raw write+fdatasync',
  group: 'limit',
  configuration: 'pre-encoded frames, one write + fdatasync per batch, preallocated file, one writer',
  durability: 'fdatasync per write: survives power loss',
  async setup(context) {
    return {
      async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
        if (scenario.kind === 'catch-up') return { notApplicable: 'a write limit: nothing to read back' };
        if (scenario.concurrent) return { notApplicable: 'one writer: the sequential single-event row is its limit' };
        const frameBytes = scenario.payloadBytes + FRAME_OVERHEAD_BYTES;
        const events = Math.min(scenario.events, Math.max(scenario.batch, Math.floor(RAW_FILE_BYTES_MAX / frameBytes)));
        const row = await withinTimeLimit({ ...scenario, appenders: 1, events }, (n) => rawFdatasync(context.directory, scenario.batch, n, scenario.payloadBytes));
        return {
          events: row.events,
          payloadBytes: row.events * scenario.payloadBytes,
          ms: row.seconds * 1000,
          p50Ms: row.p50Ms,
          p99Ms: row.p99Ms,
          note: scenario.appenders > 1 ? 'one write in flight' : undefined,
        };
      },
      async teardown() {},
    };
  },
};
