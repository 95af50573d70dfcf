/**
 * "100-event stream among N events": how long loading one aggregate takes when its events are
 * spread over a large log (issue 9, target < 5 ms among 20 M events). Generic over a storage
 * factory, so every backend runs the same loop; each backend is measured twice in the same
 * run, through frame reads (`readFrames`, when the backend has them) and through batch reads
 * (the capability hidden), so the ratio between the two is measured under the same load.
 */
import { openPartition, type EventData, type PartitionStorage, type UnitOfWork } from '@sluice/store';
import { Latencies, row, type BenchRow } from './stats.js';

/** A fresh, empty storage for the bench, and how to remove what it stored. */
export interface BenchStorage {
  readonly storage: PartitionStorage;
  cleanup(): Promise<void>;
}

/** Options of {@link streamReadAmong}. */
export interface StreamReadBenchOptions {
  /** Backend name in the row names ("memory", "lmdb", "file"). */
  readonly backend: string;
  /** Creates the storage under test. */
  readonly create: () => Promise<BenchStorage>;
  /** Events in the log (fillers and measured streams together). */
  readonly totalEvents: number;
  /** Events of each measured stream. @default 100 */
  readonly streamEvents?: number;
  /** Events per commit: a filler stream's events and one event of a measured stream. @default 1000 */
  readonly commitEvents?: number;
  /** Stream reads timed per mode (the measured streams are read round-robin). @default 200 */
  readonly samples?: number;
}

const PAYLOAD_BYTES = 100;

/**
 * Writes about `totalEvents` 100-byte events in commits of a filler stream's events plus one
 * event of one of the measured streams (round-robin, as many streams as make the total), so
 * each measured stream's events are spread evenly over the whole log, one per commit; then
 * reads measured streams whole, `samples` times with frame reads, then a quarter as many times
 * with batch reads. One row per mode; a row's
 * latencies are per stream read, its events/s the events read.
 */
export async function streamReadAmong(options: StreamReadBenchOptions): Promise<BenchRow[]> {
  const streamEvents = options.streamEvents ?? 100;
  const unitEvents = Math.max(2, options.commitEvents ?? 1000);
  const samples = options.samples ?? 200;
  const streams = Math.max(1, Math.floor(options.totalEvents / (unitEvents * streamEvents)));
  const units = streams * streamEvents;
  const data = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const filler: EventData[] = Array.from({ length: unitEvents - 1 }, () => ({ type: 'Filler', data }));
  const one: EventData[] = [{ type: 'Measured', data }];
  const { storage: inner, cleanup } = await options.create();
  // The engine reads the capability on every stream read: hiding it switches to batch reads.
  let frameReads = inner.capabilities.frameReads;
  const storage = new Proxy(inner, {
    get: (target, key) => {
      if (key === 'capabilities') return { ...target.capabilities, frameReads };
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const partition = await openPartition({ storage, name: `stream-read-${options.backend}` });
  try {
    let next = 0;
    // 8 units in flight: the engine groups them, as a busy partition writes.
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < units) {
          const u = next++;
          const unit: UnitOfWork = {
            changes: [
              { streamId: `filler-${u % 1000}`, events: filler },
              { streamId: `measured-${u % streams}`, events: one },
            ],
          };
          await partition.commit(unit);
        }
      }),
    );
    const total = partition.lastSeq;
    // Round-robin over the streams in a scrambled order, `samples` reads in all.
    const order = Array.from({ length: samples }, (_, i) => (i * 7919 + 13) % streams);
    const rows: BenchRow[] = [];
    const modes = inner.capabilities.frameReads ? (['frame reads', 'batch reads'] as const) : (['batch reads'] as const);
    for (const mode of modes) {
      frameReads = mode === 'frame reads';
      // Batch reads cost far more per stream: a quarter of the samples keeps the run short.
      const reads = frameReads ? order : order.slice(0, Math.max(1, Math.ceil(samples / 4)));
      const latencies = new Latencies();
      let read = 0;
      let bytes = 0;
      const start = performance.now();
      for (const s of reads) {
        const t = performance.now();
        let n = 0;
        for await (const e of partition.readStream(`measured-${s}`)) {
          n++;
          bytes += e.payload.length;
        }
        latencies.record(performance.now() - t);
        if (n !== streamEvents) throw new Error(`stream measured-${s} has ${n} events, not ${streamEvents}`);
        read += n;
      }
      const ms = performance.now() - start;
      rows.push(
        row(
          `${streamEvents}-event stream among ${total.toLocaleString('en-US')} events, ${options.backend}, ${mode}`,
          read,
          bytes,
          ms,
          latencies,
          `p50/p99 per stream read; ${reads.length} reads of ${streams} streams, one event in each commit of ${unitEvents} events`,
        ),
      );
    }
    return rows;
  } finally {
    await partition.close();
    await cleanup();
  }
}
