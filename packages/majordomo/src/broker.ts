import { EventEmitter } from 'node:events';
import * as zmq from 'zeromq';
import { resolveBrokerOptions, type BrokerOptions, type ResolvedBrokerOptions } from './broker-options.js';
import { decodeCorrelation, withCorrelationKind } from './correlation.js';
import { BrokerBindError, BrokerClosedError } from './errors.js';
import {
  MALFORMED_REASONS,
  MESSAGE_FRAMES_MAX,
  MMI_FOUND,
  MMI_NOT_FOUND,
  MMI_NOT_IMPLEMENTED,
  MMI_SERVICE,
  REQUEST_TAG_BYTES,
  clientReplyFrames,
  isMmiService,
  parseRouterMessage,
  pushBatchItem,
  workerBatchFrames,
  workerCreditGrantFrames,
  workerDisconnectFrames,
  workerHeartbeatFrames,
  workerRequestFrames,
  type ClientMessage,
  type MalformedReason,
  type WorkerMessage,
} from './mdp.js';
import { Outbox } from './outbox.js';
import {
  ServiceRegistry,
  frameKey,
  type QueuedRequest,
  type ServiceEntry,
  type WorkerEntry,
} from './service-registry.js';
import { registerZapDomains, secureContext, uniqueZapDomain, type ZapLease } from './secure-context.js';
import { ZAP_ENDPOINT, type ZapDecision, type ZapDomain } from './zap-handler.js';

/** Which socket a message came in on: the only one, or one of the two when workers have their own. */
type Origin = 'shared' | 'clients' | 'workers';

/** Why the broker stopped talking to a worker. */
export type WorkerRemovalReason =
  /** Nothing arrived from it for `heartbeatIntervalMs × heartbeatLiveness`. */
  | 'expired'
  /** It sent DISCONNECT. */
  | 'disconnected'
  /** It sent a second READY (RFC 7: "MUST NOT send a further READY"); answered with DISCONNECT. */
  | 'duplicate-ready'
  /**
   * A REPLY while it had no request, for another client, or (credit extension) with a tag
   * it was not given; answered with DISCONNECT.
   */
  | 'unexpected-reply'
  /** A REQUEST command (brokers send those, workers don't); answered with DISCONNECT. */
  | 'unexpected-command'
  /** A malformed message from a registered worker ("treat that peer as invalid"). */
  | 'invalid-message'
  /** The broker is closing. */
  | 'broker-closed';

/** A worker registered or was removed. Identities are hex routing ids. */
export interface BrokerWorkerEvent {
  readonly identity: string;
  readonly service: string;
}

/** A worker was removed, and why. */
export interface BrokerWorkerRemovedEvent extends BrokerWorkerEvent {
  readonly reason: WorkerRemovalReason;
}

/** A message was dropped as malformed. */
export interface BrokerMalformedEvent {
  readonly reason: MalformedReason;
  /** Hex routing id of the sender, when known. */
  readonly sender: string | undefined;
}

/** A request was refused or given up; see {@link BrokerRejectedError} for the statuses. */
export interface BrokerRejectedEvent {
  readonly service: string;
  readonly status: '502' | '503' | '504';
  /** Whether the client was told: always true (correlated requests get a `broker-rejected` reply, plain ones a status reply). */
  readonly answered: boolean;
}

/**
 * A peer's CURVE handshake was answered by the broker's ZAP handler. Public keys are not
 * secret; secret keys never appear in events.
 */
export interface BrokerPeerEvent {
  /** The broker endpoint the peer connected to (`endpoint` or `workerEndpoint`). */
  readonly endpoint: string;
  /** The peer's IP address. */
  readonly address: string;
  /** The peer's CURVE public key (Z85). */
  readonly publicKey: string | undefined;
  /** The ZAP status sent: 200 accepted, 400 refused, 500 the key policy failed (`error`). */
  readonly status: '200' | '400' | '500';
  /** What the key policy function threw, when it did. */
  readonly error?: unknown;
}

/** Events of a {@link MajordomoBroker}. */
export type BrokerEvents = {
  /** A CURVE peer's public key was allowed (broker with `curve` only). */
  'peer-accepted': [BrokerPeerEvent];
  /** A CURVE peer's public key was refused: its connection is closed before any message. */
  'peer-refused': [BrokerPeerEvent];
  'worker-ready': [BrokerWorkerEvent];
  'worker-removed': [BrokerWorkerRemovedEvent];
  /** A READY the broker refused (mmi.* service, workersMax or servicesMax reached). */
  'worker-refused': [BrokerWorkerEvent];
  malformed: [BrokerMalformedEvent];
  'request-rejected': [BrokerRejectedEvent];
  /** A bug: a message handler threw. The broker keeps serving. */
  'internal-error': [unknown];
};

