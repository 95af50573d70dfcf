/** A loaded entity: its state and the stream version it reflects. */
export interface CachedEntity {
  state: unknown;
  version: number;
}

/** Least-recently-used cache of loaded entities, bounded in entries. */
export class EntityCache {
  private readonly entries = new Map<string, CachedEntity>();
  hits = 0;
  misses = 0;

  constructor(readonly entriesMax: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(id: string): CachedEntity | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Map keeps insertion order: re-inserting marks it most recently used.
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry;
  }

  /** The entry without counting a hit or refreshing its recency. */
  peek(id: string): CachedEntity | undefined {
    return this.entries.get(id);
  }

  set(id: string, entry: CachedEntity): void {
    if (this.entriesMax <= 0) return;
    this.entries.delete(id);
    this.entries.set(id, entry);
    if (this.entries.size > this.entriesMax) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }
}
