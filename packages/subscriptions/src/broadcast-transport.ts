import { createSocket, type Socket } from 'node:dgram';

/** Where a broadcast publisher puts datagrams (best effort: may drop, duplicate, reorder). */
export interface DatagramSender {
  send(datagram: Uint8Array): void;
  /**
   * Optional: sends one datagram given as parts (their concatenation), gathered by the kernel
   * (UDP `sendmsg`) without copying them into one buffer first. The parts must stay unchanged
   * until sent. Publishers use it when present.
   */
  sendParts?(parts: readonly Uint8Array[]): void;
  close(): Promise<void>;
}

/** Where a broadcast receiver gets datagrams from. */
export interface DatagramReceiver {
  /** Registers the (one) listener; datagrams arriving before it are dropped. */
  onDatagram(listener: (datagram: Uint8Array) => void): void;
  close(): Promise<void>;
}

/**
 * UDP unicast fan-out: every datagram is sent to each target (127.0.0.1 receivers, or hosts
 * on a LAN). `targets` may change at run time through `add`/`remove`.
 */
export interface UdpFanout extends DatagramSender {
  add(target: { host?: string; port: number }): void;
  remove(target: { host?: string; port: number }): void;
  /** Datagrams the kernel refused (e.g. full send buffer): receivers repair them like any loss. */
  readonly sendErrors: number;
}

export async function openUdpFanout(options: { targets?: readonly { host?: string; port: number }[]; sendBufferBytes?: number } = {}): Promise<UdpFanout> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => undefined);
  try {
    socket.setSendBufferSize(options.sendBufferBytes ?? 4 * 1024 * 1024);
  } catch {
    // The kernel's maximum applies.
  }
  const targets = new Map<string, { host: string; port: number }>();
  for (const t of options.targets ?? []) targets.set(`${t.host ?? '127.0.0.1'}:${t.port}`, { host: t.host ?? '127.0.0.1', port: t.port });
  let sendErrors = 0;
  const onSent = (error: Error | null) => {
    if (error) sendErrors++;
  };
  return {
    get sendErrors() {
      return sendErrors;
    },
    add(t) {
      targets.set(`${t.host ?? '127.0.0.1'}:${t.port}`, { host: t.host ?? '127.0.0.1', port: t.port });
    },
    remove(t) {
      targets.delete(`${t.host ?? '127.0.0.1'}:${t.port}`);
    },
    send(datagram) {
      for (const t of targets.values()) socket.send(datagram, t.port, t.host, onSent);
    },
    sendParts(parts) {
      for (const t of targets.values()) socket.send(parts as Uint8Array[], t.port, t.host, onSent);
    },
    close: () => closeSocket(socket),
  };
}

/** One UDP target (used when each receiver gets its own path, e.g. behind a fault injector). */
export async function openUdpSender(target: { host?: string; port: number }): Promise<UdpFanout> {
  return openUdpFanout({ targets: [target] });
}

/** A bound UDP socket receiving broadcast datagrams. */
export interface UdpReceiver extends DatagramReceiver {
  readonly port: number;
}

export async function openUdpReceiver(options: { host?: string; port?: number; receiveBufferBytes?: number } = {}): Promise<UdpReceiver> {
  return bindReceiver(createSocket('udp4'), options.port ?? 0, options.host ?? '127.0.0.1', options.receiveBufferBytes);
}

/** Binds `socket` to `address`:`port` (then runs `joined`, e.g. a group membership) and receives its datagrams. */
async function bindReceiver(socket: Socket, port: number, address: string, receiveBufferBytes = 8 * 1024 * 1024, joined?: () => void): Promise<UdpReceiver> {
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => undefined);
  joined?.();
  try {
    socket.setRecvBufferSize(receiveBufferBytes);
  } catch {
    // The kernel's maximum applies.
  }
  return {
    port: socket.address().port,
    onDatagram(listener) {
      socket.removeAllListeners('message');
      socket.on('message', (message: Buffer) => listener(message));
    },
    close: () => closeSocket(socket),
  };
}

/** Options of {@link openUdpMulticastSender} and {@link openUdpMulticastReceiver}. */
export interface UdpMulticastOptions {
  /**
   * The IPv4 multicast group (one per partition, or per receiver set).
   * @default '239.255.76.66'
   */
  readonly group?: string;
  /** The UDP port receivers bind (the sender sends to it). Receivers: 0 picks a free one (read back `port`). */
  readonly port: number;
  /**
   * Address of the interface the group is joined on and sent from. The default keeps the traffic
   * on the loopback interface (one host); give a LAN interface's address to reach other hosts.
   * @default '127.0.0.1'
   */
  readonly interfaceAddress?: string;
  /**
   * Multicast TTL: 0 never leaves the host, 1 stays on the local network.
   * @default 0
   */
  readonly ttl?: number;
  /** @default 4194304 */
  readonly sendBufferBytes?: number;
  /** @default 8388608 */
  readonly receiveBufferBytes?: number;
}

