import { checkBrokerCurve, type BrokerCurveOptions, type ResolvedBrokerCurve } from './curve.js';
import { MESSAGE_FRAMES_MAX } from './mdp.js';
import { OptionProblems } from './validate.js';

/** Options of a {@link MajordomoBroker}. Every limit has a default; see {@link brokerDefaults}. */
export interface BrokerOptions {
  /**
   * Endpoint the broker's ROUTER socket binds, clients and workers alike (RFC 7 allows one
   * socket for both). Port `0` or `*` picks a free port: read it back from `broker.endpoint`.
   * @example "tcp://127.0.0.1:5555", "tcp://127.0.0.1:*"
   */
  readonly endpoint: string;
  /**
   * Interval of HEARTBEATs to workers, and of the broker's housekeeping (purging dead workers,
   * expiring queued requests). Workers must use the same value (RFC 7: "agreed-upon").
   * @default 2500
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * A worker that sends nothing for `heartbeatIntervalMs × heartbeatLiveness` is dead: it is
   * purged and its request, if any, goes back to the queue (see `deliveriesMax`).
   * @default 3
   */
  readonly heartbeatLiveness?: number;
  /**
   * How long a worker that holds a request and has never sent a HEARTBEAT while busy may stay
   * silent before it is taken as dead and its request redelivered. RFC 7 workers like the
   * guide's `mdwrkapi` are single-threaded and send nothing while their handler runs, so
   * heartbeat × liveness would cut off any request slower than that. Workers that heartbeat
   * while busy (`MajordomoWorker`) are held to heartbeat × liveness as soon as they have, and
   * credit-extension workers always are (the extension requires heartbeats while busy).
   * @default 60000
   */
  readonly busyTimeoutMs?: number;
  /**
   * Requests queued per service while no worker is free. One more is refused with a `503`
   * reply (see the README's "queue policy").
   * @default 200000
   */
  readonly serviceQueueMax?: number;
  /**
   * Requests queued over all services together.
   * @default 1000000
   */
  readonly queuedRequestsMax?: number;
  /**
   * Requests one client may have held by the broker (queued or at a worker) at once; one more
   * is refused with a `503` reply. It also sizes each connection's reply pipe (twice this), so
   * replies to a client that sends before it reads are never dropped by a high-water mark.
   * @default 200000
   */
  readonly clientInFlightMax?: number;
  /**
   * Bytes of request bodies the broker holds at once (queued or at a worker), over all
   * clients: the bound on its memory for requests. One more is refused with a `503` reply.
   * @default 268435456 (256 MiB)
   */
  readonly requestBytesMax?: number;
  /**
   * A queued request of a service that has no worker is expired after this time, with a
   * `504` reply (RFC 7: "SHOULD expire these requests after a reasonable and configurable
   * time"). Requests of a service with workers wait their turn however long the queue: the
   * queue limits bound it, and clients have their own timeouts.
   * @default 10000
   */
  readonly requestExpiryMs?: number;
  /**
   * Distinct services known at once (with workers or queued requests). A request for one more
   * unknown service is rejected, so clients cannot grow the registry without bound.
   * @default 1000
   */
  readonly servicesMax?: number;
  /**
   * Registered workers at once; a READY beyond it is answered with DISCONNECT.
   * @default 10000
   */
  readonly workersMax?: number;
  /**
   * Times one request may be handed to a worker. A request whose worker dies or disconnects is
   * delivered again until this count is reached (RFC 7 assumes idempotent workers), then
   * rejected with status 502.
   * @default 2
   */
  readonly deliveriesMax?: number;
  /**
   * Most requests in flight the broker grants one worker connection of the credit extension
   * (PROTOCOL.md): a worker asking for more gets this many. RFC 7 workers always get one.
   * @default 256
   */
  readonly workerCreditMax?: number;
  /**
   * Most requests per message the broker grants a credit worker that asks for the batch
   * extension (README "Batch extension"): its requests go several to a BATCH message, sent
   * when full or at the end of the broker's turn, and its replies may come the same way.
   * @default 64
   */
  readonly workerBatchMax?: number;
  /**
   * Largest message part accepted (ZMQ_MAXMSGSIZE); a peer sending a larger one is
   * disconnected by ZeroMQ (it gets no reply: ZeroMQ drops the connection). Large enough for
   * a unit of work at the engine's default unitBytesMax (64 MiB) with its encoding; the store
   * client refuses larger requests itself (its `requestBytesMax`) with an error naming it.
   * @default 83886080 (80 MiB)
   */
  readonly frameBytesMax?: number;
  /**
   * Most frames in one message; longer messages are malformed.
   * @default 1024
   */
  readonly messageFramesMax?: number;
  /**
   * Messages waiting to be handed to the socket (a safety bound: the ROUTER socket never
   * blocks, and what waits is bounded by the requests held); beyond it, messages are dropped
   * and counted (`stats().droppedSends`).
   * @default 1000000
   */
  readonly sendQueueMax?: number;
  /**
   * A second endpoint, for workers only. Without it clients and workers share `endpoint` (as
   * in RFC 7). With it, the broker binds a second ROUTER socket: workers must connect there
   * and clients to `endpoint`; worker commands on `endpoint` are answered with DISCONNECT and
   * client requests on `workerEndpoint` are dropped (both counted in `stats().misdirected`).
   * With `curve`, each socket has its own allow-list, so a client's key cannot register a
   * worker. Port `0` or `*` picks a free port: read it back from `broker.workerEndpoint`.
   * @default undefined (workers use `endpoint`)
   */
  readonly workerEndpoint?: string;
  /**
   * CURVE security (ZeroMQ RFC 26) with a ZAP allow-list (RFC 27) of peer public keys. Off
   * by default: plain TCP, anyone who reaches the port can send. See the README's "Security".
   * @default undefined (no encryption, no authentication)
   */
  readonly curve?: BrokerCurveOptions;
}

