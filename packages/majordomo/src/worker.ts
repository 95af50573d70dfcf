import { EventEmitter } from 'node:events';
import { clientSocketCurve, type CurveSocketOptions } from './curve.js';
import { BrokerClosedError } from './errors.js';
import type { HandshakeFailure } from './handshake-watch.js';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './worker-options.js';
import { WorkerSession, type SessionCounters, type WorkerReconnectReason } from './worker-session.js';

/** Events of a {@link MajordomoWorker}; `session` is the connection's index (0-based). */
export type WorkerEvents = {
  /** A connection sent READY. */
  connected: [{ readonly session: number }];
  /** A connection was dropped and is being opened again. */
  reconnecting: [{ readonly session: number; readonly reason: WorkerReconnectReason }];
  /** The handler threw or resolved with something other than Buffer frames. */
  'handler-error': [{ readonly session: number; readonly error: unknown }];
  /**
   * A security handshake failed: the broker refused this worker's CURVE key (`refused`), one
   * side uses CURVE and the other not (`mechanism-mismatch`), or the handshake broke off
   * (`failed`: usually a wrong `serverPublicKey`). The worker keeps trying.
   */
  'handshake-failed': [{ readonly session: number; readonly endpoint: string; readonly failure: HandshakeFailure }];
};

/** Counters of a worker, summed over its connections. */
export type WorkerStats = Readonly<SessionCounters> & { readonly sessions: number };

/**
 * An MDP/0.1 worker (ZeroMQ RFC 7, MDP/Worker) for one service, on zeromq v6 DEALER sockets.
 *
 * Each connection sends READY, heartbeats the broker every `heartbeatIntervalMs` (also while
 * a request is being handled), reconnects on a new socket when the broker goes silent for
 * `heartbeatIntervalMs × heartbeatLiveness` or sends DISCONNECT, and hands each REQUEST to the
 * handler. RFC 7 gives a worker one request at a time, so `concurrency` connections are
 * opened to handle that many requests at once; the broker sees `concurrency` workers.
 *
 * Request bodies that start with a Sluice correlation frame have it stripped before the
 * handler and put back first in the reply, so one worker serves correlated (Sluice) and plain
 * (RFC 7 reference) clients alike.
 *
 * With `curve` every connection is encrypted and the worker authenticates with its key pair;
 * its public key must be on the broker's allow-list (see the README's "Security").
 *
 * @example
 * const worker = createWorker({
 *   endpoint: 'tcp://127.0.0.1:5555',
 *   service: 'echo',
 *   handler: async (request) => request,
 * });
 * // ...
 * await worker.close();
 */
export class MajordomoWorker extends EventEmitter<WorkerEvents> {
  /** Options with defaults filled in. */
  readonly options: ResolvedWorkerOptions;
  private readonly sessions: WorkerSession[] = [];
  private state: 'new' | 'running' | 'closed' = 'new';
  /** CURVE socket options, secret key included: an ES private field, never shown by inspection. */
  readonly #curveSocket: CurveSocketOptions | undefined;

  /** Validates the options; call {@link start} (or use {@link createWorker}) to connect. */
  constructor(options: WorkerOptions) {
    super();
    this.options = resolveWorkerOptions(options);
    this.#curveSocket = clientSocketCurve(options.curve, this.options.curve);
  }

  /** Opens `concurrency` connections to the broker. */
  start(): this {
    if (this.state !== 'new') throw new BrokerClosedError('worker (start() was already called)');
    this.state = 'running';
    const host = {
      connected: (session: number) => this.emit('connected', { session }),
      reconnecting: (session: number, reason: WorkerReconnectReason) =>
        this.emit('reconnecting', { session, reason }),
      handlerFailed: (session: number, error: unknown) => this.emit('handler-error', { session, error }),
      handshakeFailed: (session: number, failure: HandshakeFailure) =>
        this.emit('handshake-failed', { session, endpoint: this.options.endpoint, failure }),
    };
    for (let index = 0; index < this.options.concurrency; index += 1) {
      const session = new WorkerSession(index, this.options, host, this.#curveSocket);
      this.sessions.push(session);
      session.start();
    }
    return this;
  }

  /** Counters summed over the connections. */
  stats(): WorkerStats {
    const total: SessionCounters = {
      requestsHandled: 0,
      handlerErrors: 0,
      reconnects: 0,
      malformedMessages: 0,
      unexpectedCommands: 0,
      handshakeFailures: 0,
    };
    for (const session of this.sessions) {
      for (const key of Object.keys(total) as (keyof SessionCounters)[]) total[key] += session.counters[key];
    }
    return { ...total, sessions: this.sessions.length };
  }

  /**
   * Sends DISCONNECT on every connection and closes them. Replies of requests still being
   * handled are discarded (the broker redelivers those requests). Idempotent.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await Promise.all(this.sessions.map((session) => session.close()));
  }
}

/**
 * Creates a worker and connects it.
 *
 * @example
 * const worker = createWorker({ endpoint: broker.endpoint, service: 'echo', handler: async (r) => r });
 */
export function createWorker(options: WorkerOptions): MajordomoWorker {
  return new MajordomoWorker(options).start();
}
