/**
 * The application rows of `npm run bench`: command handling, the bank sample, projection
 * catch-up and broadcast, each measured by its package's own bench script (run from source
 * through tsx, as their READMEs show) in a child process, one after the other, so that they
 * land in the same run as the comparative table. Each script prints its figures as one
 * `@sluice-bench {json}` line when SLUICE_BENCH_JSON=1.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BenchMode } from './bench-system.js';

/** One application benchmark and its target. */
export interface AppBenchRow {
  readonly id: 'commands' | 'bank' | 'catch-up' | 'broadcast';
  readonly what: string;
  readonly status: 'ok' | 'failed';
  /** The figure the target is about (per second), when measured. */
  readonly measured: number | null;
  readonly unit: string;
  readonly required: number;
  readonly met: boolean | null;
  /** How it was measured, and the figures beside the main one. */
  readonly detail: string;
  readonly reason?: string;
}

interface AppBench {
  readonly id: AppBenchRow['id'];
  readonly what: string;
  readonly unit: string;
  readonly required: number;
  readonly script: string;
  /** V8 flags the package's README recommends for such a process (the hosts' young generation). */
  readonly nodeFlags: readonly string[];
  readonly args: Record<BenchMode, readonly string[]>;
  /** The figure and the detail from the script's JSON lines; undefined when they are not there. */
  readonly read: (lines: readonly Record<string, unknown>[]) => { measured: number; detail: string; exact: boolean } | undefined;
}

const n = (value: unknown): number => Number(value);
const k = (value: unknown): string => `${(n(value) / 1000).toFixed(1)} k`;
const m = (value: unknown): string => `${(n(value) / 1e6).toFixed(2)} M`;

/** The four rows, with the sizes per mode (smoke: seconds, proves they run; quick: minutes; full). */
export const APP_BENCHES: readonly AppBench[] = [
  {
    id: 'commands',
    what: 'command handling, single partition, embedded',
    unit: 'commands/s',
    required: 100_000,
    script: 'packages/handlers/bench/commands.bench.ts',
    // The handlers README's "Young-generation size".
    nodeFlags: ['--max-semi-space-size=64'],
    args: { smoke: ['memory', '2000', '200', '100', 'none', '1000'], quick: ['file', '200000', '10000', '500', 'commit', '100000'], full: ['file', '1000000', '10000', '500', 'commit', '100000'] },
    read: ([r]) => (r === undefined ? undefined : { measured: n(r.perSecond), exact: true, detail: `${k(r.commands)} deposits over ${k(r.accounts)} accounts, ${String(r.inFlight)} in flight, ${String(r.store)} store, after ${k(r.warmup)} untimed; ${n(r.cpuMicrosEach).toFixed(1)} µs CPU each` }),
  },
  {
    id: 'bank',
    what: 'bank transfers, embedded, end to end (saga across two partitions, projection current)',
    unit: 'transfers/s',
    required: 20_000,
    script: 'apps/bank/bench/bank.bench.ts',
    // As `npm start` runs the bank.
    nodeFlags: ['--max-semi-space-size=32'],
    args: { smoke: ['300', '100', 'commit', '100', '200'], quick: ['50000', '1000', 'commit', '2000', '20000'], full: ['200000', '1000', 'commit', '2000', '20000'] },
    read: ([r]) => (r === undefined ? undefined : { measured: n(r.perSecond), exact: r.exact === true, detail: `${k(r.transfers)} transfers after ${k(r.warmup)} untimed; ${n(r.cpuMicrosEach).toFixed(0)} µs CPU each; money conserved and each transfer done exactly once: ${r.exact === true ? 'yes' : 'NO'}` }),
  },
  {
    id: 'catch-up',
    what: 'projection catch-up (file store, JSON decode + apply)',
    unit: 'events/s',
    required: 2_000_000,
    script: 'packages/subscriptions/bench/catchup.bench.ts',
    nodeFlags: [],
    args: { smoke: ['20000'], quick: ['2000000'], full: ['10000000'] },
    read: (lines) => {
      const projection = lines.find((r) => r.row === 'projection');
      const subscription = lines.find((r) => r.row === 'subscription');
      if (projection === undefined) return undefined;
      return { measured: n(projection.perSecond), exact: true, detail: `${m(projection.events)} events; ${n(projection.cpuNanosEach).toFixed(0)} ns CPU each; the subscription before it (frames, first read): ${m(subscription?.perSecond)} events/s` };
    },
  },
  {
    id: 'broadcast',
    what: 'broadcast to 8 receivers on loopback (UDP multicast, slowest receiver)',
    unit: 'events/s per receiver',
    required: 1_000_000,
    script: 'packages/subscriptions/bench/broadcast.bench.ts',
    nodeFlags: [],
    // Multicast (one send per datagram; the kernel copies it to each receiver that joined the group): broadcast's own transport.
    args: { smoke: ['20000', '2', '60000', 'udp-multicast', 'frames', '10000'], quick: ['1000000', '8', '60000', 'udp-multicast', 'frames', '1000000'], full: ['2000000', '8', '60000', 'udp-multicast', 'frames', '1000000'] },
    read: ([r]) =>
      r === undefined
        ? undefined
        : { measured: n(r.perReceiverMin), exact: r.exact === true, detail: `${m(r.events)} events after ${m(r.warmup)} untimed, ${String(r.receivers)} receivers, median ${m(r.perReceiverMedian)}/s; every receiver got the log byte for byte: ${r.exact === true ? 'yes' : 'NO'}` },
  },
];

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RESULT = '@sluice-bench ';
/** A script still running after this long is killed (by its PID) and its row failed. */
const TIME_LIMIT_MS: Record<BenchMode, number> = { smoke: 120_000, quick: 900_000, full: 3_600_000 };

