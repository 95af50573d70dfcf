import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Bank, DEFAULT_TAIL_CACHE_BYTES } from './bank.js';
import { accountId } from './domain.js';
import { runBank } from './run-bank.js';

let data: string;
beforeEach(async () => {
  data = await mkdtemp(join(tmpdir(), 'sluice-bank-'));
});
afterEach(async () => {
  await rm(data, { recursive: true, force: true });
});

/** Invariant: money is conserved and every transfer ends exactly once (completed, or refunded after a refused credit), across runs on the same data. */
it('runs twice on the same data: money conserved, every transfer completed exactly once, the second run continues', async () => {
  const lines: string[] = [];
  const first = await runBank({ dataDirectory: data, partitions: 2, accounts: 50, transfers: 400, frozenEvery: 10, fsync: 'none', print: (l) => lines.push(l) });
  expect(first.problems).toEqual([]);
  expect(first).toMatchObject({ run: 1, moneyConserved: true, exactlyOnce: true });
  expect(first.completed + first.refunded).toBe(first.accepted);
  expect(first.refunded).toBeGreaterThan(0); // compensation ran
  const second = await runBank({ dataDirectory: data, partitions: 2, accounts: 50, transfers: 400, frozenEvery: 10, fsync: 'none', print: (l) => lines.push(l) });
  expect(second.problems).toEqual([]);
  expect(second).toMatchObject({ run: 2, moneyConserved: true, exactlyOnce: true });
  expect(lines.join('\n')).toMatch(/continued from \d+ account events/);
}, 60_000);

/**
 * Invariant: a saga spanning two partitions completes exactly once even when the target
 * partition is closed and reopened while transfers are in flight (an embedded node restart):
 * the saga host retries delivery, the driver retries its sends, command ids dedupe.
 */
it('transfers across partitions complete exactly once when a partition is closed and reopened mid-saga', async () => {
  const bank = await Bank.open({ dataDirectory: data, partitions: 2, fsync: 'commit' });
  try {
    await bank.openAccounts(40, 1000, 10);
    let done = 0;
    const transfers = Array.from({ length: 600 }, (_, i) => {
      const from = i % 40;
      const to = (i * 7 + 3) % 40 === from ? (from + 1) % 40 : (i * 7 + 3) % 40;
      return bank.transfer(`t-${i}`, accountId(from), accountId(to), 1 + (i % 20)).then((o) => {
        done++;
        return o;
      });
    });
    while (done < 100) await new Promise((resolve) => setTimeout(resolve, 1));
    const inFlightAtRestart = 600 - done + (bank.ledger.debited - bank.ledger.settled);
    await bank.restart('bank-1', 150);
    const outcomes = await Promise.all(transfers);
    await bank.settle(60_000);
    expect(inFlightAtRestart).toBeGreaterThan(0);
    expect(bank.ledger.anomalies()).toEqual([]);
    expect(bank.ledger.total).toBe(40 * 1000);
    expect(bank.ledger.inTransit).toBe(0);
    const accepted = outcomes.filter((o) => o.status === 'accepted').length;
    expect(bank.ledger.completed + bank.ledger.refunded).toBe(accepted);
    expect(bank.parked.parked).toEqual([]);
  } finally {
    await bank.close();
  }
}, 60_000);

/** The saga and projection hosts read live batches from each partition's tail cache: the bank sizes it (the store's 4 MiB holds too few bank frames). */
it('sizes each embedded partition\'s tail cache: 16 MiB by default, tailCacheBytes when given', async () => {
  const bank = await Bank.open({ dataDirectory: data, partitions: 2, fsync: 'none' });
  try {
    expect(DEFAULT_TAIL_CACHE_BYTES).toBe(16 * 1024 * 1024);
    for (const name of bank.names) expect(bank.partition(name).tailCacheStatus.bytesMax).toBe(DEFAULT_TAIL_CACHE_BYTES);
  } finally {
    await bank.close();
  }
  const small = await Bank.open({ dataDirectory: data, partitions: 2, fsync: 'none', tailCacheBytes: 1024 * 1024 });
  try {
    for (const name of small.names) expect(small.partition(name).tailCacheStatus.bytesMax).toBe(1024 * 1024);
  } finally {
    await small.close();
  }
});
