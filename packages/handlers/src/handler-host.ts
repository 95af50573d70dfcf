import { isWrongExpectedVersionError, type CommitResult, type Partition, type StreamChange, type EventData } from '@sluice/store';
import type { AddressedCommand, CommandMessage } from '@sluice/subscriptions';
import { EntitySlots, type EntitySlot } from './entity-slots.js';
import { EntityLocks } from './entity-locks.js';
import { InvalidMessageError, PartitionUnavailableError } from './errors.js';
import { isRejection, type AggregateDefinition, type AnyEntityDefinition, type Message, type StateChange } from './entity.js';
import { jsonSerializer, type Serializer } from './serializer.js';

/** The stream rejections are recorded in. */
export const REJECTED_STREAM = '$rejected';
/** The stream outgoing messages of state entities and sagas are recorded in. */
export const OUTBOX_STREAM = '$outbox';
/** Event types of the records this host writes. */
export const REJECTED_EVENT = '$CommandRejected';
export const STATE_EVENT = '$State';
export const SEND_EVENT = '$Send';
export const PUBLISH_EVENT = '$Publish';
export const SNAPSHOT_EVENT = '$Snapshot';
/** Where a message accepted without effect records its command ids. */
export const NOOP_STREAM = '$accepted';
export const NOOP_EVENT = '$Accepted';

/** The stream an aggregate's snapshots are kept in. */
export function snapshotStreamId(streamId: string): string {
  return `$snapshot-${streamId}`;
}

/**
 * The part of a partition the host uses: the embedded `Partition` as it is, or a partition
 * served by a node and reached with the client SDK (whose `streamVersion` asks the node).
 */
export type HostPartition = Pick<Partition, 'name' | 'commit' | 'append' | 'read' | 'readStream' | 'isWritable'> & {
  streamVersion(streamId: string): number | Promise<number>;
};

/** What became of a command message. */
export interface CommandOutcome {
  readonly messageId: string;
  readonly partition: string;
  readonly status: 'accepted' | 'rejected';
  /** Why it was rejected (the same on every redelivery). */
  readonly reason?: string;
  /** True when the message had been handled before: this is the original outcome, nothing new was written. */
  readonly duplicate: boolean;
  /** Seqs of the commit that recorded the outcome. */
  readonly firstSeq: number;
  readonly lastSeq: number;
}

/** The body of a `$CommandRejected` record. */
export interface RejectionRecord {
  readonly messageId: string;
  readonly reason: string;
  readonly commands: readonly AddressedCommand[];
  readonly causationId?: string;
}

/** Options of {@link createHandlerHost}. */
export interface HandlerHostOptions {
  readonly partition: HostPartition;
  readonly entities: readonly AnyEntityDefinition[];
  /** @default JSON */
  readonly serializer?: Serializer;
  /**
   * Loaded entities kept in memory (least recently used go first).
   * @default 10000
   */
  readonly cacheEntitiesMax?: number;
  /**
   * What a handler that throws does: `reject` records the error as the command's rejection
   * (the host goes on, a redelivery gets the same answer); `throw` commits nothing and
   * rejects the `execute` promise (the message stays unacknowledged).
   * @default 'reject'
   */
  readonly onHandlerError?: 'reject' | 'throw';
  /**
   * Messages decided in the same turn of the event loop are committed together: one unit of
   * work holding all their changes and command ids (each message keeps its own command ids,
   * so a redelivery is still recognized; a refusal joins too, as a `$CommandRejected` record
   * naming its message; messages with different correlation or causation ids, and a
   * redelivery of a message in the commit being built, each get their own commit). At most
   * this many messages per commit; 1 = one commit per message.
   * @default 256
   */
  readonly mergeMessagesMax?: number;
  /** A merged commit is closed once it holds this many events (a message is never split across commits). @default 4096 */
  readonly mergeEventsMax?: number;
  /** The same for its bytes (event data and command ids). @default 1048576 */
  readonly mergeBytesMax?: number;
  /**
   * Where a message's correlation and causation ids are recorded. `commit`: in the commit
   * headers, which hold one of each, so messages with different ids never share a commit (a
   * saga's commands, one causation id per event, then each cost a commit). `event`: messages
   * with different ids share commits too; a commit whose messages all carry the same ids
   * still records them in its headers, one whose messages differ records none there and
   * every event of each message that has ids carries them as `metadata` (the serializer's
   * encoding of `{ correlationId?, causationId? }`).
   * @default 'commit'
   */
  readonly tracingIn?: 'commit' | 'event';
  /** Called after a commit is durable and before `execute` resolves (the acknowledgement). Tests use it to crash in between. */
  readonly afterCommit?: (outcome: CommandOutcome) => void;
  /** Reports problems the host recovers from (an ignored snapshot, a failed snapshot write). */
  readonly onWarning?: (message: string) => void;
}

/** Counters of a host. */
export interface HandlerHostStats {
  accepted: number;
  rejected: number;
  duplicates: number;
  snapshotsWritten: number;
  snapshotsUsed: number;
  snapshotsIgnored: number;
  retries: number;
}

const RETRIES_MAX = 16;
const NO_ENTITIES: readonly EntitySlot[] = [];
const NO_MESSAGES: readonly Message[] = [];
const NO_EVENT_DATA: EventData[] = [];