/** Counters and sizes of a running broker. */
export interface BrokerStats {
  readonly workers: number;
  readonly idleWorkers: number;
  readonly services: number;
  readonly queuedRequests: number;
  readonly messagesReceived: number;
  readonly requestsDispatched: number;
  readonly repliesRouted: number;
  readonly mmiRequests: number;
  /** Malformed messages dropped, by reason. */
  readonly malformed: Readonly<Record<MalformedReason, number>>;
  readonly malformedTotal: number;
  /** Valid but unexpected worker commands from unregistered peers, answered with DISCONNECT. */
  readonly unexpectedCommands: number;
  readonly disconnectsSent: number;
  readonly workersRefused: number;
  readonly workersPurged: number;
  readonly rejectedRequests: number;
  readonly expiredRequests: number;
  readonly redeliveredRequests: number;
  readonly droppedSends: number;
  readonly internalErrors: number;
  /** CURVE handshakes allowed by the allow-list (broker with `curve` only). */
  readonly peersAccepted: number;
  /** CURVE handshakes refused by the allow-list or a failing key policy. */
  readonly peersRefused: number;
  /**
   * Messages on the wrong socket when workers have their own `workerEndpoint`: worker
   * commands on `endpoint` (answered with DISCONNECT) and client requests on `workerEndpoint`
   * (dropped).
   */
  readonly misdirected: number;
}

/** The plain counters of {@link BrokerStats}; the rest are computed when asked. */
type Counter = Exclude<
  keyof BrokerStats,
  'workers' | 'idleWorkers' | 'services' | 'queuedRequests' | 'malformed' | 'malformedTotal' | 'droppedSends'
>;

/**
 * A Majordomo broker (ZeroMQ RFC 7/MDP 0.1 with RFC 8/MMI) on one zeromq v6 ROUTER socket
 * that serves clients and workers alike.
 *
 * It routes each client request to the least recently used idle worker of the named service,
 * queues requests (bounded, expiring) while no worker is free, heartbeats workers and purges
 * dead ones, answers `mmi.*` itself, and drops malformed input without ever stopping: every
 * drop is counted in {@link stats}.
 *
 * With `curve` it encrypts every connection (CURVE, RFC 26) and admits only peers whose public
 * keys its allow-list holds (ZAP, RFC 27); with `workerEndpoint` workers connect to a socket
 * of their own, with their own allow-list.
 *
 * @example
 * const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*' });
 * console.log(broker.endpoint); // tcp://127.0.0.1:39217
 * // ... clients and workers connect to broker.endpoint ...
 * await broker.close();
 */
export class MajordomoBroker extends EventEmitter<BrokerEvents> {
  /** Options with defaults filled in. */
  readonly options: ResolvedBrokerOptions;
  /** The socket at `endpoint`: clients, and workers too unless they have their own. */
  private readonly socket: zmq.Router;
  private readonly outbox: Outbox;
  /** The socket workers use: `socket` itself, or the one at `workerEndpoint`. */
  private readonly workerSocket: zmq.Router;
  private readonly workerOutbox: Outbox;
  /** With `curve`: the ZAP domains of this broker's sockets, answered once started. */
  private readonly zapDomains: readonly ZapDomain[];
  private zapLease: ZapLease | undefined;
  private readonly registry: ServiceRegistry;
  private readonly counters: Record<Counter, number> = {
    messagesReceived: 0,
    requestsDispatched: 0,
    repliesRouted: 0,
    mmiRequests: 0,
    unexpectedCommands: 0,
    disconnectsSent: 0,
    workersRefused: 0,
    workersPurged: 0,
    rejectedRequests: 0,
    expiredRequests: 0,
    redeliveredRequests: 0,
    internalErrors: 0,
    peersAccepted: 0,
    peersRefused: 0,
    misdirected: 0,
  };
  private readonly malformed: Record<MalformedReason, number>;
  /** Workers with a BATCH being built (batch extension), sent at the end of the turn. */
  private batching: WorkerEntry[] = [];
  private batchFlushScheduled = false;
  private state: 'new' | 'starting' | 'running' | 'closed' = 'new';
  private boundEndpoint: string | undefined;
  private boundWorkerEndpoint: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loops: Promise<void>[] = [];

