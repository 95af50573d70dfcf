import type { RecordedEvent } from '@sluice/store';
import type { EventSource, Replayer } from './event-source.js';

/**
 * The part of `@sluice/client`'s `StoreClient` a remote source uses. Typed structurally, so
 * this package does not depend on the client (nor on `zeromq`): pass a `StoreClient`, or
 * anything that answers these three calls.
 */
export interface RemoteStoreReader {
  /** Push subscription (op 06): committed events from `fromSeq` on, in pages, then live. */
  subscribe(partition: string, options: { readonly fromSeq?: number; readonly signal?: AbortSignal }): AsyncIterable<RecordedEvent[]>;
  /** Random access by seq (op 02), page by page. */
  read(partition: string, options: { readonly fromSeq?: number; readonly toSeq?: number; readonly maxCount?: number }): AsyncIterable<RecordedEvent>;
  /** The partition's head (op 04). */
  head(partition: string): Promise<{ readonly lastSeq: number }>;
}

/** Options of {@link createRemoteEventSource}. */
export interface RemoteEventSourceOptions {
  /** A `StoreClient` of `@sluice/client` (or the same three calls). Not closed by the source. */
  readonly client: RemoteStoreReader;
  /** The partition to read, by name; the client must know it (its routing or `partitions`). */
  readonly partition: string;
}

/** A partition served by a node, read through the broker: an event source and its replayer. */
export interface RemoteEventSource extends EventSource, Replayer {
  /** Asks the node for the partition's head and raises {@link EventSource.lastSeq} to it. */
  refresh(): Promise<number>;
}

/**
 * A partition served by a node, read through the broker with the client SDK: live reading by
 * push subscription (op 06), gap repair and full replays by read (op 02). Hand it to
 * `startSubscription` (or a projection or saga host) as `source`; it is its own `replayer`.
 *
 * `lastSeq` is what this process knows of the partition's head: the head asked for when a
 * subscription starts (so a catch-up gathers full batches), then the highest seq received.
 *
 * @example
 * const client = createStoreClientFromConfig(await loadSluiceConfig('sluice.json'));
 * const source = createRemoteEventSource({ client, partition: 'bank-1' });
 * const sub = startSubscription({ subscriber: 'audit', source, checkpoints, handle });
 */
export function createRemoteEventSource(options: RemoteEventSourceOptions): RemoteEventSource {
  const { client, partition } = options;
  let lastSeq = 0;
  const raise = (seq: number): void => {
    if (seq > lastSeq) lastSeq = seq;
  };
  return {
    name: partition,
    get lastSeq() {
      return lastSeq;
    },
    async refresh() {
      raise((await client.head(partition)).lastSeq);
      return lastSeq;
    },
    async *subscribe({ fromSeq, signal }) {
      if (signal?.aborted === true) return;
      raise((await client.head(partition)).lastSeq);
      for await (const batch of client.subscribe(partition, { fromSeq, signal })) {
        if (batch.length > 0) raise(batch[batch.length - 1].seq);
        yield batch;
      }
    },
    read(range) {
      return client.read(partition, range);
    },
  };
}
