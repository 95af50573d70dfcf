/**
 * Timestamps of one request's way through client, broker and node, for the broker benchmark's
 * `--trace-sequential` mode: every process records when its zeromq sockets hand a message over
 * (`send`) and give one back (`recv`), and chosen points of its own (`op-start`, `sync-end`, ...),
 * in microseconds of the machine's clock (`performance.timeOrigin + performance.now()`: the same
 * time base in every process on one machine, to a few microseconds). {@link hopBreakdown} then
 * lines the processes' records up per request and gives the median of each step.
 *
 * Measurement only: it wraps zeromq's socket methods in the process that installs it.
 */
import * as zmq from 'zeromq';

/** One record: when, in which process, what. */
export interface TraceEvent {
  /** Microseconds on the machine's clock. */
  readonly atUs: number;
  /** The process that recorded it: `client`, `broker`, `node`, `worker`. */
  readonly process: string;
  /** `send`, `recv`, `op-start`, `op-end`, `sync-start`, ... */
  readonly what: string;
}

/** Microseconds on the machine's clock, comparable between processes. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** The records of one process. */
export class MessageTrace {
  private events: TraceEvent[] = [];

  constructor(
    readonly process: string,
    /** Records kept at most (older ones are dropped): a bound on the memory a long run uses. */
    private readonly eventsMax = 1_000_000,
  ) {}

  mark(what: string): void {
    if (this.events.length >= this.eventsMax) this.events.shift();
    this.events.push({ atUs: nowUs(), process: this.process, what });
  }

  /** The records so far; the trace starts afresh. */
  take(): TraceEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }
}

/**
 * Records every message of at least `bytesMin` bytes that a zeromq DEALER or ROUTER of this
 * process sends or receives (smaller ones are heartbeats and credit grants). Returns the
 * function that removes the hooks.
 */
export function traceSockets(trace: MessageTrace, bytesMin = 40): () => void {
  const base = Object.getPrototypeOf(zmq.Dealer.prototype) as { send(message: unknown): Promise<void>; receive(): Promise<Buffer[]> };
  const send = base.send;
  const receive = base.receive;
  const size = (message: unknown): number => (Array.isArray(message) ? message.reduce((sum: number, frame: { length?: number }) => sum + (frame?.length ?? 0), 0) : 0);
  const classes = [zmq.Dealer, zmq.Router];
  for (const socketClass of classes) {
    // The native methods are read-only on the shared prototype: shadow them per socket class.
    Object.defineProperty(socketClass.prototype, 'send', {
      configurable: true,
      writable: true,
      value(this: unknown, message: unknown): Promise<void> {
        if (size(message) >= bytesMin) trace.mark('send');
        return send.call(this, message);
      },
    });
    Object.defineProperty(socketClass.prototype, 'receive', {
      configurable: true,
      writable: true,
      value(this: unknown): Promise<Buffer[]> {
        return receive.call(this).then((message) => {
          if (size(message) >= bytesMin) trace.mark('recv');
          return message;
        });
      },
    });
  }
  return () => {
    for (const socketClass of classes) {
      delete (socketClass.prototype as unknown as Record<string, unknown>).send;
      delete (socketClass.prototype as unknown as Record<string, unknown>).receive;
    }
  };
}

/** Wraps `target[method]` (an async method) to mark `<name>-start` and `<name>-end` around each call. */
export function traceAsyncMethod<T extends object>(trace: MessageTrace, target: T, method: keyof T & string, name = method): void {
  const original = target[method] as unknown as (...args: unknown[]) => Promise<unknown>;
  (target as Record<string, unknown>)[method] = (...args: unknown[]): Promise<unknown> => {
    trace.mark(`${name}-start`);
    return original.apply(target, args).then((value) => {
      trace.mark(`${name}-end`);
      return value;
    });
  };
}

/** One step of a request's way: from one record to the next, over every request traced. */
export interface HopStep {
  /** e.g. `client send → broker recv`. */
  readonly step: string;
  readonly medianUs: number;
  /** Requests in which this step was seen. */
  readonly count: number;
}

/**
 * Lines up the records of all processes by time, cuts them into requests at each
 * `<process> op-start` (one request in flight at a time, so every record between two cuts
 * belongs to one request) and gives the median duration of each step between consecutive
 * records, in the order the steps first occur; steps seen in fewer than half the requests (a
 * heartbeat, a timer) are left out. The last step is `total` (op-start to the request's last
 * record).
 */
export function hopBreakdown(events: readonly TraceEvent[], startProcess = 'client', startWhat = 'op-start'): HopStep[] {
  const sorted = [...events].sort((a, b) => a.atUs - b.atUs);
  const requests: TraceEvent[][] = [];
  for (const event of sorted) {
    if (event.process === startProcess && event.what === startWhat) requests.push([event]);
    else requests.at(-1)?.push(event);
  }
  const steps = new Map<string, number[]>();
  const totals: number[] = [];
  for (const request of requests) {
    for (let i = 1; i < request.length; i++) {
      const [a, b] = [request[i - 1], request[i]];
      const step = `${a.process} ${a.what} → ${b.process} ${b.what}`;
      let durations = steps.get(step);
      if (durations === undefined) steps.set(step, (durations = []));
      durations.push(b.atUs - a.atUs);
    }
    totals.push((request.at(-1) as TraceEvent).atUs - request[0].atUs);
  }
  const out: HopStep[] = [];
  for (const [step, durations] of steps) {
    if (durations.length * 2 < requests.length) continue;
    out.push({ step, medianUs: median(durations), count: durations.length });
  }
  if (requests.length > 0) out.push({ step: 'total', medianUs: median(totals), count: requests.length });
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The breakdown as aligned lines, with the sum of the step medians. */
export function formatHopBreakdown(steps: readonly HopStep[]): string {
  const width = Math.max(...steps.map((s) => s.step.length), 10);
  const lines = steps.map((s) => `${s.step.padEnd(width)}  ${String(s.medianUs).padStart(7)} µs  (${s.count} requests)`);
  const sum = steps.filter((s) => s.step !== 'total').reduce((total, s) => total + s.medianUs, 0);
  lines.push(`${'sum of the step medians'.padEnd(width)}  ${String(sum).padStart(7)} µs`);
  return lines.join('\n');
}
