// Broadcast fan-out: one publisher, R receivers (worker threads, each its own socket on 127.0.0.1),
// N committed events of a memory partition broadcast live; lost datagrams are repaired through a
// replayer that asks the main thread (standing in for the broker's remote replayer): it answers
// with the stored frames cut into datagrams (readFrames), so a repair decodes nothing either.
// Transports: udp (unicast fan-out: one send per receiver), udp-multicast (one send per datagram,
// the kernel copies it to each receiver that joined the group on 127.0.0.1), radio-tcp (one RADIO
// bound, DISHes connect), radio-udp (DISHes bind udp://, one RADIO connects to each; libzmq's UDP
// engine carries at most 8 KiB per datagram).
// What each receiver does per event (included in its figure): the datagram's CRC-32C (one native
// pass over every byte), then per frame its length, kind, version, field lengths and seq (seq order
// and gaps verified per event), ordering/dedup/gap repair per run of frames. Then the consumer:
//   consume=frames (default): handleFrames gets the verified frames undecoded and folds them into a
//     running CRC-32C (native) that must equal the stored log's: the byte-exact check, no objects;
//   consume=events: handle gets decoded event objects (RecordedEvent, zero-copy payload views) and
//     sums every payload byte, which must equal the log's sum.
// Besides wall-clock rates it prints the CPU time of all threads (process.cpuUsage) over the
// broadcast: receiver-events per CPU-second depend much less on what else the machine runs.
// SLUICE_BENCH_JSON=1 adds one line `@sluice-bench {json}` with the figures (read by `npm run bench`).
// THREADS=1 adds each thread's CPU and the minor page faults of the broadcast phase (Linux /proc); PROFILE=<file> writes the main thread's CPU
// profile of the broadcast phase (node --cpu-prof profiles the workers too); PERF_CTL=<fifo> turns
// `perf record --control=fifo:<fifo> -D -1` on for the broadcast phase only (all threads, kernel too).
// Every figure is taken after a warm-up: the first `warmup` events (default 1,000,000) are broadcast
// and received untimed (each receiver is a fresh isolate that JIT-compiles its hot paths there; in
// a 1.5-second run that compilation was a tenth of all CPU), then the clock and the CPU counters
// run over the next `events`.
// Run: node --conditions=@sluice/source --import tsx packages/subscriptions/bench/broadcast.bench.ts [events=1000000] [receivers=8] [datagramBytes=60000] [transport=udp] [consume=frames] [warmup=1000000]
import { createRequire } from 'node:module';
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { crc32c } from '@sluice/framing';
import { createMemoryStorage, openPartition, type RecordedEvent } from '@sluice/store';
import {
  DatagramEncoder,
  decodeDatagram,
  encodeHeartbeat,
  encodeDataDatagrams,
  type FrameRun,
  openDishReceiver,
  openRadioSender,
  openUdpFanout,
  openUdpMulticastReceiver,
  openUdpMulticastSender,
  openUdpReceiver,
  startBroadcastPublisher,
  startBroadcastReceiver,
  type DatagramReceiver,
  type DatagramSender,
  type EventSource,
} from '../src/index.js';

const require = createRequire(import.meta.url);
type Transport = 'udp' | 'udp-multicast' | 'radio-tcp' | 'radio-udp';
type Consume = 'frames' | 'events';
const MULTICAST_GROUP = '239.255.76.66';

interface ReadRequest {
  id: number;
  fromSeq: number;
  toSeq: number | undefined;
}

