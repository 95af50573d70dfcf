export { MajordomoBroker, createBroker } from './broker.js';
export type {
  BrokerEvents,
  BrokerMalformedEvent,
  BrokerRejectedEvent,
  BrokerStats,
  BrokerWorkerEvent,
  BrokerWorkerRemovedEvent,
  WorkerRemovalReason,
} from './broker.js';
export { brokerDefaults, resolveBrokerOptions } from './broker-options.js';
export type { BrokerOptions, ResolvedBrokerOptions } from './broker-options.js';
export { MajordomoClient } from './client.js';
export type { ClientEvents, ClientFailoverEvent, ClientStats, RequestOptions } from './client.js';
export { clientDefaults, resolveClientOptions } from './client-options.js';
export type { ClientMode, ClientOptions, ResolvedClientOptions } from './client-options.js';
export {
  CORRELATION_FRAME_BYTES,
  decodeCorrelation,
  encodeCorrelation,
  withCorrelationKind,
} from './correlation.js';
export type { Correlation, CorrelationKind } from './correlation.js';
export {
  BrokerBindError,
  BrokerClosedError,
  BrokerError,
  BrokerRejectedError,
  BrokerTimeoutError,
  ClientOverloadedError,
  InvalidBrokerOptionsError,
  InvalidRequestError,
  RequestAbortedError,
  WorkerFailedError,
  isBrokerError,
} from './errors.js';
export {
  MALFORMED_REASONS,
  MDPC01,
  MDPW01,
  MDPW_BATCH,
  MDPW_DISCONNECT,
  MDPW_HEARTBEAT,
  MDPW_READY,
  MDPW_REPLY,
  MDPW_REQUEST,
  MESSAGE_FRAMES_MAX,
  MMI_FOUND,
  MMI_NOT_FOUND,
  MMI_NOT_IMPLEMENTED,
  MMI_PREFIX,
  MMI_SERVICE,
  NAME_BYTES_MAX,
  clientReplyFrames,
  clientRequestFrames,
  isMmiService,
  isValidServiceName,
  parseClientMessage,
  parseRouterMessage,
  parseWorkerMessage,
  workerDisconnectFrames,
  workerHeartbeatFrames,
  workerReadyFrames,
  workerReplyFrames,
  workerRequestFrames,
} from './mdp.js';
export type {
  BatchItem,
  ClientMessage,
  MalformedReason,
  ParseOptions,
  ParseResult,
  RouterMessage,
  RouterParseFailure,
  WorkerMessage,
} from './mdp.js';
export { MajordomoWorker, createWorker } from './worker.js';
export type { WorkerEvents, WorkerStats } from './worker.js';
export { resolveWorkerOptions, workerDefaults } from './worker-options.js';
export type { ResolvedWorkerOptions, WorkerHandler, WorkerOptions } from './worker-options.js';
export type { WorkerReconnectReason } from './worker-session.js';
// Security: CURVE encryption and ZAP allow-lists.
export { BrokerAuthenticationError } from './errors.js';
export { deriveCurvePublicKey, generateCurveKeyPair, isCurveKey } from './curve.js';
export type {
  BrokerCurveOptions,
  CurveKeyPair,
  CurveKeyPolicy,
  CurveOptions,
  ResolvedBrokerCurve,
  ResolvedCurve,
} from './curve.js';
export { decodeZ85, encodeZ85 } from './z85.js';
export type { HandshakeFailure } from './handshake-watch.js';
export type { BrokerPeerEvent } from './broker.js';
export type { ClientHandshakeFailedEvent } from './client.js';
// Option checking shared with @sluice/client and @sluice/node (every problem reported at once).
export { OptionProblems } from './validate.js';
export { stripUndefined } from './broker-options.js';
