import { EventEmitter } from 'node:events';
import type { SealedBatch } from '@sluice/framing';
import {
  EMPTY_IDENTITY,
  describeIdentity,
  identityOf,
  isStorageError,
  sameIdentity,
  type BatchIdentity,
  type PartitionStorage,
} from '@sluice/store';
import { ShipperError, isShipperError } from './errors.js';
import { resolveShipperOptions, type ResolvedShipperOptions, type ShipTarget, type ShipperOptions, type TargetLocation } from './shipper-options.js';

/** What a target is doing. */
export type TargetState = 'starting' | 'shipping' | 'caught-up' | 'retrying' | 'refused' | 'stopped';

/** One target's progress, now. */
export interface TargetStatus {
  /** The target's label (the primary's, also while an alternate is active). */
  readonly target: string;
  /** The location in use: the target itself or one of its alternates. */
  readonly active: string;
  readonly state: TargetState;
  /** Identity of the last batch the active location holds durably. */
  readonly head: BatchIdentity;
  /** Seqs the source holds durably and the active location does not (as of the last look). */
  readonly lagSeqs: number;
  /**
   * Recovery point of this target: milliseconds since the oldest commit it lacks was committed
   * (0 when caught up), as of the last lag check.
   */
  readonly lagMs: number;
  readonly shippedBatches: number;
  readonly shippedBytes: number;
  /** Why it is retrying or refused. */
  readonly lastError?: Error | undefined;
  /** Since when it has been failing (ms since the Unix epoch). */
  readonly downSince?: number | undefined;
}

/** What a shipper tells the application. */
export type ShipperAlertKind =
  | 'target-down'
  | 'target-recovered'
  | 'lag'
  | 'lag-cleared'
  | 'failover'
  | 'diverged'
  | 'ahead'
  | 'source-error';

/** An alert: emitted as `'alert'` events, yielded by `alerts()` and logged. */
export interface ShipperAlert {
  readonly kind: ShipperAlertKind;
  readonly partition: string;
  readonly target: string;
  /** The location concerned (an alternate's label after a failover). */
  readonly location: string;
  readonly message: string;
  readonly lagSeqs: number;
  readonly lagMs: number;
  /** ms since the Unix epoch. */
  readonly at: number;
  readonly error?: Error | undefined;
}

/** Options of {@link Shipper.waitFor}. */
export interface WaitForOptions {
  /** How many targets must hold the seq durably. @default every target */
  readonly quorum?: number | undefined;
  /** Reject with `ShipperError('Quorum')` after this long. @default Infinity */
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Creates a shipper: it tails a partition's durable log and ships raw batches to each target.
 * Call {@link Shipper.start}, subscribe to alerts, and {@link Shipper.stop} it at the end.
 *
 * @example
 * const shipper = createShipper({
 *   source: partitionStorage, // or await openFileReader({ directory })
 *   partition: 'payments',
 *   targets: [{ label: 'azure west', createStorage: () => createAzureStorage({ connectionString, container: 'archive', prefix: 'payments' }) }],
 *   alertLagMs: 1000,
 * });
 * shipper.on('alert', (alert) => console.warn(alert.message));
 * shipper.start();
 */
export function createShipper(options: ShipperOptions): Shipper {
  return new Shipper(resolveShipperOptions(options));
}

/**
 * Ships a partition's committed log to targets outside the partition (invariant 7: a target
 * never skips, reorders or duplicates: it applies by seq and resumes from its own head).
 *
 * Per target: open it, read its durable head, check the source holds the very same batch
 * there (`identityAt`: a target with a different log, or with seqs the source lacks, gets an
 * alert and is refused, never written); then append the source's raw batches after it (several
 * joined per write), sync, repeat, and wait for new durable batches when caught up. A failing
 * target is closed and reopened with exponential backoff and jitter, alerted on, and after
 * `failoverAfterMs` replaced by its next alternate. Lag is measured in seqs and in seconds.
 */
export class Shipper extends EventEmitter<{ alert: [ShipperAlert]; progress: [TargetStatus] }> {
  private readonly runners: TargetRunner[];
  private readonly abort = new AbortController();
  private running: Promise<void>[] | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private lagChecking = false;
  private readonly alertSubscribers = new Set<AlertQueue>();
  private progressWaiters: Array<() => void> = [];
  private readonly wakeSource = new Set<() => void>();
  private stopping: Promise<void> | undefined;

  /** @internal use {@link createShipper} */
  constructor(readonly options: ResolvedShipperOptions) {
    super();
    this.runners = options.targets.map((t) => new TargetRunner(this, t, options));
  }

