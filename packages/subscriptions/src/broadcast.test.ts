import { crc32c } from '@sluice/framing';
import { createMemoryStorage, openPartition, type Partition, type RecordedEvent } from '@sluice/store';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createMemoryCheckpointStore,
  DatagramEncoder,
  decodeDatagram,
  encodeDataDatagrams,
  fanOut,
  injectFaults,
  openDishReceiver,
  openRadioSender,
  radioGroupOf,
  RADIO_GROUP_BYTES_MAX,
  RadioDishOptionsError,
  openUdpMulticastReceiver,
  openUdpMulticastSender,
  openUdpReceiver,
  openUdpSender,
  startBroadcastPublisher,
  startBroadcastReceiver,
  type BroadcastReceiver,
  type DatagramReceiver,
  type DatagramSender,
  type FrameRun,
} from './index.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function partition(name = 'bc-0'): Promise<Partition> {
  const p = await openPartition({ storage: createMemoryStorage(), name });
  cleanup.push(() => p.close());
  return p;
}

/** Appends `count` events in commits of 1..5 events, payloads of varying size (some larger than a datagram). */
async function fill(p: Partition, count: number, seed: number): Promise<void> {
  const appends = [];
  let n = 0;
  let i = seed;
  while (n < count) {
    const k = Math.min(count - n, 1 + (i % 5));
    const events = [];
    for (let j = 0; j < k; j++) {
      const size = (i * 7919 + j) % 97 === 0 ? 3000 : 20 + ((i * 31 + j) % 200);
      const data = new Uint8Array(size);
      for (let b = 0; b < size; b++) data[b] = (i + j + b) & 0xff;
      events.push({ type: `T${j}`, data });
    }
    appends.push(p.append({ streamId: `s-${i % 13}`, events, commandId: i % 3 === 0 ? `cmd-${i}` : undefined, correlationId: i % 3 === 0 ? `corr-${i}` : undefined }));
    n += k;
    i++;
  }
  await Promise.all(appends);
}

/** The partition's log as comparable records (every field, bytes included). */
async function logOf(p: Partition): Promise<string[]> {
  const out: string[] = [];
  for await (const e of p.read({})) out.push(record(e));
  return out;
}
function record(e: RecordedEvent): string {
  return JSON.stringify([e.seq, e.epoch, e.timestamp, e.commitFirst, e.commitLast, e.streamId, e.streamVersion, e.eventType, e.headers ?? null, e.frameBytes, Buffer.from(e.metadata).toString('base64'), Buffer.from(e.payload).toString('base64')]);
}

/** One receiver's end of a transport, and how to open a path that sends to it (a fault injector goes in front). */
interface Link {
  readonly receiver: DatagramReceiver;
  path(): Promise<DatagramSender>;
}

let groupsMade = 0;

/** The transports the whole matrix runs against, unchanged: every case below runs once per transport. */
const transports: ReadonlyArray<{ readonly name: string; link(partition: string): Promise<Link> }> = [
  {
    name: 'UDP',
    async link() {
      const udp = await openUdpReceiver();
      cleanup.push(() => udp.close());
      return { receiver: udp, path: () => openUdpSender({ port: udp.port }) };
    },
  },
  {
    name: 'UDP multicast',
    async link() {
      // A group per receiver, so that each gets its own faulty path (one group reaching all is tested below).
      const group = `239.255.76.${1 + (groupsMade++ % 250)}`;
      const udp = await openUdpMulticastReceiver({ group });
      cleanup.push(() => udp.close());
      return { receiver: udp, path: () => openUdpMulticastSender({ group, port: udp.port }) };
    },
  },
  {
    name: 'RADIO/DISH over tcp',
    async link(partition) {
      // Over TCP the RADIO binds and the DISH connects: one RADIO per path.
      const radio = await openRadioSender({ partition });
      const dish = await openDishReceiver({ partitions: [partition], connect: radio.endpoint });
      cleanup.push(() => dish.close());
      cleanup.push(() => radio.close());
      return { receiver: dish, path: async () => radio };
    },
  },
  {
    name: 'RADIO/DISH over udp',
    async link(partition) {
      const dish = await openDishReceiver({ partitions: [partition], transport: 'udp' });
      cleanup.push(() => dish.close());
      return { receiver: dish, path: () => openRadioSender({ partition, transport: 'udp', targets: [dish.endpoint] }) };
    },
  },
];

