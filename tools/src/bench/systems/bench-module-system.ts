import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import {
  SystemSkippedError,
  measurementOf,
  type BenchContext,
  type BenchSession,
  type BenchSystem,
  type Measurement,
  type NotApplicable,
  type Scenario,
  type SystemGroup,
} from '../bench-system.js';
import type { BenchRow } from '../stats.js';
import { withinTimeLimit } from '../within-time-limit.js';

/** Payload size the store-bench-style functions measure. */
const FUNCTION_PAYLOAD_BYTES = 100;

/** A row group measured by a bench module another change adds (tools/src/bench/<module>.ts). */
export interface BenchModuleSystemSpec {
  readonly id: string;
  readonly label: string;
  readonly group: SystemGroup;
  readonly configuration: string;
  readonly durability: string;
  /** File name without extension, e.g. `lmdb-bench`. */
  readonly module: string;
  /**
   * Export measuring append scenarios, called like the store bench's
   * `batchedAppends(directory, batch, events, pipeline): Promise<BenchRow>`.
   */
  readonly batched?: string;
  /** Export measuring concurrent single-event appends: `(directory, concurrency, events) => Promise<BenchRow>`. */
  readonly concurrent?: string;
  /**
   * Without `concurrent`: measure concurrent single-event appenders as `batched(directory, 1,
   * events, appenders)` (that many single-event appends in flight). False for a function with
   * one writer and no pipeline.
   */
  readonly concurrentViaPipeline?: boolean;
  /** Most events one call may take (for example what fits in a fixed-size LMDB map). */
  readonly eventsMax?: number;
}

type BatchedFunction = (directory: string, batch: number, events: number, pipeline: number) => Promise<BenchRow>;
type ConcurrentFunction = (directory: string, concurrency: number, events: number) => Promise<BenchRow>;

/**
 * A system backed by another engineer's bench module, loaded only when its file exists, so
 * this bench builds and runs before and after that module lands. The module is used in the
 * first way it supports:
 *
 * 1. it exports a {@link BenchSystem} whose `id` is the spec's (alone or in an exported array):
 *    the whole workload runs through it;
 * 2. it exports the spec's store-bench-style functions: they measure the append scenarios
 *    with 100-byte payloads; the other scenarios are reported as not applicable.
 *
 * Otherwise, and when the file is missing or does not load, the system is reported as
 * skipped with the reason: never silently dropped.
 */
export function benchModuleSystem(spec: BenchModuleSystemSpec): BenchSystem {
  return {
    id: spec.id,
    label: spec.label,
    group: spec.group,
    configuration: spec.configuration,
    durability: spec.durability,
    async setup(context) {
      const exports = await loadBenchModule(spec.module);
      const system = exportedSystem(exports, spec.id);
      if (system !== undefined) return setupExportedSystem(system, context);
      const batched = typeof spec.batched === 'string' ? exports[spec.batched] : undefined;
      const concurrent = typeof spec.concurrent === 'string' ? exports[spec.concurrent] : undefined;
      if (typeof batched !== 'function') {
        const wanted = [`a BenchSystem with id "${spec.id}"`, spec.batched].filter(Boolean).join(' or ');
        throw new SystemSkippedError(`tools/src/bench/${spec.module}.ts exports ${Object.keys(exports).join(', ') || 'nothing'}, not ${wanted}: export one to get this row`);
      }
      return functionSession(context, spec, batched as BatchedFunction, typeof concurrent === 'function' ? (concurrent as ConcurrentFunction) : undefined);
    },
  };
}

/** Imports tools/src/bench/<name> (built: dist/bench/<name>.js; under vitest: the .ts source). */
export async function loadBenchModule(name: string): Promise<Record<string, unknown>> {
  const candidates = [new URL(`../${name}.js`, import.meta.url), new URL(`../${name}.ts`, import.meta.url)];
  const found = candidates.find((url) => existsSync(url));
  if (found === undefined) throw new SystemSkippedError(`tools/src/bench/${name}.ts is not in this tree yet (another change adds it)`);
  try {
    return (await import(found.href)) as Record<string, unknown>;
  } catch (error) {
    throw new SystemSkippedError(`tools/src/bench/${name}.ts does not load: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
}

/** Sets up a module's own {@link BenchSystem}; its texts replace the registry's. */
export async function setupExportedSystem(system: BenchSystem, context: BenchContext): Promise<BenchSession> {
  const session = await system.setup(context);
  return {
    label: system.label,
    configuration: system.configuration,
    durability: system.durability,
    ...definedTexts(session),
    run: (scenario) => session.run(scenario),
    teardown: () => session.teardown(),
  };
}

function definedTexts(session: BenchSession): Partial<Pick<BenchSession, 'label' | 'configuration' | 'durability'>> {
  const texts: { label?: string; configuration?: string; durability?: string } = {};
  if (session.label !== undefined) texts.label = session.label;
  if (session.configuration !== undefined) texts.configuration = session.configuration;
  if (session.durability !== undefined) texts.durability = session.durability;
  return texts;
}

function isBenchSystem(value: unknown): value is BenchSystem {
  return typeof value === 'object' && value !== null && typeof (value as BenchSystem).id === 'string' && typeof (value as BenchSystem).setup === 'function';
}

/** The exported {@link BenchSystem} with this id (alone or in an exported array), if any. */
export function exportedSystem(exports: Record<string, unknown>, id: string): BenchSystem | undefined {
  for (const value of Object.values(exports)) {
    const candidates = Array.isArray(value) ? (value as unknown[]) : [value];
    const match = candidates.find((c): c is BenchSystem => isBenchSystem(c) && c.id === id);
    if (match !== undefined) return match;
  }
  return undefined;
}

function functionSession(context: BenchContext, spec: BenchModuleSystemSpec, batched: BatchedFunction, concurrent: ConcurrentFunction | undefined): BenchSession {
  const measured = (row: BenchRow, payloadBytes: number): Measurement => {
    if (!(row.events > 0 && row.seconds > 0)) throw new Error(`[sluice/bench] ${spec.module}: ${spec.batched} returned no events; expected a BenchRow from stats.ts`);
    return measurementOf(row, payloadBytes);
  };
  const fresh = (): Promise<string> => mkdtemp(join(context.directory, `${spec.id}-`));
  return {
    async run(scenario: Scenario): Promise<Measurement | NotApplicable> {
      if (scenario.kind === 'catch-up') return { notApplicable: `${spec.module}.ts has no catch-up read (export a BenchSystem for it)` };
      if (scenario.payloadBytes !== FUNCTION_PAYLOAD_BYTES) return { notApplicable: `${spec.module}.ts measures ${FUNCTION_PAYLOAD_BYTES}-byte payloads only` };
      const limited = { ...scenario, events: Math.min(scenario.events, spec.eventsMax ?? Number.POSITIVE_INFINITY) };
      if (scenario.concurrent) {
        if (concurrent !== undefined) {
          return measured(await withinTimeLimit(limited, async (events) => concurrent(await fresh(), scenario.appenders, events)), scenario.payloadBytes);
        }
        if (spec.concurrentViaPipeline !== true) return { notApplicable: `${spec.module}.ts: one writer, no concurrent appenders` };
      }
      return measured(await withinTimeLimit(limited, async (events) => batched(await fresh(), scenario.batch, events, scenario.appenders)), scenario.payloadBytes);
    },
    async teardown() {},
  };
}
