import { EventEmitter } from 'node:events';
import * as zmq from 'zeromq';
import { resolveClientOptions, type ClientOptions, type ResolvedClientOptions } from './client-options.js';
import { decodeCorrelation, encodeCorrelation } from './correlation.js';
import { clientSocketCurve, type CurveSocketOptions } from './curve.js';
import {
  BrokerAuthenticationError,
  BrokerClosedError,
  BrokerError,
  BrokerRejectedError,
  BrokerTimeoutError,
  ClientOverloadedError,
  InvalidRequestError,
  RequestAbortedError,
  WorkerFailedError,
} from './errors.js';
import { Fifo } from './fifo.js';
import { watchHandshakes, type HandshakeFailure } from './handshake-watch.js';
import {
  MMI_FOUND,
  MMI_NOT_FOUND,
  MMI_SERVICE,
  clientRequestFrames,
  isValidServiceName,
  parseClientMessage,
} from './mdp.js';
import { Outbox } from './outbox.js';
import { frameKey } from './service-registry.js';

/** Options of one {@link MajordomoClient.request} call. */
export interface RequestOptions {
  /** Overrides the client's `timeoutMs` for this request (per attempt). */
  readonly timeoutMs?: number;
  /** Aborting rejects the request with `RequestAbortedError`; a late reply is discarded. */
  readonly signal?: AbortSignal;
}

/** The client moved to another broker (or reconnected to the only one). */
export interface ClientFailoverEvent {
  readonly from: string;
  readonly to: string;
  readonly reason: string;
}

/** A security handshake with a broker failed (see {@link HandshakeFailure}). */
export interface ClientHandshakeFailedEvent {
  readonly endpoint: string;
  readonly failure: HandshakeFailure;
}

/** Events of a {@link MajordomoClient}. */
export type ClientEvents = {
  failover: [ClientFailoverEvent];
  'handshake-failed': [ClientHandshakeFailedEvent];
};

/** Counters of a client. */
export interface ClientStats {
  /** The broker endpoint in use. */
  readonly endpoint: string;
  /** Requests sent or waiting, not yet settled. */
  readonly outstanding: number;
  readonly failovers: number;
  readonly timeouts: number;
  readonly repliesReceived: number;
  /** Replies for requests no longer waiting (timed out, aborted, already answered). */
  readonly staleReplies: number;
  /** Replies that were not valid MDP/Client (or lacked the correlation frame). */
  readonly malformedReplies: number;
  /** Security handshakes that failed (refused key, CURVE on one side only, wrong server key). */
  readonly handshakeFailures: number;
}

interface Pending {
  readonly id: bigint;
  readonly service: string;
  readonly serviceFrame: Buffer;
  readonly body: readonly Buffer[];
  /** Correlation frame (correlated mode). */
  readonly correlation: Buffer | undefined;
  readonly timeoutMs: number;
  attempts: number;
  timer: NodeJS.Timeout | undefined;
  /** Settled (aborted) while still occupying its rfc7 lane until a reply or a fail-over. */
  abandoned: boolean;
  settled: boolean;
  readonly resolve: (frames: Buffer[]) => void;
  readonly reject: (error: Error) => void;
  readonly detach: () => void;
}

/** rfc7 mode: the one outstanding request of a service and those waiting behind it. */
interface Lane {
  readonly key: string;
  inFlight: Pending | undefined;
  readonly waiting: Fifo<Pending>;
}