interface Host {
  link: Link;
  receiver: BroadcastReceiver;
  log: string[];
}

describe('broadcast: codec', () => {
  it('splits a batch into bounded datagrams that decode to the same frames; garbage and flipped bytes are rejected', async () => {
    const p = await partition();
    await fill(p, 300, 1);
    const events: RecordedEvent[] = [];
    for await (const e of p.read({})) events.push(e);
    expect(events.some((e) => e.headers !== undefined)).toBe(true);
    const { datagrams, oversized } = encodeDataDatagrams(p.name, 7, events, 1200);
    expect(oversized.length).toBeGreaterThan(0);
    expect(datagrams.length).toBeGreaterThan(10);
    for (const d of datagrams) expect(d.length).toBeLessThanOrEqual(1200);
    const decoded: RecordedEvent[] = [];
    for (const d of datagrams) {
      const g = decodeDatagram(d);
      expect(g?.kind).toBe('data');
      if (g?.kind === 'data') decoded.push(...g.run.events);
    }
    // Frames bigger than a datagram are left out for the receivers to repair.
    expect(decoded.length + oversized.length).toBe(events.length);
    const bySeq = new Map(decoded.map((e) => [e.seq, record(e)]));
    for (const e of events) if (!oversized.includes(e.seq)) expect(bySeq.get(e.seq)).toBe(record(e));
    const flipped = Uint8Array.from(datagrams[0]);
    flipped[40] ^= 1;
    expect(decodeDatagram(flipped)).toBeUndefined();
    expect(decodeDatagram(datagrams[0].subarray(0, 30))).toBeUndefined();
    expect(decodeDatagram(new Uint8Array(100).fill(7))).toBeUndefined();
  });

  it('UDP multicast: one send reaches every receiver that joined the group, on 127.0.0.1', async () => {
    const first = await openUdpMulticastReceiver({ group: '239.255.76.251' });
    const others = [await openUdpMulticastReceiver({ group: '239.255.76.251', port: first.port }), await openUdpMulticastReceiver({ group: '239.255.76.251', port: first.port })];
    const elsewhere = await openUdpMulticastReceiver({ group: '239.255.76.252', port: first.port });
    const receivers = [first, ...others];
    for (const r of [...receivers, elsewhere]) cleanup.push(() => r.close());
    const got = receivers.map(() => [] as string[]);
    const arrived = receivers.map((r, i) => new Promise<void>((resolve) => r.onDatagram((d) => (got[i].push(Buffer.from(d).toString()), resolve()))));
    const strays: string[] = [];
    elsewhere.onDatagram((d) => strays.push(Buffer.from(d).toString()));
    const sender = await openUdpMulticastSender({ group: '239.255.76.251', port: first.port });
    cleanup.push(() => sender.close());
    sender.send(Buffer.from('hello'));
    await Promise.all(arrived);
    expect(got).toEqual([['hello'], ['hello'], ['hello']]);
    expect(sender.sendErrors).toBe(0);
    expect(strays).toEqual([]); // bound to its own group's address: another group's datagrams never arrive
  });

  it('a handle that throws during a repair ends the receiver with its error (it is not taken for an unavailable replayer)', async () => {
    const p = await partition();
    await fill(p, 50, 2); // history: the catch-up is a repair through read()
    const receiver: DatagramReceiver = { onDatagram: () => undefined, close: async () => undefined };
    const broken = new Error('projection cannot apply seq 5');
    let calls = 0;
    const r = startBroadcastReceiver({
      partition: p.name,
      receiver,
      replayer: p,
      batchSizeMax: 4,
      handle: (events) => {
        calls++;
        if (events.some((e) => e.seq === 5)) throw broken;
      },
    });
    await expect(r.done).rejects.toBe(broken);
    expect(calls).toBe(2);
    expect(r.position).toBe(4);
  });

  it('a receiver takes exactly one of handle and handleFrames', async () => {
    const p = await partition();
    const receiver: DatagramReceiver = { onDatagram: () => undefined, close: async () => undefined };
    expect(() => startBroadcastReceiver({ partition: p.name, receiver, replayer: p })).toThrow(/exactly one of handle/);
    expect(() => startBroadcastReceiver({ partition: p.name, receiver, replayer: p, handle: () => undefined, handleFrames: () => undefined })).toThrow(/exactly one of handle/);
  });

  it('carries stored frames as they are; a frame out of seq order is rejected even under a valid checksum; frames decode only on demand', async () => {
    const p = await partition();
    await fill(p, 120, 5);
    const ac = new AbortController();
    const datagrams: Uint8Array[] = [];
    const oversized: number[] = [];
    const stored: Uint8Array[] = [];
    const encoder = new DatagramEncoder(p.name, 9, 1400);
    for await (const batch of p.subscribeSealed({ fromSeq: 3, signal: ac.signal })) {
      encoder.encode(batch.bytes, batch.firstSeq, 3, datagrams, oversized);
      stored.push(batch.bytes);
      if (batch.lastSeq >= 120) ac.abort();
    }
    const runs = datagrams.map((d) => decodeDatagram(d)).map((g) => (g?.kind === 'data' ? g.run : undefined));
    expect(runs.every((r) => r !== undefined)).toBe(true);
    // Each run's bytes occur verbatim in the stored batches (copied, not re-encoded).
    const haystack = Buffer.concat(stored);
    for (const r of runs) expect(haystack.indexOf(Buffer.from(r!.frames))).toBeGreaterThanOrEqual(0);
    const seqs = runs.flatMap((r) => r!.events.map((e) => e.seq));
    expect(seqs.concat(oversized).sort((a, b) => a - b)).toEqual(Array.from({ length: 118 }, (_, i) => i + 3));
    const expected = new Map<number, string>();
    for await (const e of p.read({ fromSeq: 3 })) expected.set(e.seq, record(e));
    for (const r of runs) for (const e of r!.events) expect(record(e)).toBe(expected.get(e.seq));
    // A frame whose seq does not follow, in a datagram whose CRC-32C is made valid again: rejected.
    const multi = datagrams.find((d) => (decodeDatagram(d) as { run: { length: number } }).run.length >= 2)!;
    const bad = Uint8Array.from(multi);
    const nameLen = bad[6];
    const framesAt = 7 + nameLen + 4 + 12;
    const second = framesAt + (bad[framesAt] | (bad[framesAt + 1] << 8));
    bad[second + 8] ^= 1; // its seq
    new DataView(bad.buffer).setUint32(bad.length - 4, crc32c(bad, 0, bad.length - 4), true);
    expect(decodeDatagram(bad)).toBeUndefined();
  });
});

