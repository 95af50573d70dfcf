import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { openPartition, type MirrorRepair, type Partition, type PartitionOptions, type StorageRecovery } from '@sluice/store';
import type { Shipper, ShipperAlert } from '@sluice/shipper';
import { loadSluiceConfig, partitionsOfNode, type SluiceConfig } from '@sluice/config';
import { subscribeServiceName } from '@sluice/client';
import { MajordomoWorker, OptionProblems, type WorkerOptions, type WorkerStats } from '@sluice/majordomo';
import { resolveLocationFactories, type LocationFactories } from './locations.js';
import { createLevelStorage, type LevelStorage } from './shipping.js';
import { NodeStartError } from './node-errors.js';
import { PartitionHandler, type PartitionHandlerStats } from './partition-handler.js';

/** Options of {@link startNode}. */
export interface StartNodeOptions {
  /** The validated config (`@sluice/config`), or the path of a `sluice.json` to load. */
  readonly config: SluiceConfig | string;
  /**
   * Storage backends by location kind (see {@link LocationFactories}). Kinds the config uses
   * that are not given here are imported from `@sluice/store-file`, `-lmdb` or `-azure` when
   * installed (optional peer dependencies); `memory` is built in.
   * @default {}
   */
  readonly locations?: LocationFactories;
  /**
   * This node's name under `nodes` in the config (required when the config lists nodes);
   * also names the node in messages.
   * @default os.hostname()
   */
  readonly nodeName?: string;
  /**
   * Requests one partition handles at once from each broker: the worker connections opened
   * per partition per broker (RFC 7 gives a worker one request at a time). Concurrent
   * appends share group commits, so more in flight means bigger, cheaper commits.
   * @default 8
   */
  readonly concurrency?: number;
  /**
   * Requests in flight per worker connection of a partition's store service, with the
   * majordomo credit extension (its PROTOCOL.md): a Sluice broker sends each connection up to
   * this many (capped by its `workerCreditMax`), so a partition handles `concurrency × credit`
   * requests at once from each broker and group commit sees big groups. A reference RFC 7
   * broker ignores it and sends one at a time. 1 turns the extension off.
   * @default 32
   */
  readonly credit?: number;
  /**
   * Requests per message, each way, on a store service connection with credit (the majordomo
   * batch extension, its PROTOCOL.md): requests the broker dispatches to one connection in the
   * same turn travel in one BATCH message, and replies finished in the same turn go back in
   * one. Fewer messages and wake-ups per request when many clients' requests queue (measured:
   * about 25 % less CPU per append on node and broker with 256 uncoalesced appends in flight).
   * A reference RFC 7 broker ignores it. 1 turns it off.
   * @default 32
   */
  readonly batch?: number;
  /**
   * HEARTBEAT interval to the brokers; must match theirs.
   * @default 2500
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * A broker silent for interval × liveness is taken as dead and reconnected to.
   * @default 3
   */
  readonly heartbeatLiveness?: number;
  /**
   * Wait before reconnecting to a silent broker.
   * @default 1000
   */
  readonly reconnectDelayMs?: number;
  /**
   * Partition engine options (queueMax, batchBytesMax, ...) for every partition of the node.
   * Each partition's `level` and index folder (`indexDirectory`) come from the config.
   */
  readonly partition?: Omit<PartitionOptions, 'storage' | 'name' | 'level' | 'indexDirectory'>;
  /**
   * Aborting it while the node starts stops opening partitions at once (a file location
   * stops preallocating and removes what it half-made) and `startNode` rejects; give the
   * process's shutdown signal so SIGTERM is honoured at any moment.
   */
  readonly signal?: AbortSignal;
  /**
   * Largest read reply, in bytes; a client may ask for less. An event larger than this is
   * still sent, alone in its page.
   * @default 1048576
   */
  readonly pageBytesMax?: number;
  /**
   * Most events in one read reply.
   * @default 10000
   */
  readonly pageEventsMax?: number;
  /**
   * Longest wait in `close()` for requests being handled to be answered.
   * @default 10000
   */
  readonly drainTimeoutMs?: number;
  /**
   * Worker connections per partition per broker for subscriptions (the service
   * `sluice.subscribe.<name>`): subscribers waiting for commits beyond this many wait in the
   * broker's queue, never on the connections appends use.
   * @default 4
   */
  readonly subscribeConcurrency?: number;
  /**
   * Longest a subscribe request waits for a commit before it is answered with an empty page
   * (the subscriber then asks again); caps the subscriber's own `waitMs`.
   * @default 30000
   */
  readonly subscribeWaitMsMax?: number;
  /**
   * First wait before reopening a faulted partition (a write or sync failed); doubles per
   * failed attempt up to `reopenDelayMaxMs`. See the README's "Faulted partitions".
   * @default 1000
   */
  readonly reopenDelayMs?: number;
  /**
   * Longest wait between two reopen attempts.
   * @default 60000
   */
  readonly reopenDelayMaxMs?: number;
  /**
   * Reopen attempts after one fault before the node gives the partition up (it stays faulted,
   * reported in `stats()` and `head`, until the node restarts). `0`: never reopen.
   * @default 10
   */
  readonly reopenAttemptsMax?: number;
  /**
   * Further options for every worker (e.g. security settings); the options above take
   * precedence.
   * @default {}
   */
  readonly worker?: Partial<Omit<WorkerOptions, 'endpoint' | 'service' | 'handler'>>;
}

