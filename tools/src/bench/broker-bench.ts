/**
 * Broker benchmark, on one machine over 127.0.0.1:
 *
 * (a) request/reply throughput, pipelined, same payload size: a DEALER talking straight to
 *     an echo ROUTER, against the same requests through the Majordomo broker to an echo
 *     `MajordomoWorker` (from a raw DEALER speaking MDP, and from `MajordomoClient`), the
 *     worker with credit alone, then with the batch extension (batches of ≤ 64), in one run.
 *     Target: the broker costs at most 2× in throughput.
 * (b) appends through the broker: store client → broker → node (file storage, fsync on
 *     every commit), units of 100 events of 100 bytes, many in flight; beside the same
 *     appends made in-process on a partition. Target: ≥ 200,000 events/s.
 *
 * By default each server (echo ROUTER, broker, echo worker, node) runs in its own process,
 * as deployed, with the malloc settings the node and broker READMEs advise
 * ({@link SERVER_MALLOC_TUNABLES}); the clients run in this one. `--placement inline` runs
 * everything here.
 *
 *   npm run bench:broker                 full run
 *   npm run bench:broker -- --smoke      seconds-long check that it works
 *   --placement processes|inline   --dir PATH (node data; default: OS temp)   --out FILE (JSON rows)
 *   npm run bench:broker -- --trace-sequential [--count N]   (c) below: where a sequential append's time goes
 *   --malloc-defaults   spawned servers with glibc's malloc defaults, not SERVER_MALLOC_TUNABLES
 *
 * (c) `--trace-sequential`: one request at a time, to find where a sequential append through
 *     the broker spends its time. Rows: an in-process append; an echo through the broker with
 *     100- and 250-byte bodies; the echo worker's handler doing an fdatasync, or an in-process
 *     append (a node's work without the store protocol); the store client's appends to a node.
 *     The last row is traced: every process records its socket sends and receives and the node
 *     its append, write and sync, in microseconds of the machine's clock, and the breakdown gives
 *     the median of each step (message-trace.ts).
 *
 * Measured on the 2-core shared machine (load average 4-10 from other work, so rates vary
 * run to run; the CPU-per-request figures are steadier):
 * - (a) direct 35,000-55,000 req/s; via broker 6,300-10,600 req/s: the broker costs 3.4-6×,
 *   not the 2× targeted. Per request the echo ROUTER spends ~14 µs of CPU, the broker ~60 µs
 *   and the MajordomoWorker ~50 µs. The broker's own JavaScript is ~5% of its profile; the rest
 *   is zeromq.js send/receive: the broker makes 4 socket operations per request where the echo
 *   server makes 2, and RFC 7 gives each worker connection one request at a time, so those
 *   links never carry bursts (a raw DEALER in such ping-pong costs ~27 µs per request against
 *   ~12 µs pipelined). Reaching 2× needs several requests in flight per worker connection (an
 *   opt-in credit extension of MDP) and a leaner broker hot path: see the broker README.
 * - (a) after the credit extension and the hot-path work (fastpath branch, 2026-12-05, same
 *   loaded machine, old and new trees back to back, servers under tsx): the echo worker now
 *   runs 4 connections × credit 64 instead of 64 plain connections. CPU per request: worker
 *   ~100 µs → ~50 µs, broker ~115 µs → ~90-100 µs (its profile is still ~55% zeromq.js native
 *   send/receive and ~5% its own JavaScript: 4 messages and ~27 frames per request against
 *   the echo server's 2 and 4). Throughput 4,200-4,600 → 5,600-7,300 req/s; direct ÷ broker
 *   3-4× (the direct row itself swings 13,000-23,000 req/s run to run). Still not 2×: the next
 *   step is fewer frames and messages per request on credit connections (several requests
 *   per message), see the broker README.
 * - Profile of 20,000 concurrent single-event appends (1000 in flight, `node --cpu-prof` on
 *   client, broker and node; fastpath branch, 2026-12-06, load average 7-19): the broker is
 *   80-86% idle (~9-10 µs CPU per coalesced request), the node 37-43% idle (~41 µs per append:
 *   partition fill/encode/ready ~10%, GC 8-14%, the protocol decode + unit validation ~5% with
 *   op 5, replaced by appendEncoded + appendFramed ~5% with op 7), the client ~35-40% busy
 *   (coalescing, command ids, encoding). With 1000 in flight the rate is bound by the node's
 *   group-commit latency (fsync) and CPU shared by three processes on 2 cores, not the broker.
 *   Framed appends (op 7) move one CRC-32C pass to the client (the node checks the body CRC
 *   and derives the frame's by combination): in the same runs they were 10-30% slower than
 *   op 5 on this 2-core machine (client and node compete for the same cores) — the price of
 *   a checksum that travels with each event from the client to the disk.
 * - (a) with the batch extension (fastpath branch, 2026-12-06, load average 9-14, one full run:
 *   the credit-only rows and the batch rows are measured in the same run): the broker puts up
 *   to 64 requests in one message to a worker connection and the worker up to 64 replies in one
 *   message back. CPU per request broker 106 → 55 µs, worker 55 → 13 µs; DEALER speaking MDP
 *   3,886 → 7,292 req/s, direct ÷ broker 3.92× → 2.09× (MajordomoClient 4.31× → 2.39×; a
 *   50,000-request run earlier: 4.18× → 2.43×). What is left in the broker is the client's
 *   side, one message in and one out per request with 6 frames each (the echo server's 3):
 *   ~55 µs against the echo server's ~28 µs, nearly all zeromq.js send/receive.
 * - 1000 concurrent single-event appends (fastpath branch, 2026-12-06, `npm run bench --
 *   --quick --only sluice-file,sluice-file-ids,sluice-broker`, old and new trees alternated,
 *   load average 8-11): via broker 5,990 / 9,365 events/s (old) against 6,603 / 16,992 (new);
 *   in 80,000-append runs alternated at load 6-9: 16,000 / 17,700 (old), 19,200 / 15,200 (new).
 *   The client used to send the 1000 waiting appends as one request of 1000 units, so client,
 *   broker, node and disk each waited while another worked; it now spreads them over its 4
 *   request slots (4 × 250): up to ~2× while cores are idle (35,000-42,000/s at load ~5),
 *   no gain when all are busy. CPU per append: client ~13 → ~11 µs (no hashing for one
 *   partition, no map per append), node ~22 µs, broker ~5 µs. The embedded partition with a
 *   command id per append costs ~16-20 µs of CPU itself (37,000-61,000/s in the same runs), so
 *   on 2 shared cores three processes cannot reach 100,000/s: the floor is the partition's
 *   per-commit work (command-id and stream indexes, group commit), not the wire.
 * - Framed appends on a node: the node's partitions record their reliability level (format
 *   version 3), and framed events used to be decoded and re-encoded there; they are now copied
 *   with the level inserted into the commit's first frame (node CPU per event in batches of
 *   1000: ~5.3 → ~4.8 µs).
 * - (c) Where a sequential append's time goes (cluster-path branch, 2026-12-06, load average
 *   7.3-8.3, two runs of 2000 requests per row; p50 ms):
 *       in-process append 0.37-0.50 | echo 100 B 0.57-0.63 | echo 250 B 0.70-0.79 |
 *       echo + fdatasync in the handler 1.22-1.46 | echo + in-process append in the handler
 *       1.98-2.15 | store client → broker → node 2.04-2.49
 *   and the traced row, median per step (µs): client until send 62-70; client → broker 202-225;
 *   broker recv → send 35-37 (twice); broker → node 213-226; node until the partition 39-42;
 *   partition until its write 97-100; write 35-37; fdatasync 537-678; node reply until sent
 *   42-45; node → broker 192-194; broker → client 187-195; client after the reply 43-48.
 *   So the "missing" time is not a timer, a batching window or a stray fsync: there is none on
 *   the path (the worker's reply BATCH and the broker's request BATCH go out at the end of the
 *   same event-loop turn, 35-45 µs with everything else the process does). It is the hops: four
 *   messages, each a hand-off from the sender's main thread to its libzmq I/O thread, over TCP,
 *   to the receiver's I/O thread and then its main thread (~200 µs a hop here, ~140 µs in the
 *   echo), plus a wake-up of the sender's main thread after each message with a frame over 128
 *   bytes (zeromq.js sends those without copying and releases them on the main thread: +0.5
 *   context switches per request in each process, 100 → 250-byte echo +0.07-0.22 ms). An
 *   fdatasync in the middle of the chain costs more than alone (echo + fdatasync is 0.5-0.7 ms
 *   over the echo): every thread of the chain sleeps during the disk wait and is woken cold
 *   afterwards. The store protocol itself (client encoding, node decoding, reply) adds
 *   0.06-0.35 ms over a plain MajordomoWorker doing the same append; in CPU, the handler's
 *   decode + reply encode is ~1.8 µs per request (measured in-process) and the store client's
 *   own work ~5.5 µs per sequential append. The target (≥ 50 % of the in-process rate, i.e.
 *   ≤ 2× its latency) is below what one echo through the broker costs on this machine.
 * - Where the other rows stand (cluster-path branch, 2026-12-06, load average 9-11, servers as
 *   processes, CPU per event summed over each process's threads):
 *   1000 concurrent single appends: client 9.5-13 µs, broker 3.4-6.8 µs, node 18.7-23 µs per
 *   append (in-process with a command id: 15 µs). The node's samples: store 20 %, framing 4.6 %,
 *   GC 8.4 %, majordomo 7.2 % (5 % is zeromq.js's native send), the store protocol 2.7 %, the
 *   node package 2.6 %: the engine's per-commit work is the bound, not the wire. Fewer, larger
 *   coalesced requests cost less CPU everywhere (appendBatchesInFlightMax 2 / 4 / 8: ~32 / ~36 /
 *   ~41 µs per append over the three processes) but overlap less when cores are idle; the rate
 *   varied more between runs (22,000-31,000/s) than between settings, so the default stays 4.
 *   Batches of 1000 (4 in flight): node 3.8-4.4 µs per event against 2.2 in-process (its main
 *   thread 1.7-2.0 ms per 1000-event request against 0.9-1.2; appendEncoded's CRC check and
 *   CRC combination per event, the frame copy, GC), broker 0.7-1.0 µs (mostly its libzmq I/O
 *   thread moving 2 × 130 KB), client 0.8-1.1 µs; framed (op 7) and append-many (op 5) within
 *   noise of each other (node 4.4 / 4.4 against 4.0 / 4.3 µs per event).
 *   Catch-up read through the broker (200,000 events of 100 B): 49,000-69,000 events/s on the
 *   first read, which the node serves from the file, 130,000-230,000/s on a second (client
 *   ~1.2-2 µs per event); client and node 57-72 % idle on the first. Tried: asking for the rest
 *   of the range in seq windows of the first page's span, 2 or 4 pages in flight instead of 1
 *   (three alternated runs, load 9-9.7): 82,000-170,000/s against 69,000-232,000/s, and the
 *   client's CPU per event 3.9-4.8 µs against 1.2-4.4: no gain, not kept. The first read's
 *   bound is the node reading and re-encoding stored events (~4.7 µs per event).
 * - (b) 146,000-325,000 events/s through broker and node (4 runs; 216,000-325,000 in three),
 *   against 248,000-811,000 in-process: CPU per 100-event append ~125 µs in the broker and
 *   ~250 µs in the node, so on 2 shared cores the bound is CPU, not the disk. Fastpath branch,
 *   2026-12-06 (load 9-14): 98,926 via broker against 219,433 in-process (45 %); CPU per
 *   100-event append broker 50 µs, node 426 µs.
 * - Batches of 1000 (broker-batches branch, 2026-12-06, 4 in flight, 300,000 events a run,
 *   load 5-8, CPU per event from /proc per thread around the measured appends only): client
 *   0.9-1.2 µs (its main thread; encoding ~0.33 µs of it), broker 0.66-0.96 µs (its libzmq I/O
 *   thread 0.5-0.7: receiving the 177 KB message), node 2.8-3.4 µs (main thread 2.5-2.9, libzmq
 *   thread 0.55-0.8). perf: ~half of each libzmq thread's time is page faults while recv()
 *   copies a message into memory malloc just mapped (~43 faults a message: glibc mmaps every
 *   block over its threshold, and the threshold follows the largest block freed, so messages
 *   of about one size land on fresh pages again and again). With SERVER_MALLOC_TUNABLES (3
 *   alternated pairs through spawnRole, load 6.9-7.2): broker 0.83 / 0.90 / 1.07 → 0.63 / 0.70 /
 *   0.80 µs per event (its libzmq thread 0.50 / 0.67 / 0.77 → 0.40 / 0.47 / 0.50, 31-43 → 22-25
 *   faults a message), node 3.10 / 3.80 / 3.23 → 2.90 / 3.34 / 2.77 (its libzmq thread 43 →
 *   25-33 faults a message), events/s within noise (116,000-161,000 → 142,000-160,000), peak
 *   RSS node 115 → 125-135 MB, broker 95 → 97-99 MB; two earlier pairs at load 5.2-5.5: node
 *   3.03 / 3.03 → 2.50 / 2.60, 144,000 / 175,000 → 227,000 / 208,000 events/s. `npm run bench
 *   -- --quick --only sluice-file,sluice-broker`, glibc's defaults (load 9-11) then the tunables
 *   (load 7-9), one run each: batches of 1000 via broker 100,861 events/s (23 % of the embedded
 *   row's 431,505) → 107,796 (26 % of 416,798); 1000 concurrent appends 15,133 → 19,788. The ~25 faults
 *   a message left are probably heap growth while received messages wait for V8's GC to free
 *   them (zeromq.js hands them over without a copy; not verified). A trim threshold alone
 *   (which also fixes the mmap threshold at 128 KiB) was worse: the client's 1000-event
 *   requests then faulted 77 times each. Tried in the client: sizing each request exactly
 *   (177 KB) instead of an estimate doubled (142 KB, then 284 KB): worse, 21-31 → 47 faults a
 *   request and 1.0-1.2 → 1.6-1.7 µs per event (an exact size is never under the threshold
 *   the previous request set), not kept. In-process on this machine, the node's engine path
 *   (encodeFramedUnit + appendEncoded, 4 in flight) is 2.4-2.5 µs per event against 1.2-1.4 for
 *   commit: the framed path's CRC check per event and frame copy cost more than the plain
 *   commit's encoding now; append-many (op 5) through the broker is within noise of op 7
 *   (node 3.2-3.4 against 3.4-3.5 µs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createStoreClient, type StoreClient } from '@sluice/client';
import { loadSluiceConfig } from '@sluice/config';
import { MajordomoClient, clientRequestFrames, createBroker, createWorker, encodeCorrelation } from '@sluice/majordomo';
import { locationFactory, startNode } from '@sluice/node';
import { openPartition, type EventData, type PartitionStorage } from '@sluice/store';
import { createFileStorage, type FileStorageOptions } from '@sluice/store-file';
import * as zmq from 'zeromq';
import type { BenchSystem } from './bench-system.js';
import { EVENT_TYPE, eventLogSession, type EventLog, type ReadTotals } from './event-log-session.js';
import { MessageTrace, formatHopBreakdown, hopBreakdown, traceAsyncMethod, traceSockets, type HopStep, type TraceEvent } from './message-trace.js';
import { Latencies, formatBenchRows, row, timedConcurrently, type BenchRow } from './stats.js';

const PAYLOAD_BYTES = 100;
const ECHO_SERVICE = 'echo';

/** Where the servers run. */
export type Placement = 'processes' | 'inline';