  /** Validates the options; call {@link start} (or use {@link createBroker}) to bind. */
  constructor(options: BrokerOptions) {
    super();
    this.options = resolveBrokerOptions(options);
    const curve = this.options.curve;
    // The secret goes straight from the caller's options into the sockets: it is kept in no
    // field of the broker, so neither `options` nor an inspected broker shows it.
    const secretKey = options.curve?.secretKey;
    // CURVE sockets live in this package's own ZeroMQ context, whose one ZAP handler answers
    // by domain: each broker's sockets have domains of their own (see secure-context.ts).
    const context = curve === undefined ? undefined : secureContext();
    const clientDomain = uniqueZapDomain('clients');
    const workerDomain = uniqueZapDomain('workers');
    const routerOptions = (zapDomain: string) => ({
      linger: 0,
      maxMessageSize: this.options.frameBytesMax,
      // Replies to one client wait in its pipe until it reads them. A client has at most
      // clientInFlightMax requests held, so its pipe never needs more room than that for
      // replies (plus refusals and MMI answers): ZeroMQ's default of 1000 would drop replies
      // to a client that sends many requests before reading (the guide's async client).
      sendHighWaterMark: Math.min(2 ** 31 - 1, this.options.clientInFlightMax * 2),
      // A ROUTER never blocks a send (a full or unknown peer pipe drops the message, as
      // without the timeout), so zeromq.js may skip its readiness check: with the default
      // (-1) every send first asks libzmq for ZMQ_EVENTS, a poll() and a getpid() each time.
      sendTimeout: 0,
      ...(context === undefined
        ? {}
        : { context, curveServer: true, curveSecretKey: secretKey ?? null, zapDomain, zapEnforceDomain: true }),
    });
    this.socket = new zmq.Router(routerOptions(clientDomain));
    this.outbox = new Outbox(this.socket, this.options.sendQueueMax);
    if (this.options.workerEndpoint === undefined) {
      this.workerSocket = this.socket;
      this.workerOutbox = this.outbox;
    } else {
      this.workerSocket = new zmq.Router(routerOptions(workerDomain));
      this.workerOutbox = new Outbox(this.workerSocket, this.options.sendQueueMax);
    }
    const domains: ZapDomain[] = [];
    if (curve !== undefined) {
      domains.push({
        domain: clientDomain,
        policy: curve.allowedClientKeys,
        decided: (decision) => this.onZapDecision(decision, () => this.boundEndpoint ?? this.options.endpoint),
      });
      if (this.separateWorkers) {
        domains.push({
          domain: workerDomain,
          policy: curve.allowedWorkerKeys,
          decided: (decision) => this.onZapDecision(decision, () => this.boundWorkerEndpoint ?? this.options.workerEndpoint ?? ''),
        });
      }
    }
    this.zapDomains = domains;
    this.registry = new ServiceRegistry(this.options.servicesMax);
    this.malformed = Object.fromEntries(MALFORMED_REASONS.map((reason) => [reason, 0])) as Record<
      MalformedReason,
      number
    >;
  }

  /** Binds the endpoint and starts serving. Rejects with `BrokerBindError` if it cannot bind. */
  async start(): Promise<this> {
    if (this.state !== 'new') throw new BrokerClosedError('broker (start() was already called)');
    this.state = 'starting';
    try {
      // The ZAP handler first: a CURVE socket enforcing its domain refuses every peer until
      // a handler answers, so no connection is ever let in unchecked.
      if (this.zapDomains.length > 0) {
        this.zapLease = await this.bindOrThrow(ZAP_ENDPOINT, () => registerZapDomains(this.zapDomains));
      }
      this.boundEndpoint = await this.bindOrThrow(this.options.endpoint, () => this.bind(this.socket, this.options.endpoint));
      const workerEndpoint = this.options.workerEndpoint;
      if (workerEndpoint !== undefined) {
        this.boundWorkerEndpoint = await this.bindOrThrow(workerEndpoint, () => this.bind(this.workerSocket, workerEndpoint));
      }
    } catch (error) {
      await this.shutDownSockets();
      throw error;
    }
    if (this.state !== 'starting') throw new BrokerClosedError('broker');
    this.state = 'running';
    this.timer = setInterval(() => this.housekeeping(), this.options.heartbeatIntervalMs);
    this.timer.unref();
    this.loops.push(this.receiveLoop(this.socket, this.separateWorkers ? 'clients' : 'shared'));
    if (this.separateWorkers) this.loops.push(this.receiveLoop(this.workerSocket, 'workers'));
    return this;
  }

  /** The bound endpoint, with the real port when port 0 or `*` was asked for. */
  get endpoint(): string {
    if (this.boundEndpoint === undefined) {
      throw new BrokerClosedError('broker (not started: await broker.start() first)');
    }
    return this.boundEndpoint;
  }

  /** Where workers connect: the bound `workerEndpoint`, or {@link endpoint} when they share it. */
  get workerEndpoint(): string {
    if (!this.separateWorkers) return this.endpoint;
    if (this.boundWorkerEndpoint === undefined) {
      throw new BrokerClosedError('broker (not started: await broker.start() first)');
    }
    return this.boundWorkerEndpoint;
  }