/**
 * Broker options with every default filled in. `curve` is kept without its secret key, so
 * printing the options never shows it.
 */
export type ResolvedBrokerOptions = Required<Omit<BrokerOptions, 'workerEndpoint' | 'curve'>> & {
  readonly workerEndpoint: string | undefined;
  readonly curve: ResolvedBrokerCurve | undefined;
};

/** The broker's defaults, in one place. */
export function brokerDefaults(): Omit<ResolvedBrokerOptions, 'endpoint'> {
  return {
    workerEndpoint: undefined,
    curve: undefined,
    heartbeatIntervalMs: 2500,
    heartbeatLiveness: 3,
    busyTimeoutMs: 60_000,
    serviceQueueMax: 200_000,
    queuedRequestsMax: 1_000_000,
    clientInFlightMax: 200_000,
    requestBytesMax: 256 * 1024 * 1024,
    requestExpiryMs: 10_000,
    servicesMax: 1000,
    workersMax: 10_000,
    deliveriesMax: 2,
    workerCreditMax: 256,
    workerBatchMax: 64,
    frameBytesMax: 80 * 1024 * 1024,
    messageFramesMax: MESSAGE_FRAMES_MAX,
    sendQueueMax: 1_000_000,
  };
}

/**
 * Fills in defaults and validates; throws `InvalidBrokerOptionsError` listing every problem.
 */
export function resolveBrokerOptions(options: BrokerOptions): ResolvedBrokerOptions {
  const check = new OptionProblems('broker');
  const curve = checkBrokerCurve(check, options.curve, {
    endpoint: options.endpoint,
    workerEndpoint: options.workerEndpoint,
  });
  const resolved: ResolvedBrokerOptions = {
    ...brokerDefaults(),
    ...stripUndefined(options),
    endpoint: options.endpoint,
    curve,
  };
  check.endpoint('endpoint', resolved.endpoint);
  if (resolved.workerEndpoint !== undefined) {
    check.endpoint('workerEndpoint', resolved.workerEndpoint);
    const anyPort = /:(\*|0)$/;
    check.check(
      resolved.workerEndpoint !== resolved.endpoint || anyPort.test(resolved.endpoint),
      'workerEndpoint must differ from endpoint (leave it out to share one endpoint)',
    );
  }
  check.integer('heartbeatIntervalMs', resolved.heartbeatIntervalMs, 1);
  check.integer('heartbeatLiveness', resolved.heartbeatLiveness, 1);
  check.integer('busyTimeoutMs', resolved.busyTimeoutMs, 1);
  check.integer('serviceQueueMax', resolved.serviceQueueMax, 0);
  check.integer('clientInFlightMax', resolved.clientInFlightMax, 1, 2 ** 30);
  check.integer('requestBytesMax', resolved.requestBytesMax, 1);
  check.integer('queuedRequestsMax', resolved.queuedRequestsMax, 0);
  check.integer('requestExpiryMs', resolved.requestExpiryMs, 1);
  check.integer('servicesMax', resolved.servicesMax, 1);
  check.integer('workersMax', resolved.workersMax, 1);
  check.integer('deliveriesMax', resolved.deliveriesMax, 1);
  check.integer('workerCreditMax', resolved.workerCreditMax, 1, 65_535);
  check.integer('workerBatchMax', resolved.workerBatchMax, 1, 1024);
  check.integer('frameBytesMax', resolved.frameBytesMax, 1, 2 ** 31 - 1);
  check.integer('messageFramesMax', resolved.messageFramesMax, 4);
  check.integer('sendQueueMax', resolved.sendQueueMax, 1);
  check.throwIfAny();
  return resolved;
}

/** `{ a: undefined }` must not override a default. */
export function stripUndefined<T extends object>(value: T): Partial<T> {
  const result: Partial<T> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (entry !== undefined) (result as Record<string, unknown>)[key] = entry;
  }
  return result;
}