/** The default multicast group of {@link openUdpMulticastSender} / {@link openUdpMulticastReceiver}. */
export const UDP_MULTICAST_GROUP_DEFAULT = '239.255.76.66';

/**
 * UDP multicast sender: one `send` per datagram however many receivers joined the group (the
 * kernel copies it to each), where {@link openUdpFanout} sends it once per target.
 */
export async function openUdpMulticastSender(options: UdpMulticastOptions): Promise<DatagramSender & { readonly sendErrors: number }> {
  const group = options.group ?? UDP_MULTICAST_GROUP_DEFAULT;
  const iface = options.interfaceAddress ?? '127.0.0.1';
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, iface, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => undefined);
  socket.setMulticastInterface(iface);
  socket.setMulticastLoopback(true);
  socket.setMulticastTTL(options.ttl ?? 0);
  try {
    socket.setSendBufferSize(options.sendBufferBytes ?? 4 * 1024 * 1024);
  } catch {
    // The kernel's maximum applies.
  }
  let sendErrors = 0;
  const onSent = (error: Error | null) => {
    if (error) sendErrors++;
  };
  const port = options.port;
  return {
    get sendErrors() {
      return sendErrors;
    },
    send(datagram) {
      socket.send(datagram, port, group, onSent);
    },
    sendParts(parts) {
      socket.send(parts as Uint8Array[], port, group, onSent);
    },
    close: () => closeSocket(socket),
  };
}

/**
 * A UDP socket that joined a multicast group: bound to the group's address (so it gets that
 * group's datagrams only) and `port`, shared with the group's other receivers on the host.
 */
export async function openUdpMulticastReceiver(options: Omit<UdpMulticastOptions, 'port'> & { readonly port?: number }): Promise<UdpReceiver> {
  const group = options.group ?? UDP_MULTICAST_GROUP_DEFAULT;
  const iface = options.interfaceAddress ?? '127.0.0.1';
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  return bindReceiver(socket, options.port ?? 0, group, options.receiveBufferBytes, () => socket.addMembership(group, iface));
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/** Fan-out to several senders (each may be its own faulty path). */
export function fanOut(senders: readonly DatagramSender[]): DatagramSender {
  return {
    send(datagram) {
      for (const s of senders) s.send(datagram);
    },
    close: async () => {
      await Promise.all(senders.map((s) => s.close()));
    },
  };
}

/** Options of {@link injectFaults}: probabilities per datagram, and the seed of the random choices. */
export interface FaultOptions {
  readonly seed: number;
  readonly drop?: number;
  readonly duplicate?: number;
  /** Probability that a datagram is held back and sent after 1..`reorderDepthMax` later ones. */
  readonly reorder?: number;
  /** @default 8 */
  readonly reorderDepthMax?: number;
}

/** Counters of a fault injector. */
export interface FaultStats {
  sent: number;
  dropped: number;
  duplicated: number;
  reordered: number;
}

/** mulberry32: small, seeded, reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Puts a deliberately bad network in front of `inner`: drops, duplicates and reorders
 * datagrams with the given probabilities, from a seeded random sequence. Held-back datagrams
 * are released after later ones, or by `flush()` (also on close), so reordering alone never
 * loses anything.
 */
export function injectFaults(inner: DatagramSender, options: FaultOptions): DatagramSender & { readonly stats: FaultStats; flush(): void } {
  const random = seededRandom(options.seed);
  const depthMax = options.reorderDepthMax ?? 8;
  const stats: FaultStats = { sent: 0, dropped: 0, duplicated: 0, reordered: 0 };
  let held: Array<{ datagram: Uint8Array; after: number }> = [];
  const release = () => {
    if (held.length === 0) return;
    const still: typeof held = [];
    for (const h of held) {
      if (--h.after <= 0) {
        inner.send(h.datagram);
        stats.sent++;
      } else still.push(h);
    }
    held = still;
  };
  const flush = () => {
    for (const h of held) {
      inner.send(h.datagram);
      stats.sent++;
    }
    held = [];
  };
  // Holding is also bounded in time: an idle publisher does not keep a datagram back for ever.
  const timer = setInterval(flush, 20);
  timer.unref();
  return {
    stats,
    flush,
    send(datagram) {
      const r = random();
      if (r < (options.drop ?? 0)) {
        stats.dropped++;
        release();
        return;
      }
      const copies = random() < (options.duplicate ?? 0) ? 2 : 1;
      if (copies === 2) stats.duplicated++;
      for (let c = 0; c < copies; c++) {
        if (random() < (options.reorder ?? 0)) {
          stats.reordered++;
          held.push({ datagram, after: 1 + Math.floor(random() * depthMax) });
        } else {
          release();
          inner.send(datagram);
          stats.sent++;
        }
      }
    },
    close: async () => {
      clearInterval(timer);
      flush();
      await inner.close();
    },
  };
}
