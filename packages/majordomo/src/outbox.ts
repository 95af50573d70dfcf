import { Fifo } from './fifo.js';

/** The part of a zeromq v6 socket an {@link Outbox} uses. */
export interface SendingSocket {
  send(message: Buffer[]): Promise<void>;
  readonly closed: boolean;
}

/**
 * Serialises sends on one zeromq socket.
 *
 * zeromq v6 allows only one `send` in progress per socket ("Socket is busy writing", EBUSY),
 * while the broker, client and worker send from timers and receive loops at once. Every send
 * goes through here instead.
 *
 * Fast path: while the socket is writable, zeromq.js hands the message to libzmq inside
 * `send()` itself and returns a settled promise, and the next `send()` may follow at once.
 * So a message is sent right away, without waiting a microtask per message, until a send
 * is refused as busy (the socket was not writable, or zeromq.js deferred the write to let
 * the event loop breathe): then messages wait in a bounded queue and one loop hands them
 * over in order once the pending write is done. A full queue drops the message and counts
 * it, like a ZeroMQ high-water mark.
 */
export class Outbox {
  private readonly queue = new Fifo<Buffer[]>();
  private pumping = false;
  /** The promise of the last send made on the fast path: a write zeromq.js may still hold. */
  private last: Promise<void> | undefined;
  private idleWaiters: (() => void)[] = [];
  /** Messages dropped because the queue was full or the socket failed. */
  dropped = 0;
  private readonly onSendFailed = (): void => {
    // Closed under us, or a send timeout: the message is lost, as on a ZeroMQ high-water
    // mark; the protocol's timeouts and retries recover.
    this.dropped += 1;
  };

  constructor(
    private readonly socket: SendingSocket,
    private readonly queueMax: number,
  ) {}

  /** Number of messages waiting. */
  get length(): number {
    return this.queue.length;
  }

  /** Sends or queues a message; returns false when it was dropped (queue full or socket closed). */
  push(message: Buffer[]): boolean {
    if (this.socket.closed || this.queue.length >= this.queueMax) {
      this.dropped += 1;
      return false;
    }
    if (!this.pumping) {
      // Nothing waits before it, so sending now keeps the order.
      let sent: Promise<void> | undefined;
      try {
        sent = this.socket.send(message);
      } catch (error) {
        if (!isBusy(error)) {
          this.dropped += 1;
          return false;
        }
      }
      if (sent !== undefined) {
        this.last = sent;
        sent.then(undefined, this.onSendFailed);
        return true;
      }
    }
    this.queue.push(message);
    if (!this.pumping) void this.pump();
    return true;
  }

  /** Resolves when every queued message has been handed to the socket (or dropped). */
  idle(): Promise<void> {
    if (!this.pumping && this.queue.length === 0) {
      const last = this.last;
      return last === undefined ? Promise.resolve() : last.then(noop, noop);
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (let message = this.queue.peek(); message !== undefined; message = this.queue.peek()) {
        // The write zeromq.js still holds goes first.
        const last = this.last;
        if (last !== undefined) {
          this.last = undefined;
          await last.then(noop, noop);
        }
        if (this.socket.closed) {
          this.dropped += this.queue.drain().length;
          break;
        }
        // Then as many as the socket takes at once, each without a wait of its own.
        for (message = this.queue.peek(); message !== undefined; message = this.queue.peek()) {
          let sent: Promise<void>;
          try {
            sent = this.socket.send(message);
          } catch (error) {
            if (!isBusy(error)) {
              this.queue.shift();
              this.dropped += 1;
              continue;
            }
            if (this.last !== undefined) break; // wait for that write
            // Busy with no write of ours to wait for: let the event loop turn, then retry.
            await new Promise<void>((resolve) => setImmediate(resolve));
            if (this.socket.closed) break;
            continue;
          }
          this.queue.shift();
          this.last = sent;
          sent.then(undefined, this.onSendFailed);
        }
      }
    } finally {
      this.pumping = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      const wake = (): void => {
        for (const resolve of waiters) resolve();
      };
      // Idle once the last write zeromq.js may still hold is done too.
      if (this.last === undefined) wake();
      else this.last.then(wake, wake);
    }
  }
}

function noop(): void {}

/** zeromq.js refuses a second send while one is in progress with EBUSY, thrown at once. */
function isBusy(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'EBUSY';
}
