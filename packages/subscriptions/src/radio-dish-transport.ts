import type { Dish, Radio } from 'zeromq/draft.js';
import type { DatagramReceiver, DatagramSender } from './broadcast-transport.js';
import { SubscriptionError } from './errors.js';

/**
 * Broadcast over ZeroMQ RADIO/DISH (draft sockets of the `zeromq` package, an optional peer
 * dependency loaded only when one of these is opened): one group per partition, named by
 * {@link radioGroupOf}. Same best-effort contract as UDP — a RADIO drops what a slow DISH cannot
 * take (its high-water mark) — so receivers order, dedupe and repair by seq as they do over UDP.
 *
 * Transports (both tested on 127.0.0.1):
 * - `tcp`: the RADIO binds, DISHes connect to its `endpoint` (a DISH that binds never gets
 *   the RADIO's messages over TCP: its joins are not sent to a connecting RADIO).
 * - `udp`: each DISH binds `udp://host:port`, the RADIO connects to every DISH (`add`).
 */
export type RadioDishTransport = 'tcp' | 'udp';

/** Bad options for a RADIO/DISH socket. */
export class RadioDishOptionsError extends SubscriptionError {
  override readonly code = 'SUBSCRIPTION_ERROR';
}

/**
 * The longest group used. libzmq's ZMQ_GROUP_MAX_LENGTH is 15, but with zeromq.js 6.8 a group
 * of 15 or more bytes corrupts memory (the process aborts in malloc) instead of failing:
 * measured here, so one byte is kept in hand.
 */
export const RADIO_GROUP_BYTES_MAX = 14;

/** libzmq's UDP engine sends at most 8192 bytes per datagram: one length byte, the group, the body. */
const UDP_MESSAGE_BYTES_MAX = 8192;

/**
 * The RADIO/DISH group of a partition: its name when it fits in 14 bytes, otherwise its first
 * 5 characters, `~` and 8 hex digits of a hash of the whole name. Two partitions may then
 * share a group; receivers still take only datagrams naming their own partition.
 */
export function radioGroupOf(partition: string): string {
  if (Buffer.byteLength(partition, 'utf8') <= RADIO_GROUP_BYTES_MAX) return partition;
  let hash = 0x811c9dc5;
  for (let i = 0; i < partition.length; i++) hash = Math.imul(hash ^ partition.charCodeAt(i), 0x01000193) >>> 0;
  return `${partition.slice(0, 5).replace(/[^\x20-\x7e]/g, '_')}~${hash.toString(16).padStart(8, '0')}`;
}

/** Options of {@link openRadioSender}. */
export interface RadioSenderOptions {
  /** The partition whose datagrams this RADIO sends (to the group {@link radioGroupOf} names). */
  readonly partition: string;
  /** @default 'tcp' */
  readonly transport?: RadioDishTransport;
  /** `tcp`: where the RADIO binds. @default 'tcp://127.0.0.1:*' (a free port; see `endpoint`) */
  readonly bind?: string;
  /** `udp`: DISH endpoints to send to (`udp://127.0.0.1:port`); more with `add`. @default [] */
  readonly targets?: readonly string[];
  /** Messages queued per DISH before the RADIO drops (ZMQ_SNDHWM). @default 100000 */
  readonly sendHighWaterMark?: number;
  /** Datagrams waiting for the socket (one send at a time) before further ones are dropped. @default 10000 */
  readonly queueDatagramsMax?: number;
}

/** A RADIO sending to one group. */
export interface RadioSender extends DatagramSender {
  /** `tcp`: the endpoint DISHes connect to; `udp`: undefined. */
  readonly endpoint: string | undefined;
  /** The RADIO/DISH group sent to. */
  readonly group: string;
  /**
   * Largest datagram it sends: `udp` 8192 minus the group and its length byte (libzmq would
   * silently cut a longer one), `tcp` 65507 (as UDP). Pass it as the publisher's `datagramBytesMax`.
   */
  readonly datagramBytesMax: number;
  /** `udp`: starts sending to a DISH bound at `endpoint`. */
  add(endpoint: string): void;
  remove(endpoint: string): void;
  /** Datagrams the socket refused, the queue dropped or too large were not sent: receivers repair them like any loss. */
  readonly sendErrors: number;
}

/** Options of {@link openDishReceiver}. */
export interface DishReceiverOptions {
  /** The partitions to follow: their groups are joined. */
  readonly partitions: readonly string[];
  /** @default 'tcp' */
  readonly transport?: RadioDishTransport;
  /** `tcp`: the RADIO's endpoint to connect to (required for tcp). */
  readonly connect?: string;
  /** `udp`: where to bind. @default 'udp://127.0.0.1:<a free port>' */
  readonly bind?: string;
  /** Messages queued before the DISH drops (ZMQ_RCVHWM). @default 100000 */
  readonly receiveHighWaterMark?: number;
}

/** A DISH joined to one or more groups. */
export interface DishReceiver extends DatagramReceiver {
  /** Where it is bound (`udp`) or connected (`tcp`). */
  readonly endpoint: string;
}

type Draft = Pick<typeof import('zeromq/draft.js'), 'Radio' | 'Dish'>;