/** A message on its way: decided, then committed (alone or merged with others), then acknowledged. */
interface Member {
  readonly message: CommandMessage;
  readonly commandIds: readonly string[];
  /** Decisions so far (retries after a stale state or a conflict). */
  readonly attempt: number;
  /** Commit it on its own (a merged commit was refused as a whole). */
  readonly alone: boolean;
  /** Entities whose pending cache entries this message set: settled with its commit. */
  entities: readonly EntitySlot[];
  /** The refusal it records, if refused. */
  rejection: string | undefined;
  /** Its events in the commit, kept with tracingIn 'event' when it has tracing ids: a commit whose messages' ids differ gives them those ids as metadata. */
  written: EventData[] | undefined;
  readonly resolve: (outcome: CommandOutcome) => void;
  readonly reject: (error: unknown) => void;
}

/** An entity while a message is decided on it. */
interface Working {
  readonly definition: AnyEntityDefinition;
  readonly loadedVersion: number;
  /** Its slot when its state came from the cache (undefined: loaded from the partition, durable). */
  readonly slot: EntitySlot | undefined;
  /** The slot's generation then: a later one means that cached state was dropped (its commit did not apply). */
  readonly generation: number;
  state: unknown;
  /** The events decided so far: the handler's own array for the first command, a concatenation after more. */
  events: readonly Message[];
  changed: boolean;
}

/**
 * The entities one message is decided on, by recipient. A message has a few: two arrays and a
 * linear search, indexed by a map only past {@link WORKING_SCAN_MAX} (a Map per message, or its
 * `clear`, allocates a hash table for every command).
 */
class WorkingSet {
  /** Slots 0..length-1 (the arrays are reused: emptying an array lets go of its backing store, and the next push allocates again). */
  readonly ids: string[] = [];
  readonly entities: Array<Working | undefined> = [];
  length = 0;
  private index: Map<string, Working> | undefined;

  get(id: string): Working | undefined {
    if (this.index !== undefined) return this.index.get(id);
    const ids = this.ids;
    for (let i = 0; i < this.length; i++) if (ids[i] === id) return this.entities[i];
    return undefined;
  }

  set(id: string, entity: Working): void {
    const i = this.length++;
    this.ids[i] = id;
    this.entities[i] = entity;
    if (this.index !== undefined) this.index.set(id, entity);
    else if (this.length > WORKING_SCAN_MAX) this.index = new Map(this.ids.slice(0, this.length).map((key, k) => [key, this.entities[k] as Working]));
  }

  /** Forgets the entities (and lets go of them). */
  clear(): void {
    for (let i = 0; i < this.length; i++) this.entities[i] = undefined;
    this.length = 0;
    this.index = undefined;
  }
}

const WORKING_SCAN_MAX = 16;

/** The changes of one message as it is enqueued: parallel arrays reused from message to message. */
class ChangeList {
  readonly streamIds: string[] = [];
  readonly expectedVersions: Array<number | undefined> = [];
  readonly events: EventData[][] = [];
  readonly entities: Array<Working | undefined> = [];
  length = 0;

  add(streamId: string, expectedVersion: number | undefined, events: EventData[], entity: Working | undefined): void {
    const i = this.length++;
    this.streamIds[i] = streamId;
    this.expectedVersions[i] = expectedVersion;
    this.events[i] = events;
    this.entities[i] = entity;
  }

  /** Forgets the changes (and lets go of their events and entities). */
  clear(): void {
    for (let i = 0; i < this.length; i++) {
      this.events[i] = NO_EVENT_DATA;
      this.entities[i] = undefined;
    }
    this.length = 0;
  }
}

/** One unit of work holding the changes and command ids of one or more messages decided in the same turn. */
interface MergedCommit {
  readonly changes: Array<{ streamId: string; expectedVersion?: number; events: EventData[] }>;
  /**
   * Its change of each stream other than the entities' (the outbox, refusals): an entity's is
   * found through its slot. (A scan of {@link changes} per message was quadratic in the
   * messages of a commit.) Created on first use.
   */
  byStream: Map<string, { streamId: string; expectedVersion?: number; events: EventData[] }> | undefined;
  readonly commandIds: string[];
  readonly members: Member[];
  readonly correlationId: string | undefined;
  readonly causationId: string | undefined;
  /** Its messages' correlation or causation ids differ (tracingIn 'event'): the headers hold none, each event its message's. */
  mixed: boolean;
  events: number;
  /** Event data and command id bytes (the id length in UTF-16 units). */
  bytes: number;
  /** Snapshots the policy asks for once the commit is durable: the stream, the version and the state then. */
  snapshots: Array<{ readonly streamId: string; readonly version: number; readonly state: unknown }> | undefined;
  submitted: boolean;
}


/** A command was decided on a pending state that did not become durable: decide again. */
class StaleStateError extends Error {
  constructor(readonly entity: string) {
    super(`[sluice/handlers] the pending state of "${entity}" was not committed`);
  }
}

/**
 * Hosts command handlers inside one partition. For each message: load every recipient
 * (cache, then snapshot, then stream, or its persisted state), apply the commands in order,
 * then commit all resulting events, states, outgoing messages — or one rejection record —
 * together with the message's command ids in ONE unit of work. `execute` resolves after the
 * commit is durable: that is the acknowledgement. A redelivered message hits the engine's
 * command-id index and gets the original outcome.
 *
 * @example
 * const host = createHandlerHost({ partition, entities: [account] });
 * const outcome = await host.execute({ id: 'cmd-1', commands: [{ recipient: 'account-1', command: { type: 'Deposit', amount: 10 } }] });
 */
export function createHandlerHost(options: HandlerHostOptions): HandlerHost {
  return new HandlerHost(options);
}

