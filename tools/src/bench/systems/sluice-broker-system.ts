import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { SystemSkippedError, measurementOf, type BenchSystem, type Measurement, type NotApplicable, type Scenario } from '../bench-system.js';
import type { BenchRow } from '../stats.js';
import { withinTimeLimit } from '../within-time-limit.js';
import { exportedSystem, loadBenchModule, setupExportedSystem } from './bench-module-system.js';

const MODULE = 'broker-bench';
/** broker-bench.ts measures 100-byte payloads. */
const PAYLOAD_BYTES = 100;
/** Worker connections of the node (broker-bench.ts's own choice for its append rows). */
const NODE_CONCURRENCY = 32;
/** The row of `appendRows` that goes through the broker (the other is in-process). */
const VIA_BROKER = /^via broker/;

type AppendRows = (directory: string, units: number, unitEvents: number, inFlight: number, nodeConcurrency: number, placement: 'processes' | 'inline') => Promise<BenchRow[]>;

/**
 * Appends through the Majordomo broker (store client → broker → node on the file store,
 * fsync per commit) with tools/src/bench/broker-bench.ts's `appendRows`: broker and node run
 * in their own processes, as deployed (inline in smoke mode, where the sources run under the
 * test runner). Skipped while that module is missing.
 */
export const sluiceBrokerSystem: BenchSystem = {
  id: 'sluice-broker',
  label: 'Sluice via broker',
  group: 'sluice',
  configuration: `store client → Majordomo broker → node (file store) over ZeroMQ on 127.0.0.1, ${NODE_CONCURRENCY} worker connections, a command id per append`,
  durability: "the node's file store: fdatasync before the reply",
  async setup(context) {
    const exports = await loadBenchModule(MODULE);
    const system = exportedSystem(exports, 'sluice-broker');
    if (system !== undefined) return setupExportedSystem(system, context);
    const appendRows = exports.appendRows;
    if (typeof appendRows !== 'function') {
      throw new SystemSkippedError(`tools/src/bench/${MODULE}.ts exports ${Object.keys(exports).join(', ')}, not appendRows: export it (or a BenchSystem "sluice-broker")`);
    }
    const placement = context.mode === 'smoke' ? 'inline' : 'processes';
    return {
      async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
        if (scenario.kind === 'catch-up') return { notApplicable: `${MODULE}.ts has no catch-up read` };
        if (scenario.payloadBytes !== PAYLOAD_BYTES) return { notApplicable: `${MODULE}.ts measures ${PAYLOAD_BYTES}-byte payloads only` };
        const row = await withinTimeLimit(scenario, async (events) => {
          const directory = await mkdtemp(join(context.directory, 'broker-'));
          const units = Math.max(1, Math.floor(events / scenario.batch));
          const rows = await (appendRows as AppendRows)(directory, units, scenario.batch, scenario.appenders, NODE_CONCURRENCY, placement);
          const via = rows.find((r) => VIA_BROKER.test(r.name));
          if (via === undefined) throw new Error(`[sluice/bench] ${MODULE}.ts appendRows returned no "via broker" row (got ${rows.map((r) => r.name).join(', ')})`);
          return via;
        });
        return measurementOf(row, PAYLOAD_BYTES, `expected version "any", streams n % 1000 (${MODULE}.ts); broker and node ${placement === 'inline' ? 'in this process' : 'in their own processes'}`);
      },
      async teardown() {},
    };
  },
};
