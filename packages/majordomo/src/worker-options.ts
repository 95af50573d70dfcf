import { stripUndefined } from './broker-options.js';
import { checkPeerCurve, type CurveOptions, type ResolvedCurve } from './curve.js';
import { OptionProblems } from './validate.js';

/**
 * Handles one request: body frames in, reply body frames out. Correlation frames are already
 * stripped and will be added back. Throwing is reported to the client as a failure (see the
 * README); expected failures are better encoded in the reply frames.
 */
export type WorkerHandler = (request: Buffer[]) => Promise<Buffer[]>;

/** Options of a {@link MajordomoWorker}. */
export interface WorkerOptions {
  /** Broker endpoint. RFC 7: one worker connects to exactly one broker. */
  readonly endpoint: string;
  /** Service to register (not in the reserved "mmi." namespace). */
  readonly service: string;
  readonly handler: WorkerHandler;
  /**
   * Requests handled at once. RFC 7 hands a worker one request at a time, so this many
   * independent worker connections are opened, each registering with the broker.
   * @default 1
   */
  readonly concurrency?: number;
  /**
   * Requests in flight per connection, with the opt-in credit extension (PROTOCOL.md):
   * above 1, READY asks the broker for this many, and once a Sluice broker grants it (up to
   * its `workerCreditMax`) the handler runs for up to that many requests of the connection
   * at once. A reference RFC 7 broker ignores the request and sends one at a time, as does a
   * connection whose grant has not arrived yet. In all, `concurrency × credit` requests at
   * once.
   * @default 1 (plain RFC 7)
   */
  readonly credit?: number;
  /**
   * With `credit` above 1, also ask for the batch extension (README "Batch extension"): a
   * Sluice broker then sends up to this many requests per message (capped by its
   * `workerBatchMax`), and replies finished in one turn of the event loop go back together,
   * up to this many per message. 1 asks for nothing: one request and one reply per message.
   * A reference broker ignores the request, like the credit's.
   * @default 1
   */
  readonly batch?: number;
  /**
   * Interval of HEARTBEATs to the broker; must match the broker's (RFC 7: "agreed-upon").
   * @default 2500
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * When nothing arrives from the broker for `heartbeatIntervalMs × heartbeatLiveness`, the
   * broker is taken as dead and the worker reconnects on a new socket.
   * @default 3
   */
  readonly heartbeatLiveness?: number;
  /**
   * Wait before reconnecting after the broker went silent, or after a DISCONNECT that came
   * before the broker ever accepted this connection (a refused READY): no hot reconnect loop.
   * A DISCONNECT on an accepted connection reconnects at once.
   * @default 2500
   */
  readonly reconnectDelayMs?: number;
  /**
   * Messages waiting to be handed to each socket.
   * @default 1000
   */
  readonly sendQueueMax?: number;
  /**
   * CURVE security for a broker started with `curve`: the broker's public key and this
   * worker's key pair. Its public key must be allowed where the worker connects: in the
   * broker's `allowedClientKeys`, or `allowedWorkerKeys` when the broker has a separate
   * `workerEndpoint`.
   * @default undefined (plain TCP)
   */
  readonly curve?: CurveOptions;
}

/** Worker options with every default filled in; `curve` is kept without its secret key. */
export type ResolvedWorkerOptions = Required<Omit<WorkerOptions, 'curve'>> & {
  readonly curve: ResolvedCurve | undefined;
};

/** The worker's defaults, in one place. */
export function workerDefaults(): Omit<ResolvedWorkerOptions, 'endpoint' | 'service' | 'handler'> {
  return {
    curve: undefined,
    concurrency: 1,
    credit: 1,
    batch: 1,
    heartbeatIntervalMs: 2500,
    heartbeatLiveness: 3,
    reconnectDelayMs: 2500,
    sendQueueMax: 1000,
  };
}

/** Fills in defaults and validates; throws `InvalidBrokerOptionsError` listing every problem. */
export function resolveWorkerOptions(options: WorkerOptions): ResolvedWorkerOptions {
  const resolved: ResolvedWorkerOptions = {
    ...workerDefaults(),
    ...stripUndefined(options),
    endpoint: options.endpoint,
    service: options.service,
    handler: options.handler,
    curve: undefined,
  };
  const check = new OptionProblems('worker');
  check.endpoint('endpoint', resolved.endpoint);
  check.serviceName('service', resolved.service, false);
  check.check(typeof resolved.handler === 'function', 'handler must be a function (request) => Promise<Buffer[]>');
  check.integer('concurrency', resolved.concurrency, 1, 1024);
  check.integer('credit', resolved.credit, 1, 65_535);
  check.integer('batch', resolved.batch, 1, 1024);
  check.integer('heartbeatIntervalMs', resolved.heartbeatIntervalMs, 1);
  check.integer('heartbeatLiveness', resolved.heartbeatLiveness, 1);
  check.integer('reconnectDelayMs', resolved.reconnectDelayMs, 0);
  check.integer('sendQueueMax', resolved.sendQueueMax, 1);
  const curve = checkPeerCurve(check, options.curve);
  check.throwIfAny();
  return { ...resolved, curve };
}