export class HandlerHost {
  readonly partition: HostPartition;
  readonly stats: HandlerHostStats = { accepted: 0, rejected: 0, duplicates: 0, snapshotsWritten: 0, snapshotsUsed: 0, snapshotsIgnored: 0, retries: 0 };
  private readonly byCommandType = new Map<string, AnyEntityDefinition>();
  private readonly serializer: Serializer;
  /** Per entity: its cached state (LRU, cacheEntitiesMax), its queued commits not settled yet, who waits for them. */
  private readonly slots: EntitySlots;
  private readonly locks = new EntityLocks();
  private readonly pendingSnapshots = new Set<Promise<void>>();
  private closed = false;
  /** The commit messages decided in this turn join; submitted at the end of the turn or when full. */
  private building: MergedCommit | undefined;
  private readonly working = new WorkingSet();
  /** The changes of the message being enqueued (reused). */
  private readonly changes = new ChangeList();
  /** Command ids of {@link building}: a redelivery decided in the same turn must not join it. */
  private readonly buildingIds = new Set<string>();
  private readonly sends: AddressedCommand[] = [];
  private readonly publishes: Message[] = [];
  private readonly mergeMessagesMax: number;
  private readonly mergeEventsMax: number;
  private readonly mergeBytesMax: number;
  private readonly tracingInEvents: boolean;

  constructor(private readonly options: HandlerHostOptions) {
    this.partition = options.partition;
    this.mergeMessagesMax = positive('mergeMessagesMax', options.mergeMessagesMax ?? 256);
    this.mergeEventsMax = positive('mergeEventsMax', options.mergeEventsMax ?? 4096);
    this.mergeBytesMax = positive('mergeBytesMax', options.mergeBytesMax ?? 1024 * 1024);
    const tracingIn = options.tracingIn ?? 'commit';
    if (tracingIn !== 'commit' && tracingIn !== 'event') throw new RangeError(`[sluice/handlers] tracingIn must be 'commit' or 'event', got ${String(tracingIn)}`);
    this.tracingInEvents = tracingIn === 'event';
    this.serializer = options.serializer ?? jsonSerializer;
    this.slots = new EntitySlots(options.cacheEntitiesMax ?? 10_000);
    for (const definition of options.entities) {
      for (const type of definition.commandTypes) {
        const other = this.byCommandType.get(type);
        if (other !== undefined) {
          throw new InvalidMessageError(`[sluice/handlers] command type "${type}" is handled by both "${other.name}" and "${definition.name}": give each command type one handler`);
        }
        this.byCommandType.set(type, definition);
      }
    }
  }

  /** True while the host and its partition accept commands. */
  get isAvailable(): boolean {
    return !this.closed && this.partition.isWritable;
  }

  /** Entities in the memory cache. */
  get cachedEntities(): number {
    return this.slots.size;
  }

  /** Handles a message: one unit of work, all commands or none. Resolves with the (possibly original) outcome once durable. */
  execute(message: CommandMessage): Promise<CommandOutcome> {
    const problem = checkMessage(message);
    if (problem !== undefined) return Promise.reject(new InvalidMessageError(`[sluice/handlers] partition "${this.partition.name}": ${problem}`));
    if (this.closed) return Promise.reject(new PartitionUnavailableError(this.partition.name, message.id));
    const commandIds = commandIdsOf(message);
    return new Promise<CommandOutcome>((resolve, reject) => this.run({ message, commandIds, attempt: 0, alone: false, entities: NO_ENTITIES, rejection: undefined, written: undefined, resolve, reject }));
  }

  /**
   * Warms the memory cache in one sequential pass over the log: every stream whose id starts
   * with `streamPrefix` is folded with `definition` (an aggregate). Call it before the host
   * takes commands: loading an entity on demand reads its events one storage batch each,
   * while this reads the log once. Keeps at most `cacheEntitiesMax` entities (the most
   * recently written). Returns the number of entities loaded.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async preload(definition: AggregateDefinition<any, any, any>, streamPrefix: string): Promise<number> {
    const states = new Map<string, { state: unknown; version: number }>();
    for await (const frame of this.partition.read({})) {
      if (!frame.streamId.startsWith(streamPrefix)) continue;
      let entry = states.get(frame.streamId);
      if (entry === undefined) {
        entry = { state: definition.initialState(frame.streamId), version: 0 };
      } else {
        states.delete(frame.streamId);
      }
      states.set(frame.streamId, entry);
      entry.state = definition.evolve(entry.state, this.serializer.decode(frame.payload) as Message);
      entry.version = frame.streamVersion;
    }
    let loaded = 0;
    for (const [id, entry] of states) {
      // Only streams nothing was written to meanwhile (the fold is exact up to what it read).
      if ((await this.partition.streamVersion(id)) !== entry.version) continue;
      this.slots.store(this.slots.slotFor(id), entry.state, entry.version);
      loaded++;
    }
    return Math.min(loaded, this.slots.entriesMax);
  }

  /** Waits for snapshot writes in flight, then refuses new commands. The partition stays open (it is the caller's). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.pendingSnapshots);
  }

  /** Drops every cached entity (the next command reloads from the partition). */
  clearCache(): void {
    this.slots.clear();
  }

  /** Decides a message at once when every recipient is cached and unlocked (no await, no lock), else under the locks. */
  private run(member: Member): void {
    try {
      if (this.tryDecideNow(member)) return;
    } catch (error) {
      member.reject(error);
      return;
    }
    const commands = member.message.commands;
    const recipients = commands.length === 1 ? [commands[0].recipient] : [...new Set(commands.map((c) => c.recipient))];
    // The lock covers load, decide and enqueueing the commit; durability is awaited outside it,
    // so the next command for the same entity is decided (on the pending state) while this one is written.
    this.locks.run(recipients, () => this.decideLocked(member)).catch((error: unknown) => this.fail(member, error, false));
  }

