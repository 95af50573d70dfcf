import { createStoreClient, createStoreClientFromConfig, type StoreClient } from '@sluice/client';
import { loadSluiceConfig } from '@sluice/config';
import type { CurveOptions } from '@sluice/majordomo';
import type { AppendRequest, CommitResult, RecordedEvent } from '@sluice/store';
import { UsageError } from '../cli-errors.js';
import type { EventSink, EventSource, HeadInfo, ReadRange } from './event-log.js';

/** How to reach a cluster: a config file (its brokers and routing) or broker endpoints and one partition. */
export interface ClusterConnection {
  /** Absolute path of a `sluice.json`. */
  readonly configPath?: string | undefined;
  /** Broker endpoints; override the config's when both are given. */
  readonly brokers?: readonly string[] | undefined;
  /** The partition to read or append to. */
  readonly partition?: string | undefined;
  /** From `--timeout-ms`; absent: the config's `limits.client.timeoutMs`, else 5000. */
  readonly timeoutMs?: number | undefined;
  readonly curve?: CurveOptions | undefined;
}

/** `--timeout-ms` when neither the flag nor the config's `limits.client.timeoutMs` is given. */
const DEFAULT_TIMEOUT_MS = 5000;

/** Events handed out per batch while reading through a broker. */
const BATCH_EVENTS = 256;

/** A store client for the connection: the config's routing, or every stream to the one `--partition`. */
export async function openStoreClient(connection: ClusterConnection): Promise<StoreClient> {
  const mdp = connection.curve === undefined ? {} : { mdp: { curve: connection.curve } };
  if (connection.configPath !== undefined) {
    const config = await loadSluiceConfig(connection.configPath);
    const limits = config.limits.client;
    return createStoreClientFromConfig(config, {
      ...(connection.brokers === undefined ? {} : { brokers: connection.brokers }),
      timeoutMs: connection.timeoutMs ?? limits.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(limits.outstandingMax === undefined ? {} : { outstandingMax: limits.outstandingMax }),
      ...(limits.retriesMax === undefined ? {} : { retriesMax: limits.retriesMax }),
      ...(limits.requestBytesMax === undefined ? {} : { requestBytesMax: limits.requestBytesMax }),
      ...mdp,
    });
  }
  const partition = connection.partition;
  if (connection.brokers === undefined || partition === undefined) {
    throw new UsageError('--broker needs --partition (or give --config, whose routing knows the partitions)');
  }
  return createStoreClient({
    brokers: connection.brokers,
    routing: { hash: [partition] },
    partitions: [partition],
    timeoutMs: connection.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    ...mdp,
  });
}

function describe(client: StoreClient, partition: string): string {
  return `partition "${partition}" via ${client.transport.options.endpoints.join(', ')}`;
}

/** Appends through the brokers; the stream's routing picks the partition (`--partition` must agree). */
export async function openClusterSink(connection: ClusterConnection): Promise<EventSink> {
  const client = await openStoreClient(connection);
  const partition = connection.partition;
  return {
    description: partition === undefined ? `the cluster via ${client.transport.options.endpoints.join(', ')}` : describe(client, partition),
    append: async (request: AppendRequest): Promise<CommitResult> => {
      if (partition !== undefined) {
        const routed = client.partitionOf(request.streamId);
        if (routed !== partition) {
          throw new UsageError(
            `stream "${request.streamId}" routes to partition "${routed}", not "${partition}": ` +
              'a stream lives in the partition its routing names; leave out --partition',
          );
        }
      }
      return client.append(request);
    },
    close: () => client.close(),
  };
}

/** Reads one partition through the brokers. */
export async function openClusterSource(connection: ClusterConnection, pollIntervalMs: number): Promise<EventSource> {
  const partition = connection.partition;
  if (partition === undefined) throw new UsageError('reading through a broker needs --partition <name>');
  const client = await openStoreClient(connection);
  return new ClusterSource(client, partition, pollIntervalMs);
}

class ClusterSource implements EventSource {
  readonly description: string;

  constructor(
    private readonly client: StoreClient,
    private readonly partition: string,
    /** Unused since tail is pushed (kept so `--poll-ms` is still accepted). */
    readonly pollIntervalMs: number,
  ) {
    this.description = describe(client, partition);
  }

  async lastSeq(): Promise<number> {
    return (await this.client.head(this.partition)).lastSeq;
  }

  async *read(range: ReadRange): AsyncGenerator<readonly RecordedEvent[]> {
    if (range.fromSeq > range.toSeq) return;
    const events =
      range.streamId === undefined
        ? this.client.read(this.partition, { fromSeq: range.fromSeq, toSeq: range.toSeq, signal: range.signal })
        : this.streamEvents(range.streamId, range.signal);
    let batch: RecordedEvent[] = [];
    for await (const event of events) {
      if (event.seq > range.toSeq) break;
      if (event.seq >= range.fromSeq) batch.push(event);
      if (batch.length >= BATCH_EVENTS) {
        yield batch;
        batch = [];
      }
      if (range.signal.aborted) break;
    }
    if (batch.length > 0) yield batch;
  }

  /**
   * Follows the partition with a push subscription: the node answers each subscribe request
   * as soon as new commits are durable (no polling); one page is requested ahead.
   */
  async *tail(range: Omit<ReadRange, 'toSeq'>): AsyncGenerator<readonly RecordedEvent[]> {
    const subscription = this.client.subscribe(this.partition, { fromSeq: range.fromSeq, signal: range.signal });
    for await (const batch of subscription) {
      const events = range.streamId === undefined ? batch : batch.filter((event) => event.streamId === range.streamId);
      if (events.length > 0) yield events;
      if (range.signal.aborted) return;
    }
  }

  async head(streamId: string | undefined, _onProgress: unknown, signal: AbortSignal): Promise<HeadInfo> {
    const head = await this.client.head(this.partition, { signal, ...(streamId === undefined ? {} : { streamId }) });
    return {
      lastSeq: head.lastSeq,
      streamCount: head.streamCount,
      epoch: head.epoch,
      writable: head.writable,
      ...(head.recovery === undefined ? {} : { recovery: head.recovery }),
      ...(streamId === undefined ? {} : { streamVersion: head.streamVersion ?? 0 }),
    };
  }

  close(): Promise<void> {
    return this.client.close();
  }

  /** A stream's events, from its partition's stream index; the stream must live in this partition. */
  private streamEvents(streamId: string, signal: AbortSignal): AsyncIterable<RecordedEvent> {
    const routed = this.client.partitionOf(streamId);
    if (routed !== this.partition) {
      throw new UsageError(`stream "${streamId}" routes to partition "${routed}", not "${this.partition}": give --partition ${routed}`);
    }
    return this.client.readStream(streamId, { signal });
  }
}

