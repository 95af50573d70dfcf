/**
 * The contract of one row group in the comparative benchmark: a "system" (Sluice on some
 * storage, a peer database, or a raw limit of the disk) that can be set up, made to run the
 * workload's scenarios, and torn down. Adding a system is one object in
 * `systems/registry.ts`; for an event store, `eventLogSession` (event-log-session.ts) turns a
 * three-method `EventLog` into a session that runs every scenario the same way.
 */

import type { BenchRow } from './stats.js';

/** Which side of the comparison a system is on. */
export type SystemGroup = 'sluice' | 'peer' | 'limit';

/** Appends of `batch` events each to one stream, from `appenders` appenders at once. */
export interface AppendScenario {
  readonly kind: 'append';
  /** Stable id, e.g. `100B-batch-1000` or `1KiB-concurrent-1000`. */
  readonly id: string;
  readonly payloadBytes: number;
  /** Events per append (one commit, one stream). */
  readonly batch: number;
  /** Appenders issuing appends one after another, all at once; 1 is a sequential writer. */
  readonly appenders: number;
  /** True for the "many concurrent single-event appenders" scenario. */
  readonly concurrent: boolean;
  /** Events to append (rounded down to whole batches). */
  readonly events: number;
  /** Stop issuing appends after this long even if `events` is not reached. */
  readonly timeLimitMs: number;
}

/** Reads every event the preceding append scenario of the same session wrote, in commit order. */
export interface CatchUpScenario {
  readonly kind: 'catch-up';
  readonly id: string;
  readonly payloadBytes: number;
  /** The id of the append scenario whose events are read. */
  readonly of: string;
}

/** One step of the workload. */
export type Scenario = AppendScenario | CatchUpScenario;

/** What one scenario measured. Latencies are per append (per page for reads, when known). */
export interface Measurement {
  readonly events: number;
  readonly payloadBytes: number;
  readonly ms: number;
  readonly p50Ms?: number | undefined;
  readonly p99Ms?: number | undefined;
  /** Anything the reader of the table should know about how this number was made. */
  readonly note?: string | undefined;
}

/** A {@link BenchRow} of events of `payloadBytes` each as a measurement, with `note` (the row's own unless given). */
export function measurementOf(row: BenchRow, payloadBytes: number, note: string | undefined = row.note): Measurement {
  return { events: row.events, payloadBytes: row.events * payloadBytes, ms: row.seconds * 1000, p50Ms: row.p50Ms, p99Ms: row.p99Ms, note };
}

/** A scenario this system does not do, and why (for example: no concurrent writers). */
export interface NotApplicable {
  readonly notApplicable: string;
}

/** Where a system may put files and what the run allows it to do. */
export interface BenchContext {
  /** A fresh folder for this system only; removed after teardown. */
  readonly directory: string;
  /** `smoke` (CI: seconds), `quick` (about two minutes) or `full`. */
  readonly mode: BenchMode;
  /** May a missing server be installed (apt-get via tools/scripts/bench-setup.sh)? */
  readonly installMissing: boolean;
  /** Progress lines for the person running the bench (silent in tests). */
  readonly log: (line: string) => void;
}

/** How long a run takes: `smoke` seconds (CI), `quick` about two minutes, `full` as long as it needs. */
export type BenchMode = 'smoke' | 'quick' | 'full';

/** A system set up and ready to run scenarios. */
export interface BenchSession {
  /** Replaces the system's label once set up, e.g. with the server version found. */
  readonly label?: string;
  /** Replaces the system's configuration text once set up. */
  readonly configuration?: string;
  /** Replaces the system's durability text once set up. */
  readonly durability?: string;
  run(scenario: Scenario): Promise<Measurement | NotApplicable>;
  /** Stops what setup started (servers by PID, open handles). Called once, even after a failure. */
  teardown(): Promise<void>;
}

/** One system of the comparison. */
export interface BenchSystem {
  /** Stable id used in the JSON, e.g. `sluice-file`, `sqlite`. */
  readonly id: string;
  /** Name in the table, e.g. `SQLite (better-sqlite3)`. */
  readonly label: string;
  readonly group: SystemGroup;
  /** How it is configured, in a few words. */
  readonly configuration: string;
  /** What an acknowledged append survives, in words. */
  readonly durability: string;
  /**
   * Starts what the system needs. Throws {@link SystemSkippedError} when it cannot run here
   * (not installed, module missing): the system is then reported as skipped with the reason.
   */
  setup(context: BenchContext): Promise<BenchSession>;
}

/**
 * Thrown by {@link BenchSystem.setup} when a system cannot run on this machine. The message is
 * the reason printed in the table, so it says what to do about it.
 */
export class SystemSkippedError extends Error {
  override readonly name = 'SystemSkippedError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** True when a scenario was not run because the system does not do it. */
export function isNotApplicable(result: Measurement | NotApplicable): result is NotApplicable {
  return 'notApplicable' in result;
}
