import type { RecordedEvent } from '@sluice/store';
import type { CheckpointStore } from './checkpoint-store.js';
import { decodeEvent, decodeJson, reasonOf, type DecodedEvent, type PayloadDecoder } from './decoded-event.js';
import type { EventSource, Replayer } from './event-source.js';
import type { EventFilter } from './filter.js';
import type { ParkingLot } from './parking-lot.js';
import { startSubscription, type Subscription } from './subscription.js';

/** A command addressed to an entity: the recipient decides its partition. */
export interface AddressedCommand {
  readonly recipient: string;
  /** The command body: a type name and its fields (a plain, serializable object). */
  readonly command: { readonly type: string; readonly [field: string]: unknown };
}

/** A message of one or more commands, delivered as one unit of work under a deterministic id. */
export interface CommandMessage {
  readonly id: string;
  readonly commands: readonly AddressedCommand[];
  readonly correlationId?: string;
  readonly causationId?: string;
}

/**
 * Delivers command messages to the partitions of their recipients. `@sluice/handlers`'
 * `CommandRouter` is one; a remote router (client SDK) is another.
 */
export interface CommandSender {
  send(message: CommandMessage): Promise<unknown>;
}

/** Turns events into commands for other entities (a process manager). Stateless here; state lives in the entities it commands. */
export interface Saga {
  readonly name: string;
  readonly filter?: EventFilter;
  /** The commands an event causes (none is fine). A throw parks the event with the reason. */
  handle(event: DecodedEvent): readonly AddressedCommand[] | undefined | void;
}

/** Options of {@link startSagaHost}. */
export interface SagaHostOptions {
  readonly saga: Saga;
  readonly source: EventSource;
  readonly replayer?: Replayer;
  readonly checkpoints: CheckpointStore;
  readonly sender: CommandSender;
  readonly parking: ParkingLot;
  /** @default JSON */
  readonly decode?: PayloadDecoder;
  /**
   * Attempts to deliver one command before it is parked with the reason (target partition
   * down, router refuses).
   * @default 5
   */
  readonly sendAttemptsMax?: number;
  /**
   * Delay before the second attempt; doubled for each further one.
   * @default 20
   */
  readonly retryDelayMs?: number;
  /**
   * Longest delay between two attempts.
   * @default 1000
   */
  readonly retryDelayMaxMs?: number;
  readonly batchSizeMax?: number;
  readonly onGap?: 'replay' | 'raise';
  /**
   * Batches whose commands may be in flight at once (the checkpoint passes a batch only when
   * it and all before it were delivered or parked).
   * @default 4
   */
  readonly handleConcurrencyMax?: number;
}

/**
 * The deterministic id of the `index`-th command a saga sends for the event at `seq` of
 * `partition`: a redelivered event yields the same id, so the target partition's command-id
 * idempotency never applies it twice.
 */
export function sagaCommandId(partition: string, seq: number, saga: string, index: number): string {
  return index === 0 ? `${partition}:${seq}:${saga}` : `${partition}:${seq}:${saga}:${index}`;
}

/**
 * Runs a saga on a partition's events: each matching event becomes commands sent through
 * the sender with deterministic ids (source partition + seq + saga name). The checkpoint
 * advances after every command of a batch was delivered or parked.
 *
 * @example
 * startSagaHost({
 *   saga: { name: 'transfers', filter: { eventTypes: ['TransferDebited'] },
 *     handle: (e) => [{ recipient: e.data.to, command: { type: 'CreditAccount', ... } }] },
 *   source: partition, checkpoints: createStreamCheckpointStore(partition),
 *   sender: router, parking: createStreamParkingLot(partition),
 * });
 */
export function startSagaHost(options: SagaHostOptions): Subscription {
  const { saga, source, sender, parking } = options;
  const decode = options.decode ?? decodeJson;
  const attemptsMax = options.sendAttemptsMax ?? 5;
  const delayMs = options.retryDelayMs ?? 20;
  const delayMaxMs = options.retryDelayMaxMs ?? 1000;

  const park = (event: RecordedEvent, stage: 'decode' | 'handle' | 'send', error: unknown, command?: unknown): Promise<void> =>
    parking.park({
      subscriber: saga.name,
      partition: source.name,
      seq: event.seq,
      streamId: event.streamId,
      eventType: event.eventType,
      reason: reasonOf(error),
      stage,
      command,
    });

  /** Later attempts to deliver a message whose first attempt failed, then parking. */
  const redeliver = async (event: RecordedEvent, message: CommandMessage, firstError: unknown): Promise<void> => {
    let lastError = firstError;
    for (let attempt = 1; attempt < attemptsMax; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(delayMaxMs, delayMs * 2 ** (attempt - 1))));
      try {
        await sender.send(message);
        return;
      } catch (error) {
        lastError = error;
      }
    }
    await park(event, 'send', new Error(`[sluice/subscriptions] saga "${saga.name}": ${attemptsMax} attempts to deliver ${message.id} failed: ${reasonOf(lastError)}`, { cause: lastError }), message);
  };

  // The first attempt costs one promise (the sender's) and its continuation; retries take the slow path.
  const deliver = (event: RecordedEvent, message: CommandMessage): Promise<unknown> => {
    let sent: Promise<unknown>;
    try {
      sent = sender.send(message);
    } catch (error) {
      sent = Promise.reject(error);
    }
    return sent.then(undefined, (error: unknown) => redeliver(event, message, error));
  };

  /** Handles one event: undefined when it needs nothing awaited (no commands), else the delivery (or parking) of its commands. */
  const one = (event: RecordedEvent): Promise<unknown> | undefined => {
    let decoded: DecodedEvent;
    try {
      decoded = decodeEvent(source.name, event, decode);
    } catch (error) {
      return park(event, 'decode', error);
    }
    let commands: readonly AddressedCommand[] | undefined | void;
    try {
      commands = saga.handle(decoded);
    } catch (error) {
      return park(event, 'handle', error);
    }
    if (commands === undefined || commands.length === 0) return undefined;
    const causationId = `${source.name}:${event.seq}`;
    if (commands.length === 1) return deliver(event, { id: sagaCommandId(source.name, event.seq, saga.name, 0), commands: [commands[0]], causationId });
    return Promise.all(commands.map((command, index) => deliver(event, { id: sagaCommandId(source.name, event.seq, saga.name, index), commands: [command], causationId })));
  };

  return startSubscription({
    subscriber: saga.name,
    source,
    replayer: options.replayer,
    checkpoints: options.checkpoints,
    filter: saga.filter,
    batchSizeMax: options.batchSizeMax,
    onGap: options.onGap,
    handleConcurrencyMax: options.handleConcurrencyMax ?? 4,
    // Events of a batch go out concurrently (targets group-commit them); the checkpoint waits for all.
    handle: (events) => {
      const sends: Array<Promise<unknown>> = [];
      for (const event of events) {
        const sent = one(event);
        if (sent !== undefined) sends.push(sent);
      }
      return Promise.all(sends).then(() => undefined);
    },
  });
}
