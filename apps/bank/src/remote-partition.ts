import { createStoreClient, type StoreClient } from '@sluice/client';
import type { HostPartition } from '@sluice/handlers';
import type { AppendRequest, CommitResult, ReadOptions, ReadStreamOptions, RecordedEvent, UnitOfWork } from '@sluice/store';
import type { StreamWriter } from '@sluice/subscriptions';

/**
 * One partition served by a node, reached through the broker with the client SDK: what the
 * handler host, the checkpoints and the parking lot need of a partition. Its store client
 * routes every stream to this partition (an empty prefix rule), because the host's own
 * streams (`$rejected`, `$outbox`, `$checkpoint-…`) exist once per partition.
 */
export class RemotePartition implements HostPartition, StreamWriter {
  readonly client: StoreClient;

  constructor(
    readonly name: string,
    brokers: readonly string[],
    options: { readonly timeoutMs?: number } = {},
  ) {
    this.client = createStoreClient({ brokers, routing: { prefixes: { '': name } }, timeoutMs: options.timeoutMs ?? 10_000 });
  }

  /** Writable as far as this process knows: a node that cannot write answers each commit with the reason. */
  get isWritable(): boolean {
    return true;
  }

  commit(unit: UnitOfWork): Promise<CommitResult> {
    return this.client.commit(unit);
  }

  append(request: AppendRequest): Promise<CommitResult> {
    return this.client.append(request);
  }

  read(options: ReadOptions = {}): AsyncGenerator<RecordedEvent> {
    return this.client.read(this.name, options);
  }

  readStream(streamId: string, options: ReadStreamOptions = {}): AsyncGenerator<RecordedEvent> {
    return this.client.readStream(streamId, options);
  }

  streamVersion(streamId: string): Promise<number> {
    return this.client.streamVersion(streamId);
  }

  /** The partition's last committed seq, asked of its node. */
  async lastSeq(): Promise<number> {
    return (await this.client.head(this.name)).lastSeq;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