/**
 * An asynchronous MDP/0.1 client on a zeromq v6 DEALER socket, with pipelining and broker
 * fail-over.
 *
 * **Replies and requests.** MDP/0.1 replies carry no request id, only the service name. A
 * synchronous client (the guide's `mdcliapi`) gets away with that: one request at a time. A
 * pipelining client does not: two requests to one service may go to two workers and come back
 * in either order, so matching replies by order would hand callers each other's replies. In
 * the default `correlated` mode the client therefore puts a 13-byte Sluice correlation frame
 * (see `correlation.ts`) first in each request body; workers echo it first in the reply and
 * the client matches by id, so any number of requests may be outstanding. In `rfc7` mode the
 * body is sent untouched, for workers that know nothing of the frame (the guide's reference
 * workers), and the client keeps at most one request per service outstanding, queuing the
 * rest in order: then a reply for a service can only answer that one request.
 *
 * **Fail-over.** The client talks to one broker at a time. When a request gets no reply within
 * its timeout, the broker is taken as dead (the guide's Lazy Pirate): the socket is closed,
 * a new one connects to the next endpoint (wrapping around; with one endpoint, the same one),
 * and every outstanding request is sent again. A fresh socket also guarantees that a late
 * reply from the old broker can never be mistaken for a new one. Each send counts as an
 * attempt; a request that has had `attemptsMax` attempts fails with `BrokerTimeoutError`.
 * Requests may thus be processed more than once: RFC 7 assumes idempotent workers (the store
 * service deduplicates by command id).
 *
 * **Security.** With `curve` the connection is encrypted and both sides authenticate (see the
 * README's "Security"). A broker that refuses this client's key, or a CURVE mismatch between
 * the two sides, counts as a dead broker at once (no need to wait for `timeoutMs`): the client
 * fails over, and requests that run out of attempts that way reject with
 * `BrokerAuthenticationError`.
 *
 * @example
 * const client = new MajordomoClient({ endpoints: ['tcp://10.0.0.1:5555', 'tcp://10.0.0.2:5555'] });
 * const [reply] = await client.request('echo', [Buffer.from('hello')], { timeoutMs: 1000 });
 * client.close();
 */
export class MajordomoClient extends EventEmitter<ClientEvents> {
  /** Options with defaults filled in. */
  readonly options: ResolvedClientOptions;
  private socket: zmq.Dealer;
  private outbox: Outbox;
  /** CURVE socket options, secret key included: an ES private field, so inspecting the client never shows it. */
  readonly #curveSocket: CurveSocketOptions | undefined;
  private stopWatching: () => void = () => undefined;
  /** How the last security handshake on the current socket failed, until one succeeds. */
  private handshakeFailure: HandshakeFailure | undefined;
  private endpointIndex = 0;
  private readonly inFlight = new Map<bigint, Pending>();
  private readonly lanes = new Map<string, Lane>();
  private outstanding = 0;
  private nextId = 1n;
  private closed = false;
  private readonly loops = new Set<Promise<void>>();
  private readonly counters = {
    failovers: 0,
    timeouts: 0,
    repliesReceived: 0,
    staleReplies: 0,
    malformedReplies: 0,
    handshakeFailures: 0,
  };

  /** Validates the options and connects to the first endpoint. */
  constructor(options: ClientOptions) {
    super();
    this.options = resolveClientOptions(options);
    this.#curveSocket = clientSocketCurve(options.curve, this.options.curve);
    [this.socket, this.outbox] = this.connect();
  }

  /** The broker endpoint in use. */
  get endpoint(): string {
    return this.options.endpoints[this.endpointIndex];
  }