let draft: Promise<Draft> | undefined;
async function loadDraft(): Promise<Draft> {
  // A CommonJS module: its named exports may only be on the default export.
  draft ??= import('zeromq/draft.js').then((module) => ((module as Partial<Draft>).Radio === undefined ? (module as unknown as { default: Draft }).default : module)).catch((error: unknown) => {
    draft = undefined;
    throw new RadioDishOptionsError(
      '[sluice/subscriptions] RADIO/DISH broadcast needs the zeromq package (6.x, draft sockets): npm install zeromq, or use the UDP transport',
      { cause: error },
    );
  });
  return draft;
}

function groupOf(partition: unknown): string {
  if (typeof partition !== 'string' || partition.length === 0) {
    throw new RadioDishOptionsError(`[sluice/subscriptions] RADIO/DISH needs a partition name, got ${JSON.stringify(partition)}`);
  }
  return radioGroupOf(partition);
}

/**
 * Opens a RADIO that sends every datagram to `group`.
 *
 * @example
 * const radio = await openRadioSender({ partition: 'bank-1' }); // tcp, binds a free port
 * const dish = await openDishReceiver({ partitions: ['bank-1'], connect: radio.endpoint });
 * startBroadcastPublisher({ source: partition, sender: radio });
 */
export async function openRadioSender(options: RadioSenderOptions): Promise<RadioSender> {
  const group = groupOf(options.partition);
  const transport = options.transport ?? 'tcp';
  const { Radio } = await loadDraft();
  const radio: Radio = new Radio({ sendHighWaterMark: options.sendHighWaterMark ?? 100_000, linger: 0 });
  let endpoint: string | undefined;
  if (transport === 'tcp') {
    await radio.bind(options.bind ?? 'tcp://127.0.0.1:*');
    endpoint = radio.lastEndpoint ?? undefined;
  } else if (options.bind !== undefined) {
    radio.close();
    throw new RadioDishOptionsError('[sluice/subscriptions] a udp RADIO connects to its DISHes: give their endpoints as targets, not bind');
  }
  for (const target of options.targets ?? []) radio.connect(target);
  // One options object for every send: no per-datagram allocation here.
  const sendOptions = { group };
  const datagramBytesMax = transport === 'udp' ? UDP_MESSAGE_BYTES_MAX - 1 - Buffer.byteLength(group, 'utf8') : 65507;
  const queueMax = options.queueDatagramsMax ?? 10_000;
  // zeromq.js allows one send in flight per socket: the others wait here, in order.
  const queue: Uint8Array[] = [];
  let sending = false;
  let closed = false;
  let sendErrors = 0;
  let queueDrops = 0;
  const drain = async (): Promise<void> => {
    sending = true;
    try {
      for (let i = 0; i < queue.length && !closed; i++) {
        try {
          // A RADIO never blocks: at the high-water mark it drops, and the send settles at once.
          await radio.send(queue[i], sendOptions);
        } catch {
          sendErrors++;
        }
      }
    } finally {
      queue.length = 0;
      sending = false;
    }
  };
  return {
    endpoint,
    group,
    datagramBytesMax,
    get sendErrors() {
      return sendErrors + queueDrops;
    },
    add(target) {
      radio.connect(target);
    },
    remove(target) {
      radio.disconnect(target);
    },
    send(datagram) {
      if (closed) return;
      if (queue.length >= queueMax || datagram.length > datagramBytesMax) {
        queueDrops++;
        return;
      }
      queue.push(datagram);
      if (!sending) void drain();
    },
    async close() {
      closed = true;
      while (sending) await new Promise((resolve) => setImmediate(resolve));
      radio.close();
    },
  };
}

/** Opens a DISH joined to `groups`: one group per partition it follows. */
export async function openDishReceiver(options: DishReceiverOptions): Promise<DishReceiver> {
  if (options.partitions.length === 0) throw new RadioDishOptionsError('[sluice/subscriptions] a DISH needs at least one partition to follow');
  const groups = [...new Set(options.partitions.map(groupOf))];
  const transport = options.transport ?? 'tcp';
  const { Dish } = await loadDraft();
  const dish: Dish = new Dish({ receiveHighWaterMark: options.receiveHighWaterMark ?? 100_000, linger: 0 });
  let endpoint: string;
  if (transport === 'tcp') {
    if (options.connect === undefined) {
      dish.close();
      throw new RadioDishOptionsError('[sluice/subscriptions] a tcp DISH connects to its RADIO: give the RADIO\'s endpoint as connect');
    }
    dish.connect(options.connect);
    endpoint = options.connect;
  } else {
    endpoint = options.bind ?? `udp://127.0.0.1:${await freeUdpPort()}`;
    await dish.bind(endpoint);
  }
  dish.join(...groups);
  let listener: ((datagram: Uint8Array) => void) | undefined;
  let closed = false;
  const loop = (async () => {
    try {
      for (;;) {
        const [message] = await dish.receive();
        listener?.(message);
      }
    } catch {
      // Closed (or terminated): the loop ends.
    }
  })();
  return {
    endpoint,
    onDatagram(next) {
      listener = next;
    },
    async close() {
      if (closed) return;
      closed = true;
      dish.close();
      await loop;
    },
  };
}

/** A UDP port free right now on 127.0.0.1 (libzmq's udp:// bind takes no wildcard port). */
async function freeUdpPort(): Promise<number> {
  const { createSocket } = await import('node:dgram');
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}
