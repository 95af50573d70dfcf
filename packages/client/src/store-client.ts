import { randomUUID } from 'node:crypto';
import {
  InvalidRequestError as StoreInvalidRequestError,
  type AppendRequest,
  type CommitResult,
  type RecordedEvent,
  type UnitOfWork,
} from '@sluice/store';
import {
  MajordomoClient,
  OptionProblems,
  isBrokerError,
  BrokerRejectedError,
  type ClientOptions,
} from '@sluice/majordomo';
import { partitionServiceName, subscribeServiceName } from './partition-service.js';
import { EncodeError } from './protocol-bytes.js';
import {
  MalformedStoreReplyError,
  MalformedStoreRequestError,
  PartitionUnavailableError,
  UnknownPartitionError,
  errorFromStoreReply,
} from './store-errors.js';
import {
  decodeStoreReply,
  encodeAppendFramedRequest,
  encodeStoreRequest,
  estimateUnitBytes,
  type EventsPage,
  type PartitionHead,
  type StoreReply,
  type StoreRequest,
} from './store-protocol.js';
import { StreamRouter, type RoutingConfig } from './stream-router.js';

/** Options of {@link createStoreClient}. */
export interface StoreClientOptions {
  /** Broker endpoints, in fail-over order (the config's `brokers`). Not used when `client` is given. */
  readonly brokers: readonly string[];
  /** How streams route to partitions (the config's `routing`), or a router built from it. */
  readonly routing: RoutingConfig | StreamRouter;
  /**
   * Partitions that may be read or asked for their head by name besides those the routing
   * names (e.g. every partition of the config).
   * @default []
   */
  readonly partitions?: readonly string[];
  /**
   * An MDP client to send through instead of one made from `brokers` (shared or
   * instrumented). The store client does not close it.
   */
  readonly client?: MajordomoClient;
  /**
   * Wait for one attempt's reply; covers the brokers' queueing and the node's work (a
   * group commit with its fsync). A timeout is taken as a dead broker: the MDP client fails
   * over to the next one and sends again.
   * @default 5000
   */
  readonly timeoutMs?: number;
  /**
   * Sends of one request by the MDP client (each after a fail-over) before it counts as
   * failed.
   * @default 3
   */
  readonly attemptsMax?: number;
  /**
   * Further tries of a request after a retryable failure: no reply after `attemptsMax`
   * sends, a broker's 502 / 503 / 504 rejection, an overloaded partition, a node that is
   * closing, a storage error marked retryable. Appends are sent again with the same command
   * ids, so they are never applied twice.
   * @default 3
   */
  readonly retriesMax?: number;
  /**
   * Wait before the first retry; doubles for each further one, up to `retryDelayMaxMs`.
   * @default 100
   */
  readonly retryDelayMs?: number;
  /** @default 2000 */
  readonly retryDelayMaxMs?: number;
  /**
   * Largest read page to ask a node for, in bytes (nodes cap it at their own `pageBytesMax`).
   * @default the node's pageBytesMax (1 MiB unless configured)
   */
  readonly pageBytesMax?: number;
  /**
   * Requests open at once (only when the store client makes its MDP client).
   * @default 10000
   */
  readonly outstandingMax?: number;
  /**
   * Makes the command id of an append that has none. Every append carries one, so a resend
   * after a lost reply gets the original result instead of applying twice.
   * @default crypto.randomUUID
   */
  readonly commandId?: () => string;
  /**
   * Coalesce concurrent appends to one partition into one `append-many` request (the fast
   * path): appends issued while earlier ones are on their way are sent together, each unit
   * still committed on its own with its own expected versions, command ids and result. A
   * single append goes alone, as a plain `append`. Appends with an abort `signal` are never
   * coalesced.
   * @default true
   */
  readonly coalesceAppends?: boolean;
  /**
   * Encode each coalesced single-stream append once, as the framed events the node stores
   * (`append-framed`, op 7): the node checks each event's CRC-32C, stamps seq, epoch and
   * version and copies the frames to disk without decoding or re-encoding them, so the
   * checksum travels with the event from this client to the disk. A partition whose node
   * answers that it does not know op 7 (an older node) gets `append-many` from then on.
   * @default true
   */
  readonly framedAppends?: boolean;
  /**
   * Largest unit (estimated bytes) sent framed; a larger one goes as a plain `append`, which
   * the node re-encodes. Framing costs a CRC-32C pass on the client and one on the node, each
   * in one turn of the event loop: this bounds how long one unit holds either process.
   * @default 1048576
   */
  readonly framedUnitBytesMax?: number;
  /**
   * Most units in one coalesced request.
   * @default 1000
   */
  readonly appendBatchUnitsMax?: number;
  /**
   * Largest coalesced request, in (estimated) bytes; a unit larger than this goes alone.
   * @default 1048576
   */
  readonly appendBatchBytesMax?: number;
  /**
   * Coalesced requests in flight per partition; further appends wait and go in the next one.
   * Appends waiting when slots are free are spread over them (at least 64 units a request),
   * so a burst of 1000 goes as 4 requests of 250 that client, broker, node and disk work on
   * at once, rather than one request of 1000 that each works on in turn.
   * @default 4
   */
  readonly appendBatchesInFlightMax?: number;
  /**
   * Largest request this client sends, in encoded bytes; a larger one is refused at once with
   * `StoreInvalidRequestError` naming this limit. Keep it at most the brokers' `frameBytesMax`
   * (80 MiB by default): ZeroMQ drops the connection of a peer that sends more, with no reply.
   * @default 83886080 (80 MiB)
   */
  readonly requestBytesMax?: number;
  /**
   * Further options for the MDP client it makes (e.g. security settings); the options above
   * take precedence.
   * @default {}
   */
  readonly mdp?: Partial<Omit<ClientOptions, 'endpoints'>>;
}