  /** The broker's CURVE public key (Z85) to give clients and workers, when `curve` is set. */
  get curvePublicKey(): string | undefined {
    return this.options.curve?.publicKey;
  }

  /** Counters and sizes, for tests and monitoring. */
  stats(): BrokerStats {
    let idleWorkers = 0;
    for (const service of this.registry.services.values()) idleWorkers += service.idle.size;
    let malformedTotal = 0;
    for (const reason of MALFORMED_REASONS) malformedTotal += this.malformed[reason];
    return {
      ...this.counters,
      workers: this.registry.workers.size,
      idleWorkers,
      services: this.registry.services.size,
      queuedRequests: this.registry.queuedRequests,
      malformed: { ...this.malformed },
      malformedTotal,
      droppedSends: this.outbox.dropped + (this.separateWorkers ? this.workerOutbox.dropped : 0),
    };
  }

  /** Names of the services with at least one registered worker. */
  serviceNames(): string[] {
    const names: string[] = [];
    for (const service of this.registry.services.values()) {
      if (service.workers > 0) names.push(service.name.toString('utf8'));
    }
    return names;
  }

  /** Stops serving and closes the socket. Queued requests are dropped. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.timer) clearInterval(this.timer);
    await this.shutDownSockets();
    await Promise.all(this.loops);
    for (const worker of [...this.registry.workers.values()]) {
      this.registry.removeWorker(worker);
      this.emitWorkerRemoved(worker, 'broker-closed');
    }
  }

  private get separateWorkers(): boolean {
    return this.workerSocket !== this.socket;
  }

  /** Binds `endpoint` (port 0 taken as `*`) and returns the endpoint actually bound. */
  private async bind(socket: zmq.Router, endpoint: string): Promise<string> {
    const wanted = endpoint.replace(/^tcp:\/\/(.+):0$/, 'tcp://$1:*');
    await socket.bind(wanted);
    return socket.lastEndpoint ?? wanted;
  }

  private async bindOrThrow<T>(endpoint: string, bind: () => Promise<T>): Promise<T> {
    try {
      return await bind();
    } catch (error) {
      throw new BrokerBindError(endpoint, { cause: error });
    }
  }

  private async shutDownSockets(): Promise<void> {
    this.socket.close();
    if (this.separateWorkers) this.workerSocket.close();
    const lease = this.zapLease;
    this.zapLease = undefined;
    await lease?.release();
  }

  private async receiveLoop(socket: zmq.Router, origin: Origin): Promise<void> {
    try {
      // receive() straight, not `for await` over the socket: its iterator wraps every message
      // in one more async call and result object.
      while (!socket.closed) {
        const frames = await socket.receive();
        try {
          this.onMessage(frames, origin);
        } catch (error) {
          this.counters.internalErrors += 1;
          this.emit('internal-error', error);
        }
      }
    } catch (error) {
      if (!socket.closed) {
        this.counters.internalErrors += 1;
        this.emit('internal-error', error);
      }
    }
  }

  private onMessage(frames: Buffer[], origin: Origin): void {
    this.counters.messagesReceived += 1;
    const parsed = parseRouterMessage(frames, { framesMax: this.options.messageFramesMax });
    if (!parsed.ok) {
      this.onMalformed(parsed.reason, parsed.sender, origin);
      return;
    }
    const { value } = parsed;
    if (value.protocol === 'client') {
      if (origin === 'workers') this.counters.misdirected += 1; // dropped: clients belong on `endpoint`
      else this.onClientRequest(value.sender, value.message);
    } else if (origin === 'clients') {
      this.onMisdirectedWorker(value.sender, value.message);
    } else {
      this.onWorkerMessage(value.sender, value.message);
    }
  }

  private onMalformed(reason: MalformedReason, sender: Buffer | undefined, origin: Origin): void {
    this.malformed[reason] += 1;
    if (this.listenerCount('malformed') > 0) {
      this.emit('malformed', { reason, sender: sender?.toString('hex') });
    }
    // RFC 7: "SHOULD respond to invalid messages by dropping them and treating that peer as
    // invalid". A registered worker that sends garbage is disconnected so it starts afresh.
    // Routing ids are per socket: one from the clients' socket never names a worker.
    if (sender === undefined || origin === 'clients') return;
    const worker = this.registry.workers.get(frameKey(sender));
    if (worker) this.removeWorker(worker, 'invalid-message', true);
  }

  // ---- security --------------------------------------------------------------------------

  private onZapDecision(decision: ZapDecision, endpoint: () => string): void {
    if (this.state === 'closed') return;
    const event: BrokerPeerEvent = {
      endpoint: endpoint(),
      address: decision.address,
      publicKey: decision.publicKey,
      status: decision.status,
      ...(decision.error === undefined ? {} : { error: decision.error }),
    };
    if (decision.allowed) {
      this.counters.peersAccepted += 1;
      this.emit('peer-accepted', event);
    } else {
      this.counters.peersRefused += 1;
      this.emit('peer-refused', event);
    }
  }