export interface BrokerBenchOptions {
  readonly smoke: boolean;
  readonly directory: string;
  /** @default "processes" */
  readonly placement?: Placement;
}

function payload(bytes = PAYLOAD_BYTES): Buffer {
  const p = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < p.length; i++) p[i] = (i * 31) & 0xff;
  return p;
}

// ---- servers, in a child process or inline ----------------------------------------------------

/**
 * What a server process used while serving (from ready to SIGTERM). Context switches (all
 * threads: main, libzmq I/O, libuv pool) count the wake-ups a request costs: they move far
 * less with the machine's load than CPU time does, so they compare runs on a shared machine.
 */
export interface ServerUsage {
  readonly cpuMs: number;
  /** Voluntary and involuntary context switches (`process.resourceUsage()`). */
  readonly contextSwitches: number;
  /**
   * Minor page faults, all threads (`process.resourceUsage().minorPageFault`): each is a page
   * of fresh memory touched. A large message received into fresh pages costs one per 4 KiB,
   * which on the shared VM costs about as much CPU as the copy itself (see
   * {@link SERVER_MALLOC_TUNABLES}).
   */
  readonly pageFaults: number;
  /** What the server recorded, when its role asked for a trace (`trace: true`). */
  readonly trace?: readonly TraceEvent[];
}