/** Options of one call. */
export interface StoreCallOptions {
  /** Aborting stops waiting (and retrying); an append may still be applied. */
  readonly signal?: AbortSignal;
}

/** Options of {@link StoreClient.read}. */
export interface RemoteReadOptions extends StoreCallOptions {
  /** @default 1 */
  readonly fromSeq?: number;
  /** Inclusive; defaults to the partition's last seq when the read starts. */
  readonly toSeq?: number;
  /** Stop after this many events. */
  readonly maxCount?: number;
}

/** Options of {@link StoreClient.readStream}. */
export interface RemoteReadStreamOptions extends StoreCallOptions {
  /** @default 1 */
  readonly fromVersion?: number;
  /** Inclusive; defaults to the stream's end (the read follows it until it catches up). */
  readonly toVersion?: number;
  /** Stop after this many events. */
  readonly maxCount?: number;
}

/** Options of {@link StoreClient.subscribe}. */
export interface RemoteSubscribeOptions extends StoreCallOptions {
  /** Resume from here (your checkpoint + 1). @default 1 */
  readonly fromSeq?: number;
  /**
   * How long the node holds a request open waiting for a commit before it answers with
   * nothing new (the client then asks again). Must be below `timeoutMs`.
   * @default half of timeoutMs
   */
  readonly waitMs?: number;
}

/** Counters of a store client. */
export interface StoreClientStats {
  readonly requests: number;
  /** Requests sent again after a retryable failure. */
  readonly retries: number;
  /** Appends that went in a coalesced `append-many` request, and those requests. */
  readonly coalescedUnits: number;
  readonly coalescedRequests: number;
}

/**
 * Fewest units a coalesced request takes when waiting appends are spread over several
 * requests: a small burst still goes as one request (fewer messages, and its units are
 * applied in the order they were issued).
 */
const SPREAD_UNITS_MIN = 64;

/** An append waiting in a partition's coalescer. */
interface PendingUnit {
  readonly unit: UnitOfWork & { readonly commandIds: readonly string[] };
  /** Sent as framed events (a single-stream unit, when `framedAppends`), encoded when its request is. */
  framed: boolean;
  readonly bytes: number;
  readonly resolve: (result: CommitResult) => void;
  readonly reject: (error: unknown) => void;
  /** Times it was sent again after a retryable error of its own (not of the whole request). */
  retries: number;
}

/** One partition's coalescer: appends waiting, and coalesced requests in flight. */
interface Coalescer {
  readonly pending: PendingUnit[];
  inFlight: number;
  scheduled: boolean;
}

type Settings = Required<Omit<StoreClientOptions, 'client' | 'routing' | 'partitions' | 'pageBytesMax' | 'mdp'>> & {
  readonly pageBytesMax: number | undefined;
};

