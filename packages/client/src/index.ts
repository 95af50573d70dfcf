export {
  PARTITION_NAME_PATTERN,
  PARTITION_SERVICE_PREFIX,
  SUBSCRIBE_SERVICE_PREFIX,
  isValidPartitionName,
  partitionServiceName,
  subscribeServiceName,
} from './partition-service.js';
export { StoreClient, createStoreClient, createStoreClientFromConfig, storeClientDefaults } from './store-client.js';
export type {
  RemoteReadOptions,
  RemoteReadStreamOptions,
  RemoteSubscribeOptions,
  StoreCallOptions,
  StoreClientConfig,
  StoreClientOptions,
  StoreClientStats,
} from './store-client.js';
export {
  MalformedStoreReplyError,
  MalformedStoreRequestError,
  PartitionUnavailableError,
  StoreServiceError,
  UnknownPartitionError,
  UnroutableStreamError,
  UnsupportedStoreProtocolError,
  errorFromStoreReply,
  storeErrorInfo,
} from './store-errors.js';
export {
  EventsPageBuilder,
  STORE_PROTOCOL_VERSION,
  STORE_PROTOCOL_VERSION_MIN,
  decodeStoreReply,
  decodeStoreRequest,
  encodeCommittedManyReply,
  encodeCommittedReply,
  estimateUnitBytes,
  encodeErrorReply,
  encodeEventsReply,
  encodeAppendFramedRequest,
  encodeFramedUnit,
  encodeHeadReply,
  encodeStoreRequest,
} from './store-protocol.js';
export type {
  AppendFramedStoreRequest,
  AppendManyStoreRequest,
  FramedUnit,
  AppendStoreRequest,
  DecodedStoreReply,
  DecodedStoreRequest,
  EventsPage,
  HeadStoreRequest,
  HeadRecovery,
  PartitionHead,
  ReadStoreRequest,
  ReadStreamStoreRequest,
  StoreErrorCode,
  StoreErrorInfo,
  StoreReply,
  StoreRequest,
  SubscribeStoreRequest,
  UnitOutcome,
} from './store-protocol.js';
export { EncodeError } from './protocol-bytes.js';
export { StreamRouter, jumpHash, streamHash } from './stream-router.js';
export type { RoutingConfig } from './stream-router.js';
