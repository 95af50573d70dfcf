export { ShipperError, isShipperError, type ShipperErrorReason } from './errors.js';
export {
  Shipper,
  createShipper,
  type ShipperAlert,
  type ShipperAlertKind,
  type TargetState,
  type TargetStatus,
  type WaitForOptions,
} from './shipper.js';
export {
  resolveShipperOptions,
  shipperDefaults,
  type RetryOptions,
  type ShipTarget,
  type ShipperLogEntry,
  type ShipperOptions,
  type TargetLocation,
} from './shipper-options.js';
export { createQuorumStorage, type QuorumStorage, type QuorumStorageOptions } from './quorum-storage.js';