/** The store client's defaults, in one place. */
export function storeClientDefaults(): Omit<Settings, 'brokers'> {
  return {
    timeoutMs: 5000,
    attemptsMax: 3,
    retriesMax: 3,
    retryDelayMs: 100,
    retryDelayMaxMs: 2000,
    pageBytesMax: undefined,
    outstandingMax: 10_000,
    commandId: randomUUID,
    coalesceAppends: true,
    framedAppends: true,
    framedUnitBytesMax: 1024 * 1024,
    appendBatchUnitsMax: 1000,
    appendBatchBytesMax: 1024 * 1024,
    appendBatchesInFlightMax: 4,
    requestBytesMax: 80 * 1024 * 1024,
  };
}

/**
 * The client SDK of a Sluice cluster: appends and reads partitions through the brokers, as
 * if they were local (`@sluice/store`'s `Partition` API and errors).
 *
 * Requests go to the partition a stream routes to (the config's `routing`), as MDP requests
 * to the service `sluice.partition.<name>`. Any number may be in flight at once (the MDP
 * client pipelines them); requests in flight together are applied in any order, so await an
 * append before sending one that depends on it. Failed requests are retried per
 * `retriesMax`, and appends always carry command ids, so a retry never applies twice: it
 * gets the original result, with `duplicate: true`.
 *
 * @example
 * const client = createStoreClientFromConfig(await loadSluiceConfig('./sluice.json')); // @sluice/config
 * const result = await client.append({
 *   streamId: 'account-42', expectedVersion: 0,
 *   events: [{ type: 'AccountOpened', data: new TextEncoder().encode('{"owner":"Ada"}') }],
 * });
 * for await (const event of client.readStream('account-42')) console.log(event.eventType);
 * await client.close();
 */
export class StoreClient {
  /** Routes streams to partitions. */
  readonly router: StreamRouter;
  /** The MDP client underneath (its `failover` events and `stats()` show broker fail-over). */
  readonly transport: MajordomoClient;
  private readonly settings: Settings;
  private readonly known: ReadonlySet<string>;
  private readonly ownsTransport: boolean;
  private readonly counters = { requests: 0, retries: 0, coalescedUnits: 0, coalescedRequests: 0 };
  private readonly coalescers = new Map<string, Coalescer>();
  /** Partitions whose node does not know `append-framed` (an older node). */
  private readonly framedRefused = new Set<string>();

  /** Validates the options and connects (or uses `options.client`). */
  constructor(options: StoreClientOptions) {
    const settings: Settings = { ...storeClientDefaults(), ...definedOnly(options), brokers: options.brokers, pageBytesMax: options.pageBytesMax };
    const check = new OptionProblems('store client');
    if (options.client === undefined) {
      check.check(Array.isArray(settings.brokers) && settings.brokers.length > 0, 'brokers must be a non-empty array of broker endpoints');
    }
    check.check(typeof options.routing === 'object' && options.routing !== null, 'routing must be { hash: [...] } and/or { prefixes: { ... } }');
    check.integer('timeoutMs', settings.timeoutMs, 1);
    check.integer('attemptsMax', settings.attemptsMax, 1);
    check.integer('retriesMax', settings.retriesMax, 0, 100);
    check.integer('retryDelayMs', settings.retryDelayMs, 0);
    check.integer('retryDelayMaxMs', settings.retryDelayMaxMs, 0);
    if (settings.pageBytesMax !== undefined) check.integer('pageBytesMax', settings.pageBytesMax, 1024, 0xffff_ffff);
    check.check(typeof settings.commandId === 'function', 'commandId must be a function returning a string');
    check.integer('appendBatchUnitsMax', settings.appendBatchUnitsMax, 1, 1_000_000);
    check.integer('appendBatchBytesMax', settings.appendBatchBytesMax, 1024);
    check.integer('appendBatchesInFlightMax', settings.appendBatchesInFlightMax, 1, 1024);
    check.integer('framedUnitBytesMax', settings.framedUnitBytesMax, 0);
    check.integer('requestBytesMax', settings.requestBytesMax, 1024, 2 ** 31 - 1);
    check.throwIfAny();
    this.settings = settings;
    this.router = options.routing instanceof StreamRouter ? options.routing : new StreamRouter(options.routing);
    this.known = new Set([...this.router.partitions, ...(options.partitions ?? [])]);
    this.ownsTransport = options.client === undefined;
    this.transport =
      options.client ??
      new MajordomoClient({
        ...options.mdp,
        endpoints: settings.brokers,
        timeoutMs: settings.timeoutMs,
        attemptsMax: settings.attemptsMax,
        outstandingMax: settings.outstandingMax,
      });
  }

