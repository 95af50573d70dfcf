/**
 * Comparative benchmark: one workload, in one run on one machine, against Sluice (file, LMDB
 * and Azurite stores, and through the broker) and against what a user would pick instead
 * (SQLite, PostgreSQL, Redis streams), each in its best honest durable configuration, beside
 * the raw limits (write+fdatasync, lmdb-js). Prints a markdown table; `--out` writes the same
 * rows as JSON. Systems are registered in systems/registry.ts.
 *
 *   npm run bench                 full run (installs PostgreSQL and Redis with apt-get if missing)
 *   npm run bench -- --quick      the same in about two minutes
 *   npm run bench -- --smoke      seconds: proves it works (CI runs this through a test)
 *   --out FILE                    write { meta, rows, targets } as JSON
 *   --dir PATH                    where data goes (default: the OS temp folder)
 *   --only ID,ID                  run only these systems (ids as in the JSON: sluice-file, sqlite, ...)
 *   --no-install                  report a missing server as skipped instead of installing it
 *   --no-apps                     leave out the application rows (commands, bank, catch-up, broadcast)
 *
 * After the table, the application rows (app-bench.ts) run their packages' bench scripts in the
 * same run, each with its target.
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  SystemSkippedError,
  isNotApplicable,
  type BenchContext,
  type BenchMode,
  type BenchSession,
  type BenchSystem,
  type Scenario,
} from './bench-system.js';
import { runAppBenches, type AppBenchRow } from './app-bench.js';
import { checkTargets, formatApplications, formatCompareTable, formatTargets, withFileStoreRatios, type CompareRow, type TargetCheck } from './compare-report.js';
import { runCleanups, trackCleanup } from './servers/run-cleanups.js';
import { BENCH_SYSTEMS } from './systems/registry.js';
import { PAYLOAD_SIZES, describeScenario, sizeLabel, workload } from './workload.js';

/** Options of {@link runCompareBench}. */
export interface CompareBenchOptions {
  /** @default 'full' */
  readonly mode?: BenchMode;
  /** Parent of the run's temporary folder. @default os.tmpdir() */
  readonly directory?: string;
  /** Systems to run. @default BENCH_SYSTEMS */
  readonly systems?: readonly BenchSystem[];
  /** Install a missing PostgreSQL or Redis with tools/scripts/bench-setup.sh. @default true */
  readonly installMissing?: boolean;
  /** Progress lines. @default nothing */
  readonly log?: (line: string) => void;
  /** Run the application rows too. @default true */
  readonly apps?: boolean;
}

/** Where and how a run happened: numbers from different runs or machines do not compare. */
export interface CompareMeta {
  readonly mode: BenchMode;
  readonly startedAt: string;
  readonly seconds: number;
  readonly node: string;
  readonly platform: string;
  readonly cpus: string;
  /** 1-minute load average when the run started and ended (the machine may be shared). */
  readonly loadAverageStart: number;
  readonly loadAverageEnd: number;
}

/** What one run produced: the JSON written by `--out`. */
export interface CompareResult {
  readonly meta: CompareMeta;
  readonly rows: CompareRow[];
  readonly targets: TargetCheck[];
  /** Command handling, the bank, projection catch-up and broadcast, with their targets (empty with `apps: false`). */
  readonly applications: AppBenchRow[];
}

/**
 * Runs every system through the workload and reports them side by side. Every system is set
 * up first, then the workload runs scenario by scenario, each system in turn (alone on the
 * machine while it is measured): on a shared machine whose load drifts, the systems compared
 * in one scenario are measured seconds apart rather than minutes. A system that cannot run
 * here is a `skipped` row with the reason; a scenario that throws is a `failed` row and the
 * run goes on.
 *
 * @example
 * const result = await runCompareBench({ mode: 'quick', log: (line) => console.error(line) });
 * console.log(formatCompareReport(result));
 */
