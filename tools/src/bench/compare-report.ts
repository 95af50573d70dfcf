import type { SystemGroup } from './bench-system.js';
import type { AppBenchRow } from './app-bench.js';
import { formatRate, markdownTable } from './stats.js';

/** The system every ratio is taken against. */
export const BASELINE_SYSTEM_ID = 'sluice-file';

/** One line of the comparison: a system in a scenario, measured, not applicable, skipped or failed. */
export interface CompareRow {
  readonly systemId: string;
  readonly system: string;
  readonly group: SystemGroup;
  readonly configuration: string;
  readonly durability: string;
  /** The scenario's id (`100B-batch-1000`), or null for a system skipped as a whole. */
  readonly scenarioId: string | null;
  /** The scenario in words, or `all` for a system skipped as a whole. */
  readonly workload: string;
  readonly status: 'ok' | 'not-applicable' | 'skipped' | 'failed';
  /** Why it was not measured. */
  readonly reason?: string;
  readonly events?: number;
  readonly seconds?: number;
  readonly eventsPerSecond?: number;
  /** Payload megabytes (10^6 bytes) per second. */
  readonly payloadMBPerSecond?: number;
  readonly p50Ms?: number | null;
  readonly p99Ms?: number | null;
  /** The Sluice file store's events/s in the same scenario divided by this row's. */
  readonly fileStoreRatio?: number | null;
  readonly note?: string;
}

/** A target of the issue, checked against ratios measured in the same run. */
export interface TargetCheck {
  readonly target: string;
  /** Measured ratio, or null when a side was not measured. */
  readonly measured: number | null;
  readonly required: number;
  readonly met: boolean | null;
  readonly reason?: string;
}

/** Adds to each measured row the file store's events/s in that scenario divided by the row's. */
export function withFileStoreRatios(rows: readonly CompareRow[]): CompareRow[] {
  const baseline = new Map<string, number>();
  for (const row of rows) {
    if (row.systemId === BASELINE_SYSTEM_ID && row.status === 'ok' && row.scenarioId !== null && row.eventsPerSecond !== undefined) {
      baseline.set(row.scenarioId, row.eventsPerSecond);
    }
  }
  return rows.map((row) => {
    if (row.status !== 'ok' || row.scenarioId === null || row.eventsPerSecond === undefined) return row;
    const base = baseline.get(row.scenarioId);
    return { ...row, fileStoreRatio: base === undefined || row.eventsPerSecond <= 0 ? null : base / row.eventsPerSecond };
  });
}

function rate(rows: readonly CompareRow[], systemId: string, scenarioId: string): CompareRow | undefined {
  return rows.find((r) => r.systemId === systemId && r.scenarioId === scenarioId);
}

/**
 * The targets for one payload size: the file store with batches of 1000 against
 * SQLite (≥ 15×), PostgreSQL and Redis (≥ 20×) and raw write+fdatasync (≥ 40 %); 1000
 * concurrent single-event appends against SQLite's single-event appends (≥ 50×).
 */