  /** The partition that holds `streamId`. Throws `UnroutableStreamError` when no rule matches. */
  partitionOf(streamId: string): string {
    return this.router.partitionOf(streamId);
  }

  /**
   * Appends events to one stream, in its partition. A command id is generated when the
   * request has none. Rejects like `Partition.append` (`WrongExpectedVersionError`,
   * `InvalidRequestError`, ...), or with `PartitionUnavailableError` when no node answered.
   */
  append(request: AppendRequest, options?: StoreCallOptions): Promise<CommitResult> {
    return this.commit(
      {
        changes: [request],
        commandIds: request?.commandId === undefined ? undefined : [request.commandId],
        correlationId: request?.correlationId,
        causationId: request?.causationId,
      },
      options,
    );
  }

  /**
   * Commits a unit of work atomically. Every stream in it must route to the same partition
   * (a partition is the unit of consistency); otherwise it rejects with `InvalidRequestError`.
   */
  async commit(unit: UnitOfWork, options: StoreCallOptions = {}): Promise<CommitResult> {
    const changes = unit?.changes;
    if (!Array.isArray(changes) || changes.length === 0) {
      throw new StoreInvalidRequestError('[sluice/client] a unit of work needs at least one change');
    }
    // One change (an append, the hot path) needs no map of partitions.
    let partition = '';
    let partitions: Map<string, string> | undefined;
    for (let c = 0; c < changes.length; c++) {
      const change = changes[c];
      if (typeof change?.streamId !== 'string' || change.streamId.length === 0) {
        throw new StoreInvalidRequestError('[sluice/client] every change needs a non-empty streamId');
      }
      const of = this.router.partitionOf(change.streamId);
      if (c === 0) partition = of;
      else if (of !== partition || partitions !== undefined) {
        partitions ??= new Map([[partition, changes[0].streamId]]);
        if (!partitions.has(of)) partitions.set(of, change.streamId);
      }
    }
    if (partitions !== undefined && partitions.size > 1) {
      const spread = [...partitions].map(([p, stream]) => `"${stream}" → "${p}"`).join(', ');
      throw new StoreInvalidRequestError(
        `[sluice/client] a unit of work commits atomically in one partition, but its streams route to several (${spread}): ` +
          `split it into one unit per partition, or route the streams together (a prefix rule)`,
      );
    }
    const own = unit.commandIds === undefined || unit.commandIds.length === 0;
    const commandIds = own ? [this.settings.commandId()] : unit.commandIds;
    let result: CommitResult;
    if (this.settings.coalesceAppends && options.signal === undefined) {
      result = await this.coalesce(partition, { ...unit, commandIds });
    } else {
      const frame = this.encode({ op: 'append', partition, unit: { ...unit, commandIds } });
      const reply = await this.call(partition, frame, commandIds, options.signal);
      if (reply.kind !== 'committed') throw this.unexpected(partition, reply, 'a commit result');
      result = reply.result;
    }
    // A command id this client made up is new to the caller: a duplicate can only be this
    // client's own retry of a request whose first reply was lost (applied once, by that try).
    return own && result.duplicate ? { ...result, duplicate: false } : result;
  }

  /**
   * A stream's events in version order, fetched from its partition page by page (the next
   * page is requested while the current one is consumed).
   */
  async *readStream(streamId: string, options: RemoteReadStreamOptions = {}): AsyncGenerator<RecordedEvent> {
    const partition = this.router.partitionOf(streamId);
    let remaining = options.maxCount ?? Number.POSITIVE_INFINITY;
    if (remaining <= 0) return;
    const fetch = (fromVersion: number): Promise<EventsPage> =>
      this.page(
        partition,
        {
          op: 'read-stream',
          partition,
          streamId,
          fromVersion,
          toVersion: options.toVersion,
          maxCount: finiteOrUndefined(remaining),
          pageBytesMax: this.settings.pageBytesMax,
        },
        options.signal,
      );
    let pending = fetch(Math.max(1, options.fromVersion ?? 1));
    for (;;) {
      const page = await pending;
      remaining -= page.events.length;
      const more = page.more && remaining > 0 && (options.toVersion === undefined || page.next <= options.toVersion);
      if (more) pending = prefetch(fetch(page.next));
      yield* page.events;
      if (!more) return;
    }
  }

