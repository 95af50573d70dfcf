import { EVENT_KIND_AT, EVENT_SEQ_AT, KIND_EVENT, readU32, readU53, SequenceChecker } from '@sluice/framing';
import type { RecordedEvent, SealedBatchBytes } from '@sluice/store';
import type { CheckpointStore } from './checkpoint-store.js';
import { SequenceGapError } from './errors.js';
import type { EventSource, Replayer } from './event-source.js';
import { compileFilter, type EventFilter } from './filter.js';

/** Options of {@link startSubscription}. */
export interface SubscriptionOptions {
  /** The subscriber's name: its checkpoint and parked messages are kept under it. */
  readonly subscriber: string;
  readonly source: EventSource;
  /**
   * Where missing seqs are fetched from when the sequence checker finds a gap.
   * @default the source, when it can `read` (an embedded partition can)
   */
  readonly replayer?: Replayer;
  readonly checkpoints: CheckpointStore;
  readonly filter?: EventFilter;
  /** Overrides `filter` with any predicate (the outbox dispatcher selects `$outbox` frames this way). */
  readonly predicate?: (event: RecordedEvent) => boolean;
  /** Handles one batch of matching events, in seq order. A throw stops the subscription (hosts catch per event and park). */
  readonly handle: (events: RecordedEvent[]) => Promise<void> | void;
  /**
   * Optional: handles batches as runs of frames in the source's sealed bytes instead of event
   * objects, when the source has `subscribeSealed` (an embedded `Partition`); the handler
   * filters itself and returns how many events it delivered. Frames the replayer fills a gap
   * with still go to `handle`. The projection host uses it to build no event objects.
   */
  readonly handleSealed?: (spans: readonly FrameSpan[]) => Promise<number> | number;
  /**
   * Most frames processed between two checkpoint saves (so also most events handed to `handle` at once).
   * @default 1000
   */
  readonly batchSizeMax?: number;
  /**
   * What a gap (missing seqs) does: `replay` fetches the missing range from the replayer and
   * delivers it in order; `raise` stops the subscription with a {@link SequenceGapError}.
   * @default 'replay'
   */
  readonly onGap?: 'replay' | 'raise';
  /**
   * Frames skipped by the filter after which the checkpoint is saved anyway, so a subscriber
   * that matches little does not re-read much after a restart. (A checkpoint is saved after
   * every batch that delivered events; one that delivered nothing is not saved, otherwise two
   * subscribers would wake each other with their own checkpoint commits for ever.)
   * @default 10000
   */
  readonly skippedFramesBeforeSaveMax?: number;
  /**
   * Batches handed to `handle` before the oldest must finish. Above 1, `handle` runs for the
   * next batch while earlier ones are still in flight (a saga host waiting on other
   * partitions); the position and checkpoint still pass a batch only once it and every
   * batch before it finished.
   * @default 1
   */
  readonly handleConcurrencyMax?: number;
}

/**
 * A run of consecutive event frames in a sealed batch's bytes, `bytes[start, end)`, `count`
 * frames ending at `lastSeq`: every frame's CRC-32C, the seq order and the grouping were checked
 * by the source (`Partition.subscribeSealed`), and the sequence checker passed each seq.
 */
export interface FrameSpan {
  readonly bytes: Uint8Array;
  readonly start: number;
  readonly end: number;
  readonly count: number;
  readonly lastSeq: number;
}

/** Counters of a running subscription. */
export interface SubscriptionStats {
  delivered: number;
  skipped: number;
  duplicatesDropped: number;
  gapsRepaired: number;
  replayedEvents: number;
  checkpointsSaved: number;
}

/** A running subscriber. */
export interface Subscription {
  readonly subscriber: string;
  /** Last seq processed (delivered or skipped). */
  readonly position: number;
  readonly stats: Readonly<SubscriptionStats>;
  /** Settles when the subscription ends: resolves after {@link stop}, rejects with the error that stopped it. */
  readonly done: Promise<void>;
  /** Resolves once {@link position} reaches `seq` (rejects if the subscription fails first). */
  waitFor(seq: number): Promise<void>;
  /** Ends the subscription after the batch in hand, saving the checkpoint. */
  stop(): Promise<void>;
}

