import type { AppendScenario, BenchSession, Measurement, NotApplicable, Scenario } from './bench-system.js';
import { Latencies } from './stats.js';

/** Streams the workload spreads its appends over. */
export const STREAMS = 10_000;
/** Event type every benchmark event carries. */
export const EVENT_TYPE = 'BenchEvent';

/** What a full read saw. */
export interface ReadTotals {
  readonly events: number;
  readonly payloadBytes: number;
}

/**
 * The smallest event-store surface the workload needs. Each call is one commit: `append`
 * resolves only once the system acknowledges it durably (per the system's configuration).
 */
export interface EventLog {
  /**
   * Appends `payloads` as events of type {@link EVENT_TYPE} to `streamId`, which holds
   * `expectedVersion` events before; the system must refuse the append if another write got
   * there first (optimistic concurrency: expected version, unique stream+version, ...).
   * Resolves once the append is durable; what it resolves to is ignored.
   */
  append(streamId: string, expectedVersion: number, payloads: readonly Uint8Array[]): Promise<unknown>;
  /** Reads every event in commit order, as a catch-up subscriber starting at the beginning. */
  readAll(): Promise<ReadTotals>;
  close(): Promise<void>;
}

/** How {@link eventLogSession} drives an {@link EventLog}. */
export interface EventLogSessionOptions {
  /** Opens a fresh, empty log (table, partition, key prefix...) named `name`. */
  readonly open: (name: string, scenario: AppendScenario) => Promise<EventLog>;
  /**
   * Most appenders that may have an append in flight at once. Omit for no limit; `1` for a
   * synchronous client, which then gets {@link concurrencyUnsupported} for the concurrent
   * scenario and runs batch scenarios with one appender.
   */
  readonly appendersMax?: number;
  /** Why the system has no concurrent appenders (shown for the concurrent scenario). */
  readonly concurrencyUnsupported?: string;
  /** Stops what the system's setup started. */
  readonly teardown?: () => Promise<void>;
}

/** The payload of every event: `bytes` long, a fixed non-zero pattern (nothing compresses it away). */
export function benchPayload(bytes: number): Uint8Array {
  const p = new Uint8Array(bytes);
  for (let i = 0; i < p.length; i++) p[i] = (i * 31 + 7) & 0xff;
  return p;
}

/**
 * Runs the workload the same way for every event store: `appenders` appenders each send
 * appends of `batch` events one after another; appender `a` owns the streams `s ≡ a (mod
 * appenders)`, so it always knows the expected version and no append conflicts. A catch-up
 * scenario reads back the log the preceding append scenario wrote.
 */
export function eventLogSession(options: EventLogSessionOptions): BenchSession {
  let current: { readonly id: string; readonly log: EventLog } | undefined;

  async function closeCurrent(): Promise<void> {
    const open = current;
    current = undefined;
    if (open !== undefined) await open.log.close();
  }

  return {
    async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
      if (scenario.kind === 'catch-up') {
        if (current?.id !== scenario.of) return { notApplicable: `the log of ${scenario.of} was not written` };
        const start = performance.now();
        const totals = await current.log.readAll();
        const ms = performance.now() - start;
        return { events: totals.events, payloadBytes: totals.payloadBytes, ms };
      }
      if (scenario.concurrent && options.concurrencyUnsupported !== undefined) {
        return { notApplicable: options.concurrencyUnsupported };
      }
      await closeCurrent();
      const log = await options.open(scenario.id, scenario);
      current = { id: scenario.id, log };
      return runAppends(log, scenario, Math.min(scenario.appenders, options.appendersMax ?? Number.POSITIVE_INFINITY));
    },
    async teardown(): Promise<void> {
      try {
        await closeCurrent();
      } finally {
        await options.teardown?.();
      }
    },
  };
}

async function runAppends(log: EventLog, scenario: AppendScenario, appenders: number): Promise<Measurement> {
  if (STREAMS % appenders !== 0) throw new Error(`[sluice/bench] ${appenders} appenders do not divide ${STREAMS} streams: pick a divisor`);
  const payload = benchPayload(scenario.payloadBytes);
  const payloads: Uint8Array[] = Array.from({ length: scenario.batch }, () => payload);
  const streamIds = Array.from({ length: STREAMS }, (_, s) => `stream-${s}`);
  const versions = new Int32Array(STREAMS);
  const batches = Math.max(1, Math.floor(scenario.events / scenario.batch));
  const latencies = new Latencies();
  let issued = 0;
  const start = performance.now();
  const deadline = start + scenario.timeLimitMs;
  await Promise.all(
    Array.from({ length: appenders }, async (_, a) => {
      for (let i = 0; issued < batches && performance.now() < deadline; i++) {
        issued++;
        const stream = (i * appenders + a) % STREAMS;
        const t = performance.now();
        await log.append(streamIds[stream], versions[stream], payloads);
        latencies.record(performance.now() - t);
        versions[stream] += scenario.batch;
      }
    }),
  );
  const ms = performance.now() - start;
  const events = issued * scenario.batch;
  const limited = issued < batches ? `stopped at the ${scenario.timeLimitMs / 1000} s limit` : undefined;
  const fewer = appenders < scenario.appenders ? `${appenders} appender(s): the client is synchronous` : undefined;
  const note = [fewer, limited].filter((n) => n !== undefined).join('; ');
  return {
    events,
    payloadBytes: events * scenario.payloadBytes,
    ms,
    p50Ms: latencies.percentile(50),
    p99Ms: latencies.percentile(99),
    note: note === '' ? undefined : note,
  };
}
