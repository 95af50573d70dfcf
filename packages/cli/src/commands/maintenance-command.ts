import { mkdir, readdir, rename } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadSluiceConfig, localFolderOf, partitionsOfNode, type PartitionConfig } from '@sluice/config';
import { createLocationStorage, createPartitionStorage, locationFactory, locationLabel, resolveLocationFactories, type LocationFactories } from '@sluice/node';
import { describeIdentity, isStorageError, reindexPartition, scrubPartition, type PartitionStorage, type ScrubReport } from '@sluice/store';
import { createFileStorage, openFileReader } from '@sluice/store-file';
import { CliError, NotFoundError, UsageError } from '../cli-errors.js';
import { LineWriter, type CliIo } from '../io.js';

/** A copy is damaged and was not repaired (`sluice scrub`): exit 6 (data error). */
export class DamagedCopyError extends CliError {
  override readonly name = 'DamagedCopyError';
  override readonly code = 'SLUICE_CLI_DAMAGED';
}

/** Options of `sluice scrub`. */
export interface ScrubFlags {
  readonly path?: string;
  readonly config?: string;
  readonly partition?: string[];
  readonly node?: string;
  /** Commander's `--no-repair`. */
  readonly repair: boolean;
  readonly json: boolean;
}

/** Options of `sluice reindex`. */
export interface ReindexFlags {
  readonly path: string;
  /** Default: `<path>.index` (where `sluice node` keeps a file partition's index). */
  readonly index?: string | undefined;
  readonly json: boolean;
}

async function requireLog(directory: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    throw new NotFoundError(`no partition at ${directory}: check --path`, { cause: error });
  }
  if (!names.some((name) => name.endsWith('.seg'))) throw new NotFoundError(`${directory} holds no partition log (no *.seg files): check --path`);
}

/**
 * `sluice scrub`: re-verifies every copy of a partition's log (`scrubPartition`): one folder
 * with `--path`, or each partition of a config (`--config`, optionally `--partition` /
 * `--node`) on all of its level's locations, a damaged mirror copy repaired from a good one
 * unless `--no-repair`. Opens the storage as its writer, so stop the node serving it first.
 * Throws {@link DamagedCopyError} (exit 6) when a copy is damaged and was not repaired.
 */
export async function scrubCommand(flags: ScrubFlags, io: CliIo): Promise<void> {
  const cwd = io.cwd ?? process.cwd();
  if ((flags.path === undefined) === (flags.config === undefined)) throw new UsageError('give --path <dir> (one partition folder) or --config <file> (its partitions, every location)');
  /** `make` opens the storage; `movedAside` lists copies repaired by moving them aside at open. */
  const jobs: { name: string; make: (movedAside: string[]) => Promise<PartitionStorage> }[] = [];
  if (flags.path !== undefined) {
    const directory = resolve(cwd, flags.path);
    await requireLog(directory);
    // One folder has no other copy to repair from: verify it through a reader (no lock, so it
    // runs beside the node writing it; opening a storage would refuse a damaged log outright).
    jobs.push({ name: directory, make: async () => readerAsStorage(await openFileReader({ directory })) });
  } else {
    const config = await loadSluiceConfig(resolve(cwd, flags.config as string));
    const hosted = flags.node === undefined ? Object.keys(config.partitions) : partitionsOfNode(config, flags.node);
    const names = flags.partition ?? hosted;
    for (const name of names) {
      if (config.partitions[name] === undefined) throw new NotFoundError(`partition "${name}" is not in ${config.source}: one of ${Object.keys(config.partitions).join(', ')}`);
    }
    const locations = await resolveLocationFactories(names.map((name) => config.partitions[name]), { file: locationFactory('file', createFileStorage) });
    for (const name of names) {
      jobs.push({ name, make: (movedAside) => openLevelStorage(config.partitions[name], locations, flags.repair, movedAside, io.signal) });
    }
  }
  const stdout = new LineWriter(io.stdout);
  const damaged: string[] = [];
  for (const job of jobs) {
    const movedAside: string[] = [];
    let storage: PartitionStorage;
    try {
      storage = await job.make(movedAside);
    } catch (error) {
      // Opening refuses a log whose acknowledged commits fail their checks: that is damage too.
      if (!isStorageError(error) || error.reason !== 'Corrupt') throw error;
      damaged.push(job.name);
      const detail = error.message;
      if (flags.json) await stdout.json({ partition: job.name, ok: false, lastSeq: null, copies: [], damage: { detail }, repaired: false });
      else await stdout.line(`${job.name}: DAMAGED (open refused it: ${detail})`);
      continue;
    }
    let report: ScrubReport;
    try {
      report = await scrubPartition(storage, { repair: flags.repair, signal: io.signal });
    } finally {
      await storage.close();
    }
    if (!report.ok) damaged.push(job.name);
    if (flags.json) {
      await stdout.json({
        partition: job.name,
        ok: report.ok,
        lastSeq: report.head.lastSeq,
        movedAside,
        copies: report.copies.map((copy) => ({ location: copy.location, batches: copy.batches, bytes: copy.bytes, verifiedSeq: copy.verified.lastSeq, damage: copy.damage ?? null, repaired: copy.repaired })),
      });
      continue;
    }
    await stdout.line(`${job.name}: ${report.ok ? 'ok' : 'DAMAGED'} (head ${describeIdentity(report.head)})`);
    for (const line of movedAside) await stdout.line(`  ${line}`);
    for (const copy of report.copies) {
      const state = copy.damage === undefined ? 'ok' : `damaged at seq ${copy.damage.seq}: ${copy.damage.detail}${copy.repaired ? ' (repaired)' : ' (not repaired)'}`;
      await stdout.line(`  ${copy.location}: ${copy.batches} batches, ${copy.bytes} bytes verified; ${state}`);
    }
  }
  if (damaged.length > 0) {
    throw new DamagedCopyError(
      `${damaged.join(', ')}: a copy is damaged and was not repaired` +
        (flags.path !== undefined ? ' (a single folder has no other copy to repair from: restore it from a shipped target or a mirror)' : flags.repair ? '' : ' (run again without --no-repair to repair mirrored copies)'),
    );
  }
}