let hostsMade = 0;

describe.each(transports)('broadcast over $name: publisher → faulty network → 8 receivers', (transport) => {
  async function host(p: Partition, fromCheckpoint = 0, options: { gapTimeoutMs?: number; reorderBufferMax?: number } = {}): Promise<Host> {
    const link = await transport.link(p.name);
    const log: string[] = [];
    let expected = fromCheckpoint + 1;
    const check = (events: RecordedEvent[]) => {
      for (const e of events) {
        if (e.seq !== expected) throw new Error(`handed seq ${e.seq}, expected ${expected}`);
        expected++;
        log.push(record(e));
      }
    };
    const receiver = startBroadcastReceiver({
      partition: p.name,
      receiver: link.receiver,
      replayer: p,
      fromCheckpoint,
      gapTimeoutMs: options.gapTimeoutMs ?? 20,
      reorderBufferMax: options.reorderBufferMax ?? 2000,
      // Every second host takes undecoded frame runs (handleFrames), the others decoded events.
      ...(hostsMade++ % 2 === 1
        ? {
            handleFrames: (run: FrameRun) => {
              if (run.firstSeq !== expected) throw new Error(`handed run from ${run.firstSeq}, expected ${expected}`);
              expect(run.events).toHaveLength(run.length);
              check(run.events);
            },
          }
        : { handle: check }),
    });
    cleanup.push(() => receiver.stop());
    return { link, receiver, log };
  }

  async function faultyPaths(hosts: readonly Host[], seed: number) {
    const paths = [];
    for (let r = 0; r < hosts.length; r++) {
      paths.push(injectFaults(await hosts[r].link.path(), { seed: seed * 100 + r, drop: 0.1, duplicate: 0.1, reorder: 0.15, reorderDepthMax: 6 }));
    }
    const sender: DatagramSender = fanOut(paths);
    cleanup.push(() => sender.close());
    return { sender, paths };
  }

  it('drops, duplicates and reorders datagrams (seeded) and every receiver, two of them joining late from a checkpoint, ends with the exact log', async () => {
    const p = await partition();
    await fill(p, 200, 3); // history before anyone listens
    const hosts = [await host(p), await host(p), await host(p), await host(p), await host(p), await host(p)];
    const { sender, paths } = await faultyPaths(hosts.concat([]), 42);
    const publisher = startBroadcastPublisher({ source: p, sender, fromSeq: 1, datagramBytesMax: 1400, heartbeatMs: 30 });
    cleanup.push(() => publisher.stop());
    for (let round = 0; round < 10; round++) await fill(p, 300, 1000 + round * 300);
    // Two late joiners: one from a checkpoint, one from scratch, added to the fan-out while it runs.
    const late = [await host(p, 1000), await host(p, 0)];
    const latePaths: DatagramSender[] = [];
    for (let r = 0; r < late.length; r++) latePaths.push(injectFaults(await late[r].link.path(), { seed: 4200 + r, drop: 0.1, duplicate: 0.1, reorder: 0.15 }));
    cleanup.push(() => Promise.all(latePaths.map((x) => x.close())));
    const all = hosts.concat(late);
    const lateSender = fanOut(latePaths);
    const second = startBroadcastPublisher({ source: p, sender: lateSender, datagramBytesMax: 1400, heartbeatMs: 30 });
    cleanup.push(() => second.stop());
    for (let round = 0; round < 5; round++) await fill(p, 300, 9000 + round * 300);
    const head = p.lastSeq;
    await Promise.all(all.map((h) => h.receiver.waitFor(head)));
    const expected = await logOf(p);
    expect(hosts[0].log.length).toBe(head);
    for (const h of hosts) expect(h.log).toEqual(expected);
    expect(late[0].log).toEqual(expected.slice(1000));
    expect(late[1].log).toEqual(expected);
    // The faults really happened, and the receivers saw and repaired them.
    const faults = paths.map((x) => x.stats);
    expect(faults.every((f) => f.dropped > 0 && f.duplicated > 0 && f.reordered > 0)).toBe(true);
    for (const h of all) {
      expect(h.receiver.stats.repairs).toBeGreaterThan(0);
      expect(h.receiver.stats.framesDuplicate).toBeGreaterThan(0);
    }
    expect(hosts.some((h) => h.receiver.stats.framesOutOfOrder > 0)).toBe(true);
  }, 60_000);

  it('a publisher behind the partition head announces what it sent, not the head: receivers do not fetch what it is about to send', async () => {
    // A source 500 commits ahead whose batches have not reached the publisher yet (it is catching up).
    const stalled = new AbortController();
    cleanup.push(async () => stalled.abort());
    const source = {
      name: 'bc-behind',
      lastSeq: 500,
      async *subscribe(options: { signal?: AbortSignal }): AsyncIterable<RecordedEvent[]> {
        await new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => resolve(), { once: true }));
      },
    };
    let sawBeat!: (headSeq: number) => void;
    const beat = new Promise<number>((resolve) => (sawBeat = resolve));
    const sender: DatagramSender = {
      send(datagram) {
        const d = decodeDatagram(datagram);
        if (d?.kind === 'heartbeat') sawBeat(d.headSeq);
      },
      close: async () => undefined,
    };
    const publisher = startBroadcastPublisher({ source, sender, fromSeq: 101, heartbeatMs: 5 });
    cleanup.push(() => publisher.stop());
    expect(await beat).toBe(100);
  });

  it('the publisher going away (its last datagrams lost) and coming back later still ends exact: heartbeats announce the head', async () => {
    const p = await partition();
    const hosts = [];
    for (let r = 0; r < 8; r++) hosts.push(await host(p, 0, { gapTimeoutMs: 30 }));
    const { sender } = await faultyPaths(hosts, 7);
    // A sender that loses everything after the cut: the tail of the first publisher never arrives.
    let cut = false;
    const cutting: DatagramSender = { send: (d) => (cut ? undefined : sender.send(d)), close: async () => undefined };
    const first = startBroadcastPublisher({ source: p, sender: cutting, datagramBytesMax: 1400, heartbeatMs: 25 });
    await fill(p, 1500, 5);
    await Promise.all(hosts.map((h) => h.receiver.waitFor(1000)));
    cut = true;
    await fill(p, 500, 77); // its tail: lost on the wire
    await first.stop(); // the publisher goes away
    await fill(p, 400, 99); // committed while no publisher runs
    const tailHead = p.lastSeq;
    // It comes back from the head: only its idle heartbeats tell receivers about what they miss.
    const second = startBroadcastPublisher({ source: p, sender, datagramBytesMax: 1400, heartbeatMs: 25 });
    cleanup.push(() => second.stop());
    await Promise.all(hosts.map((h) => h.receiver.waitFor(tailHead)));
    await fill(p, 300, 123);
    await Promise.all(hosts.map((h) => h.receiver.waitFor(p.lastSeq)));
    const expected = await logOf(p);
    for (const h of hosts) {
      expect(h.log).toEqual(expected);
      expect(h.receiver.stats.heartbeats).toBeGreaterThan(0);
    }
  }, 60_000);

  it('a receiver stopped midway resumes from its saved checkpoint through the replayer, then follows the broadcast again', async () => {
    const p = await partition();
    const checkpoints = createMemoryCheckpointStore();
    const link = await transport.link(p.name);
    const sender = injectFaults(await link.path(), { seed: 9, drop: 0.2, duplicate: 0.1, reorder: 0.2 });
    cleanup.push(() => sender.close());
    const publisher = startBroadcastPublisher({ source: p, sender, datagramBytesMax: 1400, heartbeatMs: 25 });
    cleanup.push(() => publisher.stop());
    const seen: number[] = [];
    const start = () =>
      startBroadcastReceiver({ partition: p.name, receiver: link.receiver, replayer: p, subscriber: 'hall', checkpoints, checkpointEveryFrames: 100, gapTimeoutMs: 20, handle: (events) => void seen.push(...events.map((e) => e.seq)) });
    const first = start();
    await fill(p, 1000, 11);
    await first.waitFor(1000);
    await first.stop();
    expect(await checkpoints.load('hall')).toBe(first.position);
    await fill(p, 1000, 22); // while it is down
    const second = start();
    cleanup.push(() => second.stop());
    await fill(p, 500, 33);
    await second.waitFor(p.lastSeq);
    expect(seen).toEqual(Array.from({ length: p.lastSeq }, (_, i) => i + 1));
    expect(second.stats.repairs).toBeGreaterThan(0);
  }, 60_000);

  it('repairs through the replayer\'s readFrames when it has one (read() only for frames too large for a datagram) and ends with the exact log', async () => {
    const p = await partition();
    await fill(p, 300, 4); // history: caught up through readFrames too
    const link = await transport.link(p.name);
    const sender = injectFaults(await link.path(), { seed: 17, drop: 0.25, duplicate: 0.1, reorder: 0.2 });
    cleanup.push(() => sender.close());
    let runsServed = 0;
    const oversized = new Set<number>();
    const servedByRead: number[] = [];
    // A remote replayer's answer: the stored frames of the range, as datagrams, decoded to runs;
    // read() only for what no datagram can carry.
    const replayer = {
      async *read(options: { fromSeq?: number; toSeq?: number; maxCount?: number }): AsyncIterable<RecordedEvent> {
        for await (const e of p.read(options)) {
          servedByRead.push(e.seq);
          yield e;
        }
      },
      async *readFrames(options: { fromSeq: number; toSeq?: number }): AsyncIterable<FrameRun> {
        const toSeq = Math.min(options.toSeq ?? p.lastSeq, p.lastSeq);
        if (toSeq < options.fromSeq) return;
        const encoder = new DatagramEncoder(p.name, 0, 1400);
        const datagrams: Uint8Array[] = [];
        const holes: number[] = [];
        const ac = new AbortController();
        for await (const batch of p.subscribeSealed({ fromSeq: options.fromSeq, signal: ac.signal })) {
          encoder.encode(batch.bytes, batch.firstSeq, options.fromSeq, datagrams, holes);
          if (batch.lastSeq >= toSeq) ac.abort();
        }
        for (const seq of holes) oversized.add(seq);
        for (const d of datagrams) {
          const g = decodeDatagram(d);
          if (g?.kind !== 'data') throw new Error('the replayer encoded a datagram that does not decode');
          runsServed++;
          yield g.run; // runs after a hole do not follow: the receiver takes the hole through read()
        }
      },
    };
    const log: string[] = [];
    const receiver = startBroadcastReceiver({ partition: p.name, receiver: link.receiver, replayer, gapTimeoutMs: 20, handleFrames: (run) => void log.push(...run.events.map(record)) });
    cleanup.push(() => receiver.stop());
    const publisher = startBroadcastPublisher({ source: p, sender, datagramBytesMax: 1400, heartbeatMs: 25 });
    cleanup.push(() => publisher.stop());
    await fill(p, 700, 8);
    await receiver.waitFor(p.lastSeq);
    expect(log).toEqual(await logOf(p));
    expect(receiver.stats.repairs).toBeGreaterThan(1);
    expect(runsServed).toBeGreaterThan(0);
    // read() served only frames too large for a datagram, one at a time.
    expect(oversized.size).toBeGreaterThan(0);
    for (const seq of servedByRead) expect(oversized.has(seq)).toBe(true);
  }, 60_000);
});

