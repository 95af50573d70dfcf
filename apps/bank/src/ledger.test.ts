import { describe, expect, it } from 'vitest';
import type { AccountEvent } from './domain.js';
import { Ledger } from './ledger.js';

const opened = (initialBalance: number): AccountEvent => ({ type: 'AccountOpened', initialBalance, frozen: false });
const transfer = (type: 'TransferDebited' | 'TransferCredited' | 'TransferCompleted' | 'TransferRefunded', transferId: string, amount: number): AccountEvent =>
  type === 'TransferRefunded' ? { type, transferId, from: 'account-1', to: 'account-2', amount, reason: 'frozen' } : { type, transferId, from: 'account-1', to: 'account-2', amount };

describe('Ledger', () => {
  it('forgets a transfer once it is done, and reports an event of it that comes after (a duplicate)', () => {
    const ledger = new Ledger();
    ledger.apply('account-1', opened(100));
    ledger.apply('account-2', opened(100));
    // Completed: the credit (another partition's projection) may come before the debit.
    ledger.apply('account-2', transfer('TransferCredited', 't1', 10));
    ledger.apply('account-1', transfer('TransferDebited', 't1', 10));
    expect(ledger.transfers.size).toBe(1);
    ledger.apply('account-1', transfer('TransferCompleted', 't1', 10));
    // Refunded.
    ledger.apply('account-1', transfer('TransferDebited', 't2', 5));
    ledger.apply('account-1', transfer('TransferRefunded', 't2', 5));
    expect(ledger.transfers.size).toBe(0);
    expect([ledger.done, ledger.transferCount, ledger.anomalies(), ledger.total, ledger.inTransit]).toEqual([2, 2, [], 200, 0]);
    // In flight: kept, not an anomaly.
    ledger.apply('account-1', transfer('TransferDebited', 't3', 1));
    expect([ledger.transfers.size, ledger.anomalies(), ledger.pending()]).toEqual([1, [], 1]);
    // A duplicate completion and a duplicate credit of done transfers are reported.
    ledger.apply('account-1', transfer('TransferCompleted', 't1', 10));
    ledger.apply('account-2', transfer('TransferCredited', 't1', 10));
    ledger.apply('account-1', transfer('TransferRefunded', 't2', 5));
    expect(ledger.anomalies()).toEqual(['t1: debited 0, credited 1, completed 1, refunded 0', 't2: debited 0, credited 0, completed 0, refunded 1']);
  });
});