  /**
   * Committed events of a partition from `fromSeq` on, in batches, pushed by the node as
   * soon as they are committed (a subscribe request waits at the node for the next commit,
   * on the partition's subscription service), until `signal` aborts. Flow control by credit:
   * one page is requested ahead of the consumer, never more. Resume after a restart with
   * `fromSeq: checkpoint + 1`. Rejects like a read (`PartitionUnavailableError`, ...).
   *
   * @example
   * for await (const batch of client.subscribe('bank-1', { fromSeq: checkpoint + 1, signal })) {
   *   for (const event of batch) project(event);
   *   checkpoint = batch.at(-1).seq;
   * }
   */
  async *subscribe(partition: string, options: RemoteSubscribeOptions = {}): AsyncGenerator<RecordedEvent[]> {
    this.assertKnown(partition);
    const waitMs = options.waitMs ?? Math.floor(this.settings.timeoutMs / 2);
    const check = new OptionProblems('subscribe');
    check.integer('waitMs', waitMs, 0, Math.max(0, this.settings.timeoutMs - 1));
    check.throwIfAny();
    const signal = options.signal;
    const ask = (fromSeq: number): Promise<EventsPage> =>
      prefetch(
        this.page(
          partition,
          { op: 'subscribe', partition, fromSeq, waitMs, pageBytesMax: this.settings.pageBytesMax },
          signal,
          subscribeServiceName(partition),
        ),
      );
    // Credit: each request grants the node one page. The next is asked for as soon as a page
    // arrives (it starts where that page ends), so one page waits ahead of the consumer; a
    // consumer that stops pulling stops the requests, so nothing piles up anywhere.
    const aborted = (): boolean => signal?.aborted === true;
    let pending = ask(Math.max(1, options.fromSeq ?? 1));
    while (!aborted()) {
      let page: EventsPage;
      try {
        page = await pending;
      } catch (error) {
        if (aborted()) return;
        throw error;
      }
      pending = ask(page.next);
      if (page.events.length > 0) yield page.events;
    }
    pending.catch(() => undefined);
  }

  /**
   * A partition's events by seq, fetched page by page. `toSeq` defaults to the partition's
   * last seq when the read starts. Rejects with `UnknownPartitionError` for a partition this
   * client does not know (see the `partitions` option).
   */
  async *read(partition: string, options: RemoteReadOptions = {}): AsyncGenerator<RecordedEvent> {
    this.assertKnown(partition);
    let remaining = options.maxCount ?? Number.POSITIVE_INFINITY;
    if (remaining <= 0) return;
    let toSeq = options.toSeq;
    const fetch = (fromSeq: number): Promise<EventsPage> =>
      this.page(
        partition,
        { op: 'read', partition, fromSeq, toSeq, maxCount: finiteOrUndefined(remaining), pageBytesMax: this.settings.pageBytesMax },
        options.signal,
      );
    let pending = fetch(Math.max(1, options.fromSeq ?? 1));
    for (;;) {
      const page = await pending;
      toSeq ??= page.lastSeq; // later pages stop where the first one saw the end
      remaining -= page.events.length;
      const more = page.more && remaining > 0 && page.next <= toSeq;
      if (more) pending = prefetch(fetch(page.next));
      yield* page.events;
      if (!more) return;
    }
  }

  /**
   * A partition's head: last seq, epoch, whether it is writable, its stream count and, with
   * `streamId`, that stream's version (counting appends still in flight on the node).
   */
  async head(partition: string, options: StoreCallOptions & { readonly streamId?: string } = {}): Promise<PartitionHead> {
    this.assertKnown(partition);
    const reply = await this.call(partition, this.encode({ op: 'head', partition, streamId: options.streamId }), [], options.signal);
    if (reply.kind !== 'head') throw this.unexpected(partition, reply, 'a head');
    return reply.head;
  }

