import { defineAggregate, defineSaga, defineStateEntity, reject } from './index.js';

export interface AccountState {
  readonly open: boolean;
  readonly balance: number;
}
export type AccountCommand =
  | { readonly type: 'Open' }
  | { readonly type: 'Deposit'; readonly amount: number }
  | { readonly type: 'Withdraw'; readonly amount: number }
  | { readonly type: 'Explode' };
export type AccountEvent =
  | { readonly type: 'Opened' }
  | { readonly type: 'Deposited'; readonly amount: number }
  | { readonly type: 'Withdrawn'; readonly amount: number };

export const account = defineAggregate<AccountState, AccountCommand, AccountEvent>({
  name: 'account',
  commandTypes: ['Open', 'Deposit', 'Withdraw', 'Explode'],
  snapshotEvery: Number(process.env.SNAP ?? 10),
  initialState: () => ({ open: false, balance: 0 }),
  evolve: (state, event) => {
    switch (event.type) {
      case 'Opened':
        return { ...state, open: true };
      case 'Deposited':
        return { ...state, balance: state.balance + event.amount };
      case 'Withdrawn':
        return { ...state, balance: state.balance - event.amount };
    }
  },
  decide: (state, command) => {
    switch (command.type) {
      case 'Open':
        return state.open ? reject('already open') : [{ type: 'Opened' }];
      case 'Deposit':
        if (!state.open) return reject('account not open');
        return [{ type: 'Deposited', amount: command.amount }];
      case 'Withdraw':
        if (!state.open) return reject('account not open');
        if (state.balance < command.amount) return reject(`insufficient funds: balance ${state.balance}, asked ${command.amount}`);
        return [{ type: 'Withdrawn', amount: command.amount }];
      case 'Explode':
        throw new Error('boom');
    }
  },
});

/** A state entity: a counter that publishes a message at every 3rd increment. */
export const counter = defineStateEntity<{ count: number }, { type: 'Increment' }, { type: 'CounterReachedMultipleOf3'; count: number }>({
  name: 'counter',
  commandTypes: ['Increment'],
  initialState: () => ({ count: 0 }),
  handle: (state) => {
    const count = state.count + 1;
    return { state: { count }, publish: count % 3 === 0 ? [{ type: 'CounterReachedMultipleOf3', count }] : [] };
  },
});

/** A saga entity: on a welcome request, opens the account and deposits a bonus there (possibly in another partition). */
export const welcome = defineSaga<{ done: boolean }, { type: 'Welcome'; account: string }>({
  name: 'welcome',
  commandTypes: ['Welcome'],
  initialState: () => ({ done: false }),
  handle: (state, message) =>
    state.done
      ? reject('already welcomed')
      : {
          state: { done: true },
          send: [
            { recipient: message.account, command: { type: 'Open' } },
          ],
        },
});
