import { hostname } from 'node:os';
import { openPartition, type Partition, type PartitionOptions } from '@sluice/store';
import { loadSluiceConfig, partitionsOfNode, type SluiceConfig } from '@sluice/config';
import { MajordomoWorker, OptionProblems, type WorkerOptions, type WorkerStats } from '@sluice/majordomo';
import { createPartitionStorage, resolveLocationFactories, type LocationFactories } from './locations.js';
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
  /** Partition engine options (queueMax, batchBytesMax, ...) for every partition of the node. */
  readonly partition?: Omit<PartitionOptions, 'storage' | 'name'>;
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
   * Further options for every worker (e.g. security settings); the options above take
   * precedence.
   * @default {}
   */
  readonly worker?: Partial<Omit<WorkerOptions, 'endpoint' | 'service' | 'handler'>>;
}

/** The node's defaults, in one place. */
export function nodeDefaults(): Required<Omit<StartNodeOptions, 'config' | 'nodeName' | 'partition' | 'worker' | 'locations'>> {
  return {
    concurrency: 8,
    heartbeatIntervalMs: 2500,
    heartbeatLiveness: 3,
    reconnectDelayMs: 1000,
    pageBytesMax: 1024 * 1024,
    pageEventsMax: 10_000,
    drainTimeoutMs: 10_000,
  };
}

/** Counters of a running node. */
export interface NodeStats {
  /** Per partition: requests served, errors by code, requests in flight, last seq. */
  readonly partitions: Readonly<Record<string, PartitionHandlerStats & { readonly lastSeq: number }>>;
  /** Worker counters summed over every partition and broker. */
  readonly workers: WorkerStats;
}

/**
 * A node: hosts partitions and serves each as the MDP service `sluice.partition.<name>` with
 * every broker of its config. Create it with {@link startNode}.
 */
export class StoreNode {
  /** The MDP service names this node serves, one per partition. */
  readonly services: readonly string[];
  private closing: Promise<void> | undefined;

  /** @internal use {@link startNode} */
  constructor(
    /** This node's name. */
    readonly name: string,
    readonly config: SluiceConfig,
    /** The open partitions, by name. */
    readonly partitions: ReadonlyMap<string, Partition>,
    private readonly handlers: readonly PartitionHandler[],
    /** One worker per partition per broker. */
    readonly workers: readonly MajordomoWorker[],
    private readonly drainTimeoutMs: number,
  ) {
    this.services = [...partitions.keys()].map((partition) => config.partitions[partition].service);
  }

  stats(): NodeStats {
    const partitions: Record<string, PartitionHandlerStats & { lastSeq: number }> = {};
    for (const handler of this.handlers) {
      partitions[handler.partition.name] = { ...handler.stats(), lastSeq: handler.partition.lastSeq };
    }
    const workers: Record<string, number> = {};
    for (const worker of this.workers) {
      for (const [key, value] of Object.entries(worker.stats())) workers[key] = (workers[key] ?? 0) + value;
    }
    return { partitions, workers: workers as unknown as WorkerStats };
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
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.handlers.map((handler) => handler.drain())),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    // Replies already handed to a worker are flushed before its DISCONNECT (one send queue).
    await Promise.all(this.workers.map((worker) => worker.close()));
    await Promise.all([...this.partitions.values()].map((partition) => partition.close()));
  }
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
  check.integer('heartbeatIntervalMs', settings.heartbeatIntervalMs, 1);
  check.integer('heartbeatLiveness', settings.heartbeatLiveness, 1);
  check.integer('reconnectDelayMs', settings.reconnectDelayMs, 0);
  check.integer('pageBytesMax', settings.pageBytesMax, 1024, 0xffff_ffff);
  check.integer('pageEventsMax', settings.pageEventsMax, 1, 0xffff_ffff);
  check.integer('drainTimeoutMs', settings.drainTimeoutMs, 0);
  check.throwIfAny();

  const hosted = partitionsOfNode(config, options.nodeName);
  const nodeName = options.nodeName ?? hostname();
  const shipping = hosted.filter((name) => config.partitions[name].ship.length > 0);
  if (shipping.length > 0) {
    throw new NodeStartError(
      nodeName,
      shipping.map((partition) => ({
        partition,
        error: new Error(`its level "${config.partitions[partition].level}" ships to targets, which @sluice/node does not do yet: remove "ship" from the level`),
      })),
    );
  }
  const locations = await resolveLocationFactories(
    hosted.map((name) => config.partitions[name]),
    options.locations,
  );

  const opened = await Promise.allSettled(
    hosted.map(async (name) =>
      openPartition({ ...options.partition, storage: createPartitionStorage(config.partitions[name], locations), name }),
    ),
  );
  const failures = opened.flatMap((result, index) =>
    result.status === 'rejected' ? [{ partition: hosted[index], error: result.reason as unknown }] : [],
  );
  if (failures.length > 0) {
    await Promise.all(
      opened.map((result) => (result.status === 'fulfilled' ? result.value.close().catch(() => undefined) : undefined)),
    );
    throw new NodeStartError(nodeName, failures);
  }

  const partitions = new Map<string, Partition>();
  const handlers: PartitionHandler[] = [];
  const workers: MajordomoWorker[] = [];
  for (const result of opened) {
    const partition = (result as PromiseFulfilledResult<Partition>).value;
    partitions.set(partition.name, partition);
    const handler = new PartitionHandler(
      partition,
      { pageBytesMax: settings.pageBytesMax, pageEventsMax: settings.pageEventsMax },
      nodeName,
    );
    handlers.push(handler);
    for (const endpoint of config.brokers) {
      workers.push(
        new MajordomoWorker({
          ...options.worker,
          endpoint,
          service: config.partitions[partition.name].service,
          handler: handler.handle,
          concurrency: settings.concurrency,
          heartbeatIntervalMs: settings.heartbeatIntervalMs,
          heartbeatLiveness: settings.heartbeatLiveness,
          reconnectDelayMs: settings.reconnectDelayMs,
        }).start(),
      );
    }
  }
  return new StoreNode(nodeName, config, partitions, handlers, workers, settings.drainTimeoutMs);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as Partial<T>;
}