  /**
   * A worker command on the clients' socket while workers have their own: never registered
   * (its key was checked against the clients' list, not the workers'); told to go with
   * DISCONNECT, as RFC 7 answers any unexpected command.
   */
  private onMisdirectedWorker(sender: Buffer, message: WorkerMessage): void {
    this.counters.misdirected += 1;
    if (message.command === 'disconnect') return;
    this.counters.disconnectsSent += 1;
    this.outbox.push(workerDisconnectFrames(sender));
    if (message.command === 'ready') {
      this.counters.workersRefused += 1;
      this.emit('worker-refused', { identity: sender.toString('hex'), service: message.service.toString('utf8') });
    }
  }

  // ---- MDP/Worker ----------------------------------------------------------------------

  private onWorkerMessage(sender: Buffer, message: WorkerMessage): void {
    const now = Date.now();
    const worker = this.registry.workers.get(frameKey(sender));
    if (worker === undefined) {
      this.onUnregisteredWorker(sender, message, now);
      return;
    }
    // "Any received command except DISCONNECT acts as a heartbeat."
    if (message.command !== 'disconnect') {
      worker.expiresAt = now + this.expiryMs;
      worker.lastHeardAt = now;
    }
    switch (message.command) {
      case 'ready':
        this.removeWorker(worker, 'duplicate-ready', true);
        return;
      case 'reply': {
        const body = message.body;
        // RFC 7 workers hold one request (tag 0); credit workers name theirs by its tag, first
        // in the body, and may answer in any order.
        let tag = 0;
        if (worker.tagged) {
          const tagFrame = body[0];
          if (tagFrame.length !== REQUEST_TAG_BYTES || body.length < 2) {
            this.removeWorker(worker, 'unexpected-reply', true);
            return;
          }
          tag = tagFrame.readUInt32BE(0);
        }
        if (!this.routeReply(worker, tag, message.client, body, worker.tagged ? 1 : 0)) return;
        this.dispatch(worker.service);
        return;
      }
      case 'batch': {
        // Batch extension: only a worker granted it sends several replies per message.
        if (worker.batch <= 1) {
          this.removeWorker(worker, 'unexpected-command', true);
          return;
        }
        const items = message.items;
        for (let i = 0; i < items.length; i += 1) {
          const item = items[i];
          if (!this.routeReply(worker, item.tag, item.client, item.body, 0)) return;
        }
        this.dispatch(worker.service);
        return;
      }
      case 'heartbeat':
        if (worker.inFlight.size > 0) worker.heartbeatsWhileBusy = true;
        return;
      case 'disconnect':
        // "When the broker receives DISCONNECT from a worker it MUST send no further commands
        // to that worker."
        this.removeWorker(worker, 'disconnected', false);
        return;
      case 'request':
        this.removeWorker(worker, 'unexpected-command', true);
        return;
    }
  }

  /**
   * Sends a worker's reply to its client and gives the worker its credit back; false when the
   * worker does not hold that request (it is then disconnected and its requests taken back).
   */
  private routeReply(worker: WorkerEntry, tag: number, client: Buffer, body: readonly Buffer[], from: number): boolean {
    const request = worker.inFlight.get(tag);
    if (request === undefined || !request.client.equals(client)) {
      this.removeWorker(worker, 'unexpected-reply', true);
      return false;
    }
    worker.inFlight.delete(tag);
    this.registry.release(request);
    this.sendToClient(clientReplyFrames(client, worker.service.name, body, from));
    this.counters.repliesRouted += 1;
    // Back among the workers with credit (a Set keeps the place of one already there).
    worker.service.idle.add(worker);
    return true;
  }

  private onUnregisteredWorker(sender: Buffer, message: WorkerMessage, now: number): void {
    switch (message.command) {
      case 'ready': {
        const event = { identity: sender.toString('hex'), service: message.service.toString('utf8') };
        // RFC 8: "MUST disconnect any workers that attempt to register services in this namespace."
        const service =
          isMmiService(message.service) || this.registry.workers.size >= this.options.workersMax
            ? undefined
            : this.registry.requireService(message.service);
        if (service === undefined) {
          this.counters.workersRefused += 1;
          this.sendDisconnect(sender);
          this.emit('worker-refused', event);
          return;
        }
        // Credit extension: grant at most workerCreditMax; the grant goes out before any
        // request, so the worker knows every request on this connection is tagged.
        const credit = message.credit === undefined ? undefined : Math.min(message.credit, this.options.workerCreditMax);
        // Batch extension (asked with credit only): granted capped by workerBatchMax.
        const batch = credit === undefined || message.batch === undefined ? undefined : Math.min(message.batch, this.options.workerBatchMax);
        const worker = this.registry.addWorker(sender, service, now, this.expiryMs, credit, batch);
        if (credit !== undefined) this.sendToWorker(workerCreditGrantFrames(worker.identity, credit, batch));
        this.emit('worker-ready', event);
        this.dispatch(service);
        return;
      }
      case 'disconnect':
        // "The worker MAY send DISCONNECT at any time, including before READY."
        return;
      default:
        // A REPLY, HEARTBEAT or REQUEST from a peer that never sent READY: "The broker MUST
        // respond to any valid but unexpected command by sending DISCONNECT".
        this.counters.unexpectedCommands += 1;
        this.sendDisconnect(sender);
    }
  }

