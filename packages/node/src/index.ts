export { StoreNode, nodeDefaults, startNode } from './node.js';
export type { NodeEvents, NodePartitionStats, NodeStats, PartitionState, StartNodeOptions } from './node.js';
export { NodeStartError } from './node-errors.js';
export {
  UnregisteredLocationError,
  createLocationStorage,
  createPartitionStorage,
  locationFactory,
  locationLabel,
  memoryLocation,
  resolveLocationFactories,
} from './locations.js';
export type { CreatePartitionStorageOptions, KnownLocationKind, LocationContext, LocationFactories, LocationFactory } from './locations.js';
export { createLevelStorage, shipTargets } from './shipping.js';
export type { LevelStorage, LevelStorageHooks } from './shipping.js';
export { PartitionHandler } from './partition-handler.js';
export type { PartitionHandlerLimits, PartitionHandlerStats } from './partition-handler.js';