interface Server {
  /** What the server printed when ready: its endpoint, when it has one. */
  readonly endpoint: string;
  /** Stops it; resolves with what its process used (undefined inline). */
  stop(): Promise<ServerUsage | undefined>;
}

interface RoleHandle {
  readonly endpoint: string;
  /** What the role records, when asked to (`trace: true`). */
  readonly trace?: MessageTrace;
  stop(): Promise<void>;
}

/** What the handler of an `append-worker` does per request (see {@link sequentialTraceRows}). */
export type AppendWorkerWork = 'fdatasync' | 'append';

type Role = (
  | { readonly role: 'echo-router' }
  | { readonly role: 'broker' }
  | { readonly role: 'echo-worker'; readonly broker: string; readonly concurrency: number; readonly credit?: number; readonly batch?: number }
  | { readonly role: 'append-worker'; readonly broker: string; readonly directory: string; readonly work: AppendWorkerWork; readonly payloadBytes?: number }
  | { readonly role: 'node'; readonly config: string; readonly concurrency: number }
  | { readonly role: 'relay' }
  | { readonly role: 'relay-fdatasync-worker'; readonly relay: string; readonly directory: string; readonly payloadBytes?: number }
) & {
  /** Record socket sends and receives (and the node's storage calls) for {@link hopBreakdown}. */
  readonly trace?: boolean;
};

/** Writes per request of the fdatasync workers: they cycle over this many payload-sized slots. */
const SCRATCH_SLOTS = 1000;

/**
 * A file the fdatasync workers write one payload into per request, then fdatasync. Its slots
 * are zero-filled and synced when it opens, so no request's fdatasync carries a size change or
 * a block allocation, whatever the run's length (the store's segments are preallocated too).
 */
class FdatasyncScratch {
  private n = 0;

  private constructor(
    private readonly handle: FileHandle,
    private readonly data: Buffer,
    private readonly trace: MessageTrace | undefined,
  ) {}

