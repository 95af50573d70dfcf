export { StoreNode, nodeDefaults, startNode } from './node.js';
export type { NodeEvents, NodePartitionStats, NodeStats, PartitionState, StartNodeOptions } from './node.js';
export { NodeStartError } from './node-errors.js';
export {
  UnregisteredLocationError,
  createPartitionStorage,
  locationFactory,
  memoryLocation,
  resolveLocationFactories,
} from './locations.js';
export type { KnownLocationKind, LocationContext, LocationFactories, LocationFactory } from './locations.js';
export { PartitionHandler } from './partition-handler.js';
export type { PartitionHandlerLimits, PartitionHandlerStats } from './partition-handler.js';
