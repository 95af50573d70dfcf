import * as zmq from 'zeromq';
import { decodeCorrelation, withCorrelationKind } from './correlation.js';
import type { CurveSocketOptions } from './curve.js';
import { watchHandshakes, type HandshakeFailure } from './handshake-watch.js';
import {
  MESSAGE_FRAMES_MAX,
  REQUEST_TAG_BYTES,
  parseWorkerMessage,
  pushBatchItem,
  workerBatchFrames,
  workerDisconnectFrames,
  workerHeartbeatFrames,
  workerReadyFrames,
  workerReplyFrames,
} from './mdp.js';
import { Outbox } from './outbox.js';
import type { ResolvedWorkerOptions } from './worker-options.js';

/** Why a worker connection was dropped and opened again. */
export type WorkerReconnectReason =
  /** Nothing from the broker for `heartbeatIntervalMs × heartbeatLiveness`. */
  | 'broker-silent'
  /** The broker sent DISCONNECT. */
  | 'broker-disconnect';

/** What a session reports to the worker that owns it. */
export interface SessionHost {
  connected(session: number): void;
  reconnecting(session: number, reason: WorkerReconnectReason): void;
  handlerFailed(session: number, error: unknown): void;
  handshakeFailed(session: number, failure: HandshakeFailure): void;
}

/** Counters of one session (summed by the worker). */
export interface SessionCounters {
  requestsHandled: number;
  handlerErrors: number;
  reconnects: number;
  malformedMessages: number;
  /**
   * Valid commands a broker should not send (READY, REPLY, a REQUEST beyond the credit, a
   * credit grant that was not asked for).
   */
  unexpectedCommands: number;
  /** Security handshakes that failed (key refused, CURVE on one side only, wrong server key). */
  handshakeFailures: number;
}

const EMPTY = Buffer.alloc(0);
/** Linger after the final DISCONNECT, so it can reach the broker without holding exit long. */
const CLOSE_LINGER_MS = 100;

/**
 * One MDP/Worker conversation on one DEALER socket: READY, then REQUEST / REPLY, heartbeats
 * both ways, a new socket after DISCONNECT or a silent broker. One request at a time (RFC 7),
 * or up to the credit the broker granted (credit extension). Internal to
 * {@link MajordomoWorker}, which runs `concurrency` of these.
 */
export class WorkerSession {
  readonly counters: SessionCounters = {
    requestsHandled: 0,
    handlerErrors: 0,
    reconnects: 0,
    malformedMessages: 0,
    unexpectedCommands: 0,
    handshakeFailures: 0,
  };
  private socket: zmq.Dealer | undefined;
  private outbox: Outbox | undefined;
  private loop: Promise<void> | undefined;
  /** Bumped per connection: work finishing for an older connection is discarded. */
  private epoch = 0;
  /** Requests being handled on this connection. */
  private inFlight = 0;
  /** Credit the broker granted on this connection; `undefined`: plain RFC 7, untagged. */
  private granted: number | undefined;
  /** Replies per message the broker granted (batch extension); 1: one REPLY per message. */
  private grantedBatch = 1;
  /** The BATCH of replies being built (batch extension), sent when full or at the end of the turn. */
  private replies: Buffer[] | undefined;
  private replyCount = 0;
  private repliesScheduled = false;
  /** The broker sent something other than DISCONNECT on this connection. */
  private accepted = false;
  private lastReceivedAt = 0;
  private lastSentAt = 0;
  private ticker: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private stopWatching: () => void = () => undefined;
  /** CURVE socket options, secret key included: an ES private field, never shown by inspection. */
  readonly #curveSocket: CurveSocketOptions | undefined;

  constructor(
    private readonly index: number,
    private readonly options: ResolvedWorkerOptions,
    private readonly host: SessionHost,
    curveSocket: CurveSocketOptions | undefined,
  ) {
    this.#curveSocket = curveSocket;
  }

  start(): void {
    this.connect();
    this.ticker = setInterval(() => this.tick(), this.options.heartbeatIntervalMs);
    this.ticker.unref();
  }

