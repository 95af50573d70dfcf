export { CheckpointConflictError, CorruptCheckpointError, SequenceGapError, SubscriptionError, isSubscriptionError } from './errors.js';
export type { EventSource, Replayer, StreamWriter } from './event-source.js';
export { createRemoteEventSource, type RemoteEventSource, type RemoteEventSourceOptions, type RemoteStoreReader } from './remote-source.js';
export { checkpointStreamId, createMemoryCheckpointStore, createStreamCheckpointStore, type CheckpointStore } from './checkpoint-store.js';
export { createMemoryParkingLot, createStreamParkingLot, parkedStreamId, redriveParked, type ParkedMessage, type ParkingLot, type RedriveReport } from './parking-lot.js';
export { compileFilter, type EventFilter } from './filter.js';
export { decodeEvent, decodeJson, type DecodedEvent, type PayloadDecoder } from './decoded-event.js';
export { startSubscription, type FrameSpan, type Subscription, type SubscriptionOptions, type SubscriptionStats } from './subscription.js';
export { startProjection, type Projection, type ProjectionHostOptions } from './projection-host.js';
export {
  sagaCommandId,
  startSagaHost,
  type AddressedCommand,
  type CommandMessage,
  type CommandSender,
  type Saga,
  type SagaHostOptions,
} from './saga-host.js';
export {
  startBroadcastPublisher,
  startBroadcastReceiver,
  type BroadcastPublisher,
  type BroadcastPublisherOptions,
  type BroadcastPublisherStats,
  type BroadcastReceiver,
  type BroadcastReceiverOptions,
  type BroadcastReceiverStats,
} from './broadcast.js';
export { DatagramEncoder, FrameRun, decodeDatagram, encodeDataDatagrams, encodeHeartbeat, type Datagram } from './broadcast-codec.js';
export {
  fanOut,
  injectFaults,
  openUdpFanout,
  openUdpMulticastReceiver,
  openUdpMulticastSender,
  openUdpReceiver,
  UDP_MULTICAST_GROUP_DEFAULT,
  openUdpSender,
  seededRandom,
  type DatagramReceiver,
  type DatagramSender,
  type FaultOptions,
  type FaultStats,
  type UdpFanout,
  type UdpMulticastOptions,
  type UdpReceiver,
} from './broadcast-transport.js';
export {
  RADIO_GROUP_BYTES_MAX,
  RadioDishOptionsError,
  openDishReceiver,
  openRadioSender,
  radioGroupOf,
  type DishReceiver,
  type DishReceiverOptions,
  type RadioDishTransport,
  type RadioSender,
  type RadioSenderOptions,
} from './radio-dish-transport.js';