/** The node's defaults, in one place. */
export function nodeDefaults(): Required<Omit<StartNodeOptions, 'config' | 'nodeName' | 'partition' | 'worker' | 'locations' | 'signal'>> {
  return {
    concurrency: 8,
    credit: 32,
    batch: 32,
    heartbeatIntervalMs: 2500,
    heartbeatLiveness: 3,
    reconnectDelayMs: 1000,
    pageBytesMax: 1024 * 1024,
    pageEventsMax: 10_000,
    drainTimeoutMs: 10_000,
    subscribeConcurrency: 4,
    subscribeWaitMsMax: 30_000,
    reopenDelayMs: 1000,
    reopenDelayMaxMs: 60_000,
    reopenAttemptsMax: 10,
  };
}

/** A partition's state on its node. */
export type PartitionState = 'open' | 'faulted' | 'reopening' | 'given-up';

/** Events of a {@link StoreNode}: what `sluice node` logs. */
export type NodeEvents = {
  /**
   * A faulted partition was opened again: what storage recovery found. (At start, read
   * `node.partitions.get(name).recovery`: the node exists only once all are open.)
   */
  'partition-reopened': [{ readonly partition: string; readonly lastSeq: number; readonly recovery: StorageRecovery; readonly attempt: number }];
  /** A write or sync failed: the partition refuses appends until it is reopened. */
  'partition-faulted': [{ readonly partition: string; readonly error: unknown; readonly nextAttemptInMs: number | undefined }];
  /** A reopen attempt failed; `nextAttemptInMs` is absent when the node gave up. */
  'partition-reopen-failed': [{ readonly partition: string; readonly attempt: number; readonly error: unknown; readonly nextAttemptInMs: number | undefined }];
  /** A worker connection to a broker registered (READY sent). */
  'worker-connected': [{ readonly partition: string; readonly broker: string; readonly session: number }];
  /** A worker connection was lost and is being reopened. */
  'worker-reconnecting': [{ readonly partition: string; readonly broker: string; readonly session: number; readonly reason: string }];
  /** A worker's handler failed (a bug: the handler answers every store error itself). */
  'worker-error': [{ readonly partition: string; readonly broker: string; readonly error: unknown }];
  /**
   * A shipper alert of a partition whose level ships to targets (`ship`): `lag` past the
   * level's `alertLagMs`, `target-down`, `target-recovered`, `failover`, `diverged`, `ahead`,
   * `source-error`, `lag-cleared`.
   */
  'shipping-alert': [{ readonly partition: string; readonly alert: ShipperAlert }];
  /** A mirror (a level with several locations) repaired a copy: at open, at close after a failure, or by a scrub. */
  'mirror-repair': [{ readonly partition: string; readonly repair: MirrorRepair }];
};

/** Per-partition supervision state. */
interface Supervision {
  state: PartitionState;
  faults: number;
  reopens: number;
  lastFault: string | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** One partition's counters and state on its node. */
export type NodePartitionStats = PartitionHandlerStats & {
  readonly lastSeq: number;
  readonly state: PartitionState;
  /** Faults since the node started, and successful reopens. */
  readonly faults: number;
  readonly reopens: number;
  /** The message of the last fault, when there was one. */
  readonly lastFault: string | undefined;
};

/** Counters of a running node. */
export interface NodeStats {
  /** Per partition: requests served, errors by code, requests in flight, last seq, state and faults. */
  readonly partitions: Readonly<Record<string, NodePartitionStats>>;
  /** Worker counters summed over every partition and broker. */
  readonly workers: WorkerStats;
}

/**
 * A node: hosts partitions and serves each as the MDP service `sluice.partition.<name>` with
 * every broker of its config. Create it with {@link startNode}.
 */
export class StoreNode extends EventEmitter<NodeEvents> {
  /** The MDP service names this node serves, one per partition. */
  readonly services: readonly string[];
  private closing: Promise<void> | undefined;
  private readonly supervision = new Map<string, Supervision>();
  private readonly open: Map<string, Partition>;