  /**
   * Dead when silent for heartbeat × liveness; but a worker holding a request that has never
   * heartbeated while busy (a single-threaded reference worker) gets `busyTimeoutMs` of
   * silence first, so a slow handler's reply still gets through (issue 10, item 4). A credit
   * worker never gets that grace: the extension requires heartbeats while requests are held,
   * so its silence means it is gone (a worker that reconnected on a new socket right after its
   * requests were sent would otherwise hold them for busyTimeoutMs).
   */
  private isExpired(worker: WorkerEntry, now: number): boolean {
    if (worker.inFlight.size > 0 && !worker.heartbeatsWhileBusy && !worker.tagged) {
      return now >= Math.max(worker.expiresAt, worker.lastHeardAt + this.options.busyTimeoutMs);
    }
    return worker.expiresAt <= now;
  }

  private get expiryMs(): number {
    return this.options.heartbeatIntervalMs * this.options.heartbeatLiveness;
  }

  private sendDisconnect(identity: Buffer): void {
    this.counters.disconnectsSent += 1;
    this.sendToWorker(workerDisconnectFrames(identity));
  }

  /** Unregisters a worker, redelivers its request, and dispatches what can be. */
  private removeWorker(worker: WorkerEntry, reason: WorkerRemovalReason, disconnect: boolean): void {
    this.dropWorker(worker, reason, disconnect);
    this.dispatch(worker.service);
    this.registry.releaseIfUnused(worker.service);
  }

  /**
   * Unregisters a worker and takes back its requests (every one of a credit worker's): each
   * is queued again at the front, in its order, or answered with 502; none is dropped. Does
   * not dispatch.
   */
  private dropWorker(worker: WorkerEntry, reason: WorkerRemovalReason, disconnect: boolean): void {
    // A BATCH not sent yet: its requests are in flight for the worker and are taken back below.
    worker.outgoing = undefined;
    worker.outgoingCount = 0;
    if (disconnect) this.sendDisconnect(worker.identity);
    const requests = this.registry.removeWorker(worker);
    if (reason === 'expired') this.counters.workersPurged += 1;
    this.emitWorkerRemoved(worker, reason);
    // Newest first, each to the front of the queue: the oldest ends up first again.
    for (let i = requests.length - 1; i >= 0; i -= 1) this.takeBack(worker, requests[i], reason);
  }

  private takeBack(worker: WorkerEntry, request: QueuedRequest, reason: WorkerRemovalReason): void {
    if (request.deliveries >= this.options.deliveriesMax) {
      this.registry.release(request);
      this.reject(
        request.client,
        worker.service.name,
        request.body,
        '502',
        `the worker was lost (${reason}) after ${request.deliveries} deliveries; ` +
          `the request may or may not have been processed`,
      );
      return;
    }
    // RFC 7 goal: "recover from dead or disconnected workers by resending requests to other
    // workers" (workers are assumed idempotent).
    this.counters.redeliveredRequests += 1;
    this.registry.requeue(worker.service, request);
  }

  private emitWorkerRemoved(worker: WorkerEntry, reason: WorkerRemovalReason): void {
    this.emit('worker-removed', {
      identity: worker.identity.toString('hex'),
      service: worker.service.name.toString('utf8'),
      reason,
    });
  }

  // ---- MDP/Client ----------------------------------------------------------------------

  private onClientRequest(sender: Buffer, message: ClientMessage): void {
    const { service: name, body } = message;
    if (isMmiService(name)) {
      this.onMmiRequest(sender, message);
      return;
    }
    const service = this.registry.requireService(name);
    if (service === undefined) {
      this.reject(sender, name, body, '503', `too many services (servicesMax ${this.options.servicesMax})`);
      return;
    }
    if (service.requests.length >= this.options.serviceQueueMax) {
      this.reject(sender, name, body, '503', `service queue full (serviceQueueMax ${this.options.serviceQueueMax})`);
      this.registry.releaseIfUnused(service);
      return;
    }
    const clientKey = frameKey(sender);
    const bytes = bodyBytes(body);
    const refusal = this.refusal(clientKey, bytes);
    if (refusal !== undefined) {
      this.reject(sender, name, body, '503', refusal);
      this.registry.releaseIfUnused(service);
      return;
    }
    const request: QueuedRequest = {
      // zeromq.js gives every received frame a buffer of its own, never reused: kept as is.
      client: sender,
      clientKey,
      bytes,
      body,
      receivedAt: Date.now(),
      deliveries: 0,
    };
    this.registry.hold(request);
    this.registry.enqueue(service, request);
    this.dispatch(service);
  }