  /**
   * Sends a request to `service` and resolves with the reply body frames.
   *
   * Rejects with `BrokerTimeoutError` (no reply after `attemptsMax` attempts),
   * `BrokerRejectedError` (the broker refused it: correlated mode only),
   * `WorkerFailedError` (the handler threw: correlated mode only), `RequestAbortedError`,
   * `ClientOverloadedError`, `InvalidRequestError` or `BrokerClosedError`.
   */
  request(service: string, body: readonly Buffer[], options: RequestOptions = {}): Promise<Buffer[]> {
    if (this.closed) return Promise.reject(new BrokerClosedError('client'));
    const serviceFrame = Buffer.from(typeof service === 'string' ? service : '', 'utf8');
    if (typeof service !== 'string' || !isValidServiceName(serviceFrame)) {
      return Promise.reject(
        new InvalidRequestError(
          `service name ${JSON.stringify(service)} is not 1-255 bytes of text without control characters`,
        ),
      );
    }
    if (!Array.isArray(body) || !body.every((frame) => frame instanceof Uint8Array)) {
      return Promise.reject(new InvalidRequestError('body must be an array of Buffer frames'));
    }
    if (this.options.mode === 'rfc7' && body.length === 0) {
      return Promise.reject(
        new InvalidRequestError('an MDP/0.1 request needs at least one body frame (RFC 7: 4 or more frames)'),
      );
    }
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      return Promise.reject(new InvalidRequestError(`timeoutMs must be an integer >= 1 (got ${timeoutMs})`));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new RequestAbortedError(service, { cause: signal.reason }));
    if (this.outstanding >= this.options.outstandingMax) {
      return Promise.reject(new ClientOverloadedError(this.options.outstandingMax));
    }

    return new Promise<Buffer[]>((resolve, reject) => {
      const id = this.nextId;
      this.nextId += 1n;
      const onAbort = (): void => this.abort(pending, signal?.reason);
      const pending: Pending = {
        id,
        service,
        serviceFrame,
        body: body.map((frame) => (Buffer.isBuffer(frame) ? frame : Buffer.from(frame))),
        correlation: this.options.mode === 'correlated' ? encodeCorrelation('message', id) : undefined,
        timeoutMs,
        attempts: 0,
        timer: undefined,
        abandoned: false,
        settled: false,
        resolve,
        reject,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.outstanding += 1;
      // The broker refused this socket before anything was outstanding: move on now rather
      // than wait out a timeout on a connection that will not come back.
      if (this.handshakeFailure === 'refused' || this.handshakeFailure === 'mechanism-mismatch') {
        queueMicrotask(() => this.retryRefusedConnection());
      }
      if (this.options.mode === 'correlated') {
        this.inFlight.set(id, pending);
        this.transmit(pending);
        return;
      }
      const key = frameKey(serviceFrame);
      let lane = this.lanes.get(key);
      if (lane === undefined) {
        lane = { key, inFlight: undefined, waiting: new Fifo() };
        this.lanes.set(key, lane);
      }
      if (lane.inFlight === undefined) {
        lane.inFlight = pending;
        this.transmit(pending);
      } else {
        lane.waiting.push(pending);
      }
    });
  }

  /**
   * Asks the broker whether at least one worker serves `service` (RFC 8/MMI `mmi.service`).
   * Rejects with `BrokerError` when the broker does not implement MMI.
   */
  async hasService(service: string, options?: RequestOptions): Promise<boolean> {
    const [status] = await this.request(MMI_SERVICE, [Buffer.from(service, 'utf8')], options);
    const code = status?.toString('latin1');
    if (code === MMI_FOUND) return true;
    if (code === MMI_NOT_FOUND) return false;
    throw new BrokerError(
      `[sluice/majordomo] mmi.service answered ${JSON.stringify(code)}: the broker at ${this.endpoint} ` +
        `does not implement 8/MMI`,
    );
  }

  /** Counters, for tests and monitoring. */
  stats(): ClientStats {
    return { ...this.counters, endpoint: this.endpoint, outstanding: this.outstanding };
  }