  /** A stream's version (0 when it has no events), asked of its partition. */
  async streamVersion(streamId: string, options?: StoreCallOptions): Promise<number> {
    const head = await this.head(this.router.partitionOf(streamId), { ...options, streamId });
    return head.streamVersion ?? 0;
  }

  stats(): StoreClientStats {
    return { ...this.counters };
  }

  /** Closes the MDP client it made (not an injected one); calls in flight reject. Idempotent. */
  async close(): Promise<void> {
    if (this.ownsTransport) await this.transport.close();
  }

  private async page(partition: string, request: StoreRequest, signal: AbortSignal | undefined, service?: string): Promise<EventsPage> {
    const reply = await this.call(partition, this.encode(request), [], signal, service);
    if (reply.kind !== 'events') throw this.unexpected(partition, reply, 'a page of events');
    return reply;
  }

  // ---- coalescing (the fast path) -------------------------------------------------------------

  private coalesce(partition: string, unit: PendingUnit['unit']): Promise<CommitResult> {
    return new Promise((resolve, reject) => {
      let coalescer = this.coalescers.get(partition);
      if (coalescer === undefined) {
        coalescer = { pending: [], inFlight: 0, scheduled: false };
        this.coalescers.set(partition, coalescer);
      }
      const bytes = estimateUnitBytes(unit);
      const framed = this.settings.framedAppends && unit.changes.length === 1 && bytes <= this.settings.framedUnitBytesMax && !this.framedRefused.has(partition);
      coalescer.pending.push({ unit, framed, bytes, resolve, reject, retries: 0 });
      this.scheduleFlush(partition, coalescer);
    });
  }

  /** Appends issued in the same tick go out together (a microtask later). */
  private scheduleFlush(partition: string, coalescer: Coalescer): void {
    if (coalescer.scheduled) return;
    coalescer.scheduled = true;
    queueMicrotask(() => {
      coalescer.scheduled = false;
      this.flush(partition, coalescer);
    });
  }

  private flush(partition: string, coalescer: Coalescer): void {
    const { appendBatchUnitsMax, appendBatchBytesMax, appendBatchesInFlightMax } = this.settings;
    while (coalescer.pending.length > 0 && coalescer.inFlight < appendBatchesInFlightMax) {
      // Spread what waits over the free request slots (at least SPREAD_UNITS_MIN units each):
      // several requests in flight keep client, broker, node and disk busy at once, where one
      // large request leaves each stage idle while another works. Measured with 1000 concurrent
      // single-event appenders (1 request of 1000 units in flight → 4 of 250): up to ~2× the
      // rate while the machine has idle cores; about the same when every core is busy.
      const spread = Math.ceil(coalescer.pending.length / (appendBatchesInFlightMax - coalescer.inFlight));
      const unitsMax = Math.min(appendBatchUnitsMax, Math.max(SPREAD_UNITS_MIN, spread));
      const batch: PendingUnit[] = [];
      let bytes = 0;
      while (coalescer.pending.length > 0 && batch.length < unitsMax) {
        const next = coalescer.pending[0];
        if (batch.length > 0 && bytes + next.bytes > appendBatchBytesMax) break;
        batch.push(next);
        bytes += next.bytes;
        coalescer.pending.shift();
      }
      coalescer.inFlight += 1;
      void this.sendBatch(partition, batch).finally(() => {
        coalescer.inFlight -= 1;
        if (coalescer.pending.length > 0) this.flush(partition, coalescer);
        else if (coalescer.inFlight === 0) this.coalescers.delete(partition);
      });
    }
  }

