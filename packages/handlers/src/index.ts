export { CrossPartitionMessageError, HandlerError, InvalidMessageError, PartitionUnavailableError, isHandlerError } from './errors.js';
export {
  defineAggregate,
  defineSaga,
  defineStateEntity,
  isRejection,
  reject,
  type AggregateDefinition,
  type AnyEntityDefinition,
  type HandlerContext,
  type Message,
  type Rejection,
  type SagaDefinition,
  type StateChange,
  type StateEntityDefinition,
} from './entity.js';
export { jsonSerializer, type Serializer } from './serializer.js';
export {
  HandlerHost,
  NOOP_EVENT,
  NOOP_STREAM,
  OUTBOX_STREAM,
  PUBLISH_EVENT,
  REJECTED_EVENT,
  REJECTED_STREAM,
  SEND_EVENT,
  SNAPSHOT_EVENT,
  STATE_EVENT,
  commandIdsOf,
  createHandlerHost,
  snapshotStreamId,
  type CommandOutcome,
  type HandlerHostOptions,
  type HandlerHostStats,
  type HostPartition,
  type RejectionRecord,
} from './handler-host.js';
export {
  createInProcessRouter,
  fnv1a,
  hashPartitioner,
  type CommandExecutor,
  type CommandRouter,
  type InProcessRouter,
  type InProcessRouterOptions,
} from './router.js';
export { isOutgoing, routeOutbox, startOutboxDispatcher, type OutboxDispatcherOptions, type OutboxMessage } from './outbox-dispatcher.js';
export type { AddressedCommand, CommandMessage } from '@sluice/subscriptions';
