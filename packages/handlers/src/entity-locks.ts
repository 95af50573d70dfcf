/**
 * One command at a time per entity, any number of entities at once. An entity's lock is a
 * queue of waiters; an uncontended lock costs no promise. A message takes its recipients'
 * locks in sorted order, so two messages never wait for each other in a cycle.
 */
export class EntityLocks {
  /** Held keys → who waits for each, in order. */
  private readonly held = new Map<string, Array<() => void>>();

  /** True while a message holds or waits for the key. */
  isHeld(key: string): boolean {
    return this.held.has(key);
  }

  async run<T>(keys: readonly string[], work: () => Promise<T>): Promise<T> {
    const sorted = keys.length === 1 ? keys : [...keys].sort();
    for (const key of sorted) {
      const waiters = this.held.get(key);
      if (waiters === undefined) this.held.set(key, []);
      else await new Promise<void>((resolve) => waiters.push(resolve));
    }
    try {
      return await work();
    } finally {
      for (const key of sorted) {
        const waiters = this.held.get(key)!;
        // Hand the lock straight to the next waiter (the key stays held), or free it.
        const next = waiters.shift();
        if (next !== undefined) next();
        else this.held.delete(key);
      }
    }
  }
}