  /** Sends DISCONNECT (RFC 7: the worker MAY at any time) and closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.flushReplies(); // replies finished this turn go before DISCONNECT
    const { socket, outbox } = this;
    this.socket = undefined;
    this.outbox = undefined;
    this.stopWatching();
    if (socket === undefined || outbox === undefined) return;
    outbox.push(workerDisconnectFrames());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      outbox.idle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_LINGER_MS);
      }),
    ]);
    clearTimeout(timer);
    socket.linger = CLOSE_LINGER_MS;
    socket.close();
    await this.loop;
  }

  private connect(): void {
    if (this.closed) return;
    this.epoch += 1;
    this.inFlight = 0;
    this.granted = undefined;
    this.grantedBatch = 1;
    this.replies = undefined;
    this.replyCount = 0;
    this.accepted = false;
    const socket = new zmq.Dealer({ linger: 0, ...this.#curveSocket });
    // A refused key or a CURVE mismatch is reported, not acted on: libzmq keeps reconnecting
    // and the heartbeat timeout opens a new socket, so the worker gets in once its key is
    // allowed, without a restart.
    if (this.#curveSocket !== undefined) {
      this.stopWatching = watchHandshakes(socket, {
        succeeded: () => undefined,
        failed: (failure) => {
          if (socket !== this.socket || this.closed) return;
          this.counters.handshakeFailures += 1;
          this.host.handshakeFailed(this.index, failure);
        },
      });
    }
    socket.connect(this.options.endpoint);
    this.socket = socket;
    this.outbox = new Outbox(socket, this.options.sendQueueMax);
    const now = Date.now();
    this.lastReceivedAt = now;
    const { credit, batch } = this.options;
    this.send(workerReadyFrames(this.options.service, credit > 1 ? credit : undefined, credit > 1 && batch > 1 ? batch : undefined));
    this.loop = this.receiveLoop(socket, this.epoch);
    this.host.connected(this.index);
  }

  /** RFC 7: on DISCONNECT "it MUST close its socket, and reconnect to the broker on a new socket". */
  private reconnect(reason: WorkerReconnectReason, delayMs: number): void {
    this.counters.reconnects += 1;
    this.stopWatching();
    this.socket?.close();
    this.socket = undefined;
    this.outbox = undefined;
    this.epoch += 1; // discard replies of work in progress
    this.replies = undefined; // and those not sent yet (the broker takes their requests back)
    this.replyCount = 0;
    this.host.reconnecting(this.index, reason);
    if (delayMs <= 0) {
      this.connect();
      return;
    }
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delayMs);
  }

  private tick(): void {
    if (this.closed || this.socket === undefined) return;
    const now = Date.now();
    const { heartbeatIntervalMs, heartbeatLiveness } = this.options;
    if (now - this.lastReceivedAt >= heartbeatIntervalMs * heartbeatLiveness) {
      this.reconnect('broker-silent', this.options.reconnectDelayMs);
      return;
    }
    // Heartbeats flow while a request is being handled too (RFC 7: both peers MUST send them
    // at regular intervals); skipped only while replies keep the broker informed.
    if (now - this.lastSentAt >= heartbeatIntervalMs / 2) this.send(workerHeartbeatFrames());
  }

  private async receiveLoop(socket: zmq.Dealer, epoch: number): Promise<void> {
    try {
      // receive() straight, not `for await` over the socket: its iterator wraps every message
      // in one more async call and result object.
      while (!socket.closed) {
        const frames = await socket.receive();
        if (epoch !== this.epoch) return;
        this.onMessage(frames);
      }
    } catch {
      // Closed during a receive.
    }
  }

  private onMessage(frames: Buffer[]): void {
    const parsed = parseWorkerMessage(frames);
    if (!parsed.ok) {
      this.counters.malformedMessages += 1;
      return;
    }
    this.lastReceivedAt = Date.now();
    const message = parsed.value;
    switch (message.command) {
      case 'heartbeat':
        this.accepted = true;
        if (message.credit !== undefined) {
          // The broker grants the credit extension; it comes before any request, once.
          if (this.options.credit > 1 && this.granted === undefined && this.inFlight === 0) {
            this.granted = message.credit;
            // A batch granted that was asked for (never more than asked).
            if (message.batch !== undefined && this.options.batch > 1) this.grantedBatch = Math.min(message.batch, this.options.batch);
            else if (message.batch !== undefined) this.counters.unexpectedCommands += 1;
          } else this.counters.unexpectedCommands += 1;
        }
        return;
      case 'disconnect':
        this.reconnect('broker-disconnect', this.accepted ? 0 : this.options.reconnectDelayMs);
        return;
      case 'batch': {
        this.accepted = true;
        // Batch extension: only on a connection it was granted on.
        if (this.grantedBatch <= 1 || this.granted === undefined) {
          this.counters.unexpectedCommands += 1;
          return;
        }
        for (const item of message.items) {
          if (this.inFlight >= this.granted) {
            this.counters.unexpectedCommands += 1;
            return;
          }
          const tag = Buffer.allocUnsafe(REQUEST_TAG_BYTES);
          tag.writeUInt32BE(item.tag, 0);
          void this.handle(item.client, item.body, tag);
        }
        return;
      }
      case 'request': {
        this.accepted = true;
        const body = message.body;
        const credit = this.granted ?? 1;
        if (this.inFlight >= credit) {
          // RFC 7 brokers send one request at a time, credit brokers no more than granted;
          // one more is the broker's bug, and taking it would break that contract. Its
          // client retries.
          this.counters.unexpectedCommands += 1;
          return;
        }
        if (this.granted !== undefined) {
          if (body.length < 2 || body[0].length !== REQUEST_TAG_BYTES) {
            this.counters.malformedMessages += 1;
            return;
          }
          void this.handle(message.client, body.slice(1), body[0]);
        } else {
          void this.handle(message.client, body, undefined);
        }
        return;
      }
      default:
        this.counters.unexpectedCommands += 1;
    }
  }

  private async handle(client: Buffer, body: readonly Buffer[], tag: Buffer | undefined): Promise<void> {
    this.inFlight += 1;
    const epoch = this.epoch;
    const correlation = decodeCorrelation(body[0]);
    const correlated = correlation !== undefined && correlation.kind === 'message';
    const request = correlated ? body.slice(1) : [...body];
    let reply: Buffer[];
    try {
      const result: unknown = await this.options.handler(request);
      if (!Array.isArray(result) || !result.every((frame) => frame instanceof Uint8Array)) {
        throw new TypeError('the handler must resolve with an array of Buffer frames');
      }
      const frames = result.map((frame) => (Buffer.isBuffer(frame) ? frame : Buffer.from(frame)));
      // RFC 7: a REPLY has at least one body frame.
      reply = correlated ? [body[0], ...frames] : frames.length > 0 ? frames : [EMPTY];
      this.counters.requestsHandled += 1;
    } catch (error) {
      this.counters.handlerErrors += 1;
      this.host.handlerFailed(this.index, error);
      const detail = Buffer.from(error instanceof Error ? error.message : String(error), 'utf8');
      const status = Buffer.from('500', 'latin1');
      reply = correlated ? [withCorrelationKind(body[0], 'worker-failed'), status, detail] : [status, detail];
    }
    if (epoch !== this.epoch || this.closed) return; // the connection it came on is gone
    this.inFlight -= 1;
    if (tag !== undefined && this.grantedBatch > 1) {
      this.batchReply(tag, client, reply);
      return;
    }
    if (tag !== undefined) reply.unshift(tag);
    this.send(workerReplyFrames(client, reply));
  }

  /**
   * Batch extension: replies finished in one turn of the event loop go back in one BATCH
   * (sent when it holds the granted number, would pass the frame limit, or the turn ends).
   */
  private batchReply(tag: Buffer, client: Buffer, reply: Buffer[]): void {
    if (reply.length + 5 > MESSAGE_FRAMES_MAX) {
      // Too many frames for one BATCH: a plain tagged REPLY.
      reply.unshift(tag);
      this.send(workerReplyFrames(client, reply));
      return;
    }
    if (this.replies !== undefined && this.replies.length + reply.length + 2 > MESSAGE_FRAMES_MAX) this.flushReplies();
    if (this.replies === undefined) {
      this.replies = workerBatchFrames();
      if (!this.repliesScheduled) {
        this.repliesScheduled = true;
        setImmediate(this.flushScheduledReplies);
      }
    }
    pushBatchItem(this.replies, tag.readUInt32BE(0), client, reply);
    this.replyCount += 1;
    if (this.replyCount >= this.grantedBatch) this.flushReplies();
  }

  private flushReplies(): void {
    const frames = this.replies;
    if (frames === undefined) return;
    this.replies = undefined;
    this.replyCount = 0;
    this.send(frames);
  }

  private readonly flushScheduledReplies = (): void => {
    this.repliesScheduled = false;
    this.flushReplies();
  };

  private send(frames: Buffer[]): void {
    if (this.outbox === undefined) return;
    this.lastSentAt = Date.now();
    this.outbox.push(frames);
  }
}
