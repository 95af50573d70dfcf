import type { AppendScenario, BenchMode, Scenario } from './bench-system.js';

/** Payload sizes of the workload. */
export const PAYLOAD_SIZES: readonly number[] = [100, 1024];
/** Appends in flight for batched appends, where the system allows concurrent writers. */
export const BATCH_APPENDERS = 4;
/** Appenders of the concurrent single-event scenario. */
export const CONCURRENT_APPENDERS = 1000;
/** Bytes of a frame beside its payload, as the bench's 100-byte-stream events encode (about 80). */
export const FRAME_OVERHEAD_BYTES = 80;
/**
 * Encoded bytes an append scenario writes, at most, on every system alike: its events are
 * capped so that the rows of one scenario write the same volume. On the machine these figures
 * come from, durable writes keep their speed for a few GB written by one process, then slow to
 * about a third (a raw sparse write + fdatasync loop of 1.1 MB writes: ~720 MB/s for the first
 * 1.7-3.5 GB, then 230-330 MB/s), while a new file written right after is fast again; it looks
 * like page cache growing into VM memory the host must back first (after touching 8 GB in
 * another process, no lasting slow phase). Without the cap, a system writing 5.5 GB (1 KiB ×
 * 5 M) was measured in the slow phase while the limit rows beside it (512 MiB, what they
 * preallocate) were measured in the fast one.
 */
export const SCENARIO_BYTES_MAX = 512 * 1024 * 1024;

/** `events` of `payloadBytes` each, capped at {@link SCENARIO_BYTES_MAX} of frames (at least one batch). */
export function cappedEvents(events: number, payloadBytes: number, batch: number): number {
  return Math.min(events, Math.max(batch, Math.floor(SCENARIO_BYTES_MAX / (payloadBytes + FRAME_OVERHEAD_BYTES))));
}

interface ModeSizes {
  /** Events per scenario, by batch size; `concurrent` for the concurrent singles. */
  readonly events: { readonly 1: number; readonly 100: number; readonly 1000: number; readonly concurrent: number };
  readonly timeLimitMs: number;
}

/**
 * Event counts and the per-scenario time limit of each mode. A slow system stops at the time
 * limit and its rate is measured over what it did (the row's note says so); a fast one stops
 * at the event count.
 */
export const MODE_SIZES: Readonly<Record<BenchMode, ModeSizes>> = {
  smoke: { events: { 1: 50, 100: 1_000, 1000: 4_000, concurrent: 2_000 }, timeLimitMs: 1_000 },
  quick: { events: { 1: 5_000, 100: 200_000, 1000: 1_000_000, concurrent: 200_000 }, timeLimitMs: 2_000 },
  full: { events: { 1: 30_000, 100: 2_000_000, 1000: 5_000_000, concurrent: 2_000_000 }, timeLimitMs: 30_000 },
};

/** `100B`, `1KiB`. */
export function sizeLabel(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024}KiB` : `${bytes}B`;
}

/**
 * The workload, in the order every system runs it: for each payload size, sequential
 * single-event appends, batches of 100 and of 1000 (4 in flight where the system allows it),
 * 1000 concurrent single-event appenders, then a full catch-up read of the batches-of-1000 log.
 * Every append is one commit to one of 10,000 streams; no scenario writes more than
 * {@link SCENARIO_BYTES_MAX} of frames.
 */
export function workload(mode: BenchMode): Scenario[] {
  const sizes = MODE_SIZES[mode];
  const scenarios: Scenario[] = [];
  for (const payloadBytes of PAYLOAD_SIZES) {
    const size = sizeLabel(payloadBytes);
    const append = (id: string, batch: number, appenders: number, events: number): AppendScenario => ({
      kind: 'append',
      id: `${size}-${id}`,
      payloadBytes,
      batch,
      appenders,
      concurrent: appenders === CONCURRENT_APPENDERS,
      events: cappedEvents(events, payloadBytes, batch),
      timeLimitMs: sizes.timeLimitMs,
    });
    scenarios.push(append('batch-1', 1, 1, sizes.events[1]));
    scenarios.push(append('batch-100', 100, BATCH_APPENDERS, sizes.events[100]));
    scenarios.push(append(`concurrent-${CONCURRENT_APPENDERS}`, 1, CONCURRENT_APPENDERS, sizes.events.concurrent));
    scenarios.push(append('batch-1000', 1000, BATCH_APPENDERS, sizes.events[1000]));
    scenarios.push({ kind: 'catch-up', id: `${size}-catch-up`, payloadBytes, of: `${size}-batch-1000` });
  }
  return scenarios;
}

/** The scenario's name in the table, e.g. `100 B, batches of 1000 (4 in flight)`. */
export function describeScenario(scenario: Scenario): string {
  const size = scenario.payloadBytes % 1024 === 0 ? `${scenario.payloadBytes / 1024} KiB` : `${scenario.payloadBytes} B`;
  if (scenario.kind === 'catch-up') return `${size}, full catch-up read`;
  if (scenario.concurrent) return `${size}, ${scenario.appenders} concurrent single-event appenders`;
  if (scenario.batch === 1) return `${size}, sequential single-event appends`;
  return `${size}, batches of ${scenario.batch} (${scenario.appenders} in flight)`;
}