  /** @internal use {@link startNode} */
  constructor(
    /** This node's name. */
    readonly name: string,
    readonly config: SluiceConfig,
    partitions: ReadonlyMap<string, Partition>,
    private readonly handlers: readonly PartitionHandler[],
    /** One worker per partition per broker. */
    readonly workers: readonly MajordomoWorker[],
    private readonly settings: ReturnType<typeof nodeDefaults>,
    private readonly reopen: (name: string) => Promise<Partition>,
    /** The shipper of each partition whose level ships to targets (replaced when it reopens). */
    private readonly shipping: Map<string, LevelStorage>,
  ) {
    super();
    this.open = new Map(partitions);
    this.services = [...partitions.keys()].map((partition) => config.partitions[partition].service);
    for (const name of partitions.keys()) {
      this.supervision.set(name, { state: 'open', faults: 0, reopens: 0, lastFault: undefined, timer: undefined });
    }
  }

  /** The shipper of each partition whose level has `ship` targets: `status()` gives each target's head and lag. */
  get shippers(): ReadonlyMap<string, Shipper> {
    const out = new Map<string, Shipper>();
    for (const [name, level] of this.shipping) if (level.shipper !== undefined) out.set(name, level.shipper);
    return out;
  }

  /** The open partitions, by name (a reopened partition replaces its faulted instance). */
  get partitions(): ReadonlyMap<string, Partition> {
    return this.open;
  }

  stats(): NodeStats {
    const partitions: Record<string, NodePartitionStats> = {};
    for (const handler of this.handlers) {
      const name = handler.partition.name;
      const watch = this.supervision.get(name) as Supervision;
      partitions[name] = {
        ...handler.stats(),
        lastSeq: handler.partition.lastSeq,
        state: watch.state,
        faults: watch.faults,
        reopens: watch.reopens,
        lastFault: watch.lastFault,
      };
    }
    const workers: Record<string, number> = {};
    for (const worker of this.workers) {
      for (const [key, value] of Object.entries(worker.stats())) workers[key] = (workers[key] ?? 0) + value;
    }
    return { partitions, workers: workers as unknown as WorkerStats };
  }

  /**
   * @internal A handler found its partition faulted. Policy ("Faulted partitions" in the
   * README): report it, then close the faulted instance and open the partition again after
   * `reopenDelayMs`, doubling per failed attempt up to `reopenDelayMaxMs`, at most
   * `reopenAttemptsMax` times; opening runs storage recovery, which drops anything unsynced.
   * Meanwhile appends are answered `partition-faulted`.
   */
  onFault(faulted: Partition, error: unknown): void {
    const name = faulted.name;
    const watch = this.supervision.get(name);
    if (watch === undefined || this.closing !== undefined || this.open.get(name) !== faulted || watch.state !== 'open') return;
    watch.state = 'faulted';
    watch.faults += 1;
    watch.lastFault = error instanceof Error ? error.message : String(error);
    const next = this.settings.reopenAttemptsMax > 0 ? this.settings.reopenDelayMs : undefined;
    this.emit('partition-faulted', { partition: name, error, nextAttemptInMs: next });
    if (next === undefined) {
      watch.state = 'given-up';
      return;
    }
    this.scheduleReopen(name, 1, next);
  }

  private scheduleReopen(name: string, attempt: number, delayMs: number): void {
    const watch = this.supervision.get(name) as Supervision;
    watch.timer = setTimeout(() => void this.tryReopen(name, attempt, delayMs), delayMs);
    watch.timer.unref();
  }

