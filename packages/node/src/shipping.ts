import { mkdir } from 'node:fs/promises';
import type { PartitionConfig } from '@sluice/config';
import { createQuorumStorage, createShipper, type ShipTarget, type Shipper, type ShipperAlert } from '@sluice/shipper';
import type { MirrorRepair, PartitionStorage } from '@sluice/store';
import { localFolderOf } from '@sluice/config';
import { createLocationStorage, createPartitionStorage, locationLabel, type LocationFactories } from './locations.js';

/** A partition's storage as its level asks, and the shipper feeding its targets, if any. */
export interface LevelStorage {
  /** What the partition opens: one location, a mirror, or a quorum storage around either. */
  readonly storage: PartitionStorage;
  /** The level's shipper: none when the level ships nowhere. */
  readonly shipper: Shipper | undefined;
  /**
   * Whether the node starts and stops the shipper (`ack: local`), or the quorum storage
   * runs it inside itself (`ack: { quorum }`: it stops when the storage closes).
   */
  readonly ownsShipper: boolean;
}

/** Callbacks a node passes to {@link createLevelStorage}. */
export interface LevelStorageHooks {
  readonly signal?: AbortSignal | undefined;
  /** Each shipper alert (lag, target down, ...). */
  readonly onAlert?: ((alert: ShipperAlert) => void) | undefined;
  /** Each repair of a mirror (several locations). */
  readonly onRepair?: ((repair: MirrorRepair) => void) | undefined;
}

/** The level's ship targets as shipper targets, opened through the node's location factories. */
export function shipTargets(partition: PartitionConfig, locations: LocationFactories): ShipTarget[] {
  return partition.ship.map((target, index) => ({
    label: `ship[${index}] ${locationLabel(target, index)}`,
    createStorage: () => createLocationStorage(partition, target, locations),
  }));
}

/**
 * Builds a partition's storage from its reliability level: its locations (several make a
 * mirror, whose local folders are created first so the mirror's folder checks pass), wrapped
 * in `createQuorumStorage` for `ack: { quorum }`, and a `@sluice/shipper` over it for `ship`
 * targets with `ack: local`. The shipper is not started: start it once the partition is open.
 */
export async function createLevelStorage(partition: PartitionConfig, locations: LocationFactories, hooks: LevelStorageHooks = {}): Promise<LevelStorage> {
  if (partition.locations.length > 1) {
    for (const location of partition.locations) {
      const folder = localFolderOf(location);
      if (folder !== undefined) await mkdir(folder, { recursive: true });
    }
  }
  const base = createPartitionStorage(partition, locations, { signal: hooks.signal, onRepair: hooks.onRepair });
  if (partition.ship.length === 0) return { storage: base, shipper: undefined, ownsShipper: false };
  const common = {
    partition: partition.name,
    targets: shipTargets(partition, locations),
    ...(partition.alertLagMs === undefined ? {} : { alertLagMs: partition.alertLagMs }),
  };
  if (partition.ack.mode === 'quorum') {
    const storage = createQuorumStorage({ ...common, storage: base, quorum: partition.ack.quorum, level: partition.level });
    if (hooks.onAlert !== undefined) storage.shipper.on('alert', hooks.onAlert);
    return { storage, shipper: storage.shipper, ownsShipper: false };
  }
  const shipper = createShipper({ ...common, source: base });
  if (hooks.onAlert !== undefined) shipper.on('alert', hooks.onAlert);
  return { storage: base, shipper, ownsShipper: true };
}