export async function runCompareBench(options: CompareBenchOptions = {}): Promise<CompareResult> {
  const mode = options.mode ?? 'full';
  const log = options.log ?? (() => undefined);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const loadAverageStart = loadavg()[0];
  const root = await mkdtemp(join(options.directory ?? tmpdir(), 'sluice-compare-'));
  const forgetRoot = trackCleanup(() => rm(root, { recursive: true, force: true }));
  // Servers that must not run as root (PostgreSQL) run as their own user and need to reach their folder.
  await chmod(root, 0o755);
  const rows: CompareRow[] = [];
  const running: RunningSystem[] = [];
  let applications: AppBenchRow[] = [];
  try {
    try {
      for (const system of options.systems ?? BENCH_SYSTEMS) {
        const context: BenchContext = { mode, directory: join(root, system.id), installMissing: options.installMissing ?? true, log: (line) => log(`[${system.id}] ${line}`) };
        const set = await setUp(system, context);
        if ('row' in set) rows.push(set.row);
        else running.push(set);
      }
      for (const scenario of workload(mode)) {
        for (const system of running) rows.push(await runScenario(system, scenario));
      }
    } finally {
      for (const system of running.reverse()) {
        try {
          await system.session.teardown();
        } catch (error) {
          system.context.log(`teardown failed: ${(error as Error).message}`);
        }
      }
    }
    // After the systems are torn down: nothing else of this run competes for the machine.
    if (options.apps !== false) applications = await runAppBenches({ mode, directory: root, log: (line) => log(`[apps] ${line}`) });
  } finally {
    forgetRoot();
    await runCleanups();
    await rm(root, { recursive: true, force: true });
  }
  const measured = withFileStoreRatios(orderForTable(rows, mode, options.systems ?? BENCH_SYSTEMS));
  return {
    meta: {
      mode,
      startedAt,
      seconds: (performance.now() - started) / 1000,
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpus: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
      loadAverageStart,
      loadAverageEnd: loadavg()[0],
    },
    rows: measured,
    targets: PAYLOAD_SIZES.flatMap((size) => checkTargets(measured, sizeLabel(size))),
    applications,
  };
}

/** A system set up and ready, with the columns its rows carry. */
interface RunningSystem {
  readonly session: BenchSession;
  readonly context: BenchContext;
  readonly columns: Pick<CompareRow, 'systemId' | 'system' | 'group' | 'configuration' | 'durability'>;
}

async function setUp(system: BenchSystem, context: BenchContext): Promise<RunningSystem | { row: CompareRow }> {
  const columns = { systemId: system.id, system: system.label, group: system.group, configuration: system.configuration, durability: system.durability };
  await mkdir(context.directory, { recursive: true });
  await chmod(context.directory, 0o755);
  context.log('setting up');
  try {
    const session = await system.setup(context);
    return {
      session,
      context,
      columns: {
        ...columns,
        system: session.label ?? columns.system,
        configuration: session.configuration ?? columns.configuration,
        durability: session.durability ?? columns.durability,
      },
    };
  } catch (error) {
    const reason = (error as Error).message;
    const skipped = error instanceof SystemSkippedError;
    context.log(`${skipped ? 'skipped' : 'setup failed'}: ${reason}`);
    return { row: { ...columns, scenarioId: null, workload: 'all', status: skipped ? 'skipped' : 'failed', reason: skipped ? reason : `setup failed: ${reason}` } };
  }
}

async function runScenario(system: RunningSystem, scenario: Scenario): Promise<CompareRow> {
  const at = { ...system.columns, scenarioId: scenario.id, workload: describeScenario(scenario) };
  try {
    const result = await system.session.run(scenario);
    if (isNotApplicable(result)) return { ...at, status: 'not-applicable', reason: result.notApplicable };
    const seconds = result.ms / 1000;
    system.context.log(`${scenario.id}: ${Math.round(result.events / seconds).toLocaleString('en-US')} events/s (${result.events} events)`);
    return {
      ...at,
      status: 'ok',
      events: result.events,
      seconds,
      eventsPerSecond: result.events / seconds,
      payloadMBPerSecond: result.payloadBytes / seconds / 1e6,
      p50Ms: result.p50Ms ?? null,
      p99Ms: result.p99Ms ?? null,
      ...(result.note === undefined ? {} : { note: result.note }),
    };
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0];
    system.context.log(`${scenario.id} failed: ${reason}`);
    return { ...at, status: 'failed', reason };
  }
}