  private async tryReopen(name: string, attempt: number, delayMs: number): Promise<void> {
    const watch = this.supervision.get(name) as Supervision;
    watch.timer = undefined;
    if (this.closing !== undefined) return;
    watch.state = 'reopening';
    const old = this.open.get(name) as Partition;
    // The shipper reads the old storage: stop it first (the reopened partition gets a new one).
    await stopShipper(this.shipping.get(name));
    this.shipping.delete(name);
    await old.close().catch(() => undefined);
    try {
      const partition = await this.reopen(name);
      if (this.closing !== undefined) {
        await partition.close().catch(() => undefined);
        return;
      }
      this.open.set(name, partition);
      for (const handler of this.handlers) if (handler.partition === old) handler.replace(partition);
      watch.state = 'open';
      watch.reopens += 1;
      this.emit('partition-reopened', { partition: name, lastSeq: partition.lastSeq, recovery: partition.recovery, attempt });
    } catch (error) {
      const more = attempt < this.settings.reopenAttemptsMax;
      const next = more ? Math.min(delayMs * 2, this.settings.reopenDelayMaxMs) : undefined;
      watch.state = more ? 'faulted' : 'given-up';
      watch.lastFault = error instanceof Error ? error.message : String(error);
      this.emit('partition-reopen-failed', { partition: name, attempt, error, nextAttemptInMs: next });
      if (next !== undefined) this.scheduleReopen(name, attempt + 1, next);
    }
  }