export function checkTargets(rows: readonly CompareRow[], size: string): TargetCheck[] {
  const file = (scenario: string): CompareRow | undefined => rate(rows, BASELINE_SYSTEM_ID, `${size}-${scenario}`);
  const checks: Array<[string, CompareRow | undefined, [string, CompareRow | undefined], number]> = [
    [`${size}, batches of 1000: file store ÷ SQLite FULL`, file('batch-1000'), ['SQLite', rate(rows, 'sqlite', `${size}-batch-1000`)], 15],
    [`${size}, batches of 1000: file store ÷ PostgreSQL`, file('batch-1000'), ['PostgreSQL', rate(rows, 'postgresql', `${size}-batch-1000`)], 20],
    [`${size}, batches of 1000: file store ÷ Redis appendfsync always`, file('batch-1000'), ['Redis', rate(rows, 'redis', `${size}-batch-1000`)], 20],
    [`${size}, batches of 1000: file store ÷ raw write+fdatasync`, file('batch-1000'), ['raw write+fdatasync', rate(rows, 'raw-fdatasync', `${size}-batch-1000`)], 0.4],
    [`${size}: 1000 concurrent single-event appends on the file store ÷ SQLite FULL single-event appends`, file('concurrent-1000'), ['SQLite', rate(rows, 'sqlite', `${size}-batch-1`)], 50],
  ];
  return checks.map(([target, sluice, [otherName, other], required]) => {
    const notMeasured = (name: string, r: CompareRow | undefined): string | undefined =>
      r === undefined ? `${name} not in this run` : r.status !== 'ok' || r.eventsPerSecond === undefined ? `${name}: ${r.reason ?? r.status}` : undefined;
    const reason = notMeasured('Sluice file store', sluice) ?? notMeasured(otherName, other);
    if (reason !== undefined || sluice?.eventsPerSecond === undefined || other?.eventsPerSecond === undefined) {
      return { target, measured: null, required, met: null, reason: reason ?? 'not measured' };
    }
    const measured = sluice.eventsPerSecond / other.eventsPerSecond;
    return { target, measured, required, met: measured >= required };
  });
}

function ms(value: number | null | undefined): string {
  return value === undefined || value === null || Number.isNaN(value) ? '–' : value < 10 ? value.toFixed(3) : value.toFixed(1);
}

function ratio(value: number): string {
  return value >= 10 ? `${value.toFixed(0)}×` : `${value.toFixed(2)}×`;
}

/** Cells may not hold a pipe or a line break. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/**
 * The rows as one markdown table: each scenario's systems side by side, then the systems
 * skipped as a whole. "file store ÷ this" above 1 means the file store is faster.
 */
export function formatCompareTable(rows: readonly CompareRow[]): string {
  const headers = ['workload', 'system', 'configuration', 'durability', 'events/s', 'MB/s (payload)', 'p50 ms', 'p99 ms', 'file store ÷ this', 'notes'];
  const lines = rows.map((r) => {
    const measured = r.status === 'ok';
    const notes = measured ? (r.note ?? '') : `${r.status === 'not-applicable' ? 'n/a' : r.status}: ${r.reason ?? ''}`;
    return [
      r.workload,
      r.system,
      r.configuration,
      r.durability,
      measured && r.eventsPerSecond !== undefined ? formatRate(r.eventsPerSecond) : '–',
      measured && r.payloadMBPerSecond !== undefined ? r.payloadMBPerSecond.toFixed(1) : '–',
      measured ? ms(r.p50Ms) : '–',
      measured ? ms(r.p99Ms) : '–',
      measured && r.fileStoreRatio !== undefined && r.fileStoreRatio !== null ? ratio(r.fileStoreRatio) : '–',
      notes,
    ].map(cell);
  });
  return markdownTable(headers, lines);
}

/** The targets as a markdown table. */
export function formatTargets(targets: readonly TargetCheck[]): string {
  return markdownTable(
    ['target', 'required', 'measured', 'met'],
    targets.map((t) => [
      cell(t.target),
      t.required < 1 ? `≥ ${(t.required * 100).toFixed(0)} %` : `≥ ${t.required}×`,
      t.measured === null ? '–' : t.required < 1 ? `${(t.measured * 100).toFixed(0)} %` : ratio(t.measured),
      t.met === null ? `not measured (${cell(t.reason ?? '')})` : t.met ? 'yes' : 'no',
    ]),
  );
}

/** The application rows: what, measured, target, met, how. */
export function formatApplications(rows: readonly AppBenchRow[]): string {
  return markdownTable(
    ['application', 'measured', 'target', 'met', 'how'],
    rows.map((r) => [
      cell(r.what),
      r.measured === null ? '–' : `${Math.round(r.measured).toLocaleString('en-US')} ${r.unit}`,
      `≥ ${r.required.toLocaleString('en-US')} ${r.unit}`,
      r.status === 'failed' ? `failed (${cell(r.reason ?? '')})` : r.met === true ? 'yes' : r.reason !== undefined ? `no (${cell(r.reason)})` : 'no',
      cell(r.detail),
    ]),
  );
}