  static async open(path: string, payloadBytes: number, trace?: MessageTrace): Promise<FdatasyncScratch> {
    const handle = await open(path, 'w+');
    try {
      const zeros = Buffer.alloc(payloadBytes * SCRATCH_SLOTS);
      await handle.write(zeros, 0, zeros.length, 0);
      await handle.datasync();
      return new FdatasyncScratch(handle, payload(payloadBytes), trace);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async writeAndSync(): Promise<void> {
    await this.handle.write(this.data, 0, this.data.length, (this.n++ % SCRATCH_SLOTS) * this.data.length);
    this.trace?.mark('sync-start');
    await this.handle.datasync();
    this.trace?.mark('sync-end');
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Runs a server role here; resolves when it serves. */
async function runRole(spec: Role): Promise<RoleHandle> {
  if (spec.trace !== true) return runUntracedRole(spec);
  const trace = new MessageTrace(spec.role === 'echo-worker' || spec.role === 'append-worker' ? 'worker' : spec.role);
  const untrace = traceSockets(trace);
  const handle = await runUntracedRole(spec, trace);
  return { ...handle, trace, stop: () => handle.stop().finally(untrace) };
}

async function runUntracedRole(spec: Role, trace?: MessageTrace): Promise<RoleHandle> {
  switch (spec.role) {
    case 'echo-router': {
      const router = new zmq.Router({ linger: 0, sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 });
      await router.bind('tcp://127.0.0.1:*');
      const loop = (async () => {
        try {
          for await (const message of router) await router.send(message);
        } catch {
          // closed
        }
      })();
      return {
        endpoint: router.lastEndpoint as string,
        stop: async () => {
          router.close();
          await loop;
        },
      };
    }
    case 'broker': {
      const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*', serviceQueueMax: 100_000, queuedRequestsMax: 100_000, sendQueueMax: 100_000 });
      return { endpoint: broker.endpoint, stop: () => broker.close() };
    }
    case 'echo-worker': {
      const worker = createWorker({
        endpoint: spec.broker,
        service: ECHO_SERVICE,
        concurrency: spec.concurrency,
        credit: spec.credit ?? 1,
        batch: spec.batch ?? 1,
        handler: async (request) => request,
      });
      return { endpoint: '', stop: () => worker.close() };
    }
    case 'append-worker': {
      // An MDP worker whose handler does what a node does for one append, without the store
      // protocol: an fdatasync of a payload-sized write, or an append to an in-process partition.
      const data = payload();
      const reply = [Buffer.alloc(64)];
      const partition = await openPartition({ storage: traced(createFileStorage({ directory: join(spec.directory, 'log'), fsync: 'commit' }), trace), name: 'worker' });
      const scratch = await FdatasyncScratch.open(join(spec.directory, 'raw'), spec.payloadBytes ?? PAYLOAD_BYTES, trace);
      let n = 0;
      const handler =
        spec.work === 'fdatasync'
          ? async (): Promise<Buffer[]> => {
              await scratch.writeAndSync();
              return reply;
            }
          : async (): Promise<Buffer[]> => {
              await partition.append({ streamId: `stream-${n++ % 1000}`, events: [{ type: 'BenchEvent', data }], commandId: randomUUID() });
              return reply;
            };
      const worker = createWorker({ endpoint: spec.broker, service: ECHO_SERVICE, handler });
      return {
        endpoint: '',
        stop: async () => {
          await worker.close();
          await scratch.close();
          await partition.close();
        },
      };
    }
    case 'relay': {
      // A plain ZeroMQ relay, no Majordomo: clients' DEALERs to a ROUTER, forwarded with the
      // client's identity to workers through a DEALER, replies back the same way. Its endpoint
      // is "<clients' endpoint> <workers' endpoint>".
      const front = new zmq.Router({ linger: 0 });
      const back = new zmq.Dealer({ linger: 0 });
      await front.bind('tcp://127.0.0.1:*');
      await back.bind('tcp://127.0.0.1:*');
      const forward = async (from: zmq.Router | zmq.Dealer, to: zmq.Router | zmq.Dealer): Promise<void> => {
        try {
          for await (const message of from) await to.send(message);
        } catch {
          // closed
        }
      };
      const loops = Promise.all([forward(front, back), forward(back, front)]);
      return {
        endpoint: `${front.lastEndpoint as string} ${back.lastEndpoint as string}`,
        stop: async () => {
          front.close();
          back.close();
          await loops;
        },
      };
    }
    case 'relay-fdatasync-worker': {
      // Behind a plain relay: one payload-sized write and fdatasync per request, then the reply (identity kept).
      const reply = Buffer.alloc(64);
      const scratch = await FdatasyncScratch.open(join(spec.directory, 'raw'), spec.payloadBytes ?? PAYLOAD_BYTES);
      const socket = new zmq.Dealer({ linger: 0 });
      socket.connect(spec.relay);
      const loop = (async () => {
        try {
          for await (const [identity] of socket) {
            await scratch.writeAndSync();
            await socket.send([identity, reply]);
          }
        } catch {
          // closed
        }
      })();
      return {
        endpoint: '',
        stop: async () => {
          socket.close();
          await loop;
          await scratch.close();
        },
      };
    }
    case 'node': {
      const files = (options: FileStorageOptions) => traced(createFileStorage(options), trace);
      const node = await startNode({ config: spec.config, concurrency: spec.concurrency, locations: { file: locationFactory('file', files) } });
      if (trace !== undefined) for (const partition of node.partitions.values()) traceAsyncMethod(trace, partition, 'appendEncoded', 'append');
      return { endpoint: '', stop: () => node.close() };
    }
  }
}

/** The storage, with its writes and syncs marked in `trace` (when given). */
function traced<S extends PartitionStorage>(storage: S, trace: MessageTrace | undefined): S {
  if (trace === undefined) return storage;
  traceAsyncMethod(trace, storage, 'write');
  traceAsyncMethod(trace, storage, 'sync');
  return storage;
}

/**
 * The glibc malloc settings spawned servers run with, as the node and broker READMEs advise
 * for `sluice node` and `sluice broker` ("Memory allocator"): allocations up to 4 MiB come
 * from malloc's heaps, not a fresh mmap each, and up to 16 MiB freed stays mapped. A request
 * of 1000 events of 100 bytes is a 177 KB message; with glibc's defaults (mmap above 128 KiB,
 * a threshold that follows the largest block freed) libzmq receives each into fresh pages in
 * the broker and the node, ~43 page faults a message, which this VM makes expensive.
 * Batches of 1000, 3 alternated pairs at load 7: broker 0.83-1.07 → 0.63-0.80 µs CPU per
 * event, node 3.10-3.80 → 2.77-3.34, their libzmq threads 31-43 → 22-33 faults a message,
 * node peak RSS 115 → 125-135 MB (figures in this file's header).
 */
export const SERVER_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=16777216';

/** Whether spawned servers get {@link SERVER_MALLOC_TUNABLES} (`--malloc-defaults` turns it off). */
let serverMallocTunables = true;

/** Spawns servers from now on with {@link SERVER_MALLOC_TUNABLES} (`true`, the default) or with glibc's malloc defaults. */
export function useServerMallocTunables(on: boolean): void {
  serverMallocTunables = on;
}

/**
 * The environment of a spawned server: `env`, with {@link SERVER_MALLOC_TUNABLES} before any
 * GLIBC_TUNABLES already set there (glibc takes the last value of a tunable: the caller's win).
 */
export function serverEnvironment(env: NodeJS.ProcessEnv, mallocTunables: boolean): NodeJS.ProcessEnv {
  if (!mallocTunables) return env;
  const own = env.GLIBC_TUNABLES;
  return { ...env, GLIBC_TUNABLES: own === undefined || own === '' ? SERVER_MALLOC_TUNABLES : `${SERVER_MALLOC_TUNABLES}:${own}` };
}

/** Starts a server role in a child process (this module, with the role as argument). */
async function spawnRole(spec: Role): Promise<Server> {
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--role', JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: serverEnvironment(process.env, serverMallocTunables),
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const endpoint = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench server ${spec.role} exited with ${code} before it was ready`)));
    lines.once('line', (line) => resolve((JSON.parse(line) as { endpoint: string }).endpoint));
  });
  child.removeAllListeners('exit');
  return {
    endpoint,
    stop: () =>
      new Promise<ServerUsage | undefined>((resolve) => {
        if (child.exitCode !== null) return resolve(undefined);
        // The server's last line: the CPU time it used while serving. Resolve once it has
        // exited, though: a node still closing (writing its index) races the data folder's removal.
        let usage: ServerUsage | undefined;
        let trace: TraceEvent[] | undefined;
        lines.on('line', (line) => {
          const parsed = JSON.parse(line) as ServerUsage & { readonly events?: TraceEvent[] };
          if (parsed.events !== undefined) trace = parsed.events;
          else usage = parsed;
        });
        // 'close', not 'exit': the last lines may still be in the pipe when the process exits.
        child.once('close', () => resolve(usage === undefined ? undefined : { ...usage, ...(trace === undefined ? {} : { trace }) }));
        child.kill('SIGTERM');
      }),
  };
}

async function startRole(spec: Role, placement: Placement): Promise<Server> {
  if (placement !== 'inline') return spawnRole(spec);
  const handle = await runRole(spec);
  return {
    endpoint: handle.endpoint,
    stop: async () => {
      await handle.stop();
      const trace = handle.trace?.take();
      return trace === undefined ? undefined : { cpuMs: Number.NaN, contextSwitches: Number.NaN, pageFaults: Number.NaN, trace };
    },
  };
}

/** What a process used between two `process.resourceUsage()` readings. */
export function usageBetween(before: NodeJS.ResourceUsage, after: NodeJS.ResourceUsage): ServerUsage {
  const switches = (usage: NodeJS.ResourceUsage): number => usage.voluntaryContextSwitches + usage.involuntaryContextSwitches;
  return {
    cpuMs: (after.userCPUTime - before.userCPUTime + after.systemCPUTime - before.systemCPUTime) / 1000,
    contextSwitches: switches(after) - switches(before),
    pageFaults: after.minorPageFault - before.minorPageFault,
  };
}

/** "µs CPU, context switches and page faults per request" of each server that ran in its own process. */
export function cpuNote(count: number, servers: Readonly<Record<string, ServerUsage | undefined>>): string {
  const parts = Object.entries(servers).flatMap(([name, usage]) =>
    usage === undefined || Number.isNaN(usage.cpuMs)
      ? []
      : [`${name} ${((usage.cpuMs * 1000) / count).toFixed(0)} µs, ${(usage.contextSwitches / count).toFixed(1)} cs, ${(usage.pageFaults / count).toFixed(1)} pf`],
  );
  return parts.length === 0 ? '' : `; CPU, context switches and page faults per request: ${parts.join('; ')}`;
}

// ---- (a) request/reply ------------------------------------------------------------------------

/** Pipelined request/reply over a raw DEALER: `window` messages in flight, matched by an 8-byte id. */
async function dealerRoundTrips(
  name: string,
  endpoint: string,
  frames: (id: Buffer) => Buffer[],
  idOf: (reply: Buffer[]) => Buffer | undefined,
  count: number,
  window: number,
  note: string,
): Promise<BenchRow> {
  const socket = new zmq.Dealer({ linger: 0, sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 });
  socket.connect(endpoint);
  const latencies = new Latencies();
  const sentAt = new Float64Array(count);
  let received = 0;
  let credit = window;
  let wake: (() => void) | undefined;
  const start = performance.now();
  const receiver = (async () => {
    for await (const reply of socket) {
      const id = idOf(reply);
      if (id === undefined) continue;
      const n = id.readUInt32LE(0);
      latencies.record(performance.now() - sentAt[n]);
      received += 1;
      credit += 1;
      wake?.();
      if (received === count) return;
    }
  })();
  for (let n = 0; n < count; n++) {
    if (credit === 0) await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
    credit -= 1;
    const id = Buffer.alloc(8);
    id.writeUInt32LE(n, 0);
    sentAt[n] = performance.now();
    await socket.send(frames(id));
  }
  await receiver;
  const ms = performance.now() - start;
  socket.close();
  return row(name, count, count * PAYLOAD_BYTES, ms, latencies, note);
}

/** `window` concurrent requesters through a {@link MajordomoClient}. */
async function clientRoundTrips(endpoint: string, count: number, window: number, note: string): Promise<BenchRow> {
  const client = new MajordomoClient({ endpoints: [endpoint], timeoutMs: 30_000, outstandingMax: window * 2, sendQueueMax: window * 2 });
  const body = payload();
  const { ms, latencies } = await timedConcurrently(window, count, () => client.request(ECHO_SERVICE, [body]));
  await client.close();
  return row('via broker: MajordomoClient → broker → MajordomoWorker', count, count * PAYLOAD_BYTES, ms, latencies, note);
}

/**
 * (a) direct DEALER↔ROUTER echo against the same requests through the broker, once per
 * worker batch size in `workerBatches` (1: one request per message; above 1 the batch
 * extension), all in one run.
 */
export async function requestReplyRows(
  count: number,
  window: number,
  workerConcurrency: number,
  placement: Placement,
  workerCredit = 1,
  workerBatches: readonly number[] = [1],
): Promise<BenchRow[]> {
  const body = payload();
  const rows: BenchRow[] = [];
  const echo = await startRole({ role: 'echo-router' }, placement);
  let direct: BenchRow | undefined;
  try {
    direct = await dealerRoundTrips('direct: DEALER ↔ echo ROUTER', echo.endpoint, (id) => [id, body], (reply) => reply[0], count, window, `${window} in flight`);
  } finally {
    const usage = await echo.stop();
    if (direct !== undefined) rows.push({ ...direct, note: `${direct.note}${cpuNote(count, { 'echo server': usage })}` });
  }
  const service = Buffer.from(ECHO_SERVICE);
  for (const workerBatch of workerBatches) {
    const workers = `${workerConcurrency} worker connections${workerCredit > 1 ? ` × credit ${workerCredit}` : ''}${workerBatch > 1 ? `, batches of ≤ ${workerBatch}` : ''}`;
    const variants: ((endpoint: string) => Promise<BenchRow>)[] = [
      (endpoint) =>
        dealerRoundTrips(
          'via broker: DEALER speaking MDP → broker → MajordomoWorker',
          endpoint,
          // The correlation frame carries the id; a MajordomoWorker echoes it first in the reply.
          (id) => clientRequestFrames(service, [encodeCorrelation('message', id.readBigUInt64LE(0)), body]),
          (reply) => {
            const correlation = reply[3];
            if (correlation === undefined || correlation.length !== 13) return undefined;
            const id = Buffer.alloc(8);
            id.writeBigUInt64LE(correlation.readBigUInt64BE(5), 0);
            return id;
          },
          count,
          window,
          `${window} in flight, ${workers}`,
        ),
      (endpoint) => clientRoundTrips(endpoint, count, window, `${window} in flight, ${workers}`),
    ];
    for (const variant of variants) {
      // Fresh servers per variant, so each row's CPU figures are its own.
      const broker = await startRole({ role: 'broker' }, placement);
      const worker = await startRole({ role: 'echo-worker', broker: broker.endpoint, concurrency: workerConcurrency, credit: workerCredit, batch: workerBatch }, placement);
      let measured: BenchRow | undefined;
      try {
        const probe = new MajordomoClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
        await probe.request(ECHO_SERVICE, [body]); // the worker serves
        await probe.close();
        measured = await variant(broker.endpoint);
      } finally {
        const workerCpu = await worker.stop();
        const brokerCpu = await broker.stop();
        if (measured !== undefined) rows.push({ ...measured, note: `${measured.note}${cpuNote(count, { broker: brokerCpu, worker: workerCpu })}` });
      }
    }
  }
  return rows;
}

// ---- (b) appends --------------------------------------------------------------------------------

async function appendLoad(name: string, append: (n: number, events: EventData[]) => Promise<unknown>, units: number, unitEvents: number, inFlight: number, note: string): Promise<BenchRow> {
  const data = payload();
  const latencies = new Latencies();
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      const events: EventData[] = Array.from({ length: unitEvents }, () => ({ type: 'BenchEvent', data }));
      while (next < units) {
        const n = next++;
        const t = performance.now();
        await append(n, events);
        latencies.record(performance.now() - t);
      }
    }),
  );
  const ms = performance.now() - start;
  const total = units * unitEvents;
  return row(name, total, total * PAYLOAD_BYTES, ms, latencies, note);
}

/** A broker and a node serving partition `p1` (file store, fsync per commit), and a store client on them. */
export interface BenchCluster {
  readonly client: StoreClient;
  /** Stops client, node and broker; what each server process used (undefined inline). */
  stop(): Promise<{ readonly broker: ServerUsage | undefined; readonly node: ServerUsage | undefined }>;
}

/**
 * Starts a broker and a node (in their own processes unless `placement` is inline) on
 * `directory`, and a store client with its defaults (coalescing, framed appends).
 */
export async function startBenchCluster(directory: string, nodeConcurrency: number, placement: Placement, framedAppends = true, trace = false): Promise<BenchCluster> {
  const broker = await startRole({ role: 'broker', trace }, placement);
  let node: Server | undefined;
  let client: StoreClient | undefined;
  try {
    const configPath = join(directory, 'sluice.json');
    await writeFile(
      configPath,
      JSON.stringify({
        brokers: [broker.endpoint],
        levels: { durable: { locations: [{ file: './data/{partition}' }], fsync: 'commit' } },
        partitions: { p1: 'durable' },
        routing: { hash: ['p1'] },
      }),
    );
    node = await startRole({ role: 'node', config: configPath, concurrency: nodeConcurrency, trace }, placement);
    const config = await loadSluiceConfig(configPath);
    client = createStoreClient({ brokers: config.brokers, routing: config.routing, timeoutMs: 30_000, framedAppends });
    await client.head('p1'); // the node serves
  } catch (error) {
    await client?.close();
    await node?.stop();
    await broker.stop();
    throw error;
  }
  const [c, n] = [client, node];
  return {
    client: c,
    async stop() {
      await c.close();
      const node = await n.stop();
      return { node, broker: await broker.stop() };
    },
  };
}

/**
 * (b) appends of `unitEvents`-event units through the broker to a node, and in-process for
 * reference. Both stamp a command id on every append (the store client makes one up for each
 * append; the in-process row does the same work with `crypto.randomUUID`).
 */
export async function appendRows(directory: string, units: number, unitEvents: number, inFlight: number, nodeConcurrency: number, placement: Placement): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const note = `units of ${unitEvents}, ${inFlight} in flight, fsync per commit, a command id per append${placement === 'processes' && serverMallocTunables ? ', servers with the READMEs\' GLIBC_TUNABLES' : ''}`;
  const partition = await openPartition({ storage: createFileStorage({ directory: join(directory, 'local'), fsync: 'commit' }), name: 'local' });
  try {
    rows.push(
      await appendLoad('in-process partition (no broker), file store', (n, events) => partition.append({ streamId: `stream-${n % 1000}`, events, commandId: randomUUID() }), units, unitEvents, inFlight, note),
    );
  } finally {
    await partition.close();
  }
  const cluster = await startBenchCluster(directory, nodeConcurrency, placement);
  let measured: BenchRow | undefined;
  try {
    const c = cluster.client;
    measured = await appendLoad(
      'via broker: store client → broker → node, file store',
      (n, events) => c.append({ streamId: `stream-${n % 1000}`, events }),
      units,
      unitEvents,
      inFlight,
      `${note}, ${nodeConcurrency} worker connections`,
    );
  } finally {
    const cpu = await cluster.stop();
    if (measured !== undefined) rows.push({ ...measured, note: `${measured.note}${cpuNote(units, { broker: cpu.broker, node: cpu.node })}` });
  }
  return rows;
}

// ---- (c) one request at a time, traced ----------------------------------------------------------

/** Rows of {@link sequentialTraceRows} and the per-step breakdown of its store client row. */
export interface SequentialTrace {
  readonly rows: BenchRow[];
  /** Where the time of one append through client → broker → node goes (median per step). */
  readonly hops: HopStep[];
}

/**
 * (c) One request at a time, `count` of each, to find where the time of a sequential append
 * through the broker goes: an in-process partition append; an echo through the broker; the
 * same with a worker whose handler fdatasyncs a write, or appends to an in-process partition
 * (what a node does, without the store protocol); then the store client's appends to a node,
 * traced in every process ({@link hopBreakdown}). The echo goes with 100-byte and 250-byte
 * bodies (an append's request is about 250 bytes), the workers that write with 250. Inline, the servers share this process and its records: the steps then name only
 * the client (the breakdown is meant for `processes`).
 */
export async function sequentialTraceRows(directory: string, count: number, placement: Placement): Promise<SequentialTrace> {
  const rows: BenchRow[] = [];
  const data = payload();
  const sequential = (name: string, once: (n: number) => Promise<unknown>, note: string, warmUp = true): Promise<BenchRow> => sequentialRow(name, count, once, note, warmUp);
  const local = await openPartition({ storage: createFileStorage({ directory: join(directory, 'local'), fsync: 'commit' }), name: 'local' });
  try {
    rows.push(
      await sequential(
        'in-process partition append',
        (n) => local.append({ streamId: `stream-${n % 1000}`, events: [{ type: 'BenchEvent', data }], commandId: randomUUID() }),
        'file store, fsync per commit, a command id per append',
      ),
    );
  } finally {
    await local.close();
  }
  // zeromq.js sends a frame of more than 128 bytes without copying it, and releases it with a
  // wake-up of the sender's main thread once sent: the 100-byte echo has none, the 250-byte one
  // (an append's size) one in the client and one in the broker per request.
  const workers: [string, number, (broker: string, directory: string) => Role][] = [
    ['echo: MajordomoClient → broker → MajordomoWorker', 100, (broker) => ({ role: 'echo-worker', broker, concurrency: 1 })],
    ['echo: MajordomoClient → broker → MajordomoWorker', 250, (broker) => ({ role: 'echo-worker', broker, concurrency: 1 })],
    ['the same, the handler fdatasyncs a 100-byte write', 250, (broker, dir) => ({ role: 'append-worker', broker, directory: dir, work: 'fdatasync' })],
    ['the same, the handler appends to an in-process partition', 250, (broker, dir) => ({ role: 'append-worker', broker, directory: dir, work: 'append' })],
  ];
  for (const [index, [name, bodyBytes, spec]] of workers.entries()) {
    rows.push(await sequentialWorkerRow(name, bodyBytes, spec, await mkdtemp(join(directory, `worker-${index}-`)), count, placement));
  }
  // The store client → broker → node, every process traced.
  const trace = new MessageTrace('client');
  const untrace = traceSockets(trace);
  const events: TraceEvent[] = [];
  try {
    // Inline, every socket is in this process and the client's records cover them all: the
    // servers record nothing of their own (their hooks would record each message twice).
    const cluster = await startBenchCluster(await mkdtemp(join(directory, 'cluster-')), CLUSTER_NODE_CONCURRENCY, placement, true, placement !== 'inline');
    let measured: BenchRow | undefined;
    try {
      const c = cluster.client;
      for (let n = 0; n < Math.min(100, count); n++) await c.append({ streamId: `warm-${n}`, events: [{ type: 'BenchEvent', data }] });
      trace.take();
      measured = await sequential(
        'store client → broker → node',
        async (n) => {
          trace.mark('op-start');
          await c.append({ streamId: `stream-${n % 1000}`, events: [{ type: 'BenchEvent', data }] });
          trace.mark('op-end');
        },
        'file store, fsync per commit, a command id per append, traced',
        false, // warmed up above, untraced
      );
      events.push(...trace.take());
    } finally {
      const cpu = await cluster.stop();
      if (measured !== undefined) rows.push({ ...measured, note: `${measured.note}${cpuNote(count, { broker: cpu.broker, node: cpu.node })}` });
      // The servers' records start at their start: only the measured requests are cut out (hopBreakdown).
      events.push(...(cpu.broker?.trace ?? []), ...(cpu.node?.trace ?? []));
    }
  } finally {
    untrace();
  }
  const first = events.find((e) => e.process === 'client' && e.what === 'op-start')?.atUs ?? 0;
  return { rows, hops: hopBreakdown(events.filter((e) => e.atUs >= first)) };
}

/** `count` calls of `once`, one at a time, after up to 100 unmeasured ones (`warmUp`): a row of their rate and latencies. */
async function sequentialRow(name: string, count: number, once: (n: number) => Promise<unknown>, note: string, warmUp = true): Promise<BenchRow> {
  for (let n = 0; warmUp && n < Math.min(100, count); n++) await once(n);
  const latencies = new Latencies();
  const start = performance.now();
  for (let n = 0; n < count; n++) {
    const t = performance.now();
    await once(n);
    latencies.record(performance.now() - t);
  }
  return row(name, count, count * PAYLOAD_BYTES, performance.now() - start, latencies, note);
}

/**
 * Starts `servers` in order (each gets the endpoints of those before it), runs `use` with all
 * their endpoints, then stops them in reverse order, each even if another failed: returns
 * `use`'s result and what each server's process used.
 */
async function withServers<T>(
  servers: ReadonlyArray<readonly [string, (endpoints: readonly string[]) => Promise<Server>]>,
  use: (endpoints: readonly string[]) => Promise<T>,
): Promise<{ result: T; usage: Record<string, ServerUsage | undefined> }> {
  const started: Array<readonly [string, Server]> = [];
  const usage: Record<string, ServerUsage | undefined> = {};
  try {
    for (const [label, start] of servers) started.push([label, await start(started.map(([, server]) => server.endpoint))]);
    const result = await use(started.map(([, server]) => server.endpoint));
    return { result, usage };
  } finally {
    for (const [label, server] of started.reverse()) usage[label] = await server.stop().catch(() => undefined);
  }
}

/** A broker and the worker `spec` names (in `directory`), then `count` sequential requests of `bodyBytes` through a MajordomoClient. */
async function sequentialWorkerRow(
  name: string,
  bodyBytes: number,
  spec: (broker: string, directory: string) => Role,
  directory: string,
  count: number,
  placement: Placement,
): Promise<BenchRow> {
  const { result, usage } = await withServers(
    [
      ['broker', () => startRole({ role: 'broker' }, placement)],
      ['worker', ([broker]) => startRole(spec(broker, directory), placement)],
    ],
    async ([broker]) => {
      const client = new MajordomoClient({ endpoints: [broker], timeoutMs: 30_000 });
      const body = [payload(bodyBytes)];
      try {
        return await sequentialRow(name, count, () => client.request(ECHO_SERVICE, body), `${bodyBytes}-byte requests, one in flight`);
      } finally {
        await client.close();
      }
    },
  );
  return { ...result, note: `${result.note}${cpuNote(count, usage)}` };
}

/**
 * How long the relay row waits for a reply, as long as the Majordomo client's timeout there: a
 * relay or worker that dies fails the row. A timer, not the socket's receiveTimeout: with that
 * option zeromq.js waits for each message in a way that cost ~0.5 ms per request here.
 */
const RELAY_REPLY_TIMEOUT_MS = 30_000;

/** `promise`, or a rejection naming `what` after `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`[sluice/bench] ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Bytes of an append request beyond its payload, about (the store protocol's headers, stream id, type, ids). */
const APPEND_REQUEST_OVERHEAD_BYTES = 150;

/**
 * The bound of any store behind this broker, one request at a time: MajordomoClient → broker →
 * a MajordomoWorker whose handler writes `payloadBytes` and fdatasyncs them before it replies,
 * with no store code (no encoding, no index, no command id); `count` requests of an append's
 * size. The broker and the worker run as `placement` says.
 */
export async function echoFdatasyncRow(directory: string, count: number, placement: Placement, payloadBytes = PAYLOAD_BYTES): Promise<BenchRow> {
  return sequentialWorkerRow(
    `echo through the broker, the handler fdatasyncs a ${payloadBytes}-byte write`,
    payloadBytes + APPEND_REQUEST_OVERHEAD_BYTES,
    (broker, dir) => ({ role: 'append-worker', broker, directory: dir, work: 'fdatasync', payloadBytes }),
    directory,
    count,
    placement,
  );
}

/**
 * The same bound without any Majordomo code: a DEALER client → a plain ZeroMQ relay (ROUTER ↔
 * DEALER, in its own process) → a DEALER worker that writes `payloadBytes` and fdatasyncs them
 * before replying; `count` sequential requests of an append's size.
 */
export async function relayFdatasyncRow(directory: string, count: number, placement: Placement, payloadBytes = PAYLOAD_BYTES): Promise<BenchRow> {
  const bodyBytes = payloadBytes + APPEND_REQUEST_OVERHEAD_BYTES;
  const { result, usage } = await withServers(
    [
      ['relay', () => startRole({ role: 'relay' }, placement)],
      ['worker', ([relay]) => startRole({ role: 'relay-fdatasync-worker', relay: relay.split(' ')[1], directory, payloadBytes }, placement)],
    ],
    async ([relay]) => {
      const client = new zmq.Dealer({ linger: 0 });
      client.connect(relay.split(' ')[0]);
      const body = payload(bodyBytes);
      try {
        return await sequentialRow(
          `plain ZeroMQ relay (no Majordomo), the worker fdatasyncs a ${payloadBytes}-byte write`,
          count,
          async () => {
            await client.send(body);
            await withTimeout(client.receive(), RELAY_REPLY_TIMEOUT_MS, 'the relay or its worker sent no reply');
          },
          `${bodyBytes}-byte requests, one in flight`,
        );
      } finally {
        client.close();
      }
    },
  );
  return { ...result, note: `${result.note}${cpuNote(count, usage)}` };
}

/** Worker connections of the node in the comparison rows (as {@link appendRows} runs it). */
const CLUSTER_NODE_CONCURRENCY = 32;

/** A cluster's partition `p1` as an {@link EventLog}: the comparison's workload through the broker. */
class ClusterEventLog implements EventLog {
  private readonly events = new WeakMap<readonly Uint8Array[], EventData[]>();

  constructor(private readonly cluster: BenchCluster) {}

  append(streamId: string, expectedVersion: number, payloads: readonly Uint8Array[]): Promise<unknown> {
    let events = this.events.get(payloads);
    if (events === undefined) {
      events = payloads.map((data) => ({ type: EVENT_TYPE, data }));
      this.events.set(payloads, events);
    }
    return this.cluster.client.append({ streamId, expectedVersion, events });
  }

  async readAll(): Promise<ReadTotals> {
    let events = 0;
    let payloadBytes = 0;
    for await (const event of this.cluster.client.read('p1', { fromSeq: 1 })) {
      events += 1;
      payloadBytes += event.payload.length;
    }
    return { events, payloadBytes };
  }

  async close(): Promise<void> {
    await this.cluster.stop();
  }
}

/**
 * The comparison's "Sluice via broker" system (compare-bench.ts loads it by its id): the same
 * workload as the embedded rows — exact expected versions over 10,000 streams, the catch-up
 * read — through a store client, a broker and a node on the file store with fsync per commit.
 * Each scenario gets a fresh broker and node (their own processes; inline in smoke mode).
 */
export const sluiceBrokerBenchSystem: BenchSystem = brokerBenchSystem('sluice-broker', true);

/**
 * The same through a client that sends the older `append-many` (op 5) instead of framed
 * appends (op 7): the before/after of the one-encoding fast path, measured in one run.
 */
export function brokerBenchSystem(id: string, framedAppends: boolean): BenchSystem {
  const configuration = `store client (coalescing, ${framedAppends ? 'framed appends, op 7' : 'append-many, op 5'}) → Majordomo broker → node (file store) over ZeroMQ on 127.0.0.1, ${CLUSTER_NODE_CONCURRENCY} worker connections, a command id per append`;
  return {
    id,
    label: framedAppends ? 'Sluice via broker' : 'Sluice via broker (append-many, op 5)',
    group: 'sluice',
    configuration: `${configuration}; broker and node with GLIBC_TUNABLES=${SERVER_MALLOC_TUNABLES} (node README, "Memory allocator")`,
    durability: "the node's file store: fdatasync before the reply",
    async setup(context) {
      const placement: Placement = context.mode === 'smoke' ? 'inline' : 'processes';
      const session = eventLogSession({
        open: async (name) => {
          const directory = await mkdtemp(join(context.directory, `${name}-`));
          return new ClusterEventLog(await startBenchCluster(directory, CLUSTER_NODE_CONCURRENCY, placement, framedAppends));
        },
      });
      // Servers in this process (smoke), or spawned with glibc's defaults: say so.
      return placement === 'inline' || !serverMallocTunables ? { ...session, configuration } : session;
    },
  };
}

// ---- run ----------------------------------------------------------------------------------------

export async function runBrokerBench(options: BrokerBenchOptions): Promise<BenchRow[]> {
  const placement = options.placement ?? 'processes';
  const scale = options.smoke ? 0.01 : 1;
  const directory = await mkdtemp(join(options.directory, 'sluice-broker-bench-'));
  try {
    // The echo worker: 4 connections × credit 64 (the credit extension), as many requests at
    // once as the 64 plain RFC 7 connections this measured before.
    // Then the same with the batch extension (up to 64 requests or replies per message).
    const rows = await requestReplyRows(Math.max(2000, Math.round(200_000 * scale)), 256, 4, placement, 64, [1, 64]);
    rows.push(...(await appendRows(directory, Math.max(100, Math.round(20_000 * scale)), 100, 64, 32, placement)));
    return rows;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

export function formatBrokerRows(rows: readonly BenchRow[]): string {
  const direct = rows.find((r) => r.name.startsWith('direct'));
  return formatBenchRows(rows, (r) =>
    (r.name.startsWith('via broker: D') || r.name.startsWith('via broker: M')) && direct !== undefined
      ? `; direct is ${(direct.eventsPerSecond / r.eventsPerSecond).toFixed(2)}× this`
      : '',
  );
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({
    options: {
      role: { type: 'string' },
      smoke: { type: 'boolean' },
      placement: { type: 'string' },
      dir: { type: 'string' },
      out: { type: 'string' },
      'trace-sequential': { type: 'boolean' },
      'malloc-defaults': { type: 'boolean' },
      count: { type: 'string' },
    },
  });
  if (values['malloc-defaults'] === true) useServerMallocTunables(false);
  if (values.role !== undefined) {
    // A server process: serve until SIGTERM.
    const server = await runRole(JSON.parse(values.role) as Role);
    const before = process.resourceUsage();
    process.on('SIGTERM', () => {
      const usage = usageBetween(before, process.resourceUsage());
      const trace = server.trace === undefined ? '' : `${JSON.stringify({ events: server.trace.take() })}\n`;
      // Exit once the lines are out: a write to a full pipe finishes later, and exit() would cut it.
      process.stdout.write(`${trace}${JSON.stringify(usage)}\n`, () => void server.stop().then(() => process.exit(0)));
    });
    process.stdout.write(`${JSON.stringify({ endpoint: server.endpoint })}\n`);
  } else if (values['trace-sequential'] === true) {
    const placement = (values.placement ?? 'processes') as Placement;
    const directory = await mkdtemp(join(values.dir ?? tmpdir(), 'sluice-trace-bench-'));
    try {
      const { rows, hops } = await sequentialTraceRows(directory, Number(values.count ?? 2000), placement);
      console.log(`\nOne request at a time (servers ${placement}), Node ${process.version}\n`);
      console.log(formatBenchRows(rows));
      console.log(`\nOne append through store client → broker → node, median per step:\n\n${formatHopBreakdown(hops)}`);
      if (values.out !== undefined) await writeFile(values.out, JSON.stringify({ rows, hops }, null, 2));
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  } else {
    const placement = (values.placement ?? 'processes') as Placement;
    const rows = await runBrokerBench({ smoke: values.smoke === true, directory: values.dir ?? tmpdir(), placement });
    console.log(`\nSluice broker benchmark (${values.smoke === true ? 'smoke' : 'full'}, servers ${placement}), ${PAYLOAD_BYTES}-byte payloads, Node ${process.version}\n`);
    console.log(formatBrokerRows(rows));
    if (values.out !== undefined) await writeFile(values.out, JSON.stringify(rows, null, 2));
  }
}