  /** Closes the socket; outstanding requests reject with `BrokerClosedError`. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = new BrokerClosedError('client');
    for (const pending of this.inFlight.values()) this.settle(pending, error);
    for (const lane of this.lanes.values()) {
      if (lane.inFlight) {
        // An abandoned request is settled already but may still hold a timer.
        if (lane.inFlight.timer) clearTimeout(lane.inFlight.timer);
        this.settle(lane.inFlight, error);
      }
      for (const pending of lane.waiting.drain()) this.settle(pending, error);
    }
    this.inFlight.clear();
    this.lanes.clear();
    this.stopWatching();
    this.socket.close();
    await Promise.all(this.loops);
  }

  private connect(): [zmq.Dealer, Outbox] {
    const socket = new zmq.Dealer({ linger: 0, ...this.#curveSocket });
    if (this.#curveSocket !== undefined) {
      this.stopWatching = watchHandshakes(socket, {
        succeeded: () => {
          if (socket === this.socket) this.handshakeFailure = undefined;
        },
        failed: (failure) => {
          if (socket === this.socket && !this.closed) this.onHandshakeFailed(failure);
        },
      });
    }
    socket.connect(this.endpoint);
    const outbox = new Outbox(socket, this.options.sendQueueMax);
    const loop = this.receiveLoop(socket);
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
    return [socket, outbox];
  }

  private async receiveLoop(socket: zmq.Dealer): Promise<void> {
    try {
      // receive() straight, not `for await` over the socket (one async call and result object
      // less per reply).
      while (!socket.closed) {
        const frames = await socket.receive();
        if (socket !== this.socket) return;
        this.onReply(frames);
      }
    } catch {
      // The socket was closed during a receive: its replies are abandoned with it.
    }
  }

  private transmit(pending: Pending): void {
    pending.attempts += 1;
    const body = pending.correlation ? [pending.correlation, ...pending.body] : pending.body;
    this.outbox.push(clientRequestFrames(pending.serviceFrame, body));
    pending.timer = setTimeout(() => this.onTimeout(pending), pending.timeoutMs);
  }

  /**
   * (CURVE clients only: plain sockets are not watched.) A refused key or a CURVE mismatch
   * will not heal by waiting: fail over at once, when there
   * is something to send (else libzmq's own reconnects just keep trying, slowly). A broken-off
   * handshake (`failed`) may also be a broker going away, so it only colours the timeout.
   */
  private onHandshakeFailed(failure: HandshakeFailure): void {
    this.counters.handshakeFailures += 1;
    this.emit('handshake-failed', { endpoint: this.endpoint, failure });
    this.handshakeFailure = failure;
    if (failure !== 'failed' && this.outstanding > 0) {
      this.failover(`security handshake with ${this.endpoint} failed (${failure})`);
    }
  }

  private retryRefusedConnection(): void {
    const failure = this.handshakeFailure;
    if (failure === undefined || failure === 'failed' || this.outstanding === 0) return;
    this.failover(`security handshake with ${this.endpoint} failed (${failure})`);
  }

  private onTimeout(pending: Pending): void {
    pending.timer = undefined;
    this.counters.timeouts += 1;
    this.failover(`no reply from "${pending.service}" within ${pending.timeoutMs} ms`);
  }

  /** Moves to the next broker on a fresh socket and resends what is outstanding. */
  private failover(reason: string): void {
    if (this.closed) return;
    const from = this.endpoint;
    const handshakeFailure = this.handshakeFailure;
    this.handshakeFailure = undefined;
    this.stopWatching();
    this.socket.close();
    this.endpointIndex = (this.endpointIndex + 1) % this.options.endpoints.length;
    [this.socket, this.outbox] = this.connect();
    this.counters.failovers += 1;
    this.emit('failover', { from, to: this.endpoint, reason });

    const resend = (pending: Pending): void => {
      if (pending.timer) clearTimeout(pending.timer);
      pending.timer = undefined;
      if (pending.attempts >= this.options.attemptsMax) {
        this.fail(
          pending,
          handshakeFailure === undefined
            ? new BrokerTimeoutError(pending.service, pending.attempts, pending.timeoutMs, this.options.endpoints)
            : new BrokerAuthenticationError(
                pending.service,
                handshakeFailure,
                this.options.endpoints,
                this.options.curve?.publicKey,
              ),
        );
      } else {
        this.transmit(pending);
      }
    };
    if (this.options.mode === 'correlated') {
      for (const pending of [...this.inFlight.values()]) resend(pending);
      return;
    }
    for (const lane of [...this.lanes.values()]) {
      const pending = lane.inFlight;
      if (pending === undefined) continue;
      if (pending.abandoned) {
        if (pending.timer) clearTimeout(pending.timer);
        lane.inFlight = undefined;
        this.startNext(lane);
      } else {
        resend(pending);
      }
    }
  }