/**
 * Opens a partition's storage on its level's locations. A mirror refuses to open while one
 * of its copies fails its checks at open; with repair on, each local copy that refuses alone
 * (reason `Corrupt`) is moved aside (renamed `<folder>.damaged-<time>`, nothing deleted) and
 * the mirror rebuilds it from the others when opened again.
 */
async function openLevelStorage(
  partition: PartitionConfig,
  locations: LocationFactories,
  repair: boolean,
  movedAside: string[],
  signal: AbortSignal,
): Promise<PartitionStorage> {
  const storage = createPartitionStorage(partition, locations, { signal });
  let refused: unknown;
  try {
    await storage.open();
    return storage;
  } catch (error) {
    if (!repair || partition.locations.length < 2 || !isStorageError(error)) throw error;
    refused = error;
  }
  const corrupt: { index: number; folder: string; detail: string }[] = [];
  for (const [index, location] of partition.locations.entries()) {
    const folder = localFolderOf(location);
    if (folder === undefined) continue;
    const alone = createLocationStorage(partition, location, locations, signal);
    try {
      await alone.open();
      await alone.close();
    } catch (error) {
      if (isStorageError(error) && error.reason === 'Corrupt') corrupt.push({ index, folder, detail: error.message });
    }
  }
  // Only with a good copy left to rebuild from; otherwise the log is left as it is.
  if (corrupt.length === 0 || corrupt.length === partition.locations.length) throw refused;
  for (const { index, folder, detail } of corrupt) {
    const aside = `${folder}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(folder, aside);
    await mkdir(folder, { recursive: true });
    movedAside.push(`${locationLabel(partition.locations[index], index)}: damaged at open (${detail}); moved aside to ${aside} and rebuilt from the other copies (repaired)`);
  }
  const again = createPartitionStorage(partition, locations, { signal });
  await again.open();
  return again;
}

/** A reader seen as a storage of kind `file` for `scrubPartition` (which only reads a single copy). */
function readerAsStorage(reader: object): PartitionStorage {
  const open = async (): Promise<undefined> => undefined;
  return new Proxy(reader, {
    get(target, key) {
      if (key === 'kind') return 'file';
      if (key === 'open') return open;
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as PartitionStorage;
}

/**
 * `sluice reindex`: rebuilds a partition folder's persisted index from its log
 * (`reindexPartition`). Takes the writer lock: stop the node serving it first.
 */
export async function reindexCommand(flags: ReindexFlags, io: CliIo): Promise<void> {
  const cwd = io.cwd ?? process.cwd();
  const directory = resolve(cwd, flags.path);
  await requireLog(directory);
  const indexDirectory = flags.index === undefined ? `${directory}.index` : resolve(cwd, flags.index);
  const report = await reindexPartition({ storage: createFileStorage({ directory }), indexDirectory });
  const stdout = new LineWriter(io.stdout);
  if (flags.json) {
    await stdout.json({ partition: directory, indexDirectory, lastSeq: report.lastSeq, streamCount: report.streamCount, discarded: report.discarded, elapsedMs: Math.round(report.elapsedMs) });
    return;
  }
  await stdout.line(`${directory}: indexed seq 1..${report.lastSeq} (${report.streamCount} streams) into ${indexDirectory} in ${report.elapsedMs.toFixed(0)} ms`);
  for (const why of report.discarded) await stdout.line(`  discarded: ${why}`);
}
