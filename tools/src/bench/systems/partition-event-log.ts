import { randomUUID } from 'node:crypto';
import { openPartition, type EventData, type Partition, type PartitionStorage } from '@sluice/store';
import { EVENT_TYPE, type EventLog, type ReadTotals } from '../event-log-session.js';

/**
 * A Sluice partition on `storage` as an {@link EventLog}: appends with an exact expected
 * version (optimistic concurrency), the catch-up read as a subscriber from seq 1 to the head.
 * Any `PartitionStorage` (file, LMDB, Azure, ...) becomes a benchmark row through this.
 */
export async function openPartitionEventLog(storage: PartitionStorage, name: string, options: PartitionEventLogOptions = {}): Promise<EventLog> {
  const partition = await openPartition({ storage, name });
  return new PartitionEventLog(partition, options.commandIds === true);
}

/** Options of {@link openPartitionEventLog}. */
export interface PartitionEventLogOptions {
  /**
   * Stamp every append with a fresh command id (`crypto.randomUUID`), as the store client
   * does for every append it sends: the work an embedded row must do to compare with the
   * rows through the broker (the id is recorded and indexed for duplicate detection).
   * @default false
   */
  readonly commandIds?: boolean;
}

class PartitionEventLog implements EventLog {
  /** The workload reuses one payload array per scenario: build its events once. */
  private readonly events = new WeakMap<readonly Uint8Array[], EventData[]>();

  constructor(
    private readonly partition: Partition,
    private readonly commandIds: boolean,
  ) {}

  /** The partition's own promise, not wrapped in another async function (one promise and one hop less per append). */
  append(streamId: string, expectedVersion: number, payloads: readonly Uint8Array[]): Promise<unknown> {
    let events = this.events.get(payloads);
    if (events === undefined) {
      events = payloads.map((data) => ({ type: EVENT_TYPE, data }));
      this.events.set(payloads, events);
    }
    return this.partition.append({ streamId, expectedVersion, events, commandId: this.commandIds ? randomUUID() : undefined });
  }

  async readAll(): Promise<ReadTotals> {
    const head = this.partition.lastSeq;
    let events = 0;
    let payloadBytes = 0;
    if (head === 0) return { events, payloadBytes };
    for await (const batch of this.partition.subscribe({ fromSeq: 1 })) {
      for (const frame of batch) payloadBytes += frame.payload.length;
      events += batch.length;
      if (batch[batch.length - 1].seq >= head) break;
    }
    return { events, payloadBytes };
  }

  close(): Promise<void> {
    return this.partition.close();
  }
}
