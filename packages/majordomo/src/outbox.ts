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
 * goes through here instead: messages wait in a bounded queue and one loop hands them over
 * in order. A full queue drops the message and counts it, like a ZeroMQ high-water mark.
 */
export class Outbox {
  private readonly queue = new Fifo<Buffer[]>();
  private pumping = false;
  private idleWaiters: (() => void)[] = [];
  /** Messages dropped because the queue was full or the socket failed. */
  dropped = 0;

  constructor(
    private readonly socket: SendingSocket,
    private readonly queueMax: number,
  ) {}

  /** Number of messages waiting. */
  get length(): number {
    return this.queue.length;
  }

  /** Queues a message; returns false when it was dropped (queue full or socket closed). */
  push(message: Buffer[]): boolean {
    if (this.socket.closed || this.queue.length >= this.queueMax) {
      this.dropped += 1;
      return false;
    }
    this.queue.push(message);
    if (!this.pumping) void this.pump();
    return true;
  }

  /** Resolves when every queued message has been handed to the socket (or dropped). */
  idle(): Promise<void> {
    if (!this.pumping && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (let message = this.queue.shift(); message !== undefined; message = this.queue.shift()) {
        if (this.socket.closed) {
          this.dropped += 1 + this.queue.drain().length;
          break;
        }
        try {
          await this.socket.send(message);
        } catch {
          // Closed under us, or a send timeout: the message is lost, as on a ZeroMQ
          // high-water mark; the protocol's timeouts and retries recover.
          this.dropped += 1;
        }
      }
    } finally {
      this.pumping = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
