import type { AddressedCommand } from '@sluice/subscriptions';

/** Anything with a type name: commands, events, messages. */
export interface Message {
  readonly type: string;
}

/** A refused command, with the reason given back to the sender and recorded for redeliveries. */
export interface Rejection {
  readonly rejected: string;
}

/** Refuses a command. @example return reject(`insufficient funds: balance ${state.balance}`) */
export function reject(reason: string): Rejection {
  return { rejected: reason };
}

export function isRejection(value: unknown): value is Rejection {
  return typeof value === 'object' && value !== null && typeof (value as Rejection).rejected === 'string';
}

/** What a handler knows about the command besides its body. */
export interface HandlerContext {
  /** The entity id the command is addressed to (its stream id). */
  readonly recipient: string;
  /** The deterministic id of the command (stored with the commit). */
  readonly commandId: string;
  /** The entity's stream version before this command. */
  readonly version: number;
}

/**
 * An event-sourced aggregate: its state is the fold of its events; a command decides new
 * events (or a rejection). The recipient is the stream id.
 */
export interface AggregateDefinition<S, C extends Message, E extends Message> {
  readonly kind: 'aggregate';
  readonly name: string;
  /** The command types this aggregate handles (routing within the host). */
  readonly commandTypes: readonly C['type'][];
  initialState(id: string): S;
  evolve(state: S, event: E): S;
  decide(state: S, command: C, context: HandlerContext): readonly E[] | Rejection;
  /**
   * Snapshot policy: a snapshot of the state is written after the commit that crosses every
   * multiple of this many events (0 = never). Snapshots are only a shortcut: each is checked
   * against the stream (version and seq) before use and ignored when they disagree.
   * @default 0
   */
  readonly snapshotEvery?: number;
}

/** What a state entity or saga handler returns on success. */
export interface StateChange<S, M extends Message = Message> {
  readonly state: S;
  /** Commands for other entities (any partition), delivered by the outbox dispatcher with deterministic ids. */
  readonly send?: readonly AddressedCommand[];
  /** Messages to publish (integration events), delivered by the outbox dispatcher. */
  readonly publish?: readonly M[];
}

/**
 * A state-persisted entity: only its latest state is kept (one `$State` record per change in
 * its stream); its explicit outgoing messages go to the partition's outbox in the same unit
 * of work.
 */
export interface StateEntityDefinition<S, C extends Message, M extends Message = Message> {
  readonly kind: 'state';
  readonly name: string;
  readonly commandTypes: readonly C['type'][];
  initialState(id: string): S;
  handle(state: S, command: C, context: HandlerContext): StateChange<S, M> | Rejection;
}

/**
 * A saga (process manager) hosted as an entity: it receives messages (events of other
 * entities, delivered as commands), keeps its state persisted, and sends commands. Stored
 * like a state entity.
 */
export interface SagaDefinition<S, C extends Message> {
  readonly kind: 'saga';
  readonly name: string;
  readonly commandTypes: readonly C['type'][];
  initialState(id: string): S;
  handle(state: S, message: C, context: HandlerContext): StateChange<S> | Rejection;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyEntityDefinition = AggregateDefinition<any, any, any> | StateEntityDefinition<any, any, any> | SagaDefinition<any, any>;

/** Typed constructor of an aggregate definition (no decorators, no classes required). */
export function defineAggregate<S, C extends Message, E extends Message>(
  definition: Omit<AggregateDefinition<S, C, E>, 'kind'>,
): AggregateDefinition<S, C, E> {
  return { kind: 'aggregate', ...definition };
}

export function defineStateEntity<S, C extends Message, M extends Message = Message>(
  definition: Omit<StateEntityDefinition<S, C, M>, 'kind'>,
): StateEntityDefinition<S, C, M> {
  return { kind: 'state', ...definition };
}

export function defineSaga<S, C extends Message>(definition: Omit<SagaDefinition<S, C>, 'kind'>): SagaDefinition<S, C> {
  return { kind: 'saga', ...definition };
}
