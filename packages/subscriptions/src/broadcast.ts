import { SequenceChecker } from '@sluice/framing';
import type { RecordedEvent } from '@sluice/store';
import { randomInt } from 'node:crypto';
import { DatagramEncoder, FrameRun, decodeDatagram, encodeDataDatagrams, encodeHeartbeat } from './broadcast-codec.js';
import type { DatagramReceiver, DatagramSender } from './broadcast-transport.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type { EventSource, Replayer } from './event-source.js';

// ───────────────────────────── publisher ─────────────────────────────

/** Options of {@link startBroadcastPublisher}. */
export interface BroadcastPublisherOptions {
  /** The partition whose committed log is broadcast (an embedded `Partition`, or any `EventSource`). */
  readonly source: EventSource;
  readonly sender: DatagramSender;
  /**
   * First seq broadcast. Receivers get anything before it (and anything lost) from their replayer.
   * @default source.lastSeq + 1 (live only)
   */
  readonly fromSeq?: number;
  /**
   * Largest datagram in bytes; a batch is split over as many datagrams as it needs. 1400 fits
   * an Ethernet MTU without IP fragmentation; loopback takes up to 65507.
   * @default 16384
   */
  readonly datagramBytesMax?: number;
  /**
   * When nothing was sent for this long, the publisher announces the last seq it sent (from
   * the start: `fromSeq - 1`, the partition's head by default), so receivers notice a lost tail
   * (and commits made while no publisher ran). Not the partition's head while the publisher is
   * behind it: receivers would fetch from the replayer what the publisher is about to send.
   * @default 100
   */
  readonly heartbeatMs?: number;
}

/** Counters of a publisher. */
export interface BroadcastPublisherStats {
  events: number;
  datagrams: number;
  bytes: number;
  heartbeats: number;
  /** Frames too large for one datagram, left to the receivers' repair. */
  oversized: number;
}

export interface BroadcastPublisher {
  /** Random per start: receivers can tell a restarted publisher apart. */
  readonly session: number;
  readonly stats: Readonly<BroadcastPublisherStats>;
  /** Last seq sent. */
  readonly lastSent: number;
  readonly done: Promise<void>;
  /** Stops reading and sending (the sender stays open: the caller owns it). */
  stop(): Promise<void>;
}

/**
 * Broadcasts a partition's committed batches as datagrams: each carries the partition name, a
 * contiguous seq range and its event frames as stored, checksummed (CRC-32C). A source with
 * `subscribeSealed` (an embedded `Partition`) hands over the sealed batch bytes, which are
 * copied into datagrams as they are: no event is decoded or encoded on the way. Best effort by
 * design: what the network loses, duplicates or reorders, the receivers put right by seq and
 * repair by replay.
 */