  /** Sends a batch: alone as `append`, several as `append-many`; settles each unit. */
  private async sendBatch(partition: string, batch: PendingUnit[]): Promise<void> {
    const commandIds = batch.flatMap((pending) => pending.unit.commandIds);
    const framed = !this.framedRefused.has(partition) && batch.every((pending) => pending.framed);
    let frame: Buffer;
    try {
      frame = framed
        ? this.encodeWith(partition, () => encodeAppendFramedRequest(partition, batch.map((pending) => pending.unit)))
        : batch.length === 1
          ? this.encode({ op: 'append', partition, unit: batch[0].unit })
          : this.encode({ op: 'append-many', partition, units: batch.map((pending) => pending.unit) });
    } catch (error) {
      // One unit cannot be carried: send each alone, so only that one fails.
      if (batch.length === 1) batch[0].reject(error);
      else await Promise.all(batch.map((pending) => this.sendBatch(partition, [pending])));
      return;
    }
    let reply: StoreReply;
    try {
      if (batch.length > 1) {
        this.counters.coalescedRequests += 1;
        this.counters.coalescedUnits += batch.length;
      }
      reply = await this.call(partition, frame, commandIds, undefined);
    } catch (error) {
      if (framed && error instanceof MalformedStoreRequestError && /unknown operation 7\b/.test(error.message)) {
        // An older node: nothing was applied; send these (and later appends) the old way.
        this.framedRefused.add(partition);
        for (const pending of batch) pending.framed = false;
        return this.sendBatch(partition, batch);
      }
      for (const pending of batch) pending.reject(this.forUnit(error, partition, pending.unit.commandIds));
      return;
    }
    if (batch.length === 1 && !framed) {
      if (reply.kind === 'committed') batch[0].resolve(reply.result);
      else batch[0].reject(this.unexpected(partition, reply, 'a commit result'));
      return;
    }
    if (reply.kind !== 'committed-many' || reply.outcomes.length !== batch.length) {
      const error = this.unexpected(partition, reply, `${batch.length} unit outcomes`);
      for (const pending of batch) pending.reject(error);
      return;
    }
    const again: PendingUnit[] = [];
    reply.outcomes.forEach((outcome, index) => {
      const pending = batch[index];
      if (outcome.ok) pending.resolve(outcome.result);
      else if (outcome.error.retryable && pending.retries < this.settings.retriesMax) again.push(pending);
      else pending.reject(errorFromStoreReply(outcome.error));
    });
    if (again.length > 0) {
      // Retryable for these units alone (an overloaded or reopening partition): back off,
      // then coalesce them again, with the same command ids.
      const retry = Math.max(...again.map((pending) => pending.retries));
      this.counters.retries += again.length;
      await delay(Math.min(this.settings.retryDelayMs * 2 ** retry, this.settings.retryDelayMaxMs), undefined);
      for (const pending of again) pending.retries += 1;
      const coalescer = this.coalescers.get(partition) ?? { pending: [], inFlight: 0, scheduled: false };
      this.coalescers.set(partition, coalescer);
      coalescer.pending.unshift(...again);
      this.scheduleFlush(partition, coalescer);
    }
  }

  /** A batch-wide failure, as each unit's own error (its own command ids when nobody answered). */
  private forUnit(error: unknown, partition: string, commandIds: readonly string[]): unknown {
    if (error instanceof PartitionUnavailableError) {
      return new PartitionUnavailableError(partition, commandIds, { cause: error.cause, endpoints: this.transport.options.endpoints });
    }
    return error;
  }

  /** Sends one request, retrying retryable failures with the same bytes (same command ids). */
  private async call(
    partition: string,
    frame: Buffer,
    commandIds: readonly string[],
    signal: AbortSignal | undefined,
    service = partitionServiceName(partition),
  ): Promise<StoreReply> {
    this.counters.requests += 1;
    for (let retry = 0; ; retry++) {
      let failure: unknown;
      let retryable: boolean;
      try {
        const frames = await this.transport.request(service, [frame], { signal });
        const decoded = decodeStoreReply(frames);
        if (!decoded.ok) throw new MalformedStoreReplyError(service, decoded.problem);
        if (decoded.reply.kind !== 'error') return decoded.reply;
        failure = errorFromStoreReply(decoded.reply.error);
        retryable = decoded.reply.error.retryable;
      } catch (error) {
        failure = error;
        retryable = isRetryableTransportError(error);
      }
      if (!retryable || retry >= this.settings.retriesMax || signal?.aborted === true) {
        throw this.unavailable(partition, commandIds, failure);
      }
      this.counters.retries += 1;
      await delay(Math.min(this.settings.retryDelayMs * 2 ** retry, this.settings.retryDelayMaxMs), signal);
    }
  }