  private onReply(frames: Buffer[]): void {
    this.counters.repliesReceived += 1;
    const parsed = parseClientMessage(frames);
    if (!parsed.ok) {
      this.counters.malformedReplies += 1;
      return;
    }
    const { service, body } = parsed.value;
    if (this.options.mode === 'rfc7') {
      const lane = this.lanes.get(frameKey(service));
      const pending = lane?.inFlight;
      if (lane === undefined || pending === undefined) {
        this.counters.staleReplies += 1;
        return;
      }
      if (pending.timer) clearTimeout(pending.timer);
      pending.timer = undefined;
      lane.inFlight = undefined;
      if (pending.abandoned) this.counters.staleReplies += 1;
      else this.settle(pending, undefined, [...body]);
      this.startNext(lane);
      return;
    }
    const correlation = decodeCorrelation(body[0]);
    if (correlation === undefined) {
      this.counters.malformedReplies += 1;
      return;
    }
    const pending = this.inFlight.get(correlation.id);
    if (pending === undefined || !pending.serviceFrame.equals(service)) {
      this.counters.staleReplies += 1;
      return;
    }
    this.inFlight.delete(pending.id);
    const text = (index: number): string => body[index]?.toString('utf8') ?? '';
    switch (correlation.kind) {
      case 'message':
        this.settle(pending, undefined, body.slice(1));
        return;
      case 'broker-rejected':
        this.settle(pending, new BrokerRejectedError(pending.service, text(1), text(2)));
        return;
      case 'worker-failed':
        this.settle(pending, new WorkerFailedError(pending.service, text(2)));
        return;
    }
  }

  /** rfc7 mode: sends the next waiting request of the lane, or forgets an empty lane. */
  private startNext(lane: Lane): void {
    if (lane.inFlight !== undefined) return;
    for (let next = lane.waiting.shift(); next !== undefined; next = lane.waiting.shift()) {
      if (next.settled) continue;
      lane.inFlight = next;
      this.transmit(next);
      return;
    }
    this.lanes.delete(lane.key);
  }

  /** Fails a request and frees its place (map entry or lane). */
  private fail(pending: Pending, error: Error): void {
    if (this.options.mode === 'correlated') {
      this.inFlight.delete(pending.id);
      this.settle(pending, error);
      return;
    }
    const lane = this.lanes.get(frameKey(pending.serviceFrame));
    this.settle(pending, error);
    if (lane !== undefined && lane.inFlight === pending) {
      lane.inFlight = undefined;
      this.startNext(lane);
    }
  }

  private abort(pending: Pending, reason: unknown): void {
    if (pending.settled) return;
    const error = new RequestAbortedError(pending.service, { cause: reason });
    if (this.options.mode === 'correlated') {
      this.fail(pending, error);
      return;
    }
    const lane = this.lanes.get(frameKey(pending.serviceFrame));
    if (lane !== undefined && lane.inFlight === pending) {
      // Its reply may still come: keep the lane busy until then (or until a fail-over), so the
      // reply cannot be taken for the next request's.
      pending.abandoned = true;
      this.settle(pending, error, undefined, false);
      return;
    }
    this.settle(pending, error); // waiting: startNext skips settled requests
  }

  private settle(pending: Pending, error: Error | undefined, reply?: Buffer[], clearTimer = true): void {
    if (pending.settled) return;
    pending.settled = true;
    if (clearTimer && pending.timer) {
      clearTimeout(pending.timer);
      pending.timer = undefined;
    }
    pending.detach();
    this.outstanding -= 1;
    if (error) pending.reject(error);
    else pending.resolve(reply ?? []);
  }
}