  /**
   * Drains and stops: new requests are answered with a retryable `partition-closed` error,
   * requests being handled are answered (up to `drainTimeoutMs`), the workers disconnect from
   * the brokers, and the partitions close (every queued append settles first). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    for (const watch of this.supervision.values()) clearTimeout(watch.timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.handlers.map((handler) => handler.drain())),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.settings.drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    // Replies already handed to a worker are flushed before its DISCONNECT (one send queue).
    await Promise.all(this.workers.map((worker) => worker.close()));
    await Promise.all([...this.shipping.values()].map((level) => stopShipper(level)));
    await Promise.all([...this.open.values()].map((partition) => partition.close().catch(() => undefined)));
  }
}

/** Stops a shipper the node runs (a quorum storage stops its own when it closes). */
async function stopShipper(level: LevelStorage | undefined): Promise<void> {
  if (level?.shipper !== undefined && level.ownsShipper) await level.shipper.stop().catch(() => undefined);
}

/**
 * Opens the node's partitions (those listed for `nodeName` under `nodes`, or all of them)
 * and registers each with every broker of the config as the service
 * `sluice.partition.<name>`, serving the store protocol. Resolves once the partitions are
 * open and the workers have sent READY; brokers that are down are reconnected to in the
 * background.
 *
 * Rejects with `ConfigError` (bad config, unknown node name), `NodeStartError` (a partition
 * would not open: locked by another node, corrupt, ...; none is left open) or
 * `InvalidBrokerOptionsError`.
 *
 * @example
 * const node = await startNode({ config: './sluice.json', nodeName: 'node-a' });
 * process.on('SIGTERM', () => void node.close());
 */
export async function startNode(options: StartNodeOptions): Promise<StoreNode> {
  const config = typeof options.config === 'string' ? await loadSluiceConfig(options.config) : options.config;
  // Flags and code beat the config file, which beats the defaults.
  const fromConfig = {
    ...definedOnly(config.limits.node),
    ...definedOnly({ heartbeatIntervalMs: config.heartbeats.intervalMs, heartbeatLiveness: config.heartbeats.liveness }),
  };
  const settings = { ...nodeDefaults(), ...fromConfig, ...definedOnly(options) };
  const check = new OptionProblems('node');
  check.integer('concurrency', settings.concurrency, 1, 1024);
  check.integer('credit', settings.credit, 1, 65_535);
  check.integer('batch', settings.batch, 1, 1024);
  check.integer('heartbeatIntervalMs', settings.heartbeatIntervalMs, 1);
  check.integer('heartbeatLiveness', settings.heartbeatLiveness, 1);
  check.integer('reconnectDelayMs', settings.reconnectDelayMs, 0);
  check.integer('pageBytesMax', settings.pageBytesMax, 1024, 0xffff_ffff);
  check.integer('pageEventsMax', settings.pageEventsMax, 1, 0xffff_ffff);
  check.integer('drainTimeoutMs', settings.drainTimeoutMs, 0);
  check.integer('subscribeConcurrency', settings.subscribeConcurrency, 1, 1024);
  check.integer('subscribeWaitMsMax', settings.subscribeWaitMsMax, 1, 3_600_000);
  check.integer('reopenDelayMs', settings.reopenDelayMs, 0);
  check.integer('reopenDelayMaxMs', settings.reopenDelayMaxMs, 0);
  check.integer('reopenAttemptsMax', settings.reopenAttemptsMax, 0, 1_000_000);
  check.throwIfAny();

  const hosted = partitionsOfNode(config, options.nodeName);
  const nodeName = options.nodeName ?? hostname();
  const locations = await resolveLocationFactories(
    hosted.map((name) => config.partitions[name]),
    options.locations,
  );

  // Alerts and repairs before the node exists (while opening) are emitted once it does.
  let node: StoreNode | undefined;
  const early: (() => void)[] = [];
  const report = (emit: (n: StoreNode) => void): void => {
    if (node === undefined) early.push(() => emit(node as StoreNode));
    else emit(node);
  };
  const shipping = new Map<string, LevelStorage>();
  /** Opens a partition on its level's storage, then starts its shipper. */
  const openOnLevel = async (name: string, signal?: AbortSignal): Promise<Partition> => {
    const level = await createLevelStorage(config.partitions[name], locations, {
      signal,
      onAlert: (alert) => report((n) => n.emit('shipping-alert', { partition: name, alert })),
      onRepair: (repair) => report((n) => n.emit('mirror-repair', { partition: name, repair })),
    });
    // Persisted indexes where the config puts them (the level's "index", else beside the first
    // local location): a restart replays only the log after the last index checkpoint. Every
    // commit records the level the config gives the partition (format version 3 frames).
    const { indexDirectory, level: levelName } = config.partitions[name];
    const partition = await openPartition({ ...options.partition, indexDirectory, storage: level.storage, name, level: levelName });
    if (level.ownsShipper) level.shipper?.start();
    shipping.set(name, level);
    return partition;
  };
  const opened = await Promise.allSettled(hosted.map((name) => openOnLevel(name, options.signal)));
  const failures = opened.flatMap((result, index) =>
    result.status === 'rejected' ? [{ partition: hosted[index], error: result.reason as unknown }] : [],
  );
  if (failures.length > 0) {
    await Promise.all([...shipping.values()].map((level) => stopShipper(level)));
    await Promise.all(
      opened.map((result) => (result.status === 'fulfilled' ? result.value.close().catch(() => undefined) : undefined)),
    );
    throw new NodeStartError(nodeName, failures);
  }

  const partitions = new Map<string, Partition>();
  const handlers: PartitionHandler[] = [];
  const workers: MajordomoWorker[] = [];
  const open = (name: string): Promise<Partition> => openOnLevel(name);
  // The node exists only once every partition is open; handlers report faults through this.
  const pending: { worker: MajordomoWorker; partition: string; broker: string }[] = [];
  for (const result of opened) {
    const partition = (result as PromiseFulfilledResult<Partition>).value;
    partitions.set(partition.name, partition);
    const handler = new PartitionHandler(
      partition,
      { pageBytesMax: settings.pageBytesMax, pageEventsMax: settings.pageEventsMax, subscribeWaitMsMax: settings.subscribeWaitMsMax },
      nodeName,
      (faulted, error) => node?.onFault(faulted, error),
    );
    handlers.push(handler);
    for (const endpoint of config.brokers) {
      // Subscribe requests are long polls, each its own connection's: no credit there.
      for (const [service, concurrency, credit, batch] of [
        [config.partitions[partition.name].service, settings.concurrency, settings.credit, settings.batch],
        [subscribeServiceName(partition.name), settings.subscribeConcurrency, 1, 1],
      ] as const) {
        const worker = new MajordomoWorker({
          ...options.worker,
          endpoint,
          service,
          handler: handler.handle,
          concurrency,
          credit,
          batch,
          heartbeatIntervalMs: settings.heartbeatIntervalMs,
          heartbeatLiveness: settings.heartbeatLiveness,
          reconnectDelayMs: settings.reconnectDelayMs,
        });
        workers.push(worker);
        pending.push({ worker, partition: partition.name, broker: endpoint });
      }
    }
  }
  node = new StoreNode(nodeName, config, partitions, handlers, workers, settings, open, shipping);
  const created = node;
  // After the caller can subscribe: emitted on the next turn.
  if (early.length > 0) queueMicrotask(() => setImmediate(() => early.splice(0).forEach((emit) => emit())));
  for (const { worker, partition, broker } of pending) {
    worker.on('connected', ({ session }) => created.emit('worker-connected', { partition, broker, session }));
    worker.on('reconnecting', ({ session, reason }) => created.emit('worker-reconnecting', { partition, broker, session, reason }));
    worker.on('handler-error', ({ error }) => created.emit('worker-error', { partition, broker, error }));
    worker.start();
  }
  return created;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as Partial<T>;
}