  /** The partition's name. */
  get partition(): string {
    return this.options.partition;
  }

  /** Starts shipping to every target. Idempotent. */
  start(): this {
    if (this.stopping !== undefined) throw new ShipperError('Stopped', `[sluice/shipper] partition "${this.partition}": the shipper was stopped: create a new one`);
    if (this.running !== undefined) return this;
    this.running = this.runners.map((r) => r.run(this.abort.signal));
    this.lagTimer = setInterval(() => void this.checkLag(), this.options.lagCheckMs);
    this.lagTimer.unref();
    return this;
  }

  /** Every target's progress, now. */
  status(): TargetStatus[] {
    return this.runners.map((r) => r.status());
  }

  /**
   * Tells the shipper the source has new durable batches (a writer in the same process calls
   * it after each sync, so shipping starts at once instead of at the next poll).
   */
  notify(): void {
    for (const w of [...this.wakeSource]) w();
  }

  /**
   * Resolves once `quorum` targets hold `seq` durably, with their status at that moment.
   * Rejects with `ShipperError('Quorum')` after `timeoutMs`, or when too many targets are
   * refused for the quorum ever to be reached.
   */
  async waitFor(seq: number, options: WaitForOptions = {}): Promise<TargetStatus[]> {
    const quorum = options.quorum ?? this.runners.length;
    if (!(Number.isSafeInteger(quorum) && quorum >= 1 && quorum <= this.runners.length)) {
      throw new ShipperError('Invalid', `[sluice/shipper] quorum must be an integer from 1 to ${this.runners.length} (the number of targets), got ${quorum}`);
    }
    const deadline = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + options.timeoutMs;
    for (;;) {
      const statuses = this.status();
      const holding = statuses.filter((s) => s.head.lastSeq >= seq);
      if (holding.length >= quorum) return holding;
      const possible = statuses.filter((s) => s.state !== 'refused' && s.state !== 'stopped').length + holding.filter((s) => s.state === 'refused' || s.state === 'stopped').length;
      if (possible < quorum || this.stopping !== undefined) {
        throw new ShipperError('Quorum', `[sluice/shipper] partition "${this.partition}": seq ${seq} can no longer reach a quorum of ${quorum} targets: ${describeStates(statuses)}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new ShipperError(
          'Quorum',
          `[sluice/shipper] partition "${this.partition}": only ${holding.length} of the ${quorum} targets needed hold seq ${seq} after ${options.timeoutMs} ms: ${describeStates(statuses)}`,
        );
      }
      if (options.signal?.aborted === true) throw new ShipperError('Stopped', `[sluice/shipper] waitFor(${seq}) aborted`);
      await this.nextProgress(Math.min(left, 1000), options.signal);
    }
  }

  /**
   * Alerts as an async iterable (from now on), for an application to `for await`. Ends when the
   * signal aborts or the shipper stops. A slow consumer loses the oldest alerts beyond
   * `alertQueueMax`, never blocks shipping.
   */
  alerts(signal?: AbortSignal): AsyncIterable<ShipperAlert> {
    const queue = new AlertQueue(this.options.alertQueueMax);
    this.alertSubscribers.add(queue);
    const remove = (): void => {
      this.alertSubscribers.delete(queue);
      queue.end();
    };
    signal?.addEventListener('abort', remove, { once: true });
    if (this.stopping !== undefined) remove();
    return queue;
  }

  /** Stops shipping, waits for the targets' loops, and closes their storage. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort();
      this.notify();
      if (this.lagTimer !== undefined) clearInterval(this.lagTimer);
      await Promise.allSettled(this.running ?? []);
      this.wakeProgress();
      for (const q of this.alertSubscribers) q.end();
      this.alertSubscribers.clear();
    })();
    return this.stopping;
  }

  /** @internal */
  emitAlert(alert: ShipperAlert): void {
    this.log(alert.kind === 'target-recovered' || alert.kind === 'lag-cleared' ? 'info' : alert.kind === 'diverged' || alert.kind === 'ahead' ? 'error' : 'warn', alert.message, alert.target);
    for (const q of this.alertSubscribers) q.push(alert);
    this.emit('alert', alert);
  }

  /** @internal */
  log(level: 'info' | 'warn' | 'error', message: string, target?: string): void {
    try {
      this.options.log?.({ level, message, target });
    } catch {
      // A broken log callback must not stop shipping.
    }
  }

  /** @internal a target's durable head moved */
  progressed(status: TargetStatus): void {
    this.emit('progress', status);
    this.wakeProgress();
  }

  /** @internal resolves when the source may have new batches after `afterSeq`, or on stop */
  async waitForSource(afterSeq: number, signal: AbortSignal): Promise<void> {
    let delay = 1;
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.wakeSource.delete(done);
          resolve();
        };
        const timer = setTimeout(done, delay);
        signal.addEventListener('abort', done, { once: true });
        this.wakeSource.add(done);
      });
      if (signal.aborted) return;
      if ((await this.options.source.head()).lastSeq > afterSeq) return;
      delay = Math.min(this.options.pollMaxMs, delay * 2);
    }
  }

  private nextProgress(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
      this.progressWaiters.push(done);
    });
  }

  private wakeProgress(): void {
    const waiters = this.progressWaiters;
    this.progressWaiters = [];
    for (const w of waiters) w();
  }

  private async checkLag(): Promise<void> {
    if (this.lagChecking) return;
    this.lagChecking = true;
    try {
      const source = await this.options.source.head();
      for (const r of this.runners) await r.checkLag(source);
    } catch {
      // The source is unreachable: the targets' loops report it.
    } finally {
      this.lagChecking = false;
    }
  }
}

function describeStates(statuses: readonly TargetStatus[]): string {
  return statuses.map((s) => `"${s.active}" ${s.state} at seq ${s.head.lastSeq}${s.lastError === undefined ? '' : ` (${s.lastError.message.slice(0, 160)})`}`).join('; ');
}

/** An error of the source (not of the target being shipped to). */
class SourceError extends Error {}

class TargetRunner {
  private readonly locations: readonly TargetLocation[];
  private activeIndex = 0;
  private storage: PartitionStorage | undefined;
  private state: TargetState = 'starting';
  private head: BatchIdentity = EMPTY_IDENTITY;
  private sourceSeq = 0;
  private lagMs = 0;
  private lagAlerted = false;
  private shippedBatches = 0;
  private shippedBytes = 0;
  private lastError: Error | undefined;
  private downSince: number | undefined;
  private attempt = 0;
  private sourceFailing = false;

  constructor(
    private readonly shipper: Shipper,
    private readonly target: ShipTarget,
    private readonly options: ResolvedShipperOptions,
  ) {
    this.locations = [target, ...(target.alternates ?? [])];
  }

  private get active(): TargetLocation {
    return this.locations[this.activeIndex];
  }

  status(): TargetStatus {
    return {
      target: this.target.label,
      active: this.active.label,
      state: this.state,
      head: this.head,
      lagSeqs: Math.max(0, this.sourceSeq - this.head.lastSeq),
      lagMs: this.lagMs,
      shippedBatches: this.shippedBatches,
      shippedBytes: this.shippedBytes,
      lastError: this.lastError,
      downSince: this.downSince,
    };
  }

  async run(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        try {
          if (this.storage === undefined) await this.connect();
          const source = await this.fromSource(() => this.options.source.head());
          this.sourceSeq = source.lastSeq;
          if (source.lastSeq > this.head.lastSeq) {
            this.state = 'shipping';
            await this.shipRound(source, signal);
            continue;
          }
          if (source.lastSeq < this.head.lastSeq) await this.checkIdentity(this.head);
          this.state = 'caught-up';
          this.lagMs = 0;
          await this.fromSource(() => this.shipper.waitForSource(this.head.lastSeq, signal));
        } catch (error) {
          if (signal.aborted) break;
          if (isShipperError(error) && (error.reason === 'Diverged' || error.reason === 'Ahead')) {
            this.refuse(error);
            return;
          }
          if (error instanceof SourceError) {
            const cause = error.cause;
            if (isStorageError(cause) && cause.reason === 'Closed') {
              this.shipper.log('info', `source closed: shipping to "${this.active.label}" ends at seq ${this.head.lastSeq}`, this.target.label);
              break;
            }
            if (!this.sourceFailing) {
              this.sourceFailing = true;
              this.alert('source-error', `[sluice/shipper] partition "${this.options.partition}": the source cannot be read (${(cause as Error)?.message ?? String(cause)}): retrying`, cause as Error);
            }
            await sleep(this.backoff(), signal);
            continue;
          }
          await this.onTargetFailure(error as Error, signal);
        }
      }
    } finally {
      if (this.state !== 'refused') this.state = 'stopped';
      await this.disconnect();
    }
  }

  private async connect(): Promise<void> {
    const storage = this.active.createStorage();
    this.storage = storage;
    await this.timed(storage.open(), 'open');
    const head = await this.timed(storage.head(), 'head');
    await this.checkIdentity(head);
    this.head = head;
    this.attempt = 0;
    if (this.downSince !== undefined) {
      this.alert('target-recovered', `[sluice/shipper] partition "${this.options.partition}": target "${this.active.label}" is reachable again at seq ${head.lastSeq}; shipping resumes`);
    }
    this.downSince = undefined;
    this.lastError = undefined;
  }

  /** The target's head must be a batch the source holds, identical: nothing skipped, reordered or diverged. */
  private async checkIdentity(head: BatchIdentity): Promise<void> {
    if (head.lastSeq === 0) return;
    const there = await this.fromSource(() => this.options.source.identityAt(head.lastSeq));
    if (there === undefined) {
      const sourceHead = await this.fromSource(() => this.options.source.head());
      if (sourceHead.lastSeq < head.lastSeq) {
        throw new ShipperError(
          'Ahead',
          `[sluice/shipper] partition "${this.options.partition}": target "${this.active.label}" holds up to seq ${head.lastSeq}, the source only up to seq ${sourceHead.lastSeq}: ` +
            `the source lost or cut commits the target holds; refusing to ship into it (the target may hold the only copy: restore from it, or truncate it deliberately)`,
          { target: this.active.label },
        );
      }
    }
    if (there === undefined || !sameIdentity(there, head)) {
      throw new ShipperError(
        'Diverged',
        `[sluice/shipper] partition "${this.options.partition}": target "${this.active.label}" holds a different log: at seq ${head.lastSeq} it has ${describeIdentity(head)}, ` +
          `the source ${there === undefined ? 'has no batch ending there' : `has ${describeIdentity(there)}`}; refusing to ship into it (point the target at an empty location, or find out which log is right)`,
        { target: this.active.label },
      );
    }
  }

  /** Appends the source's batches after the target's head up to `source`, then syncs. */
  private async shipRound(source: BatchIdentity, signal: AbortSignal): Promise<void> {
    const storage = this.storage as PartitionStorage;
    const chunk: SealedBatch[] = [];
    let chunkBytes = 0;
    let unsynced = 0;
    let last: SealedBatch | undefined;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      const joined = chunk.length === 1 ? chunk[0].bytes : join(chunk, chunkBytes);
      await this.timed(storage.write(joined, chunk[0].firstSeq, chunk[chunk.length - 1].lastSeq), 'write');
      unsynced += chunkBytes;
      chunk.length = 0;
      chunkBytes = 0;
    };
    const sync = async (): Promise<void> => {
      const head = await this.timed(storage.sync(), 'sync');
      if (last !== undefined && !sameIdentity(head, identityOf(last))) {
        throw new ShipperError('Diverged', `[sluice/shipper] target "${this.active.label}" synced to ${describeIdentity(head)}, not the batch shipped (${describeIdentity(identityOf(last))})`, { target: this.active.label });
      }
      this.head = head;
      this.shipper.progressed(this.status());
      unsynced = 0;
    };
    const from = this.head.lastSeq + 1;
    let next = from;
    // Shipped bytes leave the partition: their batch digests are verified, whatever reads skip;
    // only the bytes are shipped, so events are not decoded into objects.
    const batches = this.options.source.read(from, source.lastSeq, { verifyDigests: true, frames: false })[Symbol.asyncIterator]();
    for (;;) {
      const item = await this.fromSource(() => batches.next());
      if (item.done === true) break;
      const batch = item.value;
      if (batch.lastSeq < next) continue;
      if (batch.firstSeq !== next) throw new SourceError(`the source skipped from seq ${next} to ${batch.firstSeq}`);
      if (chunkBytes > 0 && chunkBytes + batch.bytes.length > this.options.writeBytesMax) await flush();
      // Sources may reuse the buffers their batches are views of: keep a copy until written.
      chunk.push({ ...batch, bytes: Uint8Array.from(batch.bytes) });
      chunkBytes += batch.bytes.length;
      last = batch;
      next = batch.lastSeq + 1;
      this.shippedBatches++;
      this.shippedBytes += batch.bytes.length;
      if (unsynced + chunkBytes >= this.options.syncBytesMax) {
        await flush();
        await sync();
      }
      if (signal.aborted) break;
    }
    await flush();
    if (unsynced > 0) await sync();
  }

  private async onTargetFailure(error: Error, signal: AbortSignal): Promise<void> {
    const now = this.options.clock();
    this.lastError = error;
    this.state = 'retrying';
    if (this.downSince === undefined) {
      this.downSince = now;
      this.alert('target-down', `[sluice/shipper] partition "${this.options.partition}": target "${this.active.label}" failed at seq ${this.head.lastSeq}: ${error.message} — retrying with backoff`, error);
    }
    await this.disconnect();
    if (this.locations.length > 1 && now - this.downSince >= this.options.failoverAfterMs) {
      const from = this.active.label;
      this.activeIndex = (this.activeIndex + 1) % this.locations.length;
      this.head = EMPTY_IDENTITY;
      this.attempt = 0;
      this.downSince = now;
      this.alert('failover', `[sluice/shipper] partition "${this.options.partition}": target "${from}" has been failing for ${this.options.failoverAfterMs} ms: shipping to alternate "${this.active.label}" instead`, error);
      return;
    }
    await sleep(this.backoff(), signal);
  }

  private backoff(): number {
    const r = this.options.retry;
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * r.multiplier ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 64);
    return Math.max(0, Math.round(base * (1 + r.jitter * (2 * this.options.random() - 1))));
  }

  private refuse(error: ShipperError): void {
    this.state = 'refused';
    this.lastError = error;
    this.alert(error.reason === 'Ahead' ? 'ahead' : 'diverged', error.message, error);
  }

  async checkLag(source: BatchIdentity): Promise<void> {
    if (this.state === 'refused' || this.state === 'stopped') return;
    this.sourceSeq = Math.max(this.sourceSeq, source.lastSeq);
    const lagSeqs = Math.max(0, source.lastSeq - this.head.lastSeq);
    let lagMs = 0;
    if (lagSeqs > 0) {
      for await (const batch of this.options.source.read(this.head.lastSeq + 1, this.head.lastSeq + 1, { verifyDigests: false, frames: false })) {
        lagMs = Math.max(0, this.options.clock() - batch.marker.timestamp);
        break;
      }
    }
    this.lagMs = lagMs;
    const over = lagMs > this.options.alertLagMs || lagSeqs > this.options.alertLagSeqs;
    if (over && !this.lagAlerted) {
      this.lagAlerted = true;
      this.alert('lag', `[sluice/shipper] partition "${this.options.partition}": target "${this.active.label}" lags by ${lagSeqs} seqs and ${lagMs} ms (thresholds ${this.options.alertLagMs} ms, ${this.options.alertLagSeqs} seqs)`);
    } else if (!over && this.lagAlerted) {
      this.lagAlerted = false;
      this.alert('lag-cleared', `[sluice/shipper] partition "${this.options.partition}": target "${this.active.label}" is back within the lag thresholds (${lagSeqs} seqs, ${lagMs} ms)`);
    }
  }

  private alert(kind: ShipperAlertKind, message: string, error?: Error): void {
    const s = this.status();
    this.shipper.emitAlert({ kind, partition: this.options.partition, target: this.target.label, location: this.active.label, message, lagSeqs: s.lagSeqs, lagMs: s.lagMs, at: this.options.clock(), error });
  }

  private async disconnect(): Promise<void> {
    const storage = this.storage;
    this.storage = undefined;
    if (storage === undefined) return;
    // A target that is down may not answer a close either: do not wait for it forever.
    await this.timed(storage.close(), 'close').catch(() => undefined);
  }

  private async fromSource<T>(op: () => Promise<T>): Promise<T> {
    try {
      const out = await op();
      this.sourceFailing = false;
      return out;
    } catch (error) {
      if (error instanceof SourceError || isShipperError(error)) throw error;
      throw new SourceError(error instanceof Error ? error.message : String(error), { cause: error });
    }
  }

  private timed<T>(op: Promise<T>, what: string): Promise<T> {
    const ms = this.options.operationTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ShipperError('Unavailable', `[sluice/shipper] target "${this.active.label}": ${what} took longer than ${ms} ms (operationTimeoutMs)`, { target: this.active.label })),
        ms,
      );
    });
    op.catch(() => undefined);
    return Promise.race([op, timeout]).finally(() => clearTimeout(timer));
  }
}

function join(batches: readonly SealedBatch[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const b of batches) {
    out.set(b.bytes, at);
    at += b.bytes.length;
  }
  return out;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** A bounded queue of alerts behind an async iterator. */
class AlertQueue implements AsyncIterable<ShipperAlert> {
  private readonly items: ShipperAlert[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;

  constructor(private readonly max: number) {}

  push(alert: ShipperAlert): void {
    if (this.ended) return;
    this.items.push(alert);
    if (this.items.length > this.max) this.items.shift();
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ShipperAlert> {
    for (;;) {
      const next = this.items.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }
}