  /** A transport failure that means "nobody answered" becomes `PartitionUnavailableError`. */
  private unavailable(partition: string, commandIds: readonly string[], failure: unknown): unknown {
    const silent =
      isBrokerError(failure, 'SLUICE_BROKER_TIMEOUT') ||
      (failure instanceof BrokerRejectedError && failure.status === '504') ||
      (isBrokerError(failure, 'SLUICE_BROKER_REJECTED') && (failure as BrokerRejectedError).status === '504');
    if (!silent) return failure;
    return new PartitionUnavailableError(partition, commandIds, { cause: failure, endpoints: this.transport.options.endpoints });
  }

  private encode(request: StoreRequest): Buffer {
    return this.encodeWith(request.partition, () => encodeStoreRequest(request));
  }

  /** Encodes with `produce`, as a typed error the caller can act on, within `requestBytesMax`. */
  private encodeWith(partition: string, produce: () => Buffer): Buffer {
    let frame: Buffer;
    try {
      frame = produce();
    } catch (error) {
      if (error instanceof EncodeError) {
        throw new StoreInvalidRequestError(`[sluice/client] partition "${partition}": cannot encode the request: ${error.message}`);
      }
      throw error;
    }
    const limit = this.settings.requestBytesMax;
    if (frame.length > limit) {
      throw new StoreInvalidRequestError(
        `[sluice/client] partition "${partition}": the request is ${frame.length} bytes, over requestBytesMax (${limit}): ` +
          `split the unit of work, or raise requestBytesMax here and frameBytesMax on the brokers (limits.broker.frameBytesMax)`,
      );
    }
    return frame;
  }

  private assertKnown(partition: string): void {
    if (!this.known.has(partition)) {
      const known = [...this.known].map((name) => `"${name}"`).join(', ');
      throw new UnknownPartitionError(partition, `this client knows ${known || 'no partitions'}: check the name, or list it in the client's partitions option`);
    }
  }

  private unexpected(partition: string, reply: StoreReply, wanted: string): Error {
    return new MalformedStoreReplyError(partitionServiceName(partition), `expected ${wanted}, got a "${reply.kind}" reply`);
  }
}

/**
 * Creates a store client.
 *
 * @example
 * const client = createStoreClient({
 *   brokers: ['tcp://10.0.0.1:5555', 'tcp://10.0.0.2:5555'],
 *   routing: { hash: ['p1', 'p2', 'p3'] },
 * });
 */
export function createStoreClient(options: StoreClientOptions): StoreClient {
  return new StoreClient(options);
}

/**
 * The part of a `sluice.json` a client needs. A `SluiceConfig` from `@sluice/config` is one;
 * this package does not parse configs itself, so applications that build their options in
 * code do not install a config parser.
 */
export interface StoreClientConfig {
  readonly brokers: readonly string[];
  readonly routing: RoutingConfig;
  /** Every partition of the cluster, by name (only the names are used). */
  readonly partitions: Readonly<Record<string, unknown>>;
}

/**
 * Creates a store client from a cluster config: its brokers, its routing, and every partition
 * it defines addressable by name.
 *
 * @example
 * const client = createStoreClientFromConfig(await loadSluiceConfig('./sluice.json'), { timeoutMs: 2000 });
 */
export function createStoreClientFromConfig(
  config: StoreClientConfig,
  options: Partial<Omit<StoreClientOptions, 'routing'>> = {},
): StoreClient {
  return new StoreClient({
    ...options,
    brokers: options.brokers ?? config.brokers,
    routing: config.routing,
    partitions: [...Object.keys(config.partitions), ...(options.partitions ?? [])],
  });
}

/** Worth another try: nobody answered, or a broker refused for now. */
function isRetryableTransportError(error: unknown): boolean {
  if (isBrokerError(error, 'SLUICE_BROKER_TIMEOUT')) return true;
  if (isBrokerError(error, 'SLUICE_BROKER_REJECTED')) {
    const status = (error as BrokerRejectedError).status;
    // 504: no worker took it in time (a node restarting); 502: its workers were lost.
    return status === '502' || status === '503' || status === '504';
  }
  return false;
}

/** A prefetched page: its rejection is kept for the await that comes later (or never). */
function prefetch<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

function finiteOrUndefined(value: number): number | undefined {
  return Number.isFinite(value) ? value : undefined;
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted === true) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as Partial<T>;
}
