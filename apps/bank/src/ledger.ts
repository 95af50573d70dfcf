import type { DecodedEvent, Projection } from '@sluice/subscriptions';
import type { AccountEvent } from './domain.js';

interface TransferCounts {
  amount: number;
  debited: number;
  credited: number;
  completed: number;
  refunded: number;
}

/**
 * The balance projection: balances per account and the life of every transfer, fed by one
 * projection host per partition (accounts live in exactly one partition; a transfer's events
 * are spread over two).
 *
 * A transfer is followed until it is done (debited, credited and completed; or debited and
 * refunded), then forgotten: memory holds the transfers in flight, not every transfer ever
 * made. An event of a transfer after it was done (a duplicate) starts a new record that can
 * never be done: {@link anomalies} reports it (a second debit shows as money in transit).
 */
export class Ledger {
  readonly balances = new Map<string, number>();
  /** Transfers not done yet (see the class comment). */
  readonly transfers = new Map<string, TransferCounts>();
  /** Transfers done and forgotten. */
  done = 0;
  /** Money debited and neither credited nor refunded yet. */
  inTransit = 0;
  opened = 0;
  settled = 0;
  debited = 0;
  completed = 0;
  refunded = 0;
  events = 0;

  /** A projection over one partition's account events, writing into this ledger. */
  projection(): Projection {
    return {
      name: 'balances',
      filter: { streamPrefixes: ['account-'] },
      apply: (event: DecodedEvent) => this.apply(event.streamId, event.data as AccountEvent),
    };
  }

  apply(streamId: string, event: AccountEvent): void {
    this.events++;
    switch (event.type) {
      case 'AccountOpened':
        this.balances.set(streamId, event.initialBalance);
        this.opened += event.initialBalance;
        return;
      case 'TransferDebited':
        this.add(streamId, -event.amount);
        this.countEvent(event.transferId, event.amount, 'debited');
        this.inTransit += event.amount;
        this.debited++;
        return;
      case 'TransferCredited':
        this.add(streamId, event.amount);
        this.countEvent(event.transferId, event.amount, 'credited');
        this.inTransit -= event.amount;
        return;
      case 'TransferRefunded':
        this.add(streamId, event.amount);
        this.countEvent(event.transferId, event.amount, 'refunded');
        this.inTransit -= event.amount;
        this.refunded++;
        this.settled++;
        return;
      case 'TransferCompleted':
        this.countEvent(event.transferId, event.amount, 'completed');
        this.completed++;
        this.settled++;
        return;
      default:
        throw new TypeError(`unknown account event ${(event as { type: string }).type}`);
    }
  }

  get total(): number {
    let sum = 0;
    for (const balance of this.balances.values()) sum += balance;
    return sum;
  }

  /** Transfers seen (done or not). */
  get transferCount(): number {
    return this.done + this.transfers.size;
  }

  /** Transfers whose events are not exactly one of: debit + credit + completion, or debit + refund (once all are projected). */
  anomalies(): string[] {
    const problems: string[] = [];
    for (const [id, t] of this.transfers) {
      const pending = t.debited === 1 && t.completed === 0 && t.refunded === 0 && t.credited <= 1;
      if (!pending) problems.push(`${id}: debited ${t.debited}, credited ${t.credited}, completed ${t.completed}, refunded ${t.refunded}`);
    }
    return problems;
  }

  /** Transfers started and not finished yet. */
  pending(): number {
    let n = 0;
    for (const t of this.transfers.values()) if (t.debited === 1 && t.completed === 0 && t.refunded === 0) n++;
    return n;
  }

  private add(account: string, amount: number): void {
    this.balances.set(account, (this.balances.get(account) ?? 0) + amount);
  }

  /** Counts one more `event` of a transfer (its record is created on its first), and forgets it once that makes it done. */
  private countEvent(id: string, amount: number, event: 'debited' | 'credited' | 'completed' | 'refunded'): void {
    let t = this.transfers.get(id);
    if (t === undefined) {
      t = { amount, debited: 0, credited: 0, completed: 0, refunded: 0 };
      this.transfers.set(id, t);
    }
    t[event]++;
    if ((t.debited === 1 && t.credited === 1 && t.completed === 1 && t.refunded === 0) || (t.debited === 1 && t.credited === 0 && t.completed === 0 && t.refunded === 1)) {
      this.transfers.delete(id);
      this.done++;
    }
  }
}
