import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createHandlerHost,
  createInProcessRouter,
  hashPartitioner,
  isHandlerError,
  type CommandOutcome,
  type HandlerHost,
  type InProcessRouter,
} from '@sluice/handlers';
import { openPartition, type FsyncPolicyInput, type Partition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import {
  createRemoteEventSource,
  createMemoryCheckpointStore,
  createMemoryParkingLot,
  createStreamCheckpointStore,
  createStreamParkingLot,
  startProjection,
  startSagaHost,
  type CheckpointStore,
  type EventSource,
  type ParkedMessage,
  type RemoteEventSource,
  type CommandMessage,
  type Subscription,
} from '@sluice/subscriptions';
import { account, accountId, transferSaga, type AccountCommand } from './domain.js';
import { Ledger } from './ledger.js';
// Type only: the client SDK (and zeromq with it) loads in cluster mode only.
import type { RemotePartition } from './remote-partition.js';

/** Options of {@link Bank.open}. */
export interface BankOptions {
  /** Each partition's files go to `<dataDirectory>/<partition>`. */
  readonly dataDirectory: string;
  /** @default 2 */
  readonly partitions?: number;
  /** @default 'commit' */
  readonly fsync?: FsyncPolicyInput;
  /** Attempts of the saga to deliver a command before it parks it (covers a partition restart). @default 100 */
  readonly sendAttemptsMax?: number;
  /**
   * Each embedded partition's tail cache of recently committed batches (the partition's
   * `tailCacheBytes`), read by its saga and projection hosts. A bank frame is ~400 bytes (the
   * first of a commit carries its ~256 command ids), so the store's default of 4 MiB holds ~10 k
   * frames: the saga host, a few thousand frames behind under load, fell out of it and read
   * ~2/3 of the log back from the files. Bounded: partitions × this many bytes. Not used in
   * cluster mode (the nodes own the partitions).
   * @default 16777216 (16 MiB)
   */
  readonly tailCacheBytes?: number;
  /**
   * Cluster mode: the partitions are served by nodes behind these brokers (the data folder is
   * theirs); this process reaches them with the client SDK. @default embedded partitions
   */
  readonly brokers?: readonly string[];
}

/** {@link BankOptions.tailCacheBytes} by default. */
export const DEFAULT_TAIL_CACHE_BYTES = 16 * 1024 * 1024;

/** A partition as the bank uses it: embedded, or served by a node and reached through the broker. */
type BankPartition =
  | { readonly kind: 'embedded'; readonly partition: Partition }
  | { readonly kind: 'remote'; readonly partition: RemotePartition; readonly source: RemoteEventSource };

interface BankNode {
  partition: BankPartition;
  host: HandlerHost;
  saga: Subscription;
  projection: Subscription;
}

/**
 * The bank: N partitions on the embedded file store, each with a handler host (accounts), a
 * transfer saga host and a balance projection; one in-process router between them.
 */
export class Bank {
  readonly ledger = new Ledger();
  readonly router: InProcessRouter;
  readonly names: readonly string[];
  readonly parked = createMemoryParkingLot();
  private readonly nodes = new Map<string, BankNode>();
  private readonly projectionCheckpoints = new Map<string, CheckpointStore>();

  private constructor(private readonly options: BankOptions) {
    const count = options.partitions ?? 2;
    this.names = Array.from({ length: count }, (_, i) => `bank-${i}`);
    this.router = createInProcessRouter({ hosts: new Map(), partitionOf: hashPartitioner(this.names) });
  }

  static async open(options: BankOptions): Promise<Bank> {
    const bank = new Bank(options);
    for (const name of bank.names) await bank.start(name);
    return bank;
  }

  /** An embedded partition (not in cluster mode, where the partitions live in the nodes). */
  partition(name: string): Partition {
    const node = this.nodes.get(name);
    if (node === undefined) throw new Error(`[bank] partition "${name}" is not running`);
    if (node.partition.kind !== 'embedded') throw new Error(`[bank] partition "${name}" is served by a node: this process has no embedded partition`);
    return node.partition.partition;
  }

  /** True when the partitions are served by nodes (cluster mode). */
  get clustered(): boolean {
    return this.options.brokers !== undefined;
  }

  /** Opens accounts 0..count-1 (idempotent: deterministic command ids). Every `frozenEvery`-th refuses credits. */
  async openAccounts(count: number, initialBalance: number, frozenEvery: number): Promise<void> {
    const opens = [];
    for (let i = 0; i < count; i++) {
      const frozen = frozenEvery > 0 && i % frozenEvery === frozenEvery - 1;
      opens.push(this.send(`open-${accountId(i)}`, accountId(i), { type: 'OpenAccount', initialBalance, frozen }));
    }
    await Promise.all(opens);
  }

  /** Starts a transfer at the source account. A down partition is retried, as a client would. */
  transfer(transferId: string, from: string, to: string, amount: number): Promise<CommandOutcome> {
    return this.send(transferId, from, { type: 'Transfer', transferId, to, amount });
  }

  /** The first attempt costs the router's promise only; a down partition is retried on the slow path. */
  private send(id: string, recipient: string, command: AccountCommand): Promise<CommandOutcome> {
    const message = { id, commands: [{ recipient, command }] };
    return this.router.send(message).catch((error: unknown) => this.resend(message, error));
  }

  private async resend(message: CommandMessage, first: unknown): Promise<CommandOutcome> {
    let error = first;
    for (let attempt = 1; ; attempt++) {
      if (!isHandlerError(error, 'PARTITION_UNAVAILABLE') || attempt > 200) throw error;
      await sleep(25);
      try {
        return await this.router.send(message);
      } catch (next) {
        error = next;
      }
    }
  }

  /** A run number: one more than the last, recorded in bank-0's `bank-runs` stream. */
  async nextRun(): Promise<number> {
    const node = this.nodes.get(this.names[0]);
    if (node === undefined) throw new Error(`[bank] partition "${this.names[0]}" is not running`);
    const partition = node.partition.partition;
    const version = await partition.streamVersion('bank-runs');
    await partition.append({ streamId: 'bank-runs', expectedVersion: version, events: [{ type: 'RunStarted', data: new TextEncoder().encode(JSON.stringify({ at: Date.now() })) }] });
    return version + 1;
  }

  /** Waits until every projection has read its partition to the end and no transfer is in flight. */
  async settle(timeoutMs = 120_000, onTick?: () => void): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let caughtUp = true;
      for (const node of this.nodes.values()) if (node.projection.position < (await lastSeqOf(node.partition))) caughtUp = false;
      if (caughtUp && this.ledger.debited === this.ledger.settled && this.nodes.size === this.names.length) return;
      if (this.parked.parked.length > 0) throw new Error(`[bank] ${this.parked.parked.length} saga message(s) parked, first: ${describe(this.parked.parked[0])}`);
      if (Date.now() > deadline) throw new Error(`[bank] not settled after ${timeoutMs} ms: ${this.ledger.debited - this.ledger.settled} transfer(s) in flight`);
      onTick?.();
      await sleep(10);
    }
  }

  /** Stops a partition (router detached, hosts stopped, storage closed), waits, and starts it again: an embedded node restart. */
  async restart(name: string, downMs: number): Promise<void> {
    await this.stop(name);
    await sleep(downMs);
    await this.start(name);
  }

  async close(): Promise<void> {
    for (const name of [...this.nodes.keys()]) await this.stop(name);
  }

  private async start(name: string): Promise<void> {
    let opened: BankPartition;
    if (this.options.brokers === undefined) {
      const embedded = await openPartition({
        storage: createFileStorage({ directory: join(this.options.dataDirectory, name), fsync: this.options.fsync ?? 'commit' }),
        name,
        tailCacheBytes: this.options.tailCacheBytes ?? DEFAULT_TAIL_CACHE_BYTES,
      });
      opened = { kind: 'embedded', partition: embedded };
    } else {
      const { RemotePartition } = await import('./remote-partition.js');
      const remote = new RemotePartition(name, this.options.brokers);
      // Live reading by push subscription, gap repair and replays by read: all through the broker.
      opened = { kind: 'remote', partition: remote, source: createRemoteEventSource({ client: remote.client, partition: name }) };
    }
    const partition = opened.partition;
    const source: EventSource = opened.kind === 'embedded' ? opened.partition : opened.source;
    // The saga's commands (one causation id each) share commits: their causation ids go into their events' metadata.
    const host = createHandlerHost({ partition, entities: [account], cacheEntitiesMax: 100_000, tracingIn: 'event' });
    // One sequential pass over the log instead of one storage read per event when accounts load on demand.
    await host.preload(account, 'account-');
    let checkpoints = this.projectionCheckpoints.get(name);
    if (checkpoints === undefined) {
      // The balance projection lives in memory: rebuilt from scratch at every start of the process, kept across partition restarts.
      checkpoints = createMemoryCheckpointStore();
      this.projectionCheckpoints.set(name, checkpoints);
    }
    const durableParking = createStreamParkingLot(partition);
    const parking = {
      park: async (message: ParkedMessage) => {
        await this.parked.park(message);
        await durableParking.park(message);
      },
    };
    const projection = startProjection({ projection: this.ledger.projection(), source, checkpoints, parking, onError: 'stop', batchSizeMax: 10_000 });
    const saga = startSagaHost({
      saga: transferSaga,
      source,
      checkpoints: createStreamCheckpointStore(partition),
      sender: this.router,
      parking,
      sendAttemptsMax: this.options.sendAttemptsMax ?? 100,
      retryDelayMs: 10,
      retryDelayMaxMs: 250,
      batchSizeMax: 2000,
    });
    for (const sub of [projection, saga]) {
      sub.done.catch((error: unknown) => {
        // A host that stops on its own is a bug or a broken partition: make it loud.
        process.exitCode = 1;
        process.stderr.write(`[bank] ${name}: ${sub.subscriber} stopped: ${String(error)}\n`);
      });
    }
    this.nodes.set(name, { partition: opened, host, saga, projection });
    this.router.attach(name, host);
  }

  private async stop(name: string): Promise<void> {
    const node = this.nodes.get(name);
    if (node === undefined) return;
    // The saga host first, while the router still reaches this partition: its batch in hand may
    // send commands here (transfers inside the partition), which would otherwise wait for a
    // partition that waits for them.
    await node.saga.stop();
    this.router.detach(name);
    this.nodes.delete(name);
    await node.projection.stop();
    await node.host.close();
    await node.partition.partition.close();
  }
}

/** The partition's last committed seq: known at once when embedded, asked of its node when remote. */
async function lastSeqOf(partition: BankPartition): Promise<number> {
  return partition.kind === 'embedded' ? partition.partition.lastSeq : partition.partition.lastSeq();
}

function describe(message: ParkedMessage): string {
  return `${message.partition}:${message.seq} (${message.eventType}) at ${message.stage}: ${message.reason}`;
}
