// The bank end to end, embedded, in a fresh data folder: CPU per transfer beside the wall rate.
// A first run, untimed, opens the accounts and makes `warmup` transfers (the JIT compiles the
// hot paths there: a few-second run otherwise measures the compiler as much as the bank).
// SLUICE_BENCH_JSON=1 adds one line `@sluice-bench {json}` with the figures (read by `npm run bench`).
// Run: node --conditions=@sluice/source --import tsx apps/bank/bench/bank.bench.ts [transfers] [accounts] [fsync] [concurrency] [warmup=20000]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBank } from '../src/run-bank.js';

const [transfersArg = '20000', accountsArg = '1000', fsync = 'commit', concurrencyArg = '2000', warmupArg = '20000'] = process.argv.slice(2);
const directory = await mkdtemp(join(process.env.BENCH_TMP ?? tmpdir(), 'sluice-bench-bank-'));
try {
  // A first run opens the accounts and warms up; the measured run continues from its data.
  await runBank({ dataDirectory: directory, transfers: Number(warmupArg), accounts: Number(accountsArg), concurrency: Number(concurrencyArg), fsync: fsync as 'commit', print: () => undefined });
  const summary = await runBank({ dataDirectory: directory, transfers: Number(transfersArg), accounts: Number(accountsArg), concurrency: Number(concurrencyArg), fsync: fsync as 'commit', print: (line) => console.log(line) });
  const cpuSeconds = summary.cpuSeconds;
  console.log(`bank: ${summary.transfers} transfers, fsync ${fsync}: ${Math.round(summary.transfersPerSecond).toLocaleString('en-US')} transfers/s wall; ${cpuSeconds.toFixed(2)} CPU-s (from the first transfer until all settled), ${Math.round((cpuSeconds * 1e6) / summary.transfers)} µs CPU per transfer, ${Math.round(summary.transfers / cpuSeconds).toLocaleString('en-US')} transfers per CPU-second, after ${Number(warmupArg).toLocaleString('en-US')} untimed${summary.problems.length > 0 ? `; PROBLEMS: ${summary.problems.join('; ')}` : ''}`);
  if (process.env.SLUICE_BENCH_JSON === '1') {
    const figures = { transfers: summary.transfers, warmup: Number(warmupArg), seconds: summary.seconds, perSecond: summary.transfersPerSecond, cpuMicrosEach: (cpuSeconds * 1e6) / summary.transfers, exact: summary.moneyConserved && summary.exactlyOnce };
    console.log(`@sluice-bench ${JSON.stringify(figures)}`);
  }
} finally {
  await rm(directory, { recursive: true, force: true });
}
