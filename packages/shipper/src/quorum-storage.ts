import type { SealedBatch } from '@sluice/framing';
import {
  DurableSignal,
  EMPTY_IDENTITY,
  StorageError,
  tailBatches,
  type BatchIdentity,
  type CommitReliability,
  type PartitionStorage,
  type StorageCapabilities,
  type StorageReader,
  type StorageRecovery,
  type TailOptions,
  type TruncateOptions,
} from '@sluice/store';
import { Shipper } from './shipper.js';
import { resolveShipperOptions, type ShipperOptions } from './shipper-options.js';

/** Options of {@link createQuorumStorage}: a shipper's, minus its source, plus the quorum. */
export interface QuorumStorageOptions extends Omit<ShipperOptions, 'source'> {
  /** The partition's own storage (one location, or a mirror): the shipper's source. */
  readonly storage: PartitionStorage;
  /** How many targets must hold a commit durably before it is acknowledged (1 ≤ quorum ≤ targets). */
  readonly quorum: number;
  /**
   * Longest a sync waits for the quorum. When it passes, the sync fails with `Unavailable` and
   * the storage is failed (the partition faults).
   * @default 10000
   */
  readonly quorumTimeoutMs?: number | undefined;
  /** The reliability level's name, reported with each acknowledged commit. */
  readonly level?: string | undefined;
}

/** A storage that acknowledges only what a quorum of remote targets holds. */
export interface QuorumStorage extends PartitionStorage {
  /** The shipper it runs (status, alerts). */
  readonly shipper: Shipper;
}

const WHERE = '[sluice/shipper] quorum storage';

/**
 * Synchronous remote mode: wraps the partition's storage so a commit is acknowledged only
 * after it is durable locally (every location of a mirror) **and** a quorum of remote targets
 * holds it durably. The targets are fed by a shipper running inside the storage (same checks,
 * retries, alternates and alerts as any shipper); `sync()` makes the batch durable locally,
 * wakes the shipper and waits until `quorum` targets report it.
 *
 * What it guarantees: an acknowledged commit survives the loss of the whole partition (every
 * local location) as long as fewer than `quorum` of the acknowledging targets are lost too.
 * Readers of the partition see only quorum-acknowledged commits.
 *
 * What it costs: every acknowledgement waits for the slowest of the fastest `quorum` targets
 * (one round trip to each plus its own durability), so latency is local sync + remote write +
 * remote sync, and group commit batches everything that arrives meanwhile. While fewer than
 * `quorum` targets are reachable nothing is acknowledged: after `quorumTimeoutMs` the sync fails
 * and the partition faults (and opening it waits for the quorum to hold the recovered head).
 *
 * What it does not do: it is not a distributed transaction. A commit whose quorum wait failed
 * is durable locally and may be on some targets; it was not acknowledged, and after reopening
 * it is kept, not cut (cutting it would make the targets holding it diverge): the client saw
 * an error, not a refusal, and a retry with the same command id gets it as a duplicate.
 *
 * @example
 * const storage = createQuorumStorage({
 *   storage: createFileStorage({ directory: '/data/payments' }),
 *   partition: 'payments',
 *   targets: [westTarget, northTarget, eastTarget],
 *   quorum: 2,
 * });
 * const partition = await openPartition({ storage, name: 'payments' });
 */
export function createQuorumStorage(options: QuorumStorageOptions): QuorumStorage {
  const { storage, quorum, quorumTimeoutMs, level, ...shipperOptions } = options;
  const resolved = resolveShipperOptions({ ...shipperOptions, source: storage });
  const problems: string[] = [];
  if (!(Number.isSafeInteger(quorum) && quorum >= 1 && quorum <= resolved.targets.length)) problems.push(`quorum must be an integer from 1 to ${resolved.targets.length} (the number of targets), got ${quorum}`);
  const timeout = quorumTimeoutMs ?? 10_000;
  if (!(timeout > 0)) problems.push(`quorumTimeoutMs must be positive, got ${quorumTimeoutMs}`);
  if (problems.length > 0) throw new StorageError('Invalid', `${WHERE}: ${problems.join('; ')}`);
  return new Quorum(storage, new Shipper(resolved), quorum, timeout, level);
}