/**
 * Reads a partition from the subscriber's checkpoint: catch-up in batches, then live. Every
 * frame passes a `SequenceChecker`: duplicates and late frames are dropped, gaps are
 * replayed from the replayer (or raised). The checkpoint is saved after each handled batch,
 * so a restart resumes where the last save left off (at-least-once: hosts make redelivery
 * harmless with deterministic ids).
 *
 * @example
 * const sub = startSubscription({
 *   subscriber: 'audit', source: partition, checkpoints: createStreamCheckpointStore(partition),
 *   filter: { streamPrefixes: ['account-'] },
 *   handle: (events) => { for (const e of events) console.log(e.seq, e.eventType); },
 * });
 * await sub.waitFor(partition.lastSeq);
 * await sub.stop();
 */
export function startSubscription(options: SubscriptionOptions): Subscription {
  return new SubscriptionRunner(options);
}

class SubscriptionRunner implements Subscription {
  readonly subscriber: string;
  readonly stats: SubscriptionStats = { delivered: 0, skipped: 0, duplicatesDropped: 0, gapsRepaired: 0, replayedEvents: 0, checkpointsSaved: 0 };
  readonly done: Promise<void>;
  private positionValue = 0;
  private savedPosition = 0;
  private readonly abort = new AbortController();
  private readonly matches: (event: RecordedEvent) => boolean;
  private readonly batchSizeMax: number;
  private readonly skippedMax: number;
  private readonly concurrencyMax: number;
  /** Batches in hand: `handled` resolves to the events delivered. */
  private handling: Array<{ seq: number; handled: Promise<number> }> = [];
  private waiters: Array<{ seq: number; resolve: () => void; reject: (error: unknown) => void }> = [];
  private failure: unknown;
  private ended = false;

  constructor(private readonly options: SubscriptionOptions) {
    this.subscriber = options.subscriber;
    this.matches = options.predicate ?? compileFilter(options.filter);
    this.batchSizeMax = options.batchSizeMax ?? 1000;
    this.skippedMax = options.skippedFramesBeforeSaveMax ?? 10_000;
    this.concurrencyMax = Math.max(1, options.handleConcurrencyMax ?? 1);
    this.done = this.run().then(
      () => this.finish(undefined),
      (error: unknown) => {
        this.finish(error);
        throw error;
      },
    );
    // The caller may only ever use waitFor/stop: do not report the rejection as unhandled twice.
    this.done.catch(() => undefined);
  }

  get position(): number {
    return this.positionValue;
  }

  waitFor(seq: number): Promise<void> {
    if (this.positionValue >= seq) return Promise.resolve();
    if (this.ended) return this.failure === undefined ? Promise.reject(new Error(`[sluice/subscriptions] "${this.subscriber}" stopped at ${this.positionValue} before ${seq}`)) : Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done.catch(() => undefined);
  }

  private async run(): Promise<void> {
    const { checkpoints, source } = this.options;
    const from = await checkpoints.load(this.subscriber);
    this.positionValue = from;
    this.savedPosition = from;
    const checker = new SequenceChecker({ nextSeq: from + 1 });
    const signal = this.abort.signal;
    if (this.options.handleSealed !== undefined && source.subscribeSealed !== undefined) {
      await this.runSealed(checker, from, source.subscribeSealed({ fromSeq: from + 1, signal }));
    } else {
      await this.runEvents(checker, from);
    }
    await this.drainAll();
    if (this.positionValue > this.savedPosition) await this.save();
  }

  private async runEvents(checker: SequenceChecker, from: number): Promise<void> {
    const { source } = this.options;
    const signal = this.abort.signal;
    // Small storage batches are gathered while more is already committed (catch-up), up to
    // batchSizeMax; at the head (live) whatever arrived is handled at once.
    let pending: RecordedEvent[] = [];
    for await (const batch of source.subscribe({ fromSeq: from + 1, signal })) {
      const ordered = await this.sequence(checker, batch);
      for (const event of ordered) pending.push(event);
      if (pending.length === 0) continue;
      if (pending.length < this.batchSizeMax && pending[pending.length - 1].seq < source.lastSeq && !signal.aborted) continue;
      await this.process(pending);
      pending = [];
      // Nothing more committed: finish the batches in hand so the position reaches the head.
      if (this.handling.length > 0 && this.positionValue < source.lastSeq && this.handling[this.handling.length - 1].seq >= source.lastSeq) await this.drainAll();
      if (signal.aborted) break;
    }
    if (pending.length > 0) await this.process(pending);
  }

