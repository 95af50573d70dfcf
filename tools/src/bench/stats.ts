/** Latency samples (ms) → percentiles. Sorting once at the end keeps recording cheap. */
export class Latencies {
  private samples = new Float64Array(1024);
  private count = 0;

  record(ms: number): void {
    if (this.count === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.count++] = ms;
  }

  percentile(p: number): number {
    if (this.count === 0) return Number.NaN;
    const sorted = this.samples.slice(0, this.count).sort();
    return sorted[Math.min(this.count - 1, Math.floor((p / 100) * this.count))];
  }
}

/** One measured row. */
export interface BenchRow {
  readonly name: string;
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly bytesPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly note?: string;
}

/**
 * Runs `once(0)` … `once(count - 1)` from `concurrency` loops at once, each loop starting its
 * next call when its last one resolves: the wall time and each call's latency.
 */
export async function timedConcurrently(concurrency: number, count: number, once: (n: number) => Promise<unknown>): Promise<{ ms: number; latencies: Latencies }> {
  const latencies = new Latencies();
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const n = next++;
        const t = performance.now();
        await once(n);
        latencies.record(performance.now() - t);
      }
    }),
  );
  return { ms: performance.now() - start, latencies };
}

export function row(name: string, events: number, bytes: number, ms: number, latencies: Latencies, note?: string): BenchRow {
  return {
    name,
    events,
    seconds: ms / 1000,
    eventsPerSecond: (events / ms) * 1000,
    bytesPerSecond: (bytes / ms) * 1000,
    p50Ms: latencies.percentile(50),
    p99Ms: latencies.percentile(99),
    note,
  };
}

export function formatRate(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function markdownTable(headers: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * The standard benchmark table: one line per row, `extraNote` appending a comparison to a
 * row's notes (e.g. its ratio to a reference row).
 */
export function formatBenchRows(rows: readonly BenchRow[], extraNote: (r: BenchRow) => string = () => ''): string {
  return markdownTable(
    ['scenario', 'events/s', 'MB/s (payload)', 'p50 ms', 'p99 ms', 'notes'],
    rows.map((r) => [r.name, formatRate(r.eventsPerSecond), (r.bytesPerSecond / 1e6).toFixed(1), r.p50Ms.toFixed(3), r.p99Ms.toFixed(3), (r.note ?? '') + extraNote(r)]),
  );
}
