import type { PartitionStorage, StorageReader } from '@sluice/store';
import { ShipperError } from './errors.js';

/** One place the shipper can ship to. */
export interface TargetLocation {
  /**
   * Makes a new, unopened storage on the target (Azure Blob, a file folder on another disk, …).
   * A factory, because a storage whose write failed is failed for good (the storage contract's
   * failure rule): after an error the shipper closes it and makes a fresh one to resume.
   */
  readonly createStorage: () => PartitionStorage;
  /** Name in alerts and status, e.g. `"azure west"`. */
  readonly label: string;
}

/** One shipping target, with alternates to move to while it is down. */
export interface ShipTarget extends TargetLocation {
  /**
   * Alternate locations: after the active one has been failing for `failoverAfterMs`, the
   * shipper moves to the next (each resumes from its own head after the identity check) and
   * stays on whichever works.
   * @default []
   */
  readonly alternates?: readonly TargetLocation[] | undefined;
}

/** Retry limits while a target is down: exponential backoff with jitter. */
export interface RetryOptions {
  /** @default 100 */
  readonly initialDelayMs?: number;
  /** @default 30000 */
  readonly maxDelayMs?: number;
  /** @default 2 */
  readonly multiplier?: number;
  /**
   * Each delay is multiplied by a random factor in `[1 - jitter, 1 + jitter]`, so many
   * shippers do not hammer a recovering service in step.
   * @default 0.2
   */
  readonly jitter?: number;
}

/** A line for the optional log callback. */
export interface ShipperLogEntry {
  readonly level: 'info' | 'warn' | 'error';
  readonly message: string;
  readonly target?: string | undefined;
}

/** Options of {@link createShipper}. */
export interface ShipperOptions {
  /**
   * The partition's durable log: in process the partition's storage (or any reader of it),
   * across processes a reader from `openReader()` / `openFileReader()`. The shipper only ever
   * sees durable batches.
   */
  readonly source: StorageReader;
  /** Where to ship. Each target resumes from its own head. At least one. */
  readonly targets: readonly ShipTarget[];
  /** The partition's name, in alerts and messages. @default "partition" */
  readonly partition?: string | undefined;
  readonly retry?: RetryOptions | undefined;
  /**
   * Alert (`lag`) when a target's recovery point (age of the oldest commit it lacks) passes this.
   * @default 10000
   */
  readonly alertLagMs?: number | undefined;
  /**
   * Alert (`lag`) when a target lacks more than this many seqs.
   * @default Infinity (seconds only)
   */
  readonly alertLagSeqs?: number | undefined;
  /** How often lag is measured and compared with the thresholds. @default 1000 */
  readonly lagCheckMs?: number | undefined;
  /** Move to the next alternate after a target has failed for this long. @default 30000 */
  readonly failoverAfterMs?: number | undefined;
  /** Most bytes in one write to a target (several source batches are joined). @default 4194304 */
  readonly writeBytesMax?: number | undefined;
  /** A write-and-sync round ships at most this many bytes before syncing. @default 16777216 */
  readonly syncBytesMax?: number | undefined;
  /** Longest a target's open, close or head may take before it counts as down. @default 30000 */
  readonly operationTimeoutMs?: number | undefined;
  /** Longest wait between looks at the source's head when nothing new comes. @default 50 */
  readonly pollMaxMs?: number | undefined;
  /** Alerts queued for a slow `alerts()` consumer before the oldest are dropped. @default 1000 */
  readonly alertQueueMax?: number | undefined;
  /** Optional log callback (alerts are logged too). */
  readonly log?: ((entry: ShipperLogEntry) => void) | undefined;
  /** Clock (ms since the Unix epoch), for lag. @default Date.now */
  readonly clock?: (() => number) | undefined;
  /** Random source in [0, 1), for jitter. @default Math.random */
  readonly random?: (() => number) | undefined;
}