  /**
   * As {@link runEvents} over sealed bytes: frames are gathered as spans of the batches' bytes
   * (no event objects), each seq passed through the checker; a gap is filled from the replayer
   * as event objects for `handle`, in order.
   */
  private async runSealed(checker: SequenceChecker, from: number, batches: AsyncIterable<SealedBatchBytes>): Promise<void> {
    const { source } = this.options;
    const signal = this.abort.signal;
    const sizeMax = this.batchSizeMax;
    let pending: FrameSpan[] = [];
    let pendingFrames = 0;
    const flush = async (): Promise<void> => {
      if (pendingFrames === 0) return;
      const spans = pending;
      const frames = pendingFrames;
      pending = [];
      pendingFrames = 0;
      await this.processSealed(spans, frames);
    };
    for await (const batch of batches) {
      const b = batch.bytes;
      let spanStart = 0;
      let spanFirst = 0;
      let spanCount = 0;
      let o = 0;
      // Event frames, then the marker (the source checked the layout; the marker ends the walk).
      while (o < b.length && b[o + EVENT_KIND_AT] === KIND_EVENT) {
        const n = readU32(b, o);
        const seq = readU53(b, o + EVENT_SEQ_AT);
        if (seq === checker.nextSeq + spanCount) {
          if (spanCount === 0) {
            spanStart = o;
            spanFirst = seq;
          }
          spanCount++;
          o += n;
          if (pendingFrames + spanCount >= sizeMax) {
            this.closeSpan(checker, pending, b, spanStart, o, spanFirst, spanCount);
            pendingFrames += spanCount;
            spanCount = 0;
            await flush();
          }
          continue;
        }
        if (spanCount > 0) {
          this.closeSpan(checker, pending, b, spanStart, o, spanFirst, spanCount);
          pendingFrames += spanCount;
          spanCount = 0;
        }
        o += n;
        // A batch may start before the seq asked for: its first frames are not duplicates.
        if (seq <= from) continue;
        const verdict = checker.check(seq);
        if (verdict.kind === 'gap') {
          await flush();
          const replayed: RecordedEvent[] = [];
          await this.repair(checker, verdict.missingFrom, verdict.missingTo, replayed);
          await this.process(replayed);
        } else if (verdict.kind !== 'next') {
          this.stats.duplicatesDropped++;
          continue;
        }
        // The checker has passed this frame already: a span of its own.
        pending.push({ bytes: b, start: o - n, end: o, count: 1, lastSeq: seq });
        if (++pendingFrames >= sizeMax) await flush();
      }
      if (spanCount > 0) {
        this.closeSpan(checker, pending, b, spanStart, o, spanFirst, spanCount);
        pendingFrames += spanCount;
      }
      if (pendingFrames === 0) continue;
      if (pendingFrames < sizeMax && pending[pending.length - 1].lastSeq < source.lastSeq && !signal.aborted) continue;
      await flush();
      if (this.handling.length > 0 && this.positionValue < source.lastSeq && this.handling[this.handling.length - 1].seq >= source.lastSeq) await this.drainAll();
      if (signal.aborted) break;
    }
    await flush();
  }

  /** Passes the span's seqs through the checker (they are the next ones) and adds it to `pending`. */
  private closeSpan(checker: SequenceChecker, pending: FrameSpan[], bytes: Uint8Array, start: number, end: number, firstSeq: number, count: number): void {
    const verdict = checker.checkRun(firstSeq, firstSeq + count - 1);
    // The walk only gathers seqs that follow the checker's: anything else is a bug in it.
    if (verdict.next !== count || verdict.gaps !== 0) throw new Error(`[sluice/subscriptions] bug: frames ${firstSeq}..${firstSeq + count - 1} are not the next seqs`);
    pending.push({ bytes, start, end, count, lastSeq: firstSeq + count - 1 });
  }

  /** Hands `spans` (`frames` frames, at most batchSizeMax) to `handleSealed`; the checkpoint follows as for {@link process}. */
  private async processSealed(spans: FrameSpan[], frames: number): Promise<void> {
    const handleSealed = this.options.handleSealed as NonNullable<SubscriptionOptions['handleSealed']>;
    const seq = spans[spans.length - 1].lastSeq;
    const handled = Promise.resolve(handleSealed(spans)).then((delivered) => {
      this.stats.delivered += delivered;
      this.stats.skipped += frames - delivered;
      return delivered;
    });
    handled.catch(() => undefined);
    this.handling.push({ seq, handled });
    if (this.handling.length >= this.concurrencyMax) await this.drainOne();
  }

