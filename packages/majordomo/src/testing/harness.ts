import type { EventEmitter } from 'node:events';
import { afterEach } from 'vitest';
import * as zmq from 'zeromq';
import { createBroker, type MajordomoBroker } from '../broker.js';
import type { BrokerOptions } from '../broker-options.js';
import { MajordomoClient } from '../client.js';
import type { ClientOptions } from '../client-options.js';
import { workerReadyFrames } from '../mdp.js';
import { MajordomoWorker } from '../worker.js';
import type { WorkerOptions } from '../worker-options.js';

/** Test-only helpers: real sockets on 127.0.0.1, every one closed after each test. */

type Closable = { close(): unknown };
const open: Closable[] = [];

afterEach(async () => {
  const all = open.splice(0).reverse();
  for (const item of all) {
    if (item instanceof zmq.Socket) {
      if (!item.closed) {
        item.linger = 0;
        item.close();
      }
    } else {
      await item.close();
    }
  }
});

/** Fast heartbeats so purge and reconnect tests take milliseconds. */
export const FAST = { heartbeatIntervalMs: 50, heartbeatLiveness: 3 } as const;

export async function startBroker(options: Partial<BrokerOptions> = {}): Promise<MajordomoBroker> {
  const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*', ...options });
  open.push(broker);
  return broker;
}

export function startClient(options: ClientOptions): MajordomoClient {
  const client = new MajordomoClient(options);
  open.push(client);
  return client;
}

/**
 * Starts a worker and resolves once the broker has registered all its connections.
 */
export async function startWorker(
  broker: MajordomoBroker,
  options: Omit<WorkerOptions, 'endpoint'> & { endpoint?: string },
): Promise<MajordomoWorker> {
  const worker = new MajordomoWorker({ endpoint: broker.endpoint, ...options });
  open.push(worker);
  const count = options.concurrency ?? 1;
  const registered = waitForEvents(broker, 'worker-ready', count, (event) => event.service === options.service);
  worker.start();
  await registered;
  return worker;
}

/** A DEALER socket connected to `endpoint`, closed after the test. */
export function rawDealer(endpoint: string): zmq.Dealer {
  const socket = new zmq.Dealer({ linger: 0 });
  socket.connect(endpoint);
  open.push(socket);
  return socket;
}

/** A REQ socket (the guide's `mdcliapi` uses one) connected to `endpoint`. */
export function rawRequest(endpoint: string): zmq.Request {
  const socket = new zmq.Request({ linger: 0 });
  socket.connect(endpoint);
  open.push(socket);
  return socket;
}

/** A ROUTER socket bound to a free port, standing in for a broker. */
export async function rawRouter(): Promise<zmq.Router> {
  const socket = new zmq.Router({ linger: 0 });
  open.push(socket);
  await socket.bind('tcp://127.0.0.1:*');
  return socket;
}

/** The endpoint a raw socket is bound to. */
export function endpointOf(socket: zmq.Socket): string {
  if (socket.lastEndpoint === null) throw new Error('socket is not bound');
  return socket.lastEndpoint;
}

/** Registers a raw DEALER as a worker (READY) and resolves when the broker has it. */
export async function rawWorker(broker: MajordomoBroker, service: string): Promise<zmq.Dealer> {
  const socket = rawDealer(broker.endpoint);
  const registered = waitForEvent(broker, 'worker-ready', (event) => event.service === service);
  await socket.send(workerReadyFrames(service));
  await registered;
  return socket;
}

/** Tracks anything else with a close method. */
export function track<T extends Closable>(item: T): T {
  open.push(item);
  return item;
}

/** Receives one message within `timeoutMs`, or rejects (EAGAIN). */
export async function receiveWithin(
  socket: zmq.Dealer | zmq.Router | zmq.Request,
  timeoutMs = 5000,
): Promise<Buffer[]> {
  socket.receiveTimeout = timeoutMs;
  return socket.receive();
}

/** Receives messages until one satisfies `accept`, within `timeoutMs` overall. */
export async function receiveMatching(
  socket: zmq.Dealer | zmq.Router,
  accept: (frames: Buffer[]) => boolean,
  timeoutMs = 5000,
): Promise<Buffer[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no matching message within ${timeoutMs} ms`);
    const frames = await receiveWithin(socket, left);
    if (accept(frames)) return frames;
  }
}

/** True when nothing is waiting on the socket right now. */
export async function nothingPending(socket: zmq.Dealer | zmq.Router): Promise<boolean> {
  socket.receiveTimeout = 0;
  try {
    await socket.receive();
    return false;
  } catch {
    return true;
  }
}

type Events<E> = E extends EventEmitter<infer T> ? T : never;

/** Resolves with the first event `name` that satisfies `accept`; rejects after `timeoutMs`. */
export function waitForEvent<E extends EventEmitter<any>, K extends keyof Events<E> & string>(
  emitter: E,
  name: K,
  accept: (...args: Events<E>[K] & unknown[]) => boolean = () => true,
  timeoutMs = 5000,
): Promise<Events<E>[K][0]> {
  return waitForEvents(emitter, name, 1, accept, timeoutMs).then((all) => all[0]);
}

/** Resolves with `count` events `name` that satisfy `accept`; rejects after `timeoutMs`. */
export function waitForEvents<E extends EventEmitter<any>, K extends keyof Events<E> & string>(
  emitter: E,
  name: K,
  count: number,
  accept: (...args: Events<E>[K] & unknown[]) => boolean = () => true,
  timeoutMs = 5000,
): Promise<Events<E>[K][0][]> {
  const target = emitter as unknown as EventEmitter;
  return new Promise((resolve, reject) => {
    const seen: Events<E>[K][0][] = [];
    const listener = (...args: unknown[]): void => {
      if (!accept(...(args as Events<E>[K] & unknown[]))) return;
      seen.push(args[0] as Events<E>[K][0]);
      if (seen.length >= count) {
        clearTimeout(timer);
        target.off(name, listener);
        resolve(seen);
      }
    };
    const timer = setTimeout(() => {
      target.off(name, listener);
      reject(new Error(`expected ${count} "${name}" event(s) within ${timeoutMs} ms, saw ${seen.length}`));
    }, timeoutMs);
    target.on(name, listener);
  });
}

/** Frames as strings, for readable assertions. */
export function text(frames: readonly Buffer[]): string[] {
  return frames.map((frame) => frame.toString('latin1'));
}

/** A port nothing listens on: bound by a broker, then released. */
export async function deadEndpoint(): Promise<string> {
  const socket = new zmq.Router({ linger: 0 });
  await socket.bind('tcp://127.0.0.1:*');
  const endpoint = socket.lastEndpoint as string;
  socket.close();
  return endpoint;
}