/** Scenario by scenario (systems side by side), then systems skipped as a whole. */
function orderForTable(rows: readonly CompareRow[], mode: BenchMode, systemOrder: readonly BenchSystem[]): CompareRow[] {
  const order = new Map(workload(mode).map((s, i) => [s.id, i]));
  const systems = new Map(systemOrder.map((s, i) => [s.id, i]));
  const rank = (row: CompareRow): number => (row.scenarioId === null ? Number.MAX_SAFE_INTEGER : (order.get(row.scenarioId) ?? Number.MAX_SAFE_INTEGER - 1));
  return [...rows].sort((a, b) => rank(a) - rank(b) || (systems.get(a.systemId) ?? 0) - (systems.get(b.systemId) ?? 0));
}

/** The whole report: a header saying where it ran, the table, the targets. */
export function formatCompareReport(result: CompareResult): string {
  const m = result.meta;
  return [
    `## Sluice beside the alternatives (${m.mode} run, ${m.startedAt})`,
    '',
    `Node ${m.node}, ${m.platform}, ${m.cpus}; load average ${m.loadAverageStart.toFixed(2)} at start, ${m.loadAverageEnd.toFixed(2)} at end; ${m.seconds.toFixed(0)} s.`,
    'Every append is one durable commit to one of 10,000 streams; "file store ÷ this" above 1 means the Sluice file store is faster.',
    '',
    formatCompareTable(result.rows),
    '',
    '### Targets (same run)',
    '',
    formatTargets(result.targets),
    '',
    ...(result.applications.length === 0 ? [] : ['### Applications (same run)', '', formatApplications(result.applications), '']),
  ].join('\n');
}

function parseMode(values: { quick?: boolean; smoke?: boolean; full?: boolean }): BenchMode {
  if (values.smoke === true) return 'smoke';
  if (values.quick === true) return 'quick';
  return 'full';
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      smoke: { type: 'boolean' },
      full: { type: 'boolean' },
      out: { type: 'string' },
      dir: { type: 'string' },
      only: { type: 'string' },
      'no-install': { type: 'boolean' },
      'no-apps': { type: 'boolean' },
    },
  });
  const only = values.only?.split(',').map((s) => s.trim());
  const unknown = only?.filter((id) => !BENCH_SYSTEMS.some((s) => s.id === id)) ?? [];
  if (unknown.length > 0) {
    console.error(`[sluice/bench] unknown system(s) ${unknown.join(', ')}: pick from ${BENCH_SYSTEMS.map((s) => s.id).join(', ')}`);
    process.exit(2);
  }
  // Ctrl-C, a kill or a crash still stops the servers this run started (by their PIDs).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n[sluice/bench] ${signal}: stopping the servers this run started, removing its data`);
      void runCleanups().finally(() => process.exit(130));
    });
  }
  process.once('uncaughtException', (error) => {
    console.error('[sluice/bench] crashed; stopping the servers this run started\n', error);
    void runCleanups().finally(() => process.exit(1));
  });
  const result = await runCompareBench({
    mode: parseMode(values),
    directory: values.dir,
    systems: only === undefined ? BENCH_SYSTEMS : BENCH_SYSTEMS.filter((s) => only.includes(s.id)),
    installMissing: values['no-install'] !== true,
    apps: values['no-apps'] !== true,
    log: (line) => console.error(`[sluice/bench] ${line}`),
  });
  console.log(`\n${formatCompareReport(result)}`);
  if (values.out !== undefined) await writeFile(values.out, `${JSON.stringify(result, null, 2)}\n`);
  const failed = result.rows.filter((r) => r.status === 'failed' && r.group === 'sluice');
  if (failed.length > 0 || result.applications.some((a) => a.status === 'failed')) process.exitCode = 1;
}