  /**
   * The fast path: every recipient in the cache and nobody holding its lock, so loading is
   * synchronous and nothing can interleave. Returns false (nothing done) when the locked path
   * must take the message: a recipient to load, a lock held, an unknown command type, or a
   * refusal that must wait for pending commits.
   */
  private tryDecideNow(member: Member): boolean {
    const commands = member.message.commands;
    // Synchronous from here to the enqueue: one map serves every message.
    const working = this.working;
    working.clear();
    for (let i = 0; i < commands.length; i++) {
      const { recipient, command } = commands[i];
      const definition = this.byCommandType.get(command.type);
      if (definition === undefined) return false;
      const known = working.get(recipient);
      if (known !== undefined) {
        if (known.definition !== definition) return false;
        continue;
      }
      if (this.locks.isHeld(recipient)) return false;
      // Without refreshing its recency: an accepted message stores its new state (most recent) anyway.
      const slot = this.slots.get(recipient);
      if (slot === undefined || !slot.cached) return false;
      working.set(recipient, { definition, loadedVersion: slot.version, slot, generation: slot.generation, state: slot.state, events: NO_MESSAGES, changed: false });
    }
    const rejection = this.decideAll(member, working);
    if (rejection !== undefined) {
      // A refusal must rest on durable state: with a commit pending for a recipient, the locked path waits for it.
      for (let i = 0; i < working.length; i++) if ((working.entities[i] as Working).slot!.pending > 0) return false;
      this.enqueueRejection(member, rejection);
      return true;
    }
    this.enqueueAccepted(member, working);
    return true;
  }

  /** Under the recipients' locks: loads, decides and enqueues the commit. */
  private async decideLocked(member: Member): Promise<void> {
    const commands = member.message.commands;
    const working = new WorkingSet();
    // Load in command order up to the first command that cannot be decided (decideAll refuses it).
    for (let i = 0; i < commands.length; i++) {
      const { recipient, command } = commands[i];
      const definition = this.byCommandType.get(command.type);
      if (definition === undefined) break;
      const known = working.get(recipient);
      if (known !== undefined) {
        if (known.definition !== definition) break;
        continue;
      }
      const loaded = await this.load(definition, recipient);
      working.set(recipient, { definition, loadedVersion: loaded.version, slot: loaded.slot, generation: loaded.generation, state: loaded.state, events: NO_MESSAGES, changed: false });
    }
    const rejection = this.decideAll(member, working);
    if (rejection === undefined) {
      this.enqueueAccepted(member, working);
      return;
    }
    // A refusal must rest on durable state: wait for this entity's pending commits, and decide
    // again if one of them did not apply (its state was never real).
    for (let i = 0; i < working.length; i++) {
      const recipient = working.ids[i];
      const entity = working.entities[i] as Working;
      const settled = this.whenSettled(recipient);
      if (settled !== undefined) await settled;
      const slot = entity.slot;
      if (slot !== undefined && (!slot.cached || slot.generation !== entity.generation)) throw new StaleStateError(recipient);
    }
    this.enqueueRejection(member, rejection);
  }

