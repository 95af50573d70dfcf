import type { Partition } from '@sluice/store';
import {
  EventsPageBuilder,
  storeErrorInfo,
  decodeStoreRequest,
  encodeCommittedManyReply,
  encodeCommittedReply,
  encodeErrorReply,
  encodeHeadReply,
  type ReadStoreRequest,
  type ReadStreamStoreRequest,
  type StoreErrorInfo,
  type StoreRequest,
  type SubscribeStoreRequest,
  type UnitOutcome,
} from '@sluice/client';

/** Limits of one partition's request handler. */
export interface PartitionHandlerLimits {
  /** Largest read reply, in bytes (a single larger event is still sent alone). */
  readonly pageBytesMax: number;
  /** Most events in one read reply. */
  readonly pageEventsMax: number;
  /** Longest a subscribe request waits for a commit before an empty reply. */
  readonly subscribeWaitMsMax: number;
}

/** Counters of a {@link PartitionHandler}. */
export interface PartitionHandlerStats {
  readonly appends: number;
  readonly reads: number;
  readonly heads: number;
  /** Requests answered with an error reply, by code. */
  readonly errors: Readonly<Record<string, number>>;
  /** Requests being handled now. */
  readonly inFlight: number;
  /** The most requests handled at once since the handler started (a high-water mark of `inFlight`). */
  readonly inFlightMost: number;
}

/**
 * Serves the store protocol for one partition: decodes a request body, runs it on the
 * partition, encodes the reply. It never throws and never rejects: a malformed body, a
 * request for another partition and every store error become typed error replies, so the
 * worker keeps serving whatever arrives.
 */
export class PartitionHandler {
  private closing = false;
  private inFlight = 0;
  private inFlightMost = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly counters = { appends: 0, reads: 0, heads: 0 };
  private readonly errors: Record<string, number> = {};

  constructor(
    /** The open partition; replaced by {@link replace} when the node reopens a faulted one. */
    public partition: Partition,
    private readonly limits: PartitionHandlerLimits,
    /** Names the node in error messages. */
    private readonly nodeName: string,
    /** Called once per faulted partition instance, when a request finds it faulted (a write or sync failed). */
    private readonly onFault: (partition: Partition, error: unknown) => void = () => undefined,
  ) {}

  /** Serves `partition` from now on (the node reopened a faulted one). */
  replace(partition: Partition): void {
    this.partition = partition;
  }

