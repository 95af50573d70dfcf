import { defineAggregate, reject, type RejectionRecord } from '@sluice/handlers';
import type { AddressedCommand, DecodedEvent, Saga } from '@sluice/subscriptions';

/** An account: its balance, and whether it refuses incoming money (frozen), which makes transfers to it compensate. */
export interface AccountState {
  readonly open: boolean;
  readonly frozen: boolean;
  readonly balance: number;
}

export type AccountCommand =
  | { readonly type: 'OpenAccount'; readonly initialBalance: number; readonly frozen: boolean }
  /** Sent to the source account: debits it and starts the transfer. */
  | { readonly type: 'Transfer'; readonly transferId: string; readonly to: string; readonly amount: number }
  /** Sent by the saga to the target account. */
  | { readonly type: 'CreditTransfer'; readonly transferId: string; readonly from: string; readonly amount: number }
  /** Sent by the saga to the source account once the credit is done. */
  | { readonly type: 'CompleteTransfer'; readonly transferId: string; readonly to: string; readonly amount: number }
  /** Compensation: sent by the saga to the source account when the credit was rejected. */
  | { readonly type: 'RefundTransfer'; readonly transferId: string; readonly to: string; readonly amount: number; readonly reason: string };

export type AccountEvent =
  | { readonly type: 'AccountOpened'; readonly initialBalance: number; readonly frozen: boolean }
  | { readonly type: 'TransferDebited'; readonly transferId: string; readonly from: string; readonly to: string; readonly amount: number }
  | { readonly type: 'TransferCredited'; readonly transferId: string; readonly from: string; readonly to: string; readonly amount: number }
  | { readonly type: 'TransferCompleted'; readonly transferId: string; readonly from: string; readonly to: string; readonly amount: number }
  | { readonly type: 'TransferRefunded'; readonly transferId: string; readonly from: string; readonly to: string; readonly amount: number; readonly reason: string };

export const accountId = (n: number): string => `account-${n}`;

/** The account aggregate: event-sourced, snapshotted every 50 events. */
export const account = defineAggregate<AccountState, AccountCommand, AccountEvent>({
  name: 'account',
  commandTypes: ['OpenAccount', 'Transfer', 'CreditTransfer', 'CompleteTransfer', 'RefundTransfer'],
  snapshotEvery: 50,
  initialState: () => ({ open: false, frozen: false, balance: 0 }),
  evolve: (state, event) => {
    switch (event.type) {
      case 'AccountOpened':
        return { open: true, frozen: event.frozen, balance: event.initialBalance };
      case 'TransferDebited':
        return { ...state, balance: state.balance - event.amount };
      case 'TransferCredited':
        return { ...state, balance: state.balance + event.amount };
      case 'TransferRefunded':
        return { ...state, balance: state.balance + event.amount };
      case 'TransferCompleted':
        return state;
    }
  },
  decide: (state, command, { recipient }) => {
    if (command.type === 'OpenAccount') {
      return state.open ? reject(`${recipient} is already open`) : [{ type: 'AccountOpened', initialBalance: command.initialBalance, frozen: command.frozen }];
    }
    if (!state.open) return reject(`${recipient} is not open`);
    switch (command.type) {
      case 'Transfer':
        if (!Number.isSafeInteger(command.amount) || command.amount <= 0) return reject(`amount must be a positive integer, got ${command.amount}`);
        if (command.to === recipient) return reject('a transfer needs two different accounts');
        if (state.balance < command.amount) return reject(`insufficient funds: balance ${state.balance}, asked ${command.amount}`);
        return [{ type: 'TransferDebited', transferId: command.transferId, from: recipient, to: command.to, amount: command.amount }];
      case 'CreditTransfer':
        if (state.frozen) return reject(`${recipient} is frozen: it accepts no credit`);
        return [{ type: 'TransferCredited', transferId: command.transferId, from: command.from, to: recipient, amount: command.amount }];
      case 'CompleteTransfer':
        return [{ type: 'TransferCompleted', transferId: command.transferId, from: recipient, to: command.to, amount: command.amount }];
      case 'RefundTransfer':
        return [{ type: 'TransferRefunded', transferId: command.transferId, from: recipient, to: command.to, amount: command.amount, reason: command.reason }];
    }
  },
});

/**
 * The transfer saga, run on every partition's events: a debit becomes a credit command to
 * the target account (wherever it lives); a credit becomes a completion at the source; a
 * rejected credit becomes a refund (compensation) at the source. Its command ids are derived
 * from the source partition, seq and saga name, so a redelivered event never moves money twice.
 */
export const transferSaga: Saga = {
  name: 'transfers',
  filter: { streamPrefixes: ['account-', '$rejected'], eventTypes: ['TransferDebited', 'TransferCredited', '$CommandRejected'] },
  handle(event: DecodedEvent): AddressedCommand[] {
    if (event.type === 'TransferDebited') {
      const e = event.data as Extract<AccountEvent, { type: 'TransferDebited' }>;
      return [{ recipient: e.to, command: { type: 'CreditTransfer', transferId: e.transferId, from: e.from, amount: e.amount } as AccountCommand }];
    }
    if (event.type === 'TransferCredited') {
      const e = event.data as Extract<AccountEvent, { type: 'TransferCredited' }>;
      return [{ recipient: e.from, command: { type: 'CompleteTransfer', transferId: e.transferId, to: e.to, amount: e.amount } as AccountCommand }];
    }
    const record = event.data as RejectionRecord;
    const rejected = record.commands[0];
    const command = rejected?.command as AccountCommand | undefined;
    if (command?.type !== 'CreditTransfer') return [];
    return [{ recipient: command.from, command: { type: 'RefundTransfer', transferId: command.transferId, to: rejected.recipient, amount: command.amount, reason: record.reason } as AccountCommand }];
  },
};