describe('broadcast: RADIO/DISH groups', () => {
  it('one group per partition, at most 14 bytes (a longer one crashes zeromq.js 6.8); a long-named partition is broadcast and received whole', async () => {
    expect(radioGroupOf('bank-1')).toBe('bank-1');
    const long = 'payments-europe-west-1';
    const group = radioGroupOf(long);
    expect(Buffer.byteLength(group)).toBeLessThanOrEqual(RADIO_GROUP_BYTES_MAX);
    expect(radioGroupOf(long)).toBe(group);
    expect(radioGroupOf(`${long}b`)).not.toBe(group);

    const p = await partition(long);
    const radio = await openRadioSender({ partition: long });
    cleanup.push(() => radio.close());
    expect(radio.group).toBe(group);
    const dish = await openDishReceiver({ partitions: [long], connect: radio.endpoint });
    cleanup.push(() => dish.close());
    const publisher = startBroadcastPublisher({ source: p, sender: radio, fromSeq: 1, heartbeatMs: 20 });
    cleanup.push(() => publisher.stop());
    const seen: number[] = [];
    const receiver = startBroadcastReceiver({ partition: long, receiver: dish, replayer: p, gapTimeoutMs: 20, handle: (events) => void seen.push(...events.map((e) => e.seq)) });
    cleanup.push(() => receiver.stop());
    await fill(p, 500, 5);
    await receiver.waitFor(p.lastSeq);
    expect(seen).toEqual(Array.from({ length: p.lastSeq }, (_, i) => i + 1));
    expect(receiver.stats.datagrams).toBeGreaterThan(0); // it came over the DISH, not only by repair
  });

  it('over udp:// a datagram larger than libzmq carries is counted and not sent (libzmq would cut it short)', async () => {
    const dish = await openDishReceiver({ partitions: ['p1'], transport: 'udp' });
    cleanup.push(() => dish.close());
    const radio = await openRadioSender({ partition: 'p1', transport: 'udp', targets: [dish.endpoint] });
    cleanup.push(() => radio.close());
    expect(radio.datagramBytesMax).toBe(8192 - 1 - 2);
    const sizes: number[] = [];
    const last = new Promise<void>((resolve) =>
      dish.onDatagram((datagram) => {
        sizes.push(datagram.length);
        if (datagram.length === 10) resolve();
      }),
    );
    radio.send(new Uint8Array(radio.datagramBytesMax));
    radio.send(new Uint8Array(radio.datagramBytesMax + 1));
    radio.send(new Uint8Array(10));
    await last;
    expect(sizes).toEqual([radio.datagramBytesMax, 10]);
    expect(radio.sendErrors).toBe(1);
  });

  it('bad options are typed errors that say what to do', async () => {
    await expect(openDishReceiver({ partitions: ['p1'] })).rejects.toThrow(RadioDishOptionsError);
    await expect(openDishReceiver({ partitions: ['p1'] })).rejects.toThrow(/give the RADIO's endpoint as connect/);
    await expect(openDishReceiver({ partitions: [] })).rejects.toThrow(/at least one partition/);
    await expect(openRadioSender({ partition: 'p1', transport: 'udp', bind: 'udp://127.0.0.1:9' })).rejects.toThrow(/targets, not bind/);
    await expect(openRadioSender({ partition: '' })).rejects.toThrow(/needs a partition name/);
  });
});
