import cliProgress from 'cli-progress';
import type { FsyncPolicyInput } from '@sluice/store';
import { Bank } from './bank.js';
import { startClusterProcesses, type ClusterProcesses } from './cluster-processes.js';
import { accountId } from './domain.js';

/** Options of {@link runBank}. */
export interface RunBankOptions {
  readonly dataDirectory: string;
  /** @default 2 */
  readonly partitions?: number;
  /** @default 1000 */
  readonly accounts?: number;
  /** Transfers this run. @default 5000 */
  readonly transfers?: number;
  /** Transfers in flight at once. @default 2000 */
  readonly concurrency?: number;
  /** @default 'commit' */
  readonly fsync?: FsyncPolicyInput;
  /** Every n-th account is frozen (refuses credits), so some transfers compensate. @default 25 */
  readonly frozenEvery?: number;
  /** Show a progress bar (on a terminal). @default false */
  readonly progress?: boolean;
  /**
   * Cluster mode: start `sluice broker` and one `sluice node` per partition as child
   * processes (the nodes own the data folder), and run the bank's handler, saga and
   * projection hosts in this process against them through the broker. @default false
   */
  readonly cluster?: boolean;
  /** Called with the cluster's children once they serve (cluster mode): e.g. to stop them on SIGINT. */
  readonly onCluster?: (cluster: ClusterProcesses) => void;
  /** Cluster mode: aborting while the cluster starts stops its children and rejects. */
  readonly signal?: AbortSignal;
  readonly print: (line: string) => void;
}

/** What a run did and found. */
export interface RunSummary {
  readonly run: number;
  readonly transfers: number;
  readonly accepted: number;
  readonly refused: number;
  readonly completed: number;
  readonly refunded: number;
  readonly seconds: number;
  readonly transfersPerSecond: number;
  readonly commandsPerSecond: number;
  /** CPU time of this process (every thread: user + system) from the first transfer until all settled. */
  readonly cpuSeconds: number;
  readonly moneyConserved: boolean;
  readonly exactlyOnce: boolean;
  readonly problems: readonly string[];
}

/** A small deterministic PRNG (mulberry32), so a run's transfers depend only on its number. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Opens (or continues) the bank in `dataDirectory`, performs `transfers` random transfers
 * between accounts spread over the partitions, waits until every one has completed or been
 * compensated, and checks that money is conserved and every transfer completed exactly once.
 */
export async function runBank(options: RunBankOptions): Promise<RunSummary> {
  const partitions = options.partitions ?? 2;
  const print = options.print;
  let cluster: ClusterProcesses | undefined;
  if (options.cluster === true) {
    const names = Array.from({ length: partitions }, (_, i) => `bank-${i}`);
    const starting = performance.now();
    cluster = await startClusterProcesses({ dataDirectory: options.dataDirectory, partitions: names, fsync: typeof options.fsync === 'string' ? options.fsync : 'commit', signal: options.signal });
    options.onCluster?.(cluster);
    print(`bank: cluster of ${partitions + 1} processes started in ${((performance.now() - starting) / 1000).toFixed(1)} s: sluice broker on ${cluster.broker}, ${partitions} sluice node(s) (pids ${cluster.pids.join(', ')}; config ${cluster.configPath})`);
  }
  try {
    // A broker or node that dies mid-run fails the run at once (its requests would only time out, or wait).
    return await (cluster === undefined ? runOn(options, undefined) : Promise.race([runOn(options, cluster), cluster.failed]));
  } finally {
    if (cluster !== undefined) {
      await cluster.stop();
      print(`bank: cluster stopped (broker and nodes exited)`);
    }
  }
}

