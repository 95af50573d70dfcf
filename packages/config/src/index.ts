export { ConfigError, isConfigError } from './config-error.js';
export { canonicalFolder, checkLocationFolders, localFolderOf, type CanonicalFolder } from './location-identity.js';
export type { ConfigIssue } from './config-error.js';
export {
  BROKER_LIMIT_KEYS,
  CLIENT_LIMIT_KEYS,
  HEARTBEAT_KEYS,
  NODE_LIMIT_KEYS,
} from './limits.js';
export type {
  BrokerLimitsConfig,
  ClientLimitsConfig,
  HeartbeatsConfig,
  LimitsConfig,
  NodeLimitsConfig,
} from './limits.js';
export {
  PARTITION_NAME_PATTERN,
  isFileLocation,
  loadSluiceConfig,
  parseSluiceConfig,
  partitionServiceName,
  partitionsOfNode,
} from './sluice-config.js';
export type {
  BackendLocationConfig,
  FileLocationConfig,
  LocationConfig,
  MemoryLocationConfig,
  NodeHostConfig,
  ParseSluiceConfigOptions,
  PartitionConfig,
  ReliabilityLevelConfig,
  RoutingConfig,
  SluiceConfig,
  TargetConfig,
  AckConfig,
} from './sluice-config.js';
