import { join } from 'node:path';
import { openPartition, type EventData, type Partition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';

/** Options of {@link runQuickstart}. */
export interface QuickstartOptions {
  /** Folder holding the partition's files. */
  readonly dataDirectory: string;
  /** Events to append in this run. */
  readonly events: number;
  /** Streams the events are spread over. */
  readonly streams: number;
  /** Where the report goes. */
  readonly print: (line: string) => void;
}

/** What one run did, for tests. */
export interface QuickstartReport {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly appendedEvents: number;
  readonly streamEventsRead: number;
  readonly tailEventsRead: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Opens the `quickstart` partition on the file store, appends `events` deposits across
 * `streams` accounts (in batched units of work, then as concurrent single appends that group
 * commit coalesces), and reads them back by stream and from a seq. Each run continues the log.
 */
export async function runQuickstart(options: QuickstartOptions): Promise<QuickstartReport> {
  const { print } = options;
  const directory = join(options.dataDirectory, 'quickstart');
  const partition = await openPartition({ storage: createFileStorage({ directory, fsync: 'commit' }), name: 'quickstart' });
  try {
    const startSeq = partition.lastSeq;
    print(`opened partition "quickstart" in ${directory}: ${startSeq} events in ${partition.streamCount} streams already`);
    if (partition.recovery.droppedBytes > 0) print(`recovery dropped a torn tail of ${partition.recovery.droppedBytes} bytes (${partition.recovery.droppedReason})`);

    const half = Math.floor(options.events / 2);
    let t = performance.now();
    await appendBatched(partition, half, options.streams, startSeq);
    let ms = performance.now() - t;
    print(`appended ${half} events in units of 100 (expected versions checked, fsync per commit): ${rate(half, ms)}`);

    const singles = options.events - half;
    t = performance.now();
    await appendConcurrent(partition, singles, options.streams, startSeq + half);
    ms = performance.now() - t;
    print(`appended ${singles} events as concurrent single-event commits (group commit): ${rate(singles, ms)}`);

    const account = 'account-0';
    t = performance.now();
    let balance = 0;
    let streamEventsRead = 0;
    for await (const event of partition.readStream(account)) {
      balance += JSON.parse(decoder.decode(event.payload)).amount as number;
      streamEventsRead++;
    }
    ms = performance.now() - t;
    print(`read stream "${account}" back: ${streamEventsRead} events, version ${partition.streamVersion(account)}, balance ${balance} (${ms.toFixed(1)} ms)`);

    const fromSeq = startSeq + 1;
    t = performance.now();
    let tailEventsRead = 0;
    for await (const event of partition.read({ fromSeq })) {
      if (tailEventsRead === 0 && event.seq !== fromSeq) throw new Error(`read from seq ${fromSeq} started at ${event.seq}`);
      tailEventsRead++;
    }
    ms = performance.now() - t;
    print(`read this run's events from seq ${fromSeq}: ${tailEventsRead} events, ${rate(tailEventsRead, ms)}`);
    print(`log now holds seq 1..${partition.lastSeq} in ${partition.streamCount} streams; run again to continue it`);
    return { firstSeq: fromSeq, lastSeq: partition.lastSeq, appendedEvents: options.events, streamEventsRead, tailEventsRead };
  } finally {
    await partition.close();
  }
}

function deposit(n: number): EventData {
  return { type: 'FundsDeposited', data: encoder.encode(JSON.stringify({ amount: (n % 90) + 10, ref: `dep-${n}` })) };
}

async function appendBatched(partition: Partition, count: number, streams: number, offset: number): Promise<void> {
  for (let done = 0; done < count; ) {
    const n = Math.min(100, count - done);
    const streamId = `account-${Math.floor((offset + done) / 100) % streams}`;
    const events = Array.from({ length: n }, (_, i) => deposit(offset + done + i));
    await partition.append({ streamId, expectedVersion: partition.streamVersion(streamId), commandId: `batch-${offset + done}`, events });
    done += n;
  }
}

async function appendConcurrent(partition: Partition, count: number, streams: number, offset: number): Promise<void> {
  const inFlight = 1000;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (next < count) {
        const n = offset + next++;
        await partition.append({ streamId: `account-${n % streams}`, commandId: `single-${n}`, events: [deposit(n)] });
      }
    }),
  );
}

function rate(events: number, ms: number): string {
  return `${Math.round((events / ms) * 1000).toLocaleString('en-US')} events/s (${ms.toFixed(0)} ms)`;
}
