import { resolve } from 'node:path';
import { isFileLocation, loadSluiceConfig, partitionsOfNode, type LocationConfig, type PartitionConfig } from '@sluice/config';
import { shipperDefaults } from '@sluice/shipper';
import type { FsyncPolicy } from '@sluice/store';
import { LineWriter, type CliIo } from '../io.js';

/** Options of `sluice levels`. */
export interface LevelsFlags {
  readonly config: string;
  readonly node?: string;
  readonly json: boolean;
}

/** Option keys that hold credentials: shown as `"(hidden)"`, never printed. */
const SECRET_KEYS = new Set(['connectionString', 'accountKey', 'sasUrl', 'sasToken', 'password', 'secret', 'key']);

/** One partition's effective reliability level, as `sluice levels --json` prints it. */
export interface EffectiveLevel {
  readonly partition: string;
  readonly level: string;
  readonly service: string;
  /** Several make a mirror: every copy synced before an acknowledgement. */
  readonly locations: readonly Record<string, unknown>[];
  readonly fsync: string;
  readonly ship: readonly Record<string, unknown>[];
  /** The shipper's lag alert threshold; null when the level ships nowhere. */
  readonly alertLagMs: number | null;
  /** Whether `alertLagMs` is the shipper's default rather than the level's. */
  readonly alertLagMsDefault: boolean;
  /** `"local"`, or `{ "quorum": n }`. */
  readonly ack: 'local' | { readonly quorum: number };
}

/**
 * `sluice levels`: validates the config (every problem at once, as `sluice node` would) and
 * prints the effective reliability level of each partition (of `--node`'s partitions with
 * `--node`): its locations, fsync policy, shipping targets, lag alert threshold and
 * acknowledgement mode, `{partition}` substituted and paths absolute. Credentials are hidden.
 */
export async function levelsCommand(flags: LevelsFlags, io: CliIo): Promise<void> {
  const config = await loadSluiceConfig(resolve(io.cwd ?? process.cwd(), flags.config));
  const names = flags.node === undefined ? Object.keys(config.partitions) : partitionsOfNode(config, flags.node);
  const stdout = new LineWriter(io.stdout);
  for (const name of names) {
    const level = effectiveLevel(config.partitions[name]);
    if (flags.json) {
      await stdout.json(level);
      continue;
    }
    await stdout.line(`${level.partition}: level "${level.level}", fsync ${level.fsync}, ack ${level.ack === 'local' ? 'local' : `quorum ${level.ack.quorum} of ${level.ship.length} targets`}`);
    const mirror = level.locations.length > 1 ? ' (mirror)' : '';
    for (const location of level.locations) await stdout.line(`  location${mirror}: ${describe(location)}`);
    for (const target of level.ship) await stdout.line(`  ship: ${describe(target)}`);
    if (level.alertLagMs !== null) await stdout.line(`  alert: lag over ${level.alertLagMs} ms${level.alertLagMsDefault ? ' (default)' : ''}`);
  }
}

/** The effective level of one partition, credentials hidden. */
export function effectiveLevel(partition: PartitionConfig): EffectiveLevel {
  const shipping = partition.ship.length > 0;
  return {
    partition: partition.name,
    level: partition.level,
    service: partition.service,
    locations: partition.locations.map(plain),
    fsync: formatFsync(partition.fsync),
    ship: partition.ship.map(plain),
    alertLagMs: shipping ? (partition.alertLagMs ?? shipperDefaults().alertLagMs) : null,
    alertLagMsDefault: shipping && partition.alertLagMs === undefined,
    ack: partition.ack.mode === 'local' ? 'local' : { quorum: partition.ack.quorum },
  };
}

function formatFsync(policy: FsyncPolicy): string {
  return policy.kind === 'interval' ? `interval:${policy.intervalMs}ms` : policy.kind;
}

/** `{ kind, directory }` or `{ kind, ...options }`, secrets hidden. */
function plain(location: LocationConfig): Record<string, unknown> {
  if (isFileLocation(location)) {
    return {
      kind: 'file',
      directory: location.directory,
      ...(location.segmentBytes === undefined ? {} : { segmentBytes: location.segmentBytes }),
      ...(location.preallocate === undefined ? {} : { preallocate: location.preallocate }),
    };
  }
  const options = 'options' in location ? location.options : {};
  return { kind: location.kind, ...Object.fromEntries(Object.entries(options).map(([key, value]) => [key, SECRET_KEYS.has(key) ? '(hidden)' : value])) };
}

function describe(location: Record<string, unknown>): string {
  const { kind, directory, ...rest } = location;
  const parts = [String(kind)];
  if (typeof directory === 'string') parts.push(directory);
  if (Object.keys(rest).length > 0) parts.push(JSON.stringify(rest));
  return parts.join(' ');
}