/** The resolved options. */
export type ResolvedShipperOptions = Required<Omit<ShipperOptions, 'retry' | 'log' | 'partition'>> & {
  readonly partition: string;
  readonly retry: Required<RetryOptions>;
  readonly log: ((entry: ShipperLogEntry) => void) | undefined;
};

/** Defaults of {@link ShipperOptions}, in one place. */
export function shipperDefaults(): Omit<ResolvedShipperOptions, 'source' | 'targets' | 'log'> {
  return {
    partition: 'partition',
    retry: { initialDelayMs: 100, maxDelayMs: 30_000, multiplier: 2, jitter: 0.2 },
    alertLagMs: 10_000,
    alertLagSeqs: Number.POSITIVE_INFINITY,
    lagCheckMs: 1000,
    failoverAfterMs: 30_000,
    writeBytesMax: 4 * 1024 * 1024,
    syncBytesMax: 16 * 1024 * 1024,
    operationTimeoutMs: 30_000,
    pollMaxMs: 50,
    alertQueueMax: 1000,
    clock: Date.now,
    random: Math.random,
  };
}

/** Validates every option at once; throws a {@link ShipperError} (`Invalid`) listing each problem. */
export function resolveShipperOptions(options: ShipperOptions): ResolvedShipperOptions {
  const d = shipperDefaults();
  const problems: string[] = [];
  const source = options?.source;
  if (source === undefined || typeof source.read !== 'function' || typeof source.identityAt !== 'function') problems.push('source must be a StorageReader (the partition storage or a reader of it)');
  const targets = options?.targets;
  if (!Array.isArray(targets) || targets.length === 0) problems.push('targets must hold at least one target');
  const labels = new Set<string>();
  for (const [i, t] of (Array.isArray(targets) ? targets : []).entries()) {
    for (const loc of [t, ...(t?.alternates ?? [])]) {
      if (typeof loc?.createStorage !== 'function') problems.push(`target ${i}: createStorage must be a function returning a new PartitionStorage`);
      if (typeof loc?.label !== 'string' || loc.label === '') problems.push(`target ${i}: every target and alternate needs a non-empty label`);
      else if (labels.has(loc.label)) problems.push(`target label "${loc.label}" is used twice: labels name targets in alerts`);
      else labels.add(loc.label);
    }
  }
  const retry = { ...d.retry, ...definedOnly(options?.retry ?? {}) };
  const positive = (name: string, v: number, min = 1): void => {
    if (!(typeof v === 'number' && v >= min && (Number.isFinite(v) || v === Number.POSITIVE_INFINITY))) problems.push(`${name} must be a number of at least ${min}, got ${v}`);
  };
  positive('retry.initialDelayMs', retry.initialDelayMs);
  positive('retry.maxDelayMs', retry.maxDelayMs);
  positive('retry.multiplier', retry.multiplier);
  if (!(retry.jitter >= 0 && retry.jitter < 1)) problems.push(`retry.jitter must be in [0, 1), got ${retry.jitter}`);
  const merged = { ...d, ...definedOnly({ ...options, retry: undefined, log: undefined, source: undefined, targets: undefined }) } as Omit<ResolvedShipperOptions, 'source' | 'targets' | 'log'>;
  positive('alertLagMs', merged.alertLagMs, 0);
  positive('alertLagSeqs', merged.alertLagSeqs);
  positive('lagCheckMs', merged.lagCheckMs, 10);
  positive('failoverAfterMs', merged.failoverAfterMs, 0);
  positive('writeBytesMax', merged.writeBytesMax, 1024);
  positive('syncBytesMax', merged.syncBytesMax, 1024);
  positive('operationTimeoutMs', merged.operationTimeoutMs, 10);
  positive('pollMaxMs', merged.pollMaxMs, 1);
  positive('alertQueueMax', merged.alertQueueMax, 1);
  if (problems.length > 0) throw new ShipperError('Invalid', `[sluice/shipper] invalid shipper options: ${problems.join('; ')}`);
  return { ...merged, retry, source: source as StorageReader, targets: targets as readonly ShipTarget[], log: options.log };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
