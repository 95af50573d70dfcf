import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { SystemSkippedError, measurementOf, type BenchSystem, type Measurement, type NotApplicable, type Scenario } from '../bench-system.js';
import type { BenchRow } from '../stats.js';
import { withinTimeLimit } from '../within-time-limit.js';
import { loadBenchModule } from './bench-module-system.js';

const MODULE = 'broker-bench';

type SequentialBoundRow = (directory: string, count: number, placement: 'processes' | 'inline', payloadBytes: number) => Promise<BenchRow>;

interface SequentialBoundSpec {
  readonly id: string;
  readonly label: string;
  readonly configuration: string;
  /** The broker-bench.ts export measuring it. */
  readonly measure: string;
}

/**
 * A bound of the sequential row through the broker: one request at a time (an append's size)
 * through ZeroMQ hops to a worker that writes the payload into a preallocated file and
 * fdatasyncs it before replying, with no store code
 * (tools/src/bench/broker-bench.ts). Servers run in their own processes (inline in smoke
 * mode). Only the sequential scenario applies.
 */
function sequentialBoundSystem(spec: SequentialBoundSpec): BenchSystem {
  return {
    id: spec.id,
    label: spec.label,
    group: 'limit',
    configuration: spec.configuration,
    durability: 'fdatasync before the reply',
    async setup(context) {
      const exports = await loadBenchModule(MODULE);
      const measure = exports[spec.measure];
      if (typeof measure !== 'function') throw new SystemSkippedError(`tools/src/bench/${MODULE}.ts does not export ${spec.measure}`);
      const placement = context.mode === 'smoke' ? 'inline' : 'processes';
      return {
        async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
          if (scenario.kind !== 'append' || scenario.batch !== 1 || scenario.concurrent) return { notApplicable: 'a bound of the sequential row only' };
          const row = await withinTimeLimit(scenario, async (events) =>
            (measure as SequentialBoundRow)(await mkdtemp(join(context.directory, 'bound-')), events, placement, scenario.payloadBytes),
          );
          return measurementOf(row, scenario.payloadBytes, `${(row.note ?? '').split(';')[0]}; servers ${placement === 'inline' ? 'in this process' : 'in their own processes'}`);
        },
        async teardown() {},
      };
    },
  };
}

/** Through the Majordomo broker, to a MajordomoWorker (`echoFdatasyncRow`). */
export const brokerEchoFdatasyncSystem: BenchSystem = sequentialBoundSystem({
  id: 'broker-echo-fdatasync',
  label: 'echo + fdatasync via broker',
  configuration: 'MajordomoClient → Majordomo broker → MajordomoWorker over ZeroMQ on 127.0.0.1; the handler writes the payload and fdatasyncs before replying; no store code',
  measure: 'echoFdatasyncRow',
});

/** Through a plain ZeroMQ relay with no Majordomo code at all (`relayFdatasyncRow`). */
export const relayFdatasyncSystem: BenchSystem = sequentialBoundSystem({
  id: 'relay-fdatasync',
  label: 'fdatasync behind a plain ZeroMQ relay',
  configuration: 'DEALER → ROUTER↔DEALER relay → DEALER worker over ZeroMQ on 127.0.0.1, no Majordomo code; the worker writes the payload and fdatasyncs before replying',
  measure: 'relayFdatasyncRow',
});