  /** Applies the message's commands in order to the working states; returns the refusal, if any. Fills {@link sends} and {@link publishes}. */
  private decideAll(member: Member, working: WorkingSet): string | undefined {
    const { message, commandIds } = member;
    this.sends.length = 0;
    this.publishes.length = 0;
    for (let i = 0; i < message.commands.length; i++) {
      const { recipient, command } = message.commands[i];
      const definition = this.byCommandType.get(command.type);
      if (definition === undefined) {
        return `unknown command type "${command.type}" (partition "${this.partition.name}" handles ${[...this.byCommandType.keys()].join(', ') || 'none'})`;
      }
      const entity = working.get(recipient);
      if (entity === undefined || entity.definition !== definition) {
        return `recipient "${recipient}" is addressed as both "${entity?.definition.name ?? '?'}" and "${definition.name}"`;
      }
      const context = { recipient, commandId: commandIds[i], version: entity.loadedVersion + entity.events.length };
      let decision: unknown;
      try {
        decision = definition.kind === 'aggregate' ? definition.decide(entity.state, command, context) : definition.handle(entity.state, command, context);
      } catch (error) {
        if (this.options.onHandlerError === 'throw') throw error;
        return `handler "${definition.name}" threw on ${command.type}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
      }
      if (isRejection(decision)) return decision.rejected;
      if (definition.kind === 'aggregate') {
        const events = decision as readonly Message[];
        for (const event of events) entity.state = definition.evolve(entity.state, event);
        // Read (encoded) before this turn ends, never written to: the handler's array can be kept as it is.
        entity.events = entity.events.length === 0 ? events : entity.events.concat(events);
      } else {
        const change = decision as StateChange<unknown>;
        entity.state = change.state;
        entity.changed = true;
        if (change.send !== undefined) for (const send of change.send) this.sends.push(send);
        if (change.publish !== undefined) for (const publish of change.publish) this.publishes.push(publish);
      }
    }
    return undefined;
  }

  /**
   * Queues a refusal: one `$CommandRejected` record naming the message, in the commit being
   * built like any other message (a redelivery finds its record there by message id).
   */
  private enqueueRejection(member: Member, reason: string): void {
    member.rejection = reason;
    const { message } = member;
    const record: RejectionRecord = { messageId: message.id, reason, commands: message.commands, causationId: message.causationId };
    const rejected: EventData = { type: REJECTED_EVENT, data: this.serializer.encode(record) };
    const commit = this.open(member);
    const { correlationId, causationId } = message;
    if (this.tracingInEvents && (correlationId !== undefined || causationId !== undefined)) {
      member.written = [rejected];
      commit.bytes += 40 + (correlationId?.length ?? 0) + (causationId?.length ?? 0);
    }
    this.addEvents(commit, undefined, REJECTED_STREAM, undefined, [rejected]);
    if (commit !== this.building || commit.events >= this.mergeEventsMax || commit.bytes >= this.mergeBytesMax) this.submit(commit);
  }

  /**
   * Queues an accepted message's changes into the commit being built (merged with the other
   * messages decided in this turn), and makes its states the entities' pending cache entries:
   * later commands for them are decided on these states.
   */
  private enqueueAccepted(member: Member, working: WorkingSet): void {
    // Everything is encoded before the message joins a commit: a serializer that throws leaves nothing of it queued.
    // The changes go through reused arrays (this is synchronous): no array or object per change and message.
    const changes = this.changes;
    changes.clear();
    for (let w = 0; w < working.length; w++) {
      const recipient = working.ids[w];
      const entity = working.entities[w] as Working;
      if (entity.definition.kind === 'aggregate') {
        const count = entity.events.length;
        if (count === 0) continue;
        const events: EventData[] = new Array(count);
        for (let i = 0; i < count; i++) events[i] = this.event(entity.events[i]);
        changes.add(recipient, entity.loadedVersion, events, entity);
      } else if (entity.changed) {
        changes.add(recipient, entity.loadedVersion, [{ type: STATE_EVENT, data: this.serializer.encode(entity.state) }], entity);
      }
    }
    // The entities' changes come first: their stream ids are the message's pending entities.
    const entityCount = changes.length;
    if (this.sends.length > 0 || this.publishes.length > 0) {
      const events: EventData[] = [];
      for (const send of this.sends) events.push({ type: SEND_EVENT, data: this.serializer.encode(send) });
      for (const publish of this.publishes) events.push({ type: PUBLISH_EVENT, data: this.serializer.encode(publish) });
      changes.add(OUTBOX_STREAM, undefined, events, undefined);
    } else if (changes.length === 0) {
      // Accepted without any effect still records the command ids, so a redelivery is recognized.
      changes.add(NOOP_STREAM, undefined, [{ type: NOOP_EVENT, data: this.serializer.encode({ messageId: member.message.id }) }], undefined);
    }
    const commit = this.open(member);
    const { correlationId, causationId } = member.message;
    if (this.tracingInEvents && (correlationId !== undefined || causationId !== undefined)) {
      // Its own events (addEvents appends later messages' events to a change's array): only a
      // message with ids needs them, to give them its ids if the commit turns out mixed.
      const written: EventData[] = [];
      for (let c = 0; c < changes.length; c++) for (const event of changes.events[c]) written.push(event);
      member.written = written;
      // That metadata counts toward mergeBytesMax.
      commit.bytes += written.length * (40 + (correlationId?.length ?? 0) + (causationId?.length ?? 0));
    }
    const pendingSlots: EntitySlot[] | undefined = entityCount > 0 ? new Array(entityCount) : undefined;
    for (let c = 0; c < changes.length; c++) {
      const streamId = changes.streamIds[c];
      const events = changes.events[c];
      const entity = changes.entities[c];
      if (entity === undefined) {
        this.addEvents(commit, undefined, streamId, changes.expectedVersions[c], events);
        continue;
      }
      // The slot it was decided on, unless that one was released meanwhile (the locked path awaits loads).
      const slot = entity.slot !== undefined && entity.slot.live ? entity.slot : this.slots.slotFor(streamId);
      this.addEvents(commit, slot, streamId, changes.expectedVersions[c], events);
      const version = entity.loadedVersion + events.length;
      // Snapshot policy: this message's events cross a multiple of snapshotEvery.
      const every = entity.definition.kind === 'aggregate' ? (entity.definition.snapshotEvery ?? 0) : 0;
      if (every > 0 && Math.floor(version / every) > Math.floor(entity.loadedVersion / every)) (commit.snapshots ??= []).push({ streamId, version, state: entity.state });
      // The commit is queued in order: later commands for this entity decide on the state it will make.
      this.slots.store(slot, entity.state, version);
      slot.pending++;
      (pendingSlots as EntitySlot[])[c] = slot;
    }
    if (pendingSlots !== undefined) member.entities = pendingSlots;
    changes.clear();
    // A commit of its own, or a full one, goes now (the next message starts a new commit).
    if (commit !== this.building || commit.events >= this.mergeEventsMax || commit.bytes >= this.mergeBytesMax) this.submit(commit);
  }

  /**
   * The commit a message joins: the one being built when the message can share it (same
   * correlation and causation ids, no command id in common, within the merge limits), else a
   * new one (the one being built is submitted first: commits keep the order of decisions).
   */
  private open(member: Member): MergedCommit {
    const { message, commandIds } = member;
    let idBytes = 0;
    for (const id of commandIds) idBytes += id.length;
    const building = this.building;
    if (building !== undefined) {
      const joins =
        !member.alone &&
        building.members.length < this.mergeMessagesMax &&
        building.bytes + idBytes <= this.mergeBytesMax &&
        (this.tracingInEvents || (building.correlationId === message.correlationId && building.causationId === message.causationId)) &&
        !this.sharesId(commandIds);
      if (joins) {
        if (building.correlationId !== message.correlationId || building.causationId !== message.causationId) building.mixed = true;
        building.members.push(member);
        for (const id of commandIds) {
          building.commandIds.push(id);
          this.buildingIds.add(id);
        }
        building.bytes += idBytes;
        return building;
      }
      this.submit(building);
    }
    const commit: MergedCommit = {
      changes: [],
      byStream: undefined,
      commandIds: [...commandIds],
      members: [member],
      correlationId: message.correlationId,
      causationId: message.causationId,
      mixed: false,
      events: 0,
      bytes: idBytes,
      snapshots: undefined,
      submitted: false,
    };
    // A commit of its own is submitted by the caller once its events are in; others stay open for this turn.
    if (member.alone) return commit;
    this.building = commit;
    for (const id of commandIds) this.buildingIds.add(id);
    queueMicrotask(() => this.submit(commit));
    return commit;
  }

  /**
   * Adds events to a stream's change in the commit (one change per stream: a stream's events
   * stay contiguous). An entity's change is found through its slot, another stream's through
   * the commit's map.
   */
  private addEvents(commit: MergedCommit, slot: EntitySlot | undefined, streamId: string, expectedVersion: number | undefined, events: EventData[]): void {
    const change = slot !== undefined ? (slot.changeOf === commit ? slot.change : undefined) : commit.byStream?.get(streamId);
    if (change === undefined) {
      const added = { streamId, expectedVersion, events };
      commit.changes.push(added);
      if (slot !== undefined) {
        slot.changeOf = commit;
        slot.change = added;
      } else {
        (commit.byStream ??= new Map()).set(streamId, added);
      }
    } else {
      for (const event of events) change.events.push(event);
    }
    commit.events += events.length;
    for (const event of events) commit.bytes += event.data.length;
  }

  private sharesId(commandIds: readonly string[]): boolean {
    for (const id of commandIds) if (this.buildingIds.has(id)) return true;
    return false;
  }

  /** Hands a commit to the partition; its members settle when it does. */
  private submit(commit: MergedCommit): void {
    if (commit.submitted) return;
    commit.submitted = true;
    if (this.building === commit) {
      this.building = undefined;
      this.buildingIds.clear();
    }
    let written: Promise<CommitResult>;
    try {
      if (commit.mixed) this.traceEvents(commit);
      written = Promise.resolve(
        commit.mixed
          ? this.partition.commit({ changes: commit.changes, commandIds: commit.commandIds })
          : this.partition.commit({ changes: commit.changes, commandIds: commit.commandIds, correlationId: commit.correlationId, causationId: commit.causationId }),
      );
    } catch (error) {
      written = Promise.reject(error);
    }
    written.then(
      (result) => this.committed(commit, result),
      (error: unknown) => {
        const merged = commit.members.length > 1;
        for (const member of commit.members) {
          this.settle(commit, member.entities, true);
          this.fail(member, error, merged);
        }
      },
    );
  }

  /** A commit whose messages' tracing ids differ: every event of a message that has them carries them as metadata. */
  private traceEvents(commit: MergedCommit): void {
    for (const member of commit.members) {
      const { correlationId, causationId } = member.message;
      const written = member.written;
      if (written === undefined) continue; // no ids (or tracingIn 'commit')
      const metadata = this.serializer.encode(correlationId === undefined ? { causationId } : causationId === undefined ? { correlationId } : { correlationId, causationId });
      for (const event of written) (event as { metadata?: Uint8Array }).metadata = metadata;
    }
  }

  /** A commit is durable (or a duplicate): every member gets its outcome, and snapshots are taken where the policy says. */
  private committed(commit: MergedCommit, result: CommitResult): void {
    const partition = this.partition.name;
    if (result.duplicate) {
      // A duplicate wrote nothing: the pending states are not real.
      for (const member of commit.members) this.settle(commit, member.entities, true);
      const members = commit.members;
      this.originals(members, result).then(
        (outcomes) => {
          for (let i = 0; i < members.length; i++) this.acknowledge(members[i], outcomes[i]);
        },
        (error: unknown) => {
          for (const member of members) member.reject(error);
        },
      );
      return;
    }
    for (const member of commit.members) {
      this.settle(commit, member.entities, false);
      const reason = member.rejection;
      if (reason === undefined) this.stats.accepted++;
      else this.stats.rejected++;
      this.acknowledge(
        member,
        reason === undefined
          ? { messageId: member.message.id, partition, status: 'accepted', duplicate: false, firstSeq: result.firstSeq, lastSeq: result.lastSeq }
          : { messageId: member.message.id, partition, status: 'rejected', reason, duplicate: false, firstSeq: result.firstSeq, lastSeq: result.lastSeq },
      );
    }
    if (commit.snapshots !== undefined) this.snapshotAfter(commit.changes, commit.snapshots, result.firstSeq);
  }

  /**
   * Writes the snapshots a durable commit asked for: the latest per stream, all in one unit of
   * work (or a few, within the merge limits) instead of one append each. The seq of a stream's
   * event at a version is its change's first seq plus the distance (a stream's events are contiguous).
   */
  private snapshotAfter(changes: MergedCommit['changes'], snapshots: NonNullable<MergedCommit['snapshots']>, firstSeq: number): void {
    const latest = new Map<string, (typeof snapshots)[number]>();
    for (const snapshot of snapshots) latest.set(snapshot.streamId, snapshot);
    /** Per stream with a snapshot: seq of its event at version v = base + v. */
    const base = new Map<string, number>();
    let seq = firstSeq;
    for (const change of changes) {
      if (latest.has(change.streamId)) base.set(change.streamId, seq - (change.expectedVersion as number) - 1);
      seq += change.events.length;
    }
    let unit: StreamChange[] = [];
    let bytes = 0;
    for (const [id, snapshot] of latest) {
      let data: Uint8Array;
      try {
        data = this.serializer.encode({ version: snapshot.version, seq: (base.get(id) as number) + snapshot.version, state: snapshot.state });
      } catch (error) {
        this.options.onWarning?.(`[sluice/handlers] snapshot of "${id}" at version ${snapshot.version} not written (the stream is still complete): ${String(error)}`);
        continue;
      }
      if (unit.length > 0 && (unit.length >= this.mergeEventsMax || bytes + data.length > this.mergeBytesMax)) {
        this.writeSnapshots(unit);
        unit = [];
        bytes = 0;
      }
      unit.push({ streamId: snapshotStreamId(id), events: [{ type: SNAPSHOT_EVENT, data }] });
      bytes += data.length;
    }
    if (unit.length > 0) this.writeSnapshots(unit);
  }

  /** The acknowledgement: `afterCommit`, then `execute` resolves. */
  private acknowledge(member: Member, outcome: CommandOutcome): void {
    try {
      this.options.afterCommit?.(outcome);
    } catch (error) {
      member.reject(error);
      return;
    }
    member.resolve(outcome);
  }

  /**
   * A message's decision or commit failed. Decided on a pending state whose commit turned out
   * a duplicate or failed, or another writer on the partition: reload and decide again. A
   * merged commit the engine refused as a whole (command ids applied before by some of its
   * messages, or too large): each message is committed on its own.
   */
  private fail(member: Member, error: unknown, merged: boolean): void {
    const code = (error as { code?: unknown } | null)?.code;
    const alone = merged && (code === 'SLUICE_COMMAND_ID_CONFLICT' || code === 'SLUICE_INVALID_REQUEST');
    if (!alone && (!(error instanceof StaleStateError || isWrongExpectedVersionError(error)) || member.attempt >= RETRIES_MAX)) {
      member.reject(error);
      return;
    }
    this.stats.retries++;
    for (const command of member.message.commands) this.evict(command.recipient);
    this.run({ ...member, attempt: member.attempt + 1, alone: alone || member.alone, entities: NO_ENTITIES, rejection: undefined, written: undefined });
  }

  /** A commit settled: its pending states are dropped if it did not apply, then whoever waited for the entities is woken. */
  private settle(commit: MergedCommit, entities: readonly EntitySlot[], failed: boolean): void {
    for (const slot of entities) {
      // Nothing joins a submitted commit: let go of it.
      if (slot.changeOf === commit) {
        slot.changeOf = undefined;
        slot.change = undefined;
      }
      if (failed) this.slots.drop(slot);
      if (slot.pending <= 0) throw new Error(`[sluice/handlers] bug: "${slot.id}" settled a commit it had not queued`);
      if (--slot.pending > 0) continue;
      const waiters = slot.waiters;
      if (waiters !== undefined) {
        slot.waiters = undefined;
        for (const wake of waiters) wake();
      }
      this.slots.release(slot);
    }
  }

  /** Resolves once the entity's queued commits have settled; undefined when none is queued. */
  private whenSettled(id: string): Promise<void> | undefined {
    const slot = this.slots.get(id);
    if (slot === undefined || slot.pending === 0) return undefined;
    const list = (slot.waiters ??= []);
    return new Promise((resolve) => list.push(resolve));
  }

  /** Drops an entity's cached state (it will be reloaded from the partition once its pending commits settle). */
  private evict(id: string): void {
    const slot = this.slots.get(id);
    if (slot !== undefined) this.slots.drop(slot);
  }

  private event(event: Message): EventData {
    return { type: event.type, data: this.serializer.encode(event) };
  }

  /** The outcome the original delivery of a duplicate got: read from the commit it made. */
  /**
   * The outcomes the original deliveries of duplicates got, read from the commit they made
   * (one read for all of them): a message refused there has a `$CommandRejected` record with
   * its id and its number of commands (so the same command ids); any other was accepted.
   */
  private async originals(members: readonly Member[], result: CommitResult): Promise<CommandOutcome[]> {
    this.stats.duplicates += members.length;
    const refusals: RejectionRecord[] = [];
    for await (const frame of this.partition.read({ fromSeq: result.firstSeq, toSeq: result.lastSeq })) {
      if (frame.streamId === REJECTED_STREAM && frame.eventType === REJECTED_EVENT) refusals.push(this.serializer.decode(frame.payload) as RejectionRecord);
    }
    const partition = this.partition.name;
    return members.map(({ message }): CommandOutcome => {
      const base = { messageId: message.id, partition, duplicate: true, firstSeq: result.firstSeq, lastSeq: result.lastSeq };
      const refusal = refusals.find((record) => record.messageId === message.id && record.commands?.length === message.commands.length);
      return refusal === undefined ? { ...base, status: 'accepted' } : { ...base, status: 'rejected', reason: refusal.reason };
    });
  }

  /** The entity's state: cached (with its slot, refreshed as most recently used), else durable from the partition. */
  private async load(definition: AnyEntityDefinition, id: string): Promise<{ state: unknown; version: number; slot: EntitySlot | undefined; generation: number }> {
    const slot = this.slots.get(id);
    if (slot !== undefined && slot.cached) {
      this.slots.touch(slot);
      return { state: slot.state, version: slot.version, slot, generation: slot.generation };
    }
    // The partition serves only durable events: let this entity's pending commits settle first.
    const settled = this.whenSettled(id);
    if (settled !== undefined) await settled;
    const durable = await this.loadDurable(definition, id);
    return { state: durable.state, version: durable.version, slot: undefined, generation: 0 };
  }

  private async loadDurable(definition: AnyEntityDefinition, id: string): Promise<{ state: unknown; version: number }> {
    const version = await this.partition.streamVersion(id);
    let state = definition.initialState(id);
    if (version === 0) return { state, version };
    if (definition.kind !== 'aggregate') {
      for await (const frame of this.partition.readStream(id, { fromVersion: version, maxCount: 1 })) {
        state = this.serializer.decode(frame.payload);
      }
      return { state, version };
    }
    let fromVersion = 1;
    const snapshot = await this.loadSnapshot(id, version);
    if (snapshot !== undefined) {
      state = snapshot.state;
      fromVersion = snapshot.version + 1;
    }
    let seen = fromVersion - 1;
    for await (const frame of this.partition.readStream(id, { fromVersion })) {
      state = definition.evolve(state, this.serializer.decode(frame.payload));
      seen = frame.streamVersion;
    }
    return { state, version: seen };
  }

  /** The latest snapshot, only if the stream confirms it: the event at its version has its seq. */
  private async loadSnapshot(id: string, streamVersion: number): Promise<{ state: unknown; version: number } | undefined> {
    const streamId = snapshotStreamId(id);
    const snapshotVersion = await this.partition.streamVersion(streamId);
    if (snapshotVersion === 0) return undefined;
    let snapshot: { version: number; seq: number; state: unknown } | undefined;
    try {
      for await (const frame of this.partition.readStream(streamId, { fromVersion: snapshotVersion, maxCount: 1 })) {
        snapshot = this.serializer.decode(frame.payload) as typeof snapshot;
      }
    } catch (error) {
      this.ignoreSnapshot(id, `unreadable: ${String(error)}`);
      return undefined;
    }
    if (snapshot === undefined || !Number.isSafeInteger(snapshot.version) || snapshot.version < 1 || snapshot.version > streamVersion) {
      this.ignoreSnapshot(id, `version ${String(snapshot?.version)} is not within the stream's 1..${streamVersion}`);
      return undefined;
    }
    for await (const frame of this.partition.readStream(id, { fromVersion: snapshot.version, maxCount: 1 })) {
      if (frame.seq === snapshot.seq && frame.streamVersion === snapshot.version) {
        this.stats.snapshotsUsed++;
        return { state: snapshot.state, version: snapshot.version };
      }
      this.ignoreSnapshot(id, `it says version ${snapshot.version} is seq ${snapshot.seq}, the stream says seq ${frame.seq}`);
      return undefined;
    }
    this.ignoreSnapshot(id, `version ${snapshot.version} not found in the stream`);
    return undefined;
  }

  private ignoreSnapshot(id: string, why: string): void {
    this.stats.snapshotsIgnored++;
    this.options.onWarning?.(`[sluice/handlers] snapshot of "${id}" ignored, replaying the stream instead: ${why}`);
  }

  /** One unit of work of snapshots; a failure is a warning (the streams are still complete). */
  private writeSnapshots(changes: StreamChange[]): void {
    let committed: Promise<CommitResult>;
    try {
      committed = Promise.resolve(this.partition.commit({ changes }));
    } catch (error) {
      committed = Promise.reject(error);
    }
    const write = committed
      .then(
        () => {
          this.stats.snapshotsWritten += changes.length;
        },
        (error: unknown) =>
          this.options.onWarning?.(
            `[sluice/handlers] ${changes.length === 1 ? `snapshot ${changes[0].streamId}` : `${changes.length} snapshots (${changes[0].streamId}, …)`} not written (the streams are still complete): ${String(error)}`,
          ),
      )
      .finally(() => this.pendingSnapshots.delete(write));
    this.pendingSnapshots.add(write);
  }
}

/**
 * The command ids a message commits with: its id for one command, `<id>/<index>` for each of
 * several, where `<id>` is the message id with `%` written `%25` and `/` written `%2F`. An
 * escaped id holds no `/`, so a one-command id (no `/`) never equals a several-command id
 * (one `/`, before the index), and two messages never share an id: unescaped, message `a/0`
 * of one command had the id of message `a`'s first command. An id without `%` or `/` (every
 * id the saga host, the outbox dispatcher and the bank make) is its own escape: commits
 * written before this escape are recognized on redelivery as before.
 */
export function commandIdsOf(message: CommandMessage): string[] {
  const id = escapeMessageId(message.id);
  if (message.commands.length === 1) return [id];
  return message.commands.map((_, i) => `${id}/${i}`);
}

const NEEDS_ESCAPE = /[%/]/;

/** The message id as a command id's prefix: `%` → `%25`, `/` → `%2F` (reversible: `decodeURIComponent`). */
function escapeMessageId(id: string): string {
  if (!NEEDS_ESCAPE.test(id)) return id;
  return id.replace(/%/g, '%25').replace(/\//g, '%2F');
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`[sluice/handlers] ${name} must be a positive integer, got ${value}`);
  return value;
}

function checkMessage(message: CommandMessage): string | undefined {
  if (typeof message?.id !== 'string' || message.id.length === 0) return 'a message needs a non-empty string id';
  if (!Array.isArray(message.commands) || message.commands.length === 0) return `message ${message.id} has no commands`;
  for (const c of message.commands) {
    if (typeof c?.recipient !== 'string' || c.recipient.length === 0) return `message ${message.id}: every command needs a recipient (entity id)`;
    if (c.recipient.startsWith('$')) return `message ${message.id}: recipient "${c.recipient}" is reserved ($ streams belong to the infrastructure)`;
    if (typeof c.command?.type !== 'string') return `message ${message.id}: every command needs a string type`;
  }
  return undefined;
}