  /** Why a request over the limits is refused, or `undefined` when it may be held. */
  private refusal(clientKey: string, bytes: number): string | undefined {
    const { queuedRequestsMax, clientInFlightMax, requestBytesMax } = this.options;
    if (this.registry.queuedRequests >= queuedRequestsMax) {
      return `too many queued requests (queuedRequestsMax ${queuedRequestsMax})`;
    }
    if (this.registry.inFlightOf(clientKey) >= clientInFlightMax) {
      return `this client already has ${clientInFlightMax} requests in flight (clientInFlightMax): wait for replies before sending more`;
    }
    if (this.registry.heldBytes + bytes > requestBytesMax) {
      return `the broker holds ${this.registry.heldBytes} bytes of requests (requestBytesMax ${requestBytesMax})`;
    }
    return undefined;
  }

  /**
   * RFC 8/MMI. Like the reference broker, the reply is the request body with its last frame
   * replaced by the status code, so any frames before it (a correlation frame) come back.
   */
  private onMmiRequest(sender: Buffer, { service, body }: ClientMessage): void {
    this.counters.mmiRequests += 1;
    let status = MMI_NOT_IMPLEMENTED;
    if (service.toString('latin1') === MMI_SERVICE) {
      const asked = this.registry.services.get(frameKey(body[body.length - 1]));
      status = asked !== undefined && asked.workers > 0 ? MMI_FOUND : MMI_NOT_FOUND;
    }
    const reply = [...body.slice(0, -1), Buffer.from(status, 'latin1')];
    this.sendToClient(clientReplyFrames(sender, service, reply));
  }

  /**
   * Refuses or gives up a request; never silently. A correlated request gets a
   * `broker-rejected` reply (correlation frame of that kind, status, reason). MDP/0.1 has no
   * error reply, so a plain request gets a reply whose body is the status and the reason
   * (`"503"`, `"[sluice/majordomo] ..."`), as MMI answers with a status: a reference client
   * sees an answer it can check, not a timeout.
   */
  private reject(
    client: Buffer,
    service: Buffer,
    body: readonly Buffer[],
    status: '502' | '503' | '504',
    detail: string,
  ): void {
    this.counters.rejectedRequests += 1;
    const correlation = decodeCorrelation(body[0]);
    const correlated = correlation !== undefined && correlation.kind === 'message';
    const answered = true;
    const error = [Buffer.from(status, 'latin1'), Buffer.from(correlated ? detail : `[sluice/majordomo] ${detail}`, 'utf8')];
    this.sendToClient(clientReplyFrames(client, service, correlated ? [withCorrelationKind(body[0], 'broker-rejected'), ...error] : error));
    if (this.listenerCount('request-rejected') > 0) {
      this.emit('request-rejected', { service: service.toString('utf8'), status, answered });
    }
  }

  // ---- routing and housekeeping --------------------------------------------------------

  /** Hands queued requests of the service to its idle workers, least recently used first. */
  private dispatch(service: ServiceEntry): void {
    const now = Date.now();
    while (service.requests.length > 0) {
      const worker = this.registry.takeIdleWorker(service);
      if (worker === undefined) return;
      if (this.isExpired(worker, now)) {
        this.dropWorker(worker, 'expired', false);
        continue;
      }
      const request = this.registry.dequeue(service) as QueuedRequest;
      request.deliveries += 1;
      let tag: Buffer | undefined;
      if (worker.tagged) {
        // The next tag not in use: a reply names its request by it.
        let next = worker.nextTag;
        while (worker.inFlight.has(next)) next = (next + 1) >>> 0;
        worker.nextTag = (next + 1) >>> 0;
        worker.inFlight.set(next, request);
        tag = Buffer.allocUnsafe(REQUEST_TAG_BYTES);
        tag.writeUInt32BE(next, 0);
      } else {
        worker.inFlight.set(0, request);
      }
      // Still credit left: back at the end of the line, so requests spread over the workers.
      if (worker.inFlight.size < worker.credit) service.idle.add(worker);
      worker.lastSentAt = now;
      this.counters.requestsDispatched += 1;
      if (worker.batch > 1 && tag !== undefined) this.batchToWorker(worker, tag, request);
      else this.sendToWorker(workerRequestFrames(worker.identity, request.client, request.body, tag));
    }
  }

