import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { SystemSkippedError, type BenchSystem, type Measurement, type NotApplicable, type Scenario } from '../bench-system.js';
import type { BenchRow } from '../stats.js';
import { withinTimeLimit } from '../within-time-limit.js';
import { loadBenchModule } from './bench-module-system.js';

const MODULE = 'broker-bench';

type EchoFdatasyncRow = (directory: string, count: number, placement: 'processes' | 'inline') => Promise<BenchRow>;

/**
 * The bound of any store behind the Majordomo broker for sequential appends: a MajordomoClient →
 * broker → MajordomoWorker that writes 100 bytes and fdatasyncs them before replying, with no
 * store code at all (tools/src/bench/broker-bench.ts's `echoFdatasyncRow`). Broker and worker
 * run in their own processes (inline in smoke mode). Only the sequential scenario applies.
 */
export const brokerEchoFdatasyncSystem: BenchSystem = {
  id: 'broker-echo-fdatasync',
  label: 'echo + fdatasync via broker',
  group: 'limit',
  configuration: 'MajordomoClient → Majordomo broker → MajordomoWorker over ZeroMQ on 127.0.0.1; the handler writes 100 bytes and fdatasyncs before replying; no store code',
  durability: 'fdatasync before the reply',
  async setup(context) {
    const exports = await loadBenchModule(MODULE);
    const measure = exports.echoFdatasyncRow;
    if (typeof measure !== 'function') throw new SystemSkippedError(`tools/src/bench/${MODULE}.ts does not export echoFdatasyncRow`);
    const placement = context.mode === 'smoke' ? 'inline' : 'processes';
    return {
      async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
        if (scenario.kind !== 'append' || scenario.batch !== 1 || scenario.concurrent) return { notApplicable: 'the bound of the sequential row only' };
        const row = await withinTimeLimit(scenario, async (events) => (measure as EchoFdatasyncRow)(await mkdtemp(join(context.directory, 'echo-')), events, placement));
        return {
          events: row.events,
          payloadBytes: row.events * scenario.payloadBytes,
          ms: row.seconds * 1000,
          p50Ms: row.p50Ms,
          p99Ms: row.p99Ms,
          note: `250-byte requests (an append's size), one in flight; broker and worker ${placement === 'inline' ? 'in this process' : 'in their own processes'}`,
        };
      },
      async teardown() {},
    };
  },
};
