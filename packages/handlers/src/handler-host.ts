import { isWrongExpectedVersionError, type CommitResult, type Partition, type StreamChange, type EventData } from '@sluice/store';
import type { AddressedCommand, CommandMessage } from '@sluice/subscriptions';
import { EntityCache, type CachedEntity } from './entity-cache.js';
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
  private readonly cache: EntityCache;
  private readonly locks = new EntityLocks();
  private readonly pendingSnapshots = new Set<Promise<void>>();
  /** Per entity: commits queued and not settled yet, and who waits for them to settle. */
  private readonly pending = new Map<string, { count: number; waiters: Array<() => void> | undefined }>();
  private closed = false;

  constructor(private readonly options: HandlerHostOptions) {
    this.partition = options.partition;
    this.serializer = options.serializer ?? jsonSerializer;
    this.cache = new EntityCache(options.cacheEntitiesMax ?? 10_000);
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
    return this.cache.size;
  }

  /** Handles a message: one unit of work, all commands or none. Resolves with the (possibly original) outcome once durable. */
  async execute(message: CommandMessage): Promise<CommandOutcome> {
    const problem = checkMessage(message);
    if (problem !== undefined) throw new InvalidMessageError(`[sluice/handlers] partition "${this.partition.name}": ${problem}`);
    if (this.closed) throw new PartitionUnavailableError(this.partition.name, message.id);
    const recipients = message.commands.length === 1 ? [message.commands[0].recipient] : [...new Set(message.commands.map((c) => c.recipient))];
    const commandIds = commandIdsOf(message);
    for (let attempt = 0; ; attempt++) {
      try {
        // The lock covers load, decide and enqueueing the commit; durability is awaited outside it,
        // so the next command for the same entity is decided (on the pending state) while this one is written.
        const durable = await this.locks.run(recipients, () => this.attempt(message, commandIds));
        const outcome = await durable();
        this.options.afterCommit?.(outcome);
        return outcome;
      } catch (error) {
        // A command decided on a pending state whose commit turned out a duplicate or failed, or
        // another writer on the partition: reload and decide again.
        if (!(error instanceof StaleStateError || isWrongExpectedVersionError(error)) || attempt >= RETRIES_MAX) throw error;
        this.stats.retries++;
        for (const id of recipients) this.evict(id);
      }
    }
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
    const states = new Map<string, CachedEntity>();
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
      this.cache.set(id, entry);
      loaded++;
    }
    return Math.min(loaded, this.cache.entriesMax);
  }

  /** Waits for snapshot writes in flight, then refuses new commands. The partition stays open (it is the caller's). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.pendingSnapshots);
  }

  /** Drops every cached entity (the next command reloads from the partition). */
  clearCache(): void {
    this.cache.clear();
  }

  /** Under the recipients' locks: loads, decides and enqueues the commit; returns how to await its outcome. */
  private async attempt(message: CommandMessage, commandIds: readonly string[]): Promise<() => Promise<CommandOutcome>> {
    interface Working {
      readonly definition: AnyEntityDefinition;
      readonly loadedVersion: number;
      /** The cache entry it was loaded from (undefined: loaded from the partition, durable). */
      readonly cached: CachedEntity | undefined;
      state: unknown;
      readonly events: Message[];
      changed: boolean;
    }
    const working = new Map<string, Working>();
    const sends: AddressedCommand[] = [];
    const publishes: Message[] = [];
    let rejection: string | undefined;

    for (let i = 0; i < message.commands.length && rejection === undefined; i++) {
      const { recipient, command } = message.commands[i];
      const definition = this.byCommandType.get(command.type);
      if (definition === undefined) {
        rejection = `unknown command type "${command.type}" (partition "${this.partition.name}" handles ${[...this.byCommandType.keys()].join(', ') || 'none'})`;
        break;
      }
      let entity = working.get(recipient);
      if (entity === undefined) {
        const loaded = await this.load(definition, recipient);
        entity = { definition, loadedVersion: loaded.entry.version, cached: loaded.cached ? loaded.entry : undefined, state: loaded.entry.state, events: [], changed: false };
        working.set(recipient, entity);
      } else if (entity.definition !== definition) {
        rejection = `recipient "${recipient}" is addressed as both "${entity.definition.name}" and "${definition.name}"`;
        break;
      }
      const context = { recipient, commandId: commandIds[i], version: entity.loadedVersion + entity.events.length };
      let decision: unknown;
      try {
        decision = definition.kind === 'aggregate' ? definition.decide(entity.state, command, context) : definition.handle(entity.state, command, context);
      } catch (error) {
        if (this.options.onHandlerError === 'throw') throw error;
        rejection = `handler "${definition.name}" threw on ${command.type}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
        break;
      }
      if (isRejection(decision)) {
        rejection = decision.rejected;
        break;
      }
      if (definition.kind === 'aggregate') {
        const events = decision as readonly Message[];
        for (const event of events) {
          entity.state = definition.evolve(entity.state, event);
          entity.events.push(event);
        }
      } else {
        const change = decision as StateChange<unknown>;
        entity.state = change.state;
        entity.changed = true;
        if (change.send !== undefined) sends.push(...change.send);
        if (change.publish !== undefined) publishes.push(...change.publish);
      }
    }

    const base = { messageId: message.id, partition: this.partition.name };
    if (rejection !== undefined) {
      // A refusal must rest on durable state: wait for this entity's pending commits, and decide
      // again if one of them did not apply (its state was never real).
      for (const [recipient, entity] of working) {
        const settled = this.whenSettled(recipient);
        if (settled !== undefined) await settled;
        if (entity.cached !== undefined && this.cache.peek(recipient) !== entity.cached) throw new StaleStateError(recipient);
      }
      const reason = rejection;
      const record: RejectionRecord = { messageId: message.id, reason, commands: message.commands, causationId: message.causationId };
      const commit = this.partition.commit({
        changes: [{ streamId: REJECTED_STREAM, events: [{ type: REJECTED_EVENT, data: this.serializer.encode(record) }] }],
        commandIds,
        correlationId: message.correlationId,
        causationId: message.causationId,
      });
      return async () => {
        const result = await commit;
        if (result.duplicate) return this.original(message.id, result);
        this.stats.rejected++;
        return { ...base, status: 'rejected', reason, duplicate: false, firstSeq: result.firstSeq, lastSeq: result.lastSeq };
      };
    }

    const changes: StreamChange[] = [];
    for (const [recipient, entity] of working) {
      if (entity.definition.kind === 'aggregate') {
        if (entity.events.length === 0) continue;
        changes.push({ streamId: recipient, expectedVersion: entity.loadedVersion, events: entity.events.map((e) => this.event(e)) });
      } else if (entity.changed) {
        changes.push({ streamId: recipient, expectedVersion: entity.loadedVersion, events: [{ type: STATE_EVENT, data: this.serializer.encode(entity.state) }] });
      }
    }
    if (sends.length > 0 || publishes.length > 0) {
      const events: EventData[] = [];
      for (const send of sends) events.push({ type: SEND_EVENT, data: this.serializer.encode(send) });
      for (const publish of publishes) events.push({ type: PUBLISH_EVENT, data: this.serializer.encode(publish) });
      changes.push({ streamId: OUTBOX_STREAM, events });
    }
    // Accepted without any effect still records the command ids, so a redelivery is recognized.
    if (changes.length === 0) changes.push({ streamId: NOOP_STREAM, events: [{ type: NOOP_EVENT, data: this.serializer.encode({ messageId: message.id }) }] });
    const commit = this.partition.commit({ changes, commandIds, correlationId: message.correlationId, causationId: message.causationId });
    // The commit is queued in order: later commands for these entities decide on the states it will make.
    const entries: Array<[string, CachedEntity]> = [];
    for (const change of changes) {
      const entity = working.get(change.streamId);
      if (entity === undefined) continue;
      const entry: CachedEntity = { state: entity.state, version: entity.loadedVersion + change.events.length };
      this.cache.set(change.streamId, entry);
      entries.push([change.streamId, entry]);
    }
    for (const [id] of entries) this.markPending(id);
    return async () => {
      let result: CommitResult;
      try {
        result = await commit;
      } catch (error) {
        this.settle(entries, true);
        throw error;
      }
      // A duplicate wrote nothing: the pending states are not real.
      this.settle(entries, result.duplicate);
      if (result.duplicate) return this.original(message.id, result);
      this.stats.accepted++;
      let seq = result.firstSeq;
      for (const change of changes) {
        seq += change.events.length;
        const entity = working.get(change.streamId);
        if (entity === undefined || entity.definition.kind !== 'aggregate') continue;
        const version = entity.loadedVersion + change.events.length;
        const every = entity.definition.snapshotEvery ?? 0;
        if (every > 0 && Math.floor(version / every) > Math.floor(entity.loadedVersion / every)) {
          this.snapshot(change.streamId, version, seq - 1, entity.state);
        }
      }
      return { ...base, status: 'accepted', duplicate: false, firstSeq: result.firstSeq, lastSeq: result.lastSeq };
    };
  }

  private markPending(id: string): void {
    const pending = this.pending.get(id);
    if (pending === undefined) this.pending.set(id, { count: 1, waiters: undefined });
    else pending.count++;
  }

  /** A commit settled: its pending states are dropped if it did not apply, then whoever waited for the entities is woken. */
  private settle(entries: ReadonlyArray<readonly [string, CachedEntity]>, failed: boolean): void {
    for (const [id] of entries) {
      if (failed) this.evict(id);
      const pending = this.pending.get(id);
      if (pending === undefined || --pending.count > 0) continue;
      this.pending.delete(id);
      if (pending.waiters !== undefined) for (const wake of pending.waiters) wake();
    }
  }

  /** Resolves once the entity's queued commits have settled; undefined when none is queued. */
  private whenSettled(id: string): Promise<void> | undefined {
    const pending = this.pending.get(id);
    if (pending === undefined) return undefined;
    return new Promise((resolve) => (pending.waiters ??= []).push(resolve));
  }

  /** Drops an entity's cached state (it will be reloaded from the partition once its pending commits settle). */
  private evict(id: string): void {
    this.cache.delete(id);
  }

  private event(event: Message): EventData {
    return { type: event.type, data: this.serializer.encode(event) };
  }

  /** The outcome the original delivery of a duplicate got: read from the commit it made. */
  private async original(messageId: string, result: CommitResult): Promise<CommandOutcome> {
    this.stats.duplicates++;
    const base = { messageId, partition: this.partition.name, duplicate: true, firstSeq: result.firstSeq, lastSeq: result.lastSeq };
    for await (const frame of this.partition.read({ fromSeq: result.firstSeq, toSeq: result.firstSeq })) {
      if (frame.streamId === REJECTED_STREAM && frame.eventType === REJECTED_EVENT) {
        const record = this.serializer.decode(frame.payload) as RejectionRecord;
        return { ...base, status: 'rejected', reason: record.reason };
      }
    }
    return { ...base, status: 'accepted' };
  }

  private async load(definition: AnyEntityDefinition, id: string): Promise<{ entry: CachedEntity; cached: boolean }> {
    const cached = this.cache.get(id);
    if (cached !== undefined) return { entry: cached, cached: true };
    // The partition serves only durable events: let this entity's pending commits settle first.
    const settled = this.whenSettled(id);
    if (settled !== undefined) await settled;
    return { entry: await this.loadDurable(definition, id), cached: false };
  }

  private async loadDurable(definition: AnyEntityDefinition, id: string): Promise<CachedEntity> {
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

  private snapshot(id: string, version: number, seq: number, state: unknown): void {
    const write = this.partition
      .append({ streamId: snapshotStreamId(id), events: [{ type: SNAPSHOT_EVENT, data: this.serializer.encode({ version, seq, state }) }] })
      .then(
        () => {
          this.stats.snapshotsWritten++;
        },
        (error: unknown) => this.options.onWarning?.(`[sluice/handlers] snapshot of "${id}" at version ${version} not written (the stream is still complete): ${String(error)}`),
      )
      .finally(() => this.pendingSnapshots.delete(write));
    this.pendingSnapshots.add(write);
  }
}

/** The command ids a message commits with: its id for one command, `<id>/<index>` for each of several. */
export function commandIdsOf(message: CommandMessage): string[] {
  if (message.commands.length === 1) return [message.id];
  return message.commands.map((_, i) => `${message.id}/${i}`);
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
