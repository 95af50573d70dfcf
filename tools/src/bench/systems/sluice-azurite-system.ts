import {
  SystemSkippedError,
  measurementOf,
  type BenchContext,
  type BenchSession,
  type BenchSystem,
  type Measurement,
  type NotApplicable,
  type Scenario,
} from '../bench-system.js';
import { trackCleanup } from '../servers/run-cleanups.js';
import type { BenchRow } from '../stats.js';
import { withinTimeLimit } from '../within-time-limit.js';
import { exportedSystem, loadBenchModule, setupExportedSystem } from './bench-module-system.js';

const MODULE = 'azure-bench';
/** azure-bench.ts measures 100-byte payloads. */
const PAYLOAD_BYTES = 100;

interface AzuriteLike {
  readonly connectionString: string;
}
type WithAzurite = <T>(run: (azurite: AzuriteLike) => Promise<T>) => Promise<T>;
type AzureBatchedAppends = (options: { connectionString: string; batch: number; events: number; pipeline: number }) => Promise<BenchRow>;

/**
 * Sluice on Azure Blob storage against a local Azurite, through tools/src/bench/azure-bench.ts
 * (its `withAzurite` starts and stops Azurite, its `azureBatchedAppends` measures). Reported
 * as skipped while that module is missing or exports neither those nor a BenchSystem with
 * this id.
 */
export const sluiceAzuriteSystem: BenchSystem = {
  id: 'sluice-azurite',
  label: 'Sluice Azure store (Azurite)',
  group: 'sluice',
  configuration: 'one partition on @sluice/store-azure, one append block per group commit, local Azurite (in memory)',
  durability: 'acknowledged once the blob service commits the block; Azurite keeps it in memory, so this measures the engine and request path, not Azure',
  async setup(context) {
    const exports = await loadBenchModule(MODULE);
    const system = exportedSystem(exports, 'sluice-azurite');
    if (system !== undefined) return setupExportedSystem(system, context);
    const { withAzurite, azureBatchedAppends } = exports;
    if (typeof withAzurite !== 'function' || typeof azureBatchedAppends !== 'function') {
      throw new SystemSkippedError(`tools/src/bench/${MODULE}.ts exports ${Object.keys(exports).join(', ')}, not withAzurite and azureBatchedAppends: export them (or a BenchSystem "sluice-azurite")`);
    }
    const held = await holdAzurite(withAzurite as WithAzurite, context);
    return azuriteSession(held.azurite.connectionString, azureBatchedAppends as AzureBatchedAppends, held.release);
  },
};

/**
 * Enters `withAzurite` and stays inside it until `release` is called, so Azurite lives from
 * setup to teardown and is stopped by the helper that started it.
 */
async function holdAzurite(withAzurite: WithAzurite, context: BenchContext): Promise<{ azurite: AzuriteLike; release: () => Promise<void> }> {
  let leave!: () => void;
  const left = new Promise<void>((resolve) => (leave = resolve));
  let entered!: (azurite: AzuriteLike) => void;
  const inside = new Promise<AzuriteLike>((resolve) => (entered = resolve));
  const done = withAzurite(async (azurite) => {
    entered(azurite);
    await left;
  });
  let azurite: AzuriteLike;
  try {
    azurite = await Promise.race([inside, done.then(() => Promise.reject(new Error('withAzurite returned before running the benchmark')))]);
  } catch (error) {
    throw new SystemSkippedError(`Azurite did not start: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  context.log('started Azurite (in memory) through azure-bench.ts');
  let stopping: Promise<void> | undefined;
  const release = (): Promise<void> => {
    leave();
    return (stopping ??= done.then(() => undefined));
  };
  const forget = trackCleanup(release);
  return {
    azurite,
    release: async () => {
      forget();
      await release();
    },
  };
}

function azuriteSession(connectionString: string, azureBatchedAppends: AzureBatchedAppends, release: () => Promise<void>): BenchSession {
  return {
    async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
      if (scenario.kind === 'catch-up') return { notApplicable: `${MODULE}.ts has no catch-up read` };
      if (scenario.payloadBytes !== PAYLOAD_BYTES) return { notApplicable: `${MODULE}.ts measures ${PAYLOAD_BYTES}-byte payloads only` };
      // Concurrent single-event appenders are `appenders` appends of one event in flight.
      const row = await withinTimeLimit(scenario, (events) => azureBatchedAppends({ connectionString, batch: scenario.batch, events, pipeline: scenario.appenders }));
      return measurementOf(row, PAYLOAD_BYTES, 'expected version "any" (azure-bench.ts)');
    },
    teardown: release,
  };
}