  /**
   * Batch extension: adds a request to the worker's BATCH, sent when it holds `batch`
   * requests (or would pass the frame limit) or at the end of this turn of the event loop,
   * so requests that arrive together travel together (one message, not one each).
   */
  private batchToWorker(worker: WorkerEntry, tag: Buffer, request: QueuedRequest): void {
    const body = request.body;
    // The worker parses with the default frame limit: a request that cannot fit goes alone.
    if (body.length + 5 > MESSAGE_FRAMES_MAX) {
      this.sendToWorker(workerRequestFrames(worker.identity, request.client, body, tag));
      return;
    }
    if (worker.outgoing !== undefined && worker.outgoing.length + body.length + 2 > MESSAGE_FRAMES_MAX) this.flushBatch(worker);
    if (worker.outgoing === undefined) {
      worker.outgoing = workerBatchFrames(worker.identity);
      this.batching.push(worker);
      if (!this.batchFlushScheduled) {
        this.batchFlushScheduled = true;
        setImmediate(this.flushBatches);
      }
    }
    pushBatchItem(worker.outgoing, tag.readUInt32BE(0), request.client, body);
    worker.outgoingCount += 1;
    if (worker.outgoingCount >= worker.batch) this.flushBatch(worker);
  }

  private flushBatch(worker: WorkerEntry): void {
    const frames = worker.outgoing;
    if (frames === undefined) return;
    worker.outgoing = undefined;
    worker.outgoingCount = 0;
    this.sendToWorker(frames);
  }

  /** Sends every BATCH still being built: the end of the broker's turn. */
  private readonly flushBatches = (): void => {
    this.batchFlushScheduled = false;
    const workers = this.batching;
    this.batching = [];
    if (this.state !== 'running') return;
    for (const worker of workers) {
      // A worker dropped since has nothing left to send (its requests were taken back).
      if (this.registry.workers.get(worker.key) === worker) this.flushBatch(worker);
    }
  };

  private housekeeping(): void {
    if (this.state !== 'running') return;
    try {
      const now = Date.now();
      const touched = new Set<ServiceEntry>();
      for (const worker of this.registry.workers.values()) {
        if (this.isExpired(worker, now)) {
          this.dropWorker(worker, 'expired', false);
          touched.add(worker.service);
        }
      }
      // Skip workers that got a command within the last half interval: "Peers SHOULD NOT send
      // HEARTBEAT commands while also sending other commands."
      const quietMs = this.options.heartbeatIntervalMs / 2;
      for (const worker of this.registry.workers.values()) {
        if (now - worker.lastSentAt >= quietMs) {
          worker.lastSentAt = now;
          this.sendToWorker(workerHeartbeatFrames(worker.identity));
        }
      }
      for (const service of this.registry.services.values()) {
        // Only requests no worker can take expire: while a service has workers its queue
        // moves (a long queue behind live workers is back-pressure, not a failure; the
        // queue limits bound it).
        if (service.workers > 0) {
          touched.add(service);
          continue;
        }
        for (let front = service.requests.peek(); front !== undefined; front = service.requests.peek()) {
          if (now - front.receivedAt < this.options.requestExpiryMs) break;
          this.registry.dequeue(service);
          this.registry.release(front);
          this.counters.expiredRequests += 1;
          this.reject(
            front.client,
            service.name,
            front.body,
            '504',
            `no worker for "${service.name.toString('utf8')}" took the request within ` +
              `requestExpiryMs ${this.options.requestExpiryMs}`,
          );
        }
        touched.add(service);
      }
      for (const service of touched) {
        this.dispatch(service);
        this.registry.releaseIfUnused(service);
      }
    } catch (error) {
      this.counters.internalErrors += 1;
      this.emit('internal-error', error);
    }
  }

  private sendToClient(frames: Buffer[]): void {
    this.outbox.push(frames);
  }

  private sendToWorker(frames: Buffer[]): void {
    this.workerOutbox.push(frames);
  }
}

/** Bytes of a message body (what the broker holds for a request). */
function bodyBytes(body: readonly Buffer[]): number {
  let bytes = 0;
  for (const frame of body) bytes += frame.length;
  return bytes;
}

/**
 * Creates a broker and binds it.
 *
 * @example
 * const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: 1000 });
 * const worker = createWorker({ endpoint: broker.endpoint, service: 'echo', handler: async (r) => r });
 * const client = new MajordomoClient({ endpoints: [broker.endpoint] });
 * const reply = await client.request('echo', [Buffer.from('hi')]);
 */
export async function createBroker(options: BrokerOptions): Promise<MajordomoBroker> {
  return new MajordomoBroker(options).start();
}