if (isMainThread) {
  const measured = Number(process.argv[2] ?? 1_000_000);
  const warmup = Number(process.argv[7] ?? 1_000_000);
  /** Written and broadcast: the warm-up, then the measured events. */
  const events = warmup + measured;
  const receivers = Number(process.argv[3] ?? 8);
  const transport = (process.argv[5] ?? 'udp') as Transport;
  const consume = (process.argv[6] ?? 'frames') as Consume;
  if (!['frames', 'events'].includes(consume)) throw new Error(`consume must be frames or events, got ${consume}`);
  if (!['udp', 'udp-multicast', 'radio-tcp', 'radio-udp'].includes(transport)) throw new Error(`transport must be udp, udp-multicast, radio-tcp or radio-udp, got ${transport}`);
  const datagramBytesMax = Math.min(Number(process.argv[4] ?? 60000), transport === 'radio-udp' ? 8000 : 65507);
  // A live publisher takes each batch from the partition's tail cache as the writer sealed it (no
  // storage read, no decode). The log is written before the clock starts, so the cache is sized to
  // hold all of it and a follower keeps it filled meanwhile: the publisher then sees what it would
  // have seen live. (Beyond the cache, batches come from storage, decoded and checked.)
  const partition = await openPartition({ storage: createMemoryStorage(), name: 'bench', tailCacheBytes: Math.max(4 << 20, events * 320) });
  const filling = new AbortController();
  const follower = (async () => {
    for await (const batch of partition.subscribeSealed({ signal: filling.signal })) void batch;
  })();
  const perUnit = 1000;
  for (let written = 0; written < events; written += perUnit * 32) {
    const pending = [];
    for (let u = 0; u < 32 && written + u * perUnit < events; u++) {
      const unit = [];
      for (let i = 0; i < perUnit; i++) unit.push({ type: 'Deposited', data: new TextEncoder().encode(`{"amount":${(written + u * perUnit + i) % 100}}`) });
      pending.push(partition.append({ streamId: `account-${(written / perUnit + u) % 1000}`, events: unit }));
    }
    await Promise.all(pending);
  }
  filling.abort();
  await follower;
  let published = 0;
  const udpFanout = transport === 'udp' ? await openUdpFanout() : undefined;
  // Multicast: a free port for the group, found by binding once; the receivers bind it together.
  let multicastPort = 0;
  if (transport === 'udp-multicast') {
    const probe = await openUdpMulticastReceiver({ group: MULTICAST_GROUP });
    multicastPort = probe.port;
    await probe.close();
  }
  const multicast = transport === 'udp-multicast' ? await openUdpMulticastSender({ group: MULTICAST_GROUP, port: multicastPort }) : undefined;
  const radio = transport === 'udp' || transport === 'udp-multicast' ? undefined : await openRadioSender({ partition: partition.name, transport: transport === 'radio-tcp' ? 'tcp' : 'udp' });
  const fanout: DatagramSender & { readonly sendErrors: number } = udpFanout ?? multicast ?? radio!;
  const add = (address: { port?: number; endpoint?: string }) => (udpFanout !== undefined ? udpFanout.add({ port: address.port! }) : transport === 'radio-udp' ? radio!.add(address.endpoint!) : undefined);
  const workers: Worker[] = [];
  const repairEncoder = new DatagramEncoder(partition.name, 0, 65507);
  const ready: Promise<void>[] = [];
  /** Each receiver has delivered the warm-up events. */
  const warm: Promise<void>[] = [];
  const finished: Promise<{ ms: number; repairs: number; repairedEvents: number; datagrams: number; inboxDropped: number; payloadSum: number; delivered: number }>[] = [];
  for (let r = 0; r < receivers; r++) {
    // Workers do not inherit `--import tsx`: register it, then load this file.
    const worker = new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`, {
      eval: true,
      workerData: { partition: partition.name, events, transport, consume, radioEndpoint: radio?.endpoint, multicastPort },
    });
    workers.push(worker);
    // The worker's replayer: reads served from the partition, encoded as datagrams (what a remote replayer would send).
    worker.on('message', async (message: { type: string; port?: number } & Partial<ReadRequest>) => {
      if (message.type === 'read-frames') {
        // Frames as stored, cut into datagrams (what a remote replayer would send): no decoding.
        const toSeq = Math.min(message.toSeq ?? published, published);
        const datagrams: Uint8Array[] = [];
        const ac = new AbortController();
        if (toSeq >= (message.fromSeq as number)) {
          for await (const batch of partition.subscribeSealed({ fromSeq: message.fromSeq, signal: ac.signal })) {
            repairEncoder.encode(batch.bytes, batch.firstSeq, message.fromSeq as number, datagrams, []);
            if (batch.lastSeq >= toSeq) ac.abort();
          }
        }
        worker.postMessage({ type: 'read-reply', id: message.id, datagrams }, datagrams.map((d) => d.buffer as ArrayBuffer));
        return;
      }
      if (message.type !== 'read') return;
      const toSeq = Math.min(message.toSeq ?? published, published);
      const out: RecordedEvent[] = [];
      for await (const e of partition.read({ fromSeq: message.fromSeq, toSeq })) out.push(e);
      const { datagrams } = encodeDataDatagrams(partition.name, 0, out, 65507);
      worker.postMessage({ type: 'read-reply', id: message.id, datagrams });
    });
    ready.push(new Promise((resolve) => worker.once('message', (m: { type: string; port?: number; endpoint?: string }) => (add(m), resolve()))));
    finished.push(new Promise((resolve, reject) => {
      worker.on('message', (m: { type: string }) => m.type === 'done' && resolve(m as never));
      worker.once('error', reject);
    }));
    warm.push(new Promise((resolve) => worker.on('message', (m: { type: string }) => m.type === 'warm' && resolve())));
  }
  await Promise.all(ready);
  for (const w of workers) w.postMessage({ type: 'start' });
  // The warm-up: a first publisher stops once it has sent the warm-up events; every receiver
  // delivers them; then a second publisher (a restart, as receivers see it) sends the rest.
  // Its source ends with the batch that holds seq `warmup`.
  const warmSource: EventSource = {
    name: partition.name,
    lastSeq: Math.min(partition.lastSeq, warmup),
    subscribe: () => {
      throw new Error('the warm-up publisher reads sealed batches');
    },
    async *subscribeSealed(options) {
      for await (const batch of partition.subscribeSealed(options)) {
        yield batch;
        if (batch.lastSeq >= warmup) return;
      }
    },
  };
  const warmPublisher = startBroadcastPublisher({ source: warmSource, sender: fanout, fromSeq: 1, datagramBytesMax, heartbeatMs: 20 });
  const warmTick = setInterval(() => (published = warmPublisher.lastSent), 5);
  // Its source ends: so does it (a failure rejects here).
  await warmPublisher.done;
  clearInterval(warmTick);
  await warmPublisher.stop();
  published = warmPublisher.lastSent;
  // Receivers are warm once they have all of it (its last batch may reach past `warmup`).
  for (const w of workers) w.postMessage({ type: 'warm-to', seq: published });
  // Paused, it still announces its head (as a publisher with nothing new does): a receiver that
  // lost the last datagrams of the warm-up learns of them and repairs them.
  const pausedBeat = setInterval(() => fanout.send(encodeHeartbeat(partition.name, warmPublisher.session, published)), 20);
  await Promise.all(warm);
  clearInterval(pausedBeat);
  /** The events sent after the warm-up (its last batch may reach past `warmup`): what the figures count. */
  const warmSent = published;
  const timed = events - warmSent;
  // The measured phase: from the moment every receiver has the warm-up events.
  const { Session } = await import('node:inspector/promises');
  const session = process.env.PROFILE ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  // PERF_CTL=<fifo>: `perf record --control=fifo:<fifo> -D -1` records the broadcast phase only.
  const perfCtl = process.env.PERF_CTL ? (await import('node:fs')).openSync(process.env.PERF_CTL, 'w') : undefined;
  if (perfCtl !== undefined) (await import('node:fs')).writeSync(perfCtl, 'enable\n');
  const cpuAtStart = process.cpuUsage();
  const threadsAtStart = process.env.THREADS ? threadTicks() : undefined;
  const faultsAtStart = process.env.THREADS ? minorFaults() : 0;
  const started = performance.now();
  for (const w of workers) w.postMessage({ type: 'go' });
  const publisher = startBroadcastPublisher({ source: partition, sender: fanout, fromSeq: warmSent + 1, datagramBytesMax, heartbeatMs: 20 });
  let publishedMs = 0;
  const tick = setInterval(() => {
    published = publisher.lastSent;
    if (published >= events && publishedMs === 0) publishedMs = performance.now() - started;
  }, 5);
  const results = await Promise.all(finished);
  // Every thread of the process (publisher, receivers, replayer): the cost of the broadcast whatever else the machine runs.
  const cpu = process.cpuUsage(cpuAtStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  if (perfCtl !== undefined) (await import('node:fs')).writeSync(perfCtl, 'disable\n');
  if (threadsAtStart) {
    const now = threadTicks();
    const rows = [...now].map(([tid, v]) => [tid, v.name, v.ticks - (threadsAtStart.get(tid)?.ticks ?? 0)] as const).filter((r) => r[2] > 0).sort((x, y) => y[2] - x[2]);
    console.log('thread CPU (ticks of 10 ms):', rows.map(([tid, name, t]) => `${name}${tid === process.pid ? '(main)' : ''}:${t}`).join(' '));
    console.log(`minor page faults during the broadcast (all threads): ${minorFaults() - faultsAtStart}`);
  }
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    (await import('node:fs')).writeFileSync(process.env.PROFILE as string, JSON.stringify(profile));
  }
  const wall = performance.now() - started;
  clearInterval(tick);
  await publisher.stop();
  let expectedSum = 0;
  // The stored log's frames, in seq order, as one CRC-32C (what consume=frames receivers must end with).
  let expectedCrc = 0;
  if (consume === 'events') for await (const e of partition.read({})) for (const b of e.payload) expectedSum += b;
  {
    const ac = new AbortController();
    for await (const batch of partition.subscribeSealed({ signal: ac.signal })) {
      expectedCrc = crc32c(batch.bytes, 0, sealedFramesEnd(batch.bytes), expectedCrc);
      if (batch.lastSeq >= events) ac.abort();
    }
  }
  const expected = consume === 'events' ? expectedSum : expectedCrc;
  console.log(`${transport}, consume=${consume}: ${timed.toLocaleString('en-US')} events measured after ${warmSent.toLocaleString('en-US')} untimed, ${receivers} receivers, datagrams ≤ ${datagramBytesMax} B, ${warmPublisher.stats.datagrams} + ${publisher.stats.datagrams} datagrams × ${receivers} sent, ${fanout.sendErrors} send errors`);
  console.log(`publisher: ${(publisher.stats.events / (wall / 1000) / 1e6).toFixed(2)} M events/s (${publisher.stats.events.toLocaleString('en-US')} events), all sent after ${publishedMs === 0 ? '–' : publishedMs.toFixed(0)} ms, wall ${wall.toFixed(0)} ms`);
  for (const [i, r] of results.entries()) {
    console.log(
      `receiver ${i}: ${(timed / (r.ms / 1000) / 1e6).toFixed(2)} M events/s (${r.ms.toFixed(0)} ms), ${r.datagrams} datagrams, ${r.repairs} repairs / ${r.repairedEvents} events replayed, ${r.inboxDropped} inbox drops, exact=${r.delivered === events && r.payloadSum === expected}`,
    );
  }
  const rates = results.map((r) => timed / (r.ms / 1000));
  const exact = results.every((r) => r.delivered === events && r.payloadSum === expected);
  console.log(`per receiver: min ${(Math.min(...rates) / 1e6).toFixed(2)} M/s, median ${(rates.sort((a, b) => a - b)[rates.length >> 1] / 1e6).toFixed(2)} M/s; aggregate ${((timed * receivers) / (wall / 1000) / 1e6).toFixed(2)} M events/s`);
  // Workers end on their own (their --cpu-prof profiles are written then).
  console.log(
    `CPU: ${cpuSeconds.toFixed(2)} s (user ${(cpu.user / 1e6).toFixed(2)}, system ${(cpu.system / 1e6).toFixed(2)}) = ${((timed * receivers) / cpuSeconds / 1e6).toFixed(2)} M receiver-events per CPU-second (all threads)`,
  );
  if (process.env.SLUICE_BENCH_JSON === '1') {
    const sorted = [...rates].sort((x, y) => x - y);
    const figures = { events: timed, warmup: warmSent, receivers, transport, consume, perReceiverMin: sorted[0], perReceiverMedian: sorted[sorted.length >> 1], cpuSeconds, exact };
    console.log(`@sluice-bench ${JSON.stringify(figures)}`);
  }
  await Promise.all(workers.map((w) => new Promise((resolve) => (w.once('exit', resolve), w.postMessage({ type: 'exit' })))));
  await fanout.close();
  await partition.close();
} else {
  const port = parentPort as MessagePort;
  const { partition, events, transport, consume, radioEndpoint, multicastPort } = workerData as {
    partition: string;
    events: number;
    transport: Transport;
    consume: Consume;
    radioEndpoint?: string;
    multicastPort: number;
  };
  const udp: DatagramReceiver & { readonly port?: number; readonly endpoint?: string } =
    transport === 'udp-multicast'
      ? await openUdpMulticastReceiver({ group: MULTICAST_GROUP, port: multicastPort, receiveBufferBytes: 4 * 1024 * 1024 })
      : transport === 'udp'
      ? await openUdpReceiver({ receiveBufferBytes: 4 * 1024 * 1024 })
      : await openDishReceiver({ partitions: [partition], transport: transport === 'radio-tcp' ? 'tcp' : 'udp', connect: radioEndpoint });
  let nextId = 1;
  const pending = new Map<number, (datagrams: Uint8Array[]) => void>();
  let started = false;
  port.on('message', (m: { type: string; id?: number; datagrams?: Uint8Array[] }) => {
    if (m.type === 'read-reply') pending.get(m.id as number)?.(m.datagrams as Uint8Array[]);
    if (m.type === 'start') started = true;
  });
  const request = (type: string, fromSeq: number, toSeq: number | undefined) => {
    const id = nextId++;
    return new Promise<Uint8Array[]>((resolve) => {
      pending.set(id, resolve);
      port.postMessage({ type, id, fromSeq, toSeq });
    }).finally(() => pending.delete(id));
  };
  const replayer = {
    async *readFrames(options: { fromSeq: number; toSeq?: number }): AsyncIterable<FrameRun> {
      if (!started) return;
      for (const d of await request('read-frames', options.fromSeq, options.toSeq)) {
        const g = decodeDatagram(d);
        if (g?.kind === 'data') yield g.run;
      }
    },
    async *read(options: { fromSeq?: number; toSeq?: number }): AsyncIterable<RecordedEvent> {
      if (!started) return;
      const id = nextId++;
      const datagrams = await new Promise<Uint8Array[]>((resolve) => {
        pending.set(id, resolve);
        port.postMessage({ type: 'read', id, fromSeq: options.fromSeq ?? 1, toSeq: options.toSeq });
      });
      pending.delete(id);
      for (const d of datagrams) {
        const g = decodeDatagram(d);
        if (g?.kind === 'data') yield* g.run.events;
      }
    },
  };
  let payloadSum = 0;
  const receiver = startBroadcastReceiver({
    partition,
    receiver: udp,
    replayer,
    gapTimeoutMs: 20,
    ...(consume === 'frames'
      ? {
          handleFrames: (run) => {
            const f = run.frames;
            payloadSum = crc32c(f, 0, f.length, payloadSum);
          },
        }
      : {
          handle: (batch) => {
            for (const e of batch) {
              const p = e.payload;
              for (let i = 0; i < p.length; i++) payloadSum += p[i];
            }
          },
        }),
  });
  port.postMessage({ type: 'ready', port: udp.port, endpoint: udp.endpoint });
  await new Promise<void>((resolve) => port.on('message', (m: { type: string }) => m.type === 'start' && resolve()));
  const go = new Promise<number>((resolve) => port.on('message', (m: { type: string }) => m.type === 'go' && resolve(performance.now())));
  const warmTo = await new Promise<number>((resolve) => port.on('message', (m: { type: string; seq?: number }) => m.type === 'warm-to' && resolve(m.seq as number)));
  await receiver.waitFor(warmTo);
  port.postMessage({ type: 'warm' });
  const t0 = await go;
  await receiver.waitFor(events);
  const ms = performance.now() - t0;
  const s = receiver.stats;
  port.postMessage({ type: 'done', ms, repairs: s.repairs, repairedEvents: s.repairedEvents, datagrams: s.datagrams, inboxDropped: s.inboxDropped, payloadSum, delivered: s.delivered });
  await new Promise<void>((resolve) => port.on('message', (m: { type: string }) => m.type === 'exit' && resolve()));
  await receiver.stop();
  await udp.close();
  port.close();
}

/** Where a sealed batch's event frames end (its commit marker starts). */
function sealedFramesEnd(bytes: Uint8Array): number {
  let o = 0;
  while (o < bytes.length && bytes[o + 5] === 1) o += bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24);
  return o;
}

/** Minor page faults of the whole process so far (Linux /proc/self/stat), for THREADS=1 runs. */
function minorFaults(): number {
  const fs = require('node:fs') as typeof import('node:fs');
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/** utime+stime of each thread of this process (Linux), for THREADS=1 runs. */
function threadTicks(): Map<number, { name: string; ticks: number }> {
  const fs = require('node:fs') as typeof import('node:fs');
  const out = new Map<number, { name: string; ticks: number }>();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      out.set(Number(tid), { name, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // The thread ended.
    }
  }
  return out;
}