  /** Handles `ordered` in chunks of batchSizeMax frames; the checkpoint follows each handled chunk, in order. */
  private async process(ordered: RecordedEvent[]): Promise<void> {
    for (let start = 0; start < ordered.length; start += this.batchSizeMax) {
      const chunk = start === 0 && ordered.length <= this.batchSizeMax ? ordered : ordered.slice(start, start + this.batchSizeMax);
      const matching: RecordedEvent[] = [];
      for (const event of chunk) if (this.matches(event)) matching.push(event);
      this.stats.delivered += matching.length;
      this.stats.skipped += chunk.length - matching.length;
      const seq = chunk[chunk.length - 1].seq;
      if (matching.length === 0 && this.handling.length === 0) {
        this.advance(seq);
        if (this.positionValue - this.savedPosition >= this.skippedMax) await this.save();
        continue;
      }
      const delivered = matching.length;
      const handled = delivered === 0 ? Promise.resolve(0) : Promise.resolve(this.options.handle(matching)).then(() => delivered);
      // Reported in order by drainOne; keep an early failure from being reported as unhandled meanwhile.
      handled.catch(() => undefined);
      this.handling.push({ seq, handled });
      if (this.handling.length >= this.concurrencyMax) await this.drainOne();
    }
  }

  /** Waits for the oldest batch in hand; only then does the position (and the checkpoint) pass it. */
  private async drainOne(): Promise<void> {
    const head = this.handling[0];
    const delivered = await head.handled;
    this.handling.shift();
    this.advance(head.seq);
    if (delivered > 0 || this.positionValue - this.savedPosition >= this.skippedMax) await this.save();
  }

  private async drainAll(): Promise<void> {
    while (this.handling.length > 0) await this.drainOne();
  }

  private advance(seq: number): void {
    this.positionValue = seq;
    this.wake();
  }

  private async save(): Promise<void> {
    await this.options.checkpoints.save(this.subscriber, this.positionValue);
    this.savedPosition = this.positionValue;
    this.stats.checkpointsSaved++;
  }

  /** Passes each frame through the checker: drops duplicates and late frames, fills gaps from the replayer. */
  private async sequence(checker: SequenceChecker, batch: readonly RecordedEvent[]): Promise<RecordedEvent[]> {
    // Fast path: the batch is exactly the next run of seqs (always so for an embedded partition).
    const first = batch[0]?.seq;
    if (first === checker.nextSeq && batch[batch.length - 1].seq === first + batch.length - 1) {
      let contiguous = true;
      for (let i = 1; i < batch.length; i++) if (batch[i].seq !== first + i) { contiguous = false; break; }
      if (contiguous) {
        for (let i = 0; i < batch.length; i++) checker.check(batch[i].seq);
        return batch as RecordedEvent[];
      }
    }
    const out: RecordedEvent[] = [];
    for (const event of batch) {
      const verdict = checker.check(event.seq);
      if (verdict.kind === 'next') {
        out.push(event);
      } else if (verdict.kind === 'gap') {
        await this.repair(checker, verdict.missingFrom, verdict.missingTo, out);
        out.push(event);
      } else {
        // A duplicate, or a late frame of a range already replayed: delivering it would deliver it twice.
        this.stats.duplicatesDropped++;
      }
    }
    return out;
  }

  private async repair(checker: SequenceChecker, missingFrom: number, missingTo: number, out: RecordedEvent[]): Promise<void> {
    if ((this.options.onGap ?? 'replay') === 'raise') {
      throw new SequenceGapError(this.subscriber, missingFrom, missingTo, 'onGap is "raise"');
    }
    const replayer = this.options.replayer ?? (this.options.source as unknown as Partial<Replayer>);
    if (typeof replayer.read !== 'function') {
      throw new SequenceGapError(this.subscriber, missingFrom, missingTo, 'no replayer to fetch them from: pass options.replayer');
    }
    let expected = missingFrom;
    for await (const event of replayer.read({ fromSeq: missingFrom, toSeq: missingTo })) {
      if (event.seq !== expected) break;
      checker.check(event.seq);
      out.push(event);
      expected++;
    }
    if (expected !== missingTo + 1) {
      throw new SequenceGapError(this.subscriber, missingFrom, missingTo, `the replayer returned seqs up to ${expected - 1} only`);
    }
    this.stats.gapsRepaired++;
    this.stats.replayedEvents += missingTo - missingFrom + 1;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const position = this.positionValue;
    const still: typeof this.waiters = [];
    for (const waiter of this.waiters) {
      if (waiter.seq <= position) waiter.resolve();
      else still.push(waiter);
    }
    this.waiters = still;
  }

  private finish(error: unknown): void {
    this.ended = true;
    this.failure = error;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      if (waiter.seq <= this.positionValue) waiter.resolve();
      else waiter.reject(error ?? new Error(`[sluice/subscriptions] "${this.subscriber}" stopped at ${this.positionValue} before ${waiter.seq}`));
    }
  }
}