  /** The MDP worker handler: request body frames in, reply body frames out. */
  readonly handle = async (frames: Buffer[]): Promise<Buffer[]> => {
    this.inFlight += 1;
    if (this.inFlight > this.inFlightMost) this.inFlightMost = this.inFlight;
    try {
      return [await this.reply(frames)];
    } finally {
      this.inFlight -= 1;
      if (this.inFlight === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  };

  /**
   * Stops taking requests: from now on each is answered with a retryable `partition-closed`
   * error (the client retries; the broker sends the retry to another worker or a restarted
   * node). Resolves when the requests already being handled have been answered.
   */
  drain(): Promise<void> {
    this.closing = true;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stats(): PartitionHandlerStats {
    return { ...this.counters, errors: { ...this.errors }, inFlight: this.inFlight, inFlightMost: this.inFlightMost };
  }

  private async reply(frames: Buffer[]): Promise<Buffer> {
    const decoded = decodeStoreRequest(frames);
    if (!decoded.ok) return this.error(decoded.error);
    const request = decoded.request;
    const name = this.partition.name;
    if (request.partition !== name) {
      return this.error({
        code: 'unknown-partition',
        partition: request.partition,
        retryable: false,
        message:
          `[sluice/node] node "${this.nodeName}" got a request for partition "${request.partition}" on the ` +
          `service of partition "${name}": send each partition's requests to its service, sluice.partition.<name>`,
      });
    }
    if (this.closing) {
      return this.error({
        code: 'partition-closed',
        partition: name,
        retryable: true,
        message:
          `[sluice/node] node "${this.nodeName}" is closing partition "${name}": the request was not applied; ` +
          `retry it (the store client does), it reaches the partition once a node serves it again`,
      });
    }
    const partition = this.partition;
    try {
      return await this.run(request);
    } catch (error) {
      // A failed write or sync faults the partition (DESIGN.md invariant 9): tell the node,
      // which reports it and reopens the partition per its policy.
      if (!this.closing && !partition.isWritable) this.onFault(partition, error);
      return this.error(storeErrorInfo(error, name));
    }
  }

  private async run(request: StoreRequest): Promise<Buffer> {
    switch (request.op) {
      case 'append':
        this.counters.appends += 1;
        return encodeCommittedReply(await this.partition.commit(request.unit));
      case 'append-many': {
        // Each unit is its own commit (own expected versions, command ids, outcome); queued
        // together, they share the partition's group commits.
        this.counters.appends += request.units.length;
        const partition = this.partition;
        const outcomes = await Promise.all(
          request.units.map((unit) =>
            partition.commit(unit).then(
              (result): UnitOutcome => ({ ok: true, result }),
              (error: unknown): UnitOutcome => {
                if (!this.closing && !partition.isWritable) this.onFault(partition, error);
                const info = storeErrorInfo(error, partition.name);
                this.errors[info.code] = (this.errors[info.code] ?? 0) + 1;
                return { ok: false, error: info };
              },
            ),
          ),
        );
        return encodeCommittedManyReply(outcomes);
      }
      case 'append-framed': {
        // The fast path: each unit's events arrive as the frames the log stores; the partition
        // checks their CRCs, stamps them and copies them to disk (one encoding, client to disk).
        this.counters.appends += request.units.length;
        const partition = this.partition;
        const outcomes = await Promise.all(
          request.units.map((unit) =>
            partition.appendEncoded({ frames: unit.frames, expectedVersion: unit.expectedVersion }).then(
              (result): UnitOutcome => ({ ok: true, result }),
              (error: unknown): UnitOutcome => this.unitFailed(partition, error),
            ),
          ),
        );
        return encodeCommittedManyReply(outcomes);
      }
      case 'read':
        this.counters.reads += 1;
        return this.read(request);
      case 'subscribe':
        this.counters.reads += 1;
        return this.subscribe(request);
      case 'read-stream':
        this.counters.reads += 1;
        return this.readStream(request);
      case 'head': {
        this.counters.heads += 1;
        const p = this.partition;
        return encodeHeadReply({
          partition: p.name,
          lastSeq: p.lastSeq,
          epoch: p.epoch,
          writable: p.isWritable,
          streamCount: p.streamCount,
          streamVersion: request.streamId === undefined ? undefined : p.streamVersion(request.streamId),
          recovery:
            p.recovery.droppedSeqs > 0 || p.recovery.droppedBytes > 0
              ? { droppedSeqs: p.recovery.droppedSeqs, droppedBytes: p.recovery.droppedBytes, droppedReason: p.recovery.droppedReason }
              : undefined,
        });
      }
    }
  }

  private async read(request: ReadStoreRequest): Promise<Buffer> {
    const p = this.partition;
    const lastSeq = p.lastSeq;
    const fromSeq = Math.max(1, request.fromSeq);
    const toSeq = Math.min(request.toSeq ?? lastSeq, lastSeq);
    const page = this.page(request.pageBytesMax, request.maxCount);
    let next = fromSeq;
    let more = false;
    if (fromSeq <= toSeq) {
      // One event past the page's budget, to tell whether more follow.
      for await (const event of p.read({ fromSeq, toSeq, maxCount: page.eventsMax + 1 })) {
        if (!page.tryAdd(event)) {
          more = true;
          break;
        }
        next = event.seq + 1;
      }
    }
    if (more && request.maxCount !== undefined && page.count >= request.maxCount) more = false;
    return page.finish({ next, more, lastSeq });
  }

  /**
   * Answers at once with what is committed from `fromSeq`, or at the next commit, or with an
   * empty page after `waitMs` (at most the node's `subscribeWaitMsMax`): the commit is pushed
   * to the waiting subscriber as soon as it is durable.
   */
  private async subscribe(request: SubscribeStoreRequest): Promise<Buffer> {
    const p = this.partition;
    const fromSeq = Math.max(1, request.fromSeq);
    const page = this.page(request.pageBytesMax, request.maxCount);
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), Math.min(request.waitMs, this.limits.subscribeWaitMsMax));
    let next = fromSeq;
    let more = false;
    try {
      for await (const batch of p.subscribe({ fromSeq, signal: stop.signal })) {
        for (const event of batch) {
          if (!page.tryAdd(event)) {
            more = true;
            break;
          }
          next = event.seq + 1;
        }
        // The first batch is the news: answer now (the subscriber asks again for more).
        if (page.count > 0) break;
      }
    } finally {
      clearTimeout(timer);
      stop.abort();
    }
    const lastSeq = p.lastSeq;
    if (!more && next <= lastSeq) more = true;
    return page.finish({ next, more, lastSeq });
  }

  private async readStream(request: ReadStreamStoreRequest): Promise<Buffer> {
    const p = this.partition;
    const lastSeq = p.lastSeq;
    const fromVersion = Math.max(1, request.fromVersion);
    const page = this.page(request.pageBytesMax, request.maxCount);
    let next = fromVersion;
    let more = false;
    const toVersion = request.toVersion;
    for await (const event of p.readStream(request.streamId, { fromVersion, maxCount: page.eventsMax + 1 })) {
      if (toVersion !== undefined && event.streamVersion > toVersion) break;
      if (!page.tryAdd(event)) {
        more = true;
        break;
      }
      next = event.streamVersion + 1;
    }
    if (more && request.maxCount !== undefined && page.count >= request.maxCount) more = false;
    return page.finish({ next, more, lastSeq });
  }

  private unitFailed(partition: Partition, error: unknown): UnitOutcome {
    if (!this.closing && !partition.isWritable) this.onFault(partition, error);
    const info = storeErrorInfo(error, partition.name);
    this.errors[info.code] = (this.errors[info.code] ?? 0) + 1;
    return { ok: false, error: info };
  }

  private page(pageBytesMax: number | undefined, maxCount: number | undefined): EventsPageBuilder {
    const bytes = Math.min(pageBytesMax ?? this.limits.pageBytesMax, this.limits.pageBytesMax);
    const events = Math.min(maxCount ?? this.limits.pageEventsMax, this.limits.pageEventsMax);
    return new EventsPageBuilder(bytes, events);
  }

  private error(info: StoreErrorInfo): Buffer {
    this.errors[info.code] = (this.errors[info.code] ?? 0) + 1;
    return encodeErrorReply(info);
  }
}