async function runOn(options: RunBankOptions, cluster: ClusterProcesses | undefined): Promise<RunSummary> {
  const partitions = options.partitions ?? 2;
  const accounts = options.accounts ?? 1000;
  const transfers = options.transfers ?? 5000;
  const concurrency = options.concurrency ?? 2000;
  const print = options.print;
  const bank = await Bank.open({ dataDirectory: options.dataDirectory, partitions, fsync: options.fsync, brokers: cluster === undefined ? undefined : [cluster.broker] });
  try {
    // Whatever a previous run left in flight (a kill) finishes first: sagas resume from their checkpoints.
    await bank.settle();
    const before = { ...bank.ledger, problems: bank.ledger.anomalies().length };
    await bank.openAccounts(accounts, 1000, options.frozenEvery ?? 25);
    const run = await bank.nextRun();
    const where = cluster === undefined ? 'embedded' : 'through the broker';
    print(`bank: run #${run}, ${partitions} partitions (${where}), ${accounts} accounts, ${transfers} transfers, data in ${options.dataDirectory}`);
    if (before.events > 0) print(`  continued from ${before.events} account events (${before.settled} transfers settled in earlier runs)`);

    const settledAtStart = bank.ledger.settled;
    const bar = options.progress === true
      ? new cliProgress.SingleBar({ format: '  transfers [{bar}] {percentage}% | {value}/{total} | {rate}/s', hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic)
      : undefined;
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    let refused = 0;
    let accepted = 0;
    const done = () => bank.ledger.settled - settledAtStart + refused;
    bar?.start(transfers, 0, { rate: 0 });
    const tick = () => {
      const seconds = (performance.now() - started) / 1000;
      bar?.update(done(), { rate: Math.round(done() / Math.max(seconds, 0.001)) });
    };
    const timer = bar === undefined ? undefined : setInterval(tick, 100);

    const next = random(run);
    let sent = 0;
    // A counting window (Promise.race over thousands of promises per send would cost O(n) each).
    let inFlight = 0;
    let wake: (() => void) | undefined;
    let failure: unknown;
    const settleOne = () => {
      inFlight--;
      const w = wake;
      wake = undefined;
      w?.();
    };
    while (sent < transfers && failure === undefined) {
      const from = Math.floor(next() * accounts);
      let to = Math.floor(next() * (accounts - 1));
      if (to >= from) to++;
      const amount = 1 + Math.floor(next() * 100);
      const id = `t-${run}-${sent++}`;
      inFlight++;
      bank.transfer(id, accountId(from), accountId(to), amount).then(
        (outcome) => {
          if (outcome.status === 'accepted') accepted++;
          else refused++;
          settleOne();
        },
        (error: unknown) => {
          failure ??= error;
          settleOne();
        },
      );
      if (inFlight >= concurrency) await new Promise<void>((resolve) => (wake = resolve));
    }
    while (inFlight > 0) await new Promise<void>((resolve) => (wake = resolve));
    if (failure !== undefined) throw failure;
    await bank.settle(300_000, bar === undefined ? undefined : tick);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuStarted);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    if (timer !== undefined) clearInterval(timer);
    tick();
    bar?.stop();

    const ledger = bank.ledger;
    const problems: string[] = ledger.anomalies();
    const completed = ledger.completed - before.completed;
    const refunded = ledger.refunded - before.refunded;
    if (completed + refunded !== accepted) problems.push(`${accepted} transfers accepted, but ${completed} completed and ${refunded} refunded`);
    const moneyConserved = ledger.total === ledger.opened && ledger.inTransit === 0;
    if (!moneyConserved) problems.push(`money not conserved: balances sum to ${ledger.total}, accounts were opened with ${ledger.opened}, ${ledger.inTransit} in transit`);
    // Commands per transfer: the debit, then credit + completion or refund (+ the rejection record); refused ones: 1.
    const commands = transfers + 2 * accepted;
    const summary: RunSummary = {
      run,
      transfers,
      accepted,
      refused,
      completed,
      refunded,
      seconds,
      transfersPerSecond: transfers / seconds,
      commandsPerSecond: commands / seconds,
      cpuSeconds,
      moneyConserved,
      exactlyOnce: ledger.anomalies().length === 0 && completed + refunded === accepted,
      problems,
    };
    const f = (n: number) => Math.round(n).toLocaleString('en-US');
    print(`  ${f(transfers)} transfers in ${seconds.toFixed(2)} s: ${f(summary.transfersPerSecond)} transfers/s end to end, ${f(summary.commandsPerSecond)} commands/s; ${cpuSeconds.toFixed(2)} CPU-s, ${f((cpuSeconds * 1e6) / transfers)} µs CPU per transfer`);
    print(`  ${f(completed)} completed, ${f(refunded)} compensated (credit refused by a frozen account, refunded), ${f(refused)} refused (insufficient funds)`);
    print(`  ${f(ledger.balances.size)} accounts hold ${f(ledger.total)}: ${moneyConserved ? 'money conserved' : 'MONEY NOT CONSERVED'}; ${f(ledger.transferCount)} transfers over all runs, ${problems.length === 0 ? 'each completed exactly once' : `${problems.length} PROBLEM(S)`}`);
    for (const problem of problems.slice(0, 10)) print(`  problem: ${problem}`);
    return summary;
  } finally {
    await bank.close();
  }
}
