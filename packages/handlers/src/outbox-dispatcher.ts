import type { RecordedEvent } from '@sluice/store';
import {
  createStreamCheckpointStore,
  startSubscription,
  type AddressedCommand,
  type CheckpointStore,
  type EventSource,
  type Replayer,
  type StreamWriter,
  type Subscription,
} from '@sluice/subscriptions';
import { OUTBOX_STREAM, PUBLISH_EVENT, SEND_EVENT } from './handler-host.js';
import type { CommandRouter } from './router.js';
import { jsonSerializer, type Serializer } from './serializer.js';

/** One message the dispatcher publishes. `id` is deterministic (partition + seq): downstream dedupes by it. */
export interface OutboxMessage {
  readonly id: string;
  readonly partition: string;
  readonly seq: number;
  /** `event`: an aggregate's event; `send`: a command from a state entity or saga; `publish`: an explicit message. */
  readonly kind: 'event' | 'send' | 'publish';
  readonly streamId: string;
  readonly type: string;
  readonly data: unknown;
}

/** Options of {@link startOutboxDispatcher}. */
export interface OutboxDispatcherOptions {
  readonly partition: EventSource & Replayer & StreamWriter;
  /** Receives messages in seq order, a batch at a time; resolve once they are delivered. A throw stops the dispatcher (restart resumes from the checkpoint). */
  readonly publish: (messages: OutboxMessage[]) => Promise<void>;
  /** @default a `$checkpoint-<name>` stream in the partition */
  readonly checkpoints?: CheckpointStore;
  /** @default 'outbox' */
  readonly name?: string;
  /** @default JSON */
  readonly serializer?: Serializer;
  /**
   * Which committed frames are messages: by default every event of a non-`$` stream except
   * state records (aggregates' events), plus the `$outbox` stream (state entities' and
   * sagas' explicit messages).
   */
  readonly select?: (event: RecordedEvent) => boolean;
  readonly batchSizeMax?: number;
}

/** The default selection of outgoing messages. */
export function isOutgoing(event: RecordedEvent): boolean {
  if (event.streamId === OUTBOX_STREAM) return true;
  return event.streamId.charCodeAt(0) !== 36 && event.eventType.charCodeAt(0) !== 36;
}

/**
 * Publishes committed messages asynchronously, in seq order, from a durable checkpoint: a
 * restart resumes after the last batch the sink acknowledged, so nothing is lost; a batch
 * interrupted before its checkpoint was saved is published again with the same ids, so a
 * downstream that dedupes by id sees each message once.
 *
 * @example
 * startOutboxDispatcher({ partition, publish: async (messages) => { for (const m of messages) bus.put(m.id, m); } });
 */
export function startOutboxDispatcher(options: OutboxDispatcherOptions): Subscription {
  const { partition } = options;
  const serializer = options.serializer ?? jsonSerializer;
  return startSubscription({
    subscriber: options.name ?? 'outbox',
    source: partition,
    replayer: partition,
    checkpoints: options.checkpoints ?? createStreamCheckpointStore(partition),
    predicate: options.select ?? isOutgoing,
    batchSizeMax: options.batchSizeMax,
    handle: async (events) => {
      const messages: OutboxMessage[] = events.map((event) => {
        const data = serializer.decode(event.payload);
        const kind = event.streamId !== OUTBOX_STREAM ? 'event' : event.eventType === SEND_EVENT ? 'send' : event.eventType === PUBLISH_EVENT ? 'publish' : 'event';
        const type = kind === 'event' ? event.eventType : ((kind === 'send' ? (data as AddressedCommand).command?.type : (data as { type?: string }).type) ?? event.eventType);
        return { id: `${partition.name}:${event.seq}`, partition: partition.name, seq: event.seq, kind, streamId: event.streamId, type, data };
      });
      await options.publish(messages);
    },
  });
}

/**
 * A publish function that sends `send` messages through a router, each under its message id
 * as command id (the target partition dedupes), and hands the rest to `other`.
 */
export function routeOutbox(router: CommandRouter, other?: (messages: OutboxMessage[]) => Promise<void>): (messages: OutboxMessage[]) => Promise<void> {
  return async (messages) => {
    const rest: OutboxMessage[] = [];
    const sends: Promise<unknown>[] = [];
    for (const message of messages) {
      if (message.kind === 'send') {
        sends.push(router.send({ id: message.id, commands: [message.data as AddressedCommand], causationId: message.id }));
      } else rest.push(message);
    }
    await Promise.all(sends);
    if (other !== undefined && rest.length > 0) await other(rest);
  };
}
