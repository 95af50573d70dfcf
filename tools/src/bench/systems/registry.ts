import type { BenchSystem } from '../bench-system.js';
import { benchModuleSystem } from './bench-module-system.js';
import { brokerEchoFdatasyncSystem, relayFdatasyncSystem } from './broker-echo-system.js';
import { postgresSystem } from './postgres-system.js';
import { rawFdatasyncSyncSparseSystem, rawFdatasyncSyncSystem, rawFdatasyncSystem } from './raw-fdatasync-system.js';
import { redisSystem } from './redis-system.js';
import { sluiceFileCommandIdSystem, sluiceFileSystem, sluiceFileZeroFillSystem } from './sluice-file-system.js';
import { sluiceAzuriteSystem } from './sluice-azurite-system.js';
import { sluiceBrokerSystem } from './sluice-broker-system.js';
import { sqliteSystem } from './sqlite-system.js';

/** Sluice on LMDB, measured by tools/src/bench/lmdb-bench.ts when it is present. */
export const sluiceLmdbSystem = benchModuleSystem({
  id: 'sluice-lmdb',
  label: 'Sluice LMDB store',
  group: 'sluice',
  configuration: 'one partition on @sluice/store-lmdb, group commit, fsync: "commit"',
  durability: 'LMDB transaction synced before each append resolves: survives power loss',
  module: 'lmdb-bench',
  batched: 'lmdbBatchedAppends',
  concurrentViaPipeline: true,
});

/** The raw LMDB limit: lmdb-js, one transaction per batch (tools/src/bench/lmdb-bench.ts). */
export const rawLmdbSystem = benchModuleSystem({
  id: 'raw-lmdb',
  label: 'raw lmdb-js',
  group: 'limit',
  configuration: 'lmdb-js puts of pre-encoded values, one synchronous transaction per batch, one writer',
  durability: 'LMDB commit synced per transaction: survives power loss',
  module: 'lmdb-bench',
  batched: 'rawLmdb',
  // lmdb-bench.ts opens raw LMDB with a 256 MiB map: keep a run's values well inside it.
  eventsMax: 1_000_000,
});

/**
 * Every system of the comparison, in table order. The Sluice file store comes first: every
 * ratio is against it. Adding a row is adding a {@link BenchSystem} here.
 */
export const BENCH_SYSTEMS: readonly BenchSystem[] = [
  sluiceFileSystem,
  sluiceFileZeroFillSystem,
  sluiceFileCommandIdSystem,
  sluiceLmdbSystem,
  sluiceAzuriteSystem,
  sluiceBrokerSystem,
  sqliteSystem,
  postgresSystem,
  redisSystem,
  rawFdatasyncSyncSystem,
  rawFdatasyncSystem,
  rawFdatasyncSyncSparseSystem,
  rawLmdbSystem,
  brokerEchoFdatasyncSystem,
  relayFdatasyncSystem,
];
