import { EventEmitter } from 'node:events';
import * as zmq from 'zeromq';
import { resolveBrokerOptions, type BrokerOptions, type ResolvedBrokerOptions } from './broker-options.js';
import { decodeCorrelation, withCorrelationKind } from './correlation.js';
import { BrokerBindError, BrokerClosedError } from './errors.js';
import {
  MALFORMED_REASONS,
  MMI_FOUND,
  MMI_NOT_FOUND,
  MMI_NOT_IMPLEMENTED,
  MMI_SERVICE,
  clientReplyFrames,
  isMmiService,
  parseRouterMessage,
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

/** Why the broker stopped talking to a worker. */
export type WorkerRemovalReason =
  /** Nothing arrived from it for `heartbeatIntervalMs × heartbeatLiveness`. */
  | 'expired'
  /** It sent DISCONNECT. */
  | 'disconnected'
  /** It sent a second READY (RFC 7: "MUST NOT send a further READY"); answered with DISCONNECT. */
  | 'duplicate-ready'
  /** A REPLY while it had no request, or for another client; answered with DISCONNECT. */
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
  /** Whether the client was told (correlated request) or the request was dropped (plain). */
  readonly answered: boolean;
}

/** Events of a {@link MajordomoBroker}. */
export type BrokerEvents = {
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
 * @example
 * const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*' });
 * console.log(broker.endpoint); // tcp://127.0.0.1:39217
 * // ... clients and workers connect to broker.endpoint ...
 * await broker.close();
 */
export class MajordomoBroker extends EventEmitter<BrokerEvents> {
  /** Options with defaults filled in. */
  readonly options: ResolvedBrokerOptions;
  private readonly socket: zmq.Router;
  private readonly outbox: Outbox;
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
  };
  private readonly malformed: Record<MalformedReason, number>;
  private state: 'new' | 'starting' | 'running' | 'closed' = 'new';
  private boundEndpoint: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;

  /** Validates the options; call {@link start} (or use {@link createBroker}) to bind. */
  constructor(options: BrokerOptions) {
    super();
    this.options = resolveBrokerOptions(options);
    this.socket = new zmq.Router({
      linger: 0,
      maxMessageSize: this.options.frameBytesMax,
    });
    this.outbox = new Outbox(this.socket, this.options.sendQueueMax);
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
    const endpoint = this.options.endpoint.replace(/^tcp:\/\/(.+):0$/, 'tcp://$1:*');
    try {
      await this.socket.bind(endpoint);
    } catch (error) {
      this.state = 'closed';
      this.socket.close();
      throw new BrokerBindError(this.options.endpoint, { cause: error });
    }
    if (this.state !== 'starting') throw new BrokerClosedError('broker');
    this.boundEndpoint = this.socket.lastEndpoint ?? endpoint;
    this.state = 'running';
    this.timer = setInterval(() => this.housekeeping(), this.options.heartbeatIntervalMs);
    this.timer.unref();
    this.loop = this.receiveLoop();
    return this;
  }

  /** The bound endpoint, with the real port when port 0 or `*` was asked for. */
  get endpoint(): string {
    if (this.boundEndpoint === undefined) {
      throw new BrokerClosedError('broker (not started: await broker.start() first)');
    }
    return this.boundEndpoint;
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
      droppedSends: this.outbox.dropped,
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
    this.socket.close();
    await this.loop;
    for (const worker of [...this.registry.workers.values()]) {
      this.registry.removeWorker(worker);
      this.emitWorkerRemoved(worker, 'broker-closed');
    }
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        try {
          this.onMessage(frames);
        } catch (error) {
          this.counters.internalErrors += 1;
          this.emit('internal-error', error);
        }
      }
    } catch (error) {
      if (!this.socket.closed) {
        this.counters.internalErrors += 1;
        this.emit('internal-error', error);
      }
    }
  }

  private onMessage(frames: Buffer[]): void {
    this.counters.messagesReceived += 1;
    const parsed = parseRouterMessage(frames, { framesMax: this.options.messageFramesMax });
    if (!parsed.ok) {
      this.onMalformed(parsed.reason, parsed.sender);
      return;
    }
    const { value } = parsed;
    if (value.protocol === 'client') this.onClientRequest(value.sender, value.message);
    else this.onWorkerMessage(value.sender, value.message);
  }

  private onMalformed(reason: MalformedReason, sender: Buffer | undefined): void {
    this.malformed[reason] += 1;
    if (this.listenerCount('malformed') > 0) {
      this.emit('malformed', { reason, sender: sender?.toString('hex') });
    }
    // RFC 7: "SHOULD respond to invalid messages by dropping them and treating that peer as
    // invalid". A registered worker that sends garbage is disconnected so it starts afresh.
    if (sender === undefined) return;
    const worker = this.registry.workers.get(frameKey(sender));
    if (worker) this.removeWorker(worker, 'invalid-message', true);
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
    if (message.command !== 'disconnect') worker.expiresAt = now + this.expiryMs;
    switch (message.command) {
      case 'ready':
        this.removeWorker(worker, 'duplicate-ready', true);
        return;
      case 'reply': {
        const request = worker.request;
        if (request === undefined || !request.client.equals(message.client)) {
          this.removeWorker(worker, 'unexpected-reply', true);
          return;
        }
        worker.request = undefined;
        this.send(clientReplyFrames(message.client, worker.service.name, message.body));
        this.counters.repliesRouted += 1;
        worker.service.idle.add(worker);
        this.dispatch(worker.service);
        return;
      }
      case 'heartbeat':
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
        this.registry.addWorker(sender, service, now, this.expiryMs);
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

  private get expiryMs(): number {
    return this.options.heartbeatIntervalMs * this.options.heartbeatLiveness;
  }

  private sendDisconnect(identity: Buffer): void {
    this.counters.disconnectsSent += 1;
    this.send(workerDisconnectFrames(identity));
  }

  /** Unregisters a worker, redelivers its request, and dispatches what can be. */
  private removeWorker(worker: WorkerEntry, reason: WorkerRemovalReason, disconnect: boolean): void {
    this.dropWorker(worker, reason, disconnect);
    this.dispatch(worker.service);
    this.registry.releaseIfUnused(worker.service);
  }

  /** Unregisters a worker and takes back its request; does not dispatch. */
  private dropWorker(worker: WorkerEntry, reason: WorkerRemovalReason, disconnect: boolean): void {
    if (disconnect) this.sendDisconnect(worker.identity);
    const request = this.registry.removeWorker(worker);
    if (reason === 'expired') this.counters.workersPurged += 1;
    this.emitWorkerRemoved(worker, reason);
    if (request === undefined) return;
    if (request.deliveries >= this.options.deliveriesMax) {
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
    if (this.registry.queuedRequests >= this.options.queuedRequestsMax) {
      this.reject(
        sender,
        name,
        body,
        '503',
        `too many queued requests (queuedRequestsMax ${this.options.queuedRequestsMax})`,
      );
      this.registry.releaseIfUnused(service);
      return;
    }
    this.registry.enqueue(service, {
      client: Buffer.from(sender),
      body,
      receivedAt: Date.now(),
      deliveries: 0,
    });
    this.dispatch(service);
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
    this.send(clientReplyFrames(sender, service, reply));
  }

  /**
   * Refuses or gives up a request. MDP/0.1 has no error reply, so a plain request is dropped
   * (its client times out and retries, as RFC 7 recommends); a correlated request gets an
   * immediate `broker-rejected` reply with a status and a reason.
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
    const answered = correlation !== undefined && correlation.kind === 'message';
    if (answered) {
      this.send(
        clientReplyFrames(client, service, [
          withCorrelationKind(body[0], 'broker-rejected'),
          Buffer.from(status, 'latin1'),
          Buffer.from(detail, 'utf8'),
        ]),
      );
    }
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
      if (worker.expiresAt <= now) {
        this.dropWorker(worker, 'expired', false);
        continue;
      }
      const request = this.registry.dequeue(service) as QueuedRequest;
      request.deliveries += 1;
      worker.request = request;
      worker.lastSentAt = now;
      this.counters.requestsDispatched += 1;
      this.send(workerRequestFrames(worker.identity, request.client, request.body));
    }
  }

  private housekeeping(): void {
    if (this.state !== 'running') return;
    try {
      const now = Date.now();
      const touched = new Set<ServiceEntry>();
      for (const worker of this.registry.workers.values()) {
        if (worker.expiresAt <= now) {
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
          this.send(workerHeartbeatFrames(worker.identity));
        }
      }
      for (const service of this.registry.services.values()) {
        for (let front = service.requests.peek(); front !== undefined; front = service.requests.peek()) {
          if (now - front.receivedAt < this.options.requestExpiryMs) break;
          this.registry.dequeue(service);
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

  private send(frames: Buffer[]): void {
    this.outbox.push(frames);
  }
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