/** Runs the application benchmarks one after the other; a script that fails is a failed row. */
export async function runAppBenches(options: { mode: BenchMode; directory: string; log: (line: string) => void; benches?: readonly AppBench[] }): Promise<AppBenchRow[]> {
  const rows: AppBenchRow[] = [];
  for (const bench of options.benches ?? APP_BENCHES) {
    const base = { id: bench.id, what: bench.what, unit: bench.unit, required: bench.required };
    try {
      const lines = await runScript(bench.script, bench.nodeFlags, bench.args[options.mode], options.directory, TIME_LIMIT_MS[options.mode], (line) => options.log(`[${bench.id}] ${line}`));
      const read = bench.read(lines);
      if (read === undefined) throw new Error('it printed no figures');
      const met = read.exact ? read.measured >= bench.required : false;
      const flags = bench.nodeFlags.length === 0 ? '' : ` (node ${bench.nodeFlags.join(' ')})`;
      rows.push({ ...base, status: 'ok', measured: read.measured, met, detail: `${read.detail}${flags}`, ...(read.exact ? {} : { reason: 'the result was not exact' }) });
    } catch (error) {
      rows.push({ ...base, status: 'failed', measured: null, met: null, detail: '', reason: (error as Error).message });
    }
  }
  return rows;
}

/** Runs one script from source (tsx), its temporary data in `directory`; resolves with its JSON lines. */
function runScript(script: string, nodeFlags: readonly string[], args: readonly string[], directory: string, timeLimitMs: number, log: (line: string) => void): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, '--conditions=@sluice/source', '--import', 'tsx', script, ...args], {
      cwd: ROOT,
      env: { ...process.env, SLUICE_BENCH_JSON: '1', TMPDIR: directory, BENCH_TMP: directory },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const results: Record<string, unknown>[] = [];
    let tail = '';
    let stderr = '';
    const take = (line: string): void => {
      if (line.startsWith(RESULT)) results.push(JSON.parse(line.slice(RESULT.length)) as Record<string, unknown>);
      else if (line.trim() !== '') log(line);
    };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (tail + chunk).split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) take(line);
    });
    // Kept short: the last lines say why a script failed.
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeLimitMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // 'close', not 'exit': the child's output is read to its end.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      take(tail);
      if (code === 0) resolve(results);
      else if (timedOut) reject(new Error(`${script} ran past ${timeLimitMs / 1000} s and was stopped`));
      else reject(new Error(`${script} exited with ${signal ?? `code ${code}`}: ${stderr.trim().split('\n').slice(-3).join(' / ')}`));
    });
  });
}
