import { Fifo } from './fifo.js';

/** A client request held by the broker: queued, or in the hands of one worker. */
export interface QueuedRequest {
  /** The client's routing id on the broker's ROUTER socket. */
  readonly client: Buffer;
  /** `frameKey(client)`: the key of the client's in-flight count. */
  readonly clientKey: string;
  /** Bytes of the body, counted against `requestBytesMax` while the broker holds it. */
  readonly bytes: number;
  readonly body: readonly Buffer[];
  readonly receivedAt: number;
  /** Times handed to a worker so far. */
  deliveries: number;
}

/** One service: its request queue and its workers. */
export interface ServiceEntry {
  readonly key: string;
  /** The name exactly as received, echoed in replies. */
  readonly name: Buffer;
  readonly requests: Fifo<QueuedRequest>;
  /**
   * Workers with credit left (idle RFC 7 workers; credit workers below their credit), least
   * recently used first (a Set iterates in insertion order).
   */
  readonly idle: Set<WorkerEntry>;
  /** Registered workers, idle or busy. */
  workers: number;
}

/** One registered worker (it sent a valid READY). */
export interface WorkerEntry {
  readonly key: string;
  readonly identity: Buffer;
  readonly service: ServiceEntry;
  /** Dead unless something arrives from it before this time (while idle, or busy and known to heartbeat). */
  expiresAt: number;
  /** When anything last arrived from it. */
  lastHeardAt: number;
  /**
   * Whether it has sent a HEARTBEAT while holding a request. Reference workers (the guide's
   * `mdwrkapi`) are single-threaded and silent while they work: such a worker is given
   * `busyTimeoutMs` for a request instead of heartbeat × liveness.
   */
  heartbeatsWhileBusy: boolean;
  /** When the broker last sent it anything; heartbeats are skipped while traffic flows. */
  lastSentAt: number;
  /**
   * Requests it may hold at once: 1 for an RFC 7 worker, the credit granted for a worker of
   * the credit extension.
   */
  readonly credit: number;
  /** Whether it speaks the credit extension: request tags on REQUEST and REPLY bodies. */
  readonly tagged: boolean;
  /** The requests it is working on, by request tag (0 for an RFC 7 worker's one request). */
  readonly inFlight: Map<number, QueuedRequest>;
  /** The tag of its next request (credit extension), wrapping at 2^32. */
  nextTag: number;
  /** Most requests per message granted (batch extension); 1: one REQUEST per message. */
  readonly batch: number;
  /** The BATCH being built for it (batch extension), sent when full or when the broker's turn ends. */
  outgoing: Buffer[] | undefined;
  /** Requests in {@link outgoing}. */
  outgoingCount: number;
}

/** Map key of a frame: latin1 maps bytes to characters one to one. */
export function frameKey(frame: Buffer): string {
  return frame.toString('latin1');
}

/**
 * The broker's bookkeeping: services, workers and queued requests, with no I/O.
 *
 * Entries exist only for registered workers and for services that have a worker or a queued
 * request; {@link releaseIfUnused} drops the rest, so garbage never grows these maps.
 */
export class ServiceRegistry {
  readonly services = new Map<string, ServiceEntry>();
  readonly workers = new Map<string, WorkerEntry>();
  /** Requests queued over all services. */
  queuedRequests = 0;
  /** Requests held (queued or at a worker) per client, by `frameKey(client)`. */
  readonly inFlightByClient = new Map<string, number>();
  /** Bytes of the bodies of every request held. */
  heldBytes = 0;

  constructor(private readonly servicesMax: number) {}

  /** The service, created if there is room; `undefined` when `servicesMax` is reached. */
  requireService(name: Buffer): ServiceEntry | undefined {
    const key = frameKey(name);
    const existing = this.services.get(key);
    if (existing) return existing;
    if (this.services.size >= this.servicesMax) return undefined;
    const created: ServiceEntry = {
      key,
      name: Buffer.from(name),
      requests: new Fifo(),
      idle: new Set(),
      workers: 0,
    };
    this.services.set(key, created);
    return created;
  }

  /** Registers a worker as idle. The caller checked that it is not registered yet. */
  addWorker(identity: Buffer, service: ServiceEntry, now: number, expiryMs: number, credit?: number, batch?: number): WorkerEntry {
    const key = frameKey(identity);
    const worker: WorkerEntry = {
      key,
      identity: Buffer.from(identity),
      service,
      expiresAt: now + expiryMs,
      lastHeardAt: now,
      heartbeatsWhileBusy: false,
      lastSentAt: now,
      credit: credit ?? 1,
      tagged: credit !== undefined,
      inFlight: new Map(),
      nextTag: 0,
      batch: credit === undefined ? 1 : (batch ?? 1),
      outgoing: undefined,
      outgoingCount: 0,
    };
    this.workers.set(key, worker);
    service.workers += 1;
    service.idle.add(worker);
    return worker;
  }

  /** Unregisters a worker; returns the requests it was working on, oldest first. */
  removeWorker(worker: WorkerEntry): QueuedRequest[] {
    if (this.workers.get(worker.key) !== worker) return [];
    this.workers.delete(worker.key);
    worker.service.idle.delete(worker);
    worker.service.workers -= 1;
    const requests = [...worker.inFlight.values()];
    worker.inFlight.clear();
    return requests;
  }

  /** Requests the broker holds for a client (accepted, not answered yet). */
  inFlightOf(clientKey: string): number {
    return this.inFlightByClient.get(clientKey) ?? 0;
  }

  /** Counts a request accepted from its client, until {@link release}. */
  hold(request: QueuedRequest): void {
    this.inFlightByClient.set(request.clientKey, this.inFlightOf(request.clientKey) + 1);
    this.heldBytes += request.bytes;
  }

  /** A held request was answered (reply, rejection or expiry): its client may send another. */
  release(request: QueuedRequest): void {
    const count = this.inFlightOf(request.clientKey) - 1;
    if (count <= 0) this.inFlightByClient.delete(request.clientKey);
    else this.inFlightByClient.set(request.clientKey, count);
    this.heldBytes -= request.bytes;
  }

  enqueue(service: ServiceEntry, request: QueuedRequest): void {
    service.requests.push(request);
    this.queuedRequests += 1;
  }

  /** Puts a request back at the front of its queue (its worker was lost). */
  requeue(service: ServiceEntry, request: QueuedRequest): void {
    service.requests.unshift(request);
    this.queuedRequests += 1;
  }

  dequeue(service: ServiceEntry): QueuedRequest | undefined {
    const request = service.requests.shift();
    if (request) this.queuedRequests -= 1;
    return request;
  }

  /**
   * Takes the least recently used worker of the service with credit left. The caller gives
   * it a request and puts it back (at the end) while it still has credit.
   */
  takeIdleWorker(service: ServiceEntry): WorkerEntry | undefined {
    const first = service.idle.values().next();
    if (first.done) return undefined;
    service.idle.delete(first.value);
    return first.value;
  }

  /** Forgets a service that has neither workers nor queued requests. */
  releaseIfUnused(service: ServiceEntry): void {
    if (service.workers === 0 && service.requests.length === 0) {
      if (this.services.get(service.key) === service) this.services.delete(service.key);
    }
  }
}