class Quorum implements QuorumStorage {
  readonly kind: string;
  readonly capabilities: StorageCapabilities;
  private durable: BatchIdentity = EMPTY_IDENTITY;
  private failure: StorageError | undefined;
  private readonly signal = new DurableSignal();
  private opened = false;

  constructor(
    private readonly inner: PartitionStorage,
    readonly shipper: Shipper,
    private readonly quorum: number,
    private readonly timeoutMs: number,
    private readonly level: string | undefined,
  ) {
    this.kind = `quorum(${inner.kind})`;
    // A reader in another process would see the local durable head, which runs ahead of what
    // the quorum has acknowledged: none are offered.
    this.capabilities = { ...inner.capabilities, crossProcessReaders: false, frameReads: false };
  }

  async open(): Promise<StorageRecovery> {
    const recovery = await this.inner.open();
    this.opened = true;
    this.shipper.start();
    if (recovery.lastSeq > 0) {
      try {
        await this.shipper.waitFor(recovery.lastSeq, { quorum: this.quorum, timeoutMs: this.timeoutMs });
      } catch (error) {
        await this.close().catch(() => undefined);
        throw new StorageError('Unavailable', `${WHERE}: the recovered head seq ${recovery.lastSeq} is not held by ${this.quorum} targets: ${(error as Error).message}`, { cause: error, retryable: true });
      }
    }
    this.durable = recovery.head;
    return recovery;
  }

  write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return this.inner.write(bytes, firstSeq, lastSeq);
  }

  async sync(): Promise<BatchIdentity> {
    if (this.failure !== undefined) throw this.failure;
    const head = await this.inner.sync();
    this.shipper.notify();
    try {
      await this.shipper.waitFor(head.lastSeq, { quorum: this.quorum, timeoutMs: this.timeoutMs });
    } catch (error) {
      this.failure ??= new StorageError('Unavailable', `${WHERE}: seq ${head.lastSeq} is durable locally but not acknowledged: ${(error as Error).message}`, { cause: error, retryable: true });
      throw this.failure;
    }
    if (head.lastSeq > this.durable.lastSeq) {
      this.durable = head;
      this.signal.advance(head.lastSeq);
    }
    return head;
  }

  durableHead(): BatchIdentity {
    return this.durable;
  }

  reliability(seq: number): CommitReliability {
    const inner = this.inner.reliability?.(seq);
    return {
      level: this.level ?? inner?.level,
      durability: this.capabilities.durability,
      locations: inner?.locations ?? [this.inner.kind],
      targets: this.shipper.status().filter((s) => s.head.lastSeq >= seq).map((s) => s.active),
    };
  }

  truncate(afterSeq: number, options?: TruncateOptions): Promise<BatchIdentity> {
    // Cutting what targets already hold makes them "ahead": the shipper then refuses them.
    return this.inner.truncate(afterSeq, options).then((head) => {
      if (this.durable.lastSeq > afterSeq) this.durable = head;
      return head;
    });
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    const limit = this.durable.lastSeq;
    const inner = this.inner;
    return (async function* () {
      for await (const batch of inner.read(fromSeq, Math.min(toSeq, limit))) {
        if (batch.lastSeq > limit) return;
        yield batch;
      }
    })();
  }

  async head(): Promise<BatchIdentity> {
    this.assertOpen();
    return this.durable;
  }

  async lastSeq(): Promise<number> {
    this.assertOpen();
    return this.durable.lastSeq;
  }

  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    this.assertOpen();
    return seq > this.durable.lastSeq ? undefined : this.inner.identityAt(seq);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  async openReader(): Promise<StorageReader> {
    throw new StorageError('Unsupported', `${WHERE} has no cross-process readers (they would see commits the quorum has not acknowledged): read in process`);
  }

  async close(): Promise<void> {
    this.signal.close();
    await this.shipper.stop();
    await this.inner.close();
  }

  private assertOpen(): void {
    if (!this.opened) throw new StorageError('Closed', `${WHERE} is not open yet: call open() first`);
  }
}
