import type { EventData } from '@sluice/store';

/**
 * What the host knows of one entity, in ONE object found by ONE map look-up per command: its
 * cached state (the memory cache), the commits queued for it and not settled yet, and who
 * waits for them. Before, a command cost about eight look-ups in four maps keyed by the entity
 * id (the cache's delete and re-insert to refresh recency, the pending count's get and set,
 * its get and delete when the commit settled, the commit's change per stream); on a partition
 * with many entities each look-up is a cache miss.
 */
export interface EntitySlot {
  readonly id: string;
  /** The cached state and the stream version it reflects: meaningful only while {@link cached}. */
  state: unknown;
  version: number;
  /** The state is in the memory cache (counted against `cacheEntitiesMax`). */
  cached: boolean;
  /** Raised each time the cached state is dropped: a decision taken on an older generation rests on a state that may not be real. */
  generation: number;
  /** Commits queued for this entity and not settled yet (its cached state may be one of them: not durable). */
  pending: number;
  /** Who waits for the pending commits to settle (rare: refusals and loads). */
  waiters: Array<() => void> | undefined;
  /** False once the slot left the map (nothing cached, nothing pending): a holder must look the entity up again. */
  live: boolean;
  /** The commit being built that holds a change of this stream ({@link change}): a stream's events stay in one change. */
  changeOf: object | undefined;
  change: { streamId: string; expectedVersion?: number; events: EventData[] } | undefined;
  /** Recency list of the cached slots (newest first). */
  newer: EntitySlot | undefined;
  older: EntitySlot | undefined;
}

/**
 * The entity slots of a host, with a least-recently-used memory cache bounded in entries:
 * the recency list runs through the slots themselves (refreshing an entry moves two links,
 * no map operation). A slot stays in the map while it is cached or has pending commits or
 * waiters; an entity evicted from the cache keeps its pending count, so a later load still
 * waits for its commits to settle before reading the partition.
 */
export class EntitySlots {
  private readonly slots = new Map<string, EntitySlot>();
  private newest: EntitySlot | undefined;
  private oldest: EntitySlot | undefined;
  private cachedCount = 0;

  constructor(readonly entriesMax: number) {}

  /** Entities whose state is cached. */
  get size(): number {
    return this.cachedCount;
  }

  get(id: string): EntitySlot | undefined {
    return this.slots.get(id);
  }

  /** The entity's slot, created (nothing cached, nothing pending) if it has none. */
  slotFor(id: string): EntitySlot {
    let slot = this.slots.get(id);
    if (slot === undefined) {
      slot = { id, state: undefined, version: 0, cached: false, generation: 0, pending: 0, waiters: undefined, live: true, changeOf: undefined, change: undefined, newer: undefined, older: undefined };
      this.slots.set(id, slot);
    }
    return slot;
  }

  /** Caches a state as the most recently used; evicts the least recently used beyond `entriesMax`. */
  store(slot: EntitySlot, state: unknown, version: number): void {
    if (!slot.live) throw new Error(`[sluice/handlers] bug: state stored in the released slot of "${slot.id}"`);
    if (this.entriesMax <= 0) return;
    slot.state = state;
    slot.version = version;
    if (slot.cached) {
      this.touch(slot);
      return;
    }
    slot.cached = true;
    this.cachedCount++;
    this.linkNewest(slot);
    if (this.cachedCount > this.entriesMax) this.drop(this.oldest as EntitySlot);
  }

  /** Marks a cached slot the most recently used. */
  touch(slot: EntitySlot): void {
    if (this.newest === slot) return;
    this.unlink(slot);
    this.linkNewest(slot);
  }

  /** Drops the entity's cached state (its pending count stays); a decision on it becomes stale. */
  drop(slot: EntitySlot): void {
    if (slot.cached) {
      slot.cached = false;
      slot.state = undefined;
      this.cachedCount--;
      this.unlink(slot);
    }
    slot.generation++;
    this.release(slot);
  }

  /** Removes the slot from the map once nothing is cached, pending or waited for. */
  release(slot: EntitySlot): void {
    if (slot.cached || slot.pending > 0 || slot.waiters !== undefined || !slot.live) return;
    slot.live = false;
    slot.changeOf = undefined;
    slot.change = undefined;
    this.slots.delete(slot.id);
  }

  /** Drops every cached state. */
  clear(): void {
    while (this.oldest !== undefined) this.drop(this.oldest);
  }

  private linkNewest(slot: EntitySlot): void {
    slot.older = this.newest;
    slot.newer = undefined;
    if (this.newest !== undefined) this.newest.newer = slot;
    this.newest = slot;
    if (this.oldest === undefined) this.oldest = slot;
  }

  private unlink(slot: EntitySlot): void {
    const { newer, older } = slot;
    if (newer !== undefined) newer.older = older;
    else this.newest = older;
    if (older !== undefined) older.newer = newer;
    else this.oldest = newer;
    slot.newer = undefined;
    slot.older = undefined;
  }
}
