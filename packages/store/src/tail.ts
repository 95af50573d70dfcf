import type { SealedBatch } from '@sluice/framing';
import { isStorageError } from './errors.js';
import type { BatchIdentity, StorageReader } from './storage.js';

/**
 * Waits until something after `afterSeq` may be durable, or the signal aborts. Resolves false
 * when the tail should end (the reader closed).
 */
export type WaitForDurable = (afterSeq: number, signal: AbortSignal | undefined) => Promise<boolean>;

/**
 * The `tail` of a {@link StorageReader} derived from its `read` and `head`: durable batches
 * from the one holding `fromSeq` on, then new ones as `wait` says they may have arrived.
 * Backends pass {@link DurableSignal.wait} (in process) or {@link pollWait} (other processes).
 * The tail ends (without an error) when the signal aborts or the reader closes.
 */
export async function* tailBatches(
  source: Pick<StorageReader, 'read' | 'head'>,
  fromSeq: number,
  wait: WaitForDurable,
  signal: AbortSignal | undefined,
): AsyncGenerator<SealedBatch> {
  let next = Math.max(1, fromSeq);
  try {
    while (!isAborted(signal)) {
      const head: BatchIdentity = await source.head();
      if (next <= head.lastSeq) {
        for await (const batch of source.read(next, head.lastSeq)) {
          if (batch.lastSeq < next) continue;
          yield batch;
          next = batch.lastSeq + 1;
          if (isAborted(signal)) return;
        }
        continue;
      }
      if (!(await wait(head.lastSeq, signal))) return;
    }
  } catch (error) {
    // A reader closed under a running tail ends it; any other error is the caller's to see.
    if (isStorageError(error) && error.reason === 'Closed') return;
    throw error;
  }
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/**
 * A wait for readers in other processes, which get no notification: polls, backing off from
 * `minMs` to `maxMs` while nothing new comes (each call starts again at `minMs`).
 */
export function pollWait(source: Pick<StorageReader, 'head'>, minMs = 5, maxMs = 200): WaitForDurable {
  return async (afterSeq, signal) => {
    let delay = minMs;
    while (!isAborted(signal)) {
      await sleep(delay, signal);
      if (isAborted(signal)) return true;
      if ((await source.head()).lastSeq > afterSeq) return true;
      delay = Math.min(maxMs, delay * 2);
    }
    return true;
  };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * In-process notification of a durable head that moves: the writer calls {@link advance};
 * tails {@link wait}. Closing wakes everyone for good.
 */
export class DurableSignal {
  private waiters: Array<() => void> = [];
  private durable = 0;
  private closed = false;

  /** The durable head moved to `seq`. */
  advance(seq: number): void {
    if (seq > this.durable) this.durable = seq;
    this.wake();
  }

  /** Wakes every waiter now and later (the reader closed). */
  close(): void {
    this.closed = true;
    this.wake();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  readonly wait: WaitForDurable = (afterSeq, signal) =>
    new Promise<boolean>((resolve) => {
      if (this.closed || this.durable > afterSeq || signal?.aborted === true) return resolve(!this.closed);
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(!this.closed);
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(true);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(done);
    });

  private wake(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