export function startBroadcastPublisher(options: BroadcastPublisherOptions): BroadcastPublisher {
  const { source, sender } = options;
  const datagramBytesMax = Math.min(options.datagramBytesMax ?? 16384, 65507);
  const heartbeatMs = options.heartbeatMs ?? 100;
  const session = randomInt(1, 0xffffffff);
  const stats: BroadcastPublisherStats = { events: 0, datagrams: 0, bytes: 0, heartbeats: 0, oversized: 0 };
  const abort = new AbortController();
  let lastSent = (options.fromSeq ?? source.lastSeq + 1) - 1;
  let sentSinceTick = false;
  const timer = setInterval(() => {
    if (!sentSinceTick) {
      // What was sent, not source.lastSeq: commits not sent yet are on their way, not lost.
      const beat = encodeHeartbeat(source.name, session, lastSent);
      sender.send(beat);
      stats.heartbeats++;
    }
    sentSinceTick = false;
  }, heartbeatMs);
  timer.unref();
  let sinceYield = 0;
  const pause = async () => {
    // Let the socket drain and same-process receivers run: a burst is not one long task.
    if (++sinceYield >= 32) {
      sinceYield = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  const send = async (datagrams: Uint8Array[]) => {
    for (const d of datagrams) {
      sender.send(d);
      stats.datagrams++;
      stats.bytes += d.length;
      await pause();
    }
    datagrams.length = 0;
  };
  const sendParts = sender.sendParts?.bind(sender);
  const sendGathered = async (datagrams: Uint8Array[][]) => {
    for (const parts of datagrams) {
      if (sendParts !== undefined) sendParts(parts);
      else sender.send(Buffer.concat(parts));
      stats.datagrams++;
      stats.bytes += parts[0].length + parts[1].length + parts[2].length;
      await pause();
    }
    datagrams.length = 0;
  };
  const run = async () => {
    const oversized: number[] = [];
    if (source.subscribeSealed !== undefined) {
      const encoder = new DatagramEncoder(source.name, session, datagramBytesMax);
      const gathered: Uint8Array[][] = [];
      for await (const batch of source.subscribeSealed({ fromSeq: lastSent + 1, signal: abort.signal })) {
        if (batch.lastSeq <= lastSent) continue;
        const from = lastSent + 1;
        // Sealed batch bytes are never modified: the datagrams' frames stay views of them.
        encoder.encodeParts(batch.bytes, batch.firstSeq, from, gathered, oversized);
        await sendGathered(gathered);
        stats.oversized += oversized.length;
        oversized.length = 0;
        stats.events += batch.lastSeq - Math.max(from, batch.firstSeq) + 1;
        lastSent = batch.lastSeq;
        sentSinceTick = true;
        if (abort.signal.aborted) break;
      }
      return;
    }
    for await (const batch of source.subscribe({ fromSeq: lastSent + 1, signal: abort.signal })) {
      if (batch.length === 0) continue;
      const encoded = encodeDataDatagrams(source.name, session, batch, datagramBytesMax);
      await send(encoded.datagrams);
      stats.oversized += encoded.oversized.length;
      stats.events += batch.length;
      lastSent = batch[batch.length - 1].seq;
      sentSinceTick = true;
      if (abort.signal.aborted) break;
    }
  };
  const done = run().finally(() => clearInterval(timer));
  done.catch(() => undefined);
  return {
    session,
    stats,
    get lastSent() {
      return lastSent;
    },
    done,
    async stop() {
      abort.abort();
      clearInterval(timer);
      await done.catch(() => undefined);
    },
  };
}

// ───────────────────────────── receiver ─────────────────────────────

/** Options of {@link startBroadcastReceiver}. */
export interface BroadcastReceiverOptions {
  /** The partition this receiver follows; datagrams of other partitions are ignored. */
  readonly partition: string;
  readonly receiver: DatagramReceiver;
  /** Where gaps and the catch-up are read from (`partition.read` in process; the broker's replayer remotely). */
  readonly replayer: Replayer;
  /**
   * Handles events in seq order, each exactly once per run (at-least-once across restarts,
   * like any subscriber), decoded to objects. Give this or `handleFrames`.
   */
  readonly handle?: (events: RecordedEvent[]) => Promise<void> | void;
  /**
   * Like `handle`, but gets each run of consecutive events as it arrived: its stored frames,
   * verified (datagram CRC-32C over every byte, each frame's kind, lengths and seq), not yet
   * decoded; `run.events` decodes them on demand. The fast path for consumers that forward or
   * store frames, or look at a few events only. Give this or `handle`.
   */
  readonly handleFrames?: (run: FrameRun) => Promise<void> | void;
  /** With `checkpoints`: the name the position is kept under. */
  readonly subscriber?: string;
  /** Where the position is loaded from at start and saved to every `checkpointEveryFrames` and at stop. */
  readonly checkpoints?: CheckpointStore;
  /** Without checkpoints: the last seq already processed. @default 0 */
  readonly fromCheckpoint?: number;
  /**
   * Frames held ahead of a gap while waiting for it to fill; beyond this the gap is repaired at once.
   * @default 65536
   */
  readonly reorderBufferMax?: number;
  /**
   * How long a gap may stay open (a late datagram may still fill it) before it is repaired from the replayer.
   * @default 50
   */
  readonly gapTimeoutMs?: number;
  /** @default 10000 */
  readonly checkpointEveryFrames?: number;
  /** Most events per `handle` call during catch-up and repairs. @default 1000 */
  readonly batchSizeMax?: number;
  /** Datagrams queued while a repair or `handle` runs; newer ones are dropped (and repaired later). @default 8192 */
  readonly inboxMax?: number;
}

/** Counters of a receiver. */
export interface BroadcastReceiverStats {
  datagrams: number;
  /** Datagrams rejected: bad checksum, garbage, another partition. */
  invalid: number;
  /** Datagrams dropped because the inbox was full (repaired later). */
  inboxDropped: number;
  /** Frames as the sequence checker classified them on arrival. */
  framesNext: number;
  framesOutOfOrder: number;
  framesDuplicate: number;
  /** Times the checker saw seqs skipped. */
  gapsDetected: number;
  /** Replays from the replayer (catch-up, timed-out gaps, buffer overflow, lost tail). */
  repairs: number;
  repairedEvents: number;
  delivered: number;
  heartbeats: number;
  checkpointsSaved: number;
}

export interface BroadcastReceiver {
  /** Last seq handled. */
  readonly position: number;
  /** Highest seq the broadcast announced (data or heartbeat). */
  readonly knownHead: number;
  readonly stats: Readonly<BroadcastReceiverStats>;
  readonly done: Promise<void>;
  waitFor(seq: number): Promise<void>;
  /** Stops after the work in hand and saves the checkpoint (the datagram receiver stays open: the caller owns it). */
  stop(): Promise<void>;
}

/**
 * Follows a partition's broadcast: catches up from its checkpoint through the replayer, then
 * takes datagrams, orders them by seq, drops duplicates, holds frames that arrive ahead of a
 * gap in a bounded reorder buffer, and repairs a gap from the replayer when it stays open for
 * `gapTimeoutMs` (or the buffer fills, or a heartbeat shows a lost tail). `handle` sees every
 * seq once, in order, with no gap.
 */
export function startBroadcastReceiver(options: BroadcastReceiverOptions): BroadcastReceiver {
  return new Receiver(options);
}


type Inbound = Uint8Array | 'gap-timer';

/** Alternations of frame runs and single events one repair makes before leaving the rest to the gap timer. */
const REPAIR_ROUNDS_MAX = 1024;

class Receiver implements BroadcastReceiver {
  readonly stats: BroadcastReceiverStats = {
    datagrams: 0,
    invalid: 0,
    inboxDropped: 0,
    framesNext: 0,
    framesOutOfOrder: 0,
    framesDuplicate: 0,
    gapsDetected: 0,
    repairs: 0,
    repairedEvents: 0,
    delivered: 0,
    heartbeats: 0,
    checkpointsSaved: 0,
  };
  readonly done: Promise<void>;
  private next = 1;
  private head = 0;
  private saved = 0;
  private checker = new SequenceChecker();
  private readonly segments: FrameRun[] = [];
  private bufferedFrames = 0;
  private inbox: Inbound[] = [];
  private wakeLoop: (() => void) | undefined;
  private stopping = false;
  private gapTimer: NodeJS.Timeout | undefined;
  private gapNext = 0;
  private waiters: Array<{ seq: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private ended = false;
  private failure: unknown;
  private readonly reorderMax: number;
  private readonly gapTimeoutMs: number;
  private readonly checkpointEvery: number;
  private readonly batchMax: number;
  private readonly inboxMax: number;

  private readonly handler: (run: FrameRun) => Promise<void> | void;

  constructor(private readonly options: BroadcastReceiverOptions) {
    const { handle, handleFrames } = options;
    if ((handle === undefined) === (handleFrames === undefined)) {
      throw new TypeError('[sluice/subscriptions] startBroadcastReceiver: give exactly one of handle (decoded events) and handleFrames (frame runs)');
    }
    this.handler = handleFrames ?? ((run) => handle?.(run.events));
    this.reorderMax = options.reorderBufferMax ?? 65536;
    this.gapTimeoutMs = options.gapTimeoutMs ?? 50;
    this.checkpointEvery = options.checkpointEveryFrames ?? 10_000;
    this.batchMax = options.batchSizeMax ?? 1000;
    this.inboxMax = options.inboxMax ?? 8192;
    options.receiver.onDatagram((d) => {
      if (this.stopping) return;
      if (this.inbox.length >= this.inboxMax) {
        this.stats.inboxDropped++;
        return;
      }
      this.inbox.push(d);
      this.wake();
    });
    this.done = this.run().then(
      () => this.finish(undefined),
      (error: unknown) => {
        this.finish(error);
        throw error;
      },
    );
    this.done.catch(() => undefined);
  }

  get position(): number {
    return this.next - 1;
  }

  get knownHead(): number {
    return this.head;
  }

  waitFor(seq: number): Promise<void> {
    if (this.position >= seq) return Promise.resolve();
    if (this.ended) return Promise.reject(this.failure ?? new Error(`[sluice/subscriptions] broadcast receiver stopped at ${this.position} before ${seq}`));
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.done.catch(() => undefined);
  }

  private wake(): void {
    const w = this.wakeLoop;
    if (w) {
      this.wakeLoop = undefined;
      w();
    }
  }

  private async run(): Promise<void> {
    const { checkpoints, subscriber } = this.options;
    const from = checkpoints ? await checkpoints.load(subscriber ?? 'broadcast') : (this.options.fromCheckpoint ?? 0);
    this.next = from + 1;
    this.saved = from;
    this.checker = new SequenceChecker({ nextSeq: this.next });
    // A late joiner: catch up to the replayer's head first; datagrams queue meanwhile.
    await this.repair(undefined);
    this.head = Math.max(this.head, this.position);
    while (!this.stopping) {
      if (this.inbox.length === 0) {
        await new Promise<void>((resolve) => (this.wakeLoop = resolve));
        continue;
      }
      const inbox = this.inbox;
      this.inbox = [];
      for (const item of inbox) {
        if (this.stopping) break;
        if (item === 'gap-timer') await this.onGapTimer();
        else await this.onDatagram(item);
      }
      this.armGapTimer();
    }
    if (this.gapTimer) clearTimeout(this.gapTimer);
    if (checkpoints && this.position > this.saved) await this.save();
  }

  private async onDatagram(bytes: Uint8Array): Promise<void> {
    this.stats.datagrams++;
    const d = decodeDatagram(bytes);
    if (d === undefined || d.partition !== this.options.partition) {
      this.stats.invalid++;
      return;
    }
    if (d.kind === 'heartbeat') {
      this.stats.heartbeats++;
      if (d.headSeq > this.head) this.head = d.headSeq;
      return;
    }
    const run = d.run;
    const first = run.firstSeq;
    const last = run.lastSeq;
    this.classify(first, last);
    if (last > this.head) this.head = last;
    if (last < this.next) return;
    if (first <= this.next) {
      await this.deliver(run.from(this.next));
      await this.drainSegments();
      return;
    }
    this.hold(run);
    if (this.bufferedFrames > this.reorderMax) await this.repairToBuffer();
  }

  /** Arrival-order classification by the framing package's checker (statistics; delivery is by `next`). */
  private classify(first: number, last: number): void {
    const v = this.checker.checkRun(first, last);
    this.stats.framesNext += v.next;
    this.stats.gapsDetected += v.gaps;
    this.stats.framesOutOfOrder += v.outOfOrder;
    this.stats.framesDuplicate += v.duplicate;
  }

  private hold(segment: FrameRun): void {
    const s = this.segments;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid].firstSeq < segment.firstSeq) lo = mid + 1;
      else hi = mid;
    }
    if (lo < s.length && s[lo].firstSeq === segment.firstSeq && s[lo].lastSeq >= segment.lastSeq) return; // duplicate of one held
    s.splice(lo, 0, segment);
    this.bufferedFrames += segment.length;
  }

  private async drainSegments(): Promise<void> {
    const s = this.segments;
    while (s.length > 0 && s[0].firstSeq <= this.next) {
      const seg = s.shift() as FrameRun;
      this.bufferedFrames -= seg.length;
      if (seg.lastSeq >= this.next) await this.deliver(seg.from(this.next));
    }
  }

  private armGapTimer(): void {
    if (this.stopping || this.next > this.head) {
      if (this.gapTimer) clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
      return;
    }
    if (this.gapTimer && this.gapNext === this.next) return;
    if (this.gapTimer) clearTimeout(this.gapTimer);
    this.gapNext = this.next;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      this.inbox.push('gap-timer');
      this.wake();
    }, this.gapTimeoutMs);
  }

  private async onGapTimer(): Promise<void> {
    // Progress since the timer was set: the gap it was set for is gone; a new one gets its own timeout.
    if (this.next !== this.gapNext || this.next > this.head) return;
    await this.repairToBuffer();
  }

  /** Repairs from `next` up to the first held segment (or the announced head), then drains the buffer. */
  private async repairToBuffer(): Promise<void> {
    const to = this.segments.length > 0 ? this.segments[0].firstSeq - 1 : this.head;
    if (to >= this.next) await this.repair(to);
    await this.drainSegments();
  }

  private async repair(toSeq: number | undefined): Promise<void> {
    if (this.options.replayer.readFrames === undefined) return this.repairEvents(toSeq, undefined);
    // Frame runs first; where they stop short (a frame too large for any datagram, say) one event
    // through read(), then runs again. Bounded: the gap's timer picks up whatever is left.
    for (let round = 0; round < REPAIR_ROUNDS_MAX; round++) {
      await this.repairFrames(toSeq);
      if (toSeq !== undefined && this.next > toSeq) return;
      const before = this.next;
      await this.repairEvents(toSeq, 1);
      if (this.next === before) return; // nothing more (the head) or the replayer is down
    }
  }

  /** Repairs with events from `read()`: only the replayer's failures are caught, never `handle`'s (those end the receiver). */
  private async repairEvents(toSeq: number | undefined, maxCount: number | undefined): Promise<void> {
    const fromSeq = this.next;
    let chunk: RecordedEvent[] = [];
    let count = 0;
    for await (const event of whileReplayerAnswers(this.options.replayer.read(maxCount === undefined ? { fromSeq, toSeq } : { fromSeq, toSeq, maxCount }))) {
      if (event.seq !== this.next + chunk.length) break;
      chunk.push(event);
      if (chunk.length >= this.batchMax) {
        count += chunk.length;
        await this.deliver(FrameRun.ofEvents(chunk), true);
        chunk = [];
      }
    }
    if (chunk.length > 0) {
      count += chunk.length;
      await this.deliver(FrameRun.ofEvents(chunk), true);
    }
    this.countRepair(count);
  }

  /** Repairs with frame runs (no event objects on the way): only the replayer's failures are caught, never `handle`'s. */
  private async repairFrames(toSeq: number | undefined): Promise<void> {
    const source = this.options.replayer.readFrames?.({ fromSeq: this.next, toSeq });
    if (source === undefined) return;
    let count = 0;
    for await (const run of whileReplayerAnswers(source)) {
      if (run.firstSeq > this.next || run.lastSeq < this.next) break; // not what was asked: the gap stays open
      const part = run.from(this.next);
      count += part.length;
      await this.deliver(part, true);
    }
    this.countRepair(count);
  }

  private countRepair(events: number): void {
    if (events === 0) return;
    this.stats.repairs++;
    this.stats.repairedEvents += events;
  }

  private async deliver(run: FrameRun, repaired = false): Promise<void> {
    if (repaired) this.checker.checkRun(run.firstSeq, run.lastSeq);
    const result = this.handler(run);
    if (result !== undefined) await result;
    this.next = run.lastSeq + 1;
    this.stats.delivered += run.length;
    if (this.options.checkpoints && this.position - this.saved >= this.checkpointEvery) await this.save();
    if (this.waiters.length > 0) {
      const position = this.position;
      const still: typeof this.waiters = [];
      for (const w of this.waiters) {
        if (w.seq <= position) w.resolve();
        else still.push(w);
      }
      this.waiters = still;
    }
  }

  private async save(): Promise<void> {
    const position = this.position;
    await this.options.checkpoints?.save(this.options.subscriber ?? 'broadcast', position);
    this.saved = position;
    this.stats.checkpointsSaved++;
  }

  private finish(error: unknown): void {
    this.ended = true;
    this.failure = error;
    if (this.gapTimer) clearTimeout(this.gapTimer);
    for (const w of this.waiters) {
      if (w.seq <= this.position) w.resolve();
      else w.reject(error ?? new Error(`[sluice/subscriptions] broadcast receiver stopped at ${this.position} before ${w.seq}`));
    }
    this.waiters = [];
  }
}

/**
 * The replayer's items until it ends or fails: a failure ends the repair quietly (the gap stays
 * open and its timer tries again). Errors thrown by the loop that consumes them (the handler's)
 * are not caught here: they end the receiver.
 */
async function* whileReplayerAnswers<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  const items = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      let step: IteratorResult<T>;
      try {
        step = await items.next();
      } catch {
        return;
      }
      if (step.done) return;
      yield step.value;
    }
  } finally {
    await items.return?.().catch(() => undefined);
  }
}
