#!/usr/bin/env node
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runBank } from './run-bank.js';

const usage = `Usage: sluice-bank [--cluster] [--data DIR] [--partitions N] [--accounts N] [--transfers N] [--fsync POLICY]

Runs the bank sample on the embedded file store: accounts spread over partitions, transfers
between them as sagas (debit → credit in the target partition → completion, or a refund when
the credit is refused), a balance projection; checks that money is conserved and that every
transfer completed exactly once. Run it again: it continues from its data.
  --cluster         the same with a sluice broker and one sluice node per partition started as
                    child processes (stopped at the end); this process sends every command and
                    reads every event through the broker
  --data DIR        where the partitions' files go (default: ./data/bank)
  --partitions N    partitions (default: 2)
  --accounts N      accounts (default: 1000)
  --transfers N     transfers this run (default: 5000)
  --concurrency N   transfers in flight (default: 2000)
  --fsync POLICY    commit | none | interval:100ms (default: commit)
  --help            show this help`;

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

// Cluster mode: Ctrl-C / SIGTERM stop the children (and wait for them) before this process exits.
const interrupted = new AbortController();
let clusterMode = false;
let running: { stop(): Promise<void>; readonly pids: readonly number[] } | undefined;
function onSignal(signal: NodeJS.Signals): void {
  console.error(`bank: ${signal}, stopping the cluster${running === undefined ? '' : ` (pids ${running.pids.join(', ')})`}`);
  interrupted.abort();
  // While the cluster starts, the start itself stops what runs and rejects (below).
  if (running !== undefined) void running.stop().finally(() => process.exit(130));
}

try {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      partitions: { type: 'string' },
      accounts: { type: 'string' },
      transfers: { type: 'string' },
      concurrency: { type: 'string' },
      fsync: { type: 'string' },
      cluster: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help === true) {
    console.log(usage);
  } else {
    clusterMode = values.cluster === true;
    if (values.cluster === true) for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, onSignal);
    const accounts = positiveInt('accounts', values.accounts, 1000);
    if (accounts < 2) throw new Error('--accounts must be at least 2');
    const summary = await runBank({
      dataDirectory: resolve(values.data ?? 'data/bank'),
      partitions: positiveInt('partitions', values.partitions, 2),
      accounts,
      transfers: positiveInt('transfers', values.transfers, 5000),
      concurrency: positiveInt('concurrency', values.concurrency, 2000),
      fsync: (values.fsync ?? 'commit') as 'commit',
      progress: process.stdout.isTTY === true,
      print: (line) => console.log(line),
      cluster: values.cluster === true,
      signal: interrupted.signal,
      onCluster: (cluster) => {
        running = cluster;
      },
    });
    if (summary.problems.length > 0) process.exitCode = 1;
  }
} catch (error) {
  if (interrupted.signal.aborted) {
    process.exitCode = 130;
  } else {
    console.error(`bank failed: ${error instanceof Error ? error.message : String(error)}${clusterMode ? '' : `\n\n${usage}`}`);
    process.exitCode = 1;
  }
  // The cluster's children are stopped by now; requests of the interrupted run may still wait on their sockets.
  if (clusterMode) process.exit();
}
