/**
 * One command at a time per entity, any number of entities at once. A message takes every
 * recipient's lock in one synchronous step (it queues behind each current holder), so two
 * messages never wait for each other in a cycle.
 */
export class EntityLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(keys: readonly string[], work: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const waits: Promise<void>[] = [];
    for (const key of keys) {
      const tail = this.tails.get(key);
      if (tail !== undefined) waits.push(tail);
      this.tails.set(key, mine);
    }
    try {
      if (waits.length > 0) await Promise.all(waits);
      return await work();
    } finally {
      release();
      for (const key of keys) if (this.tails.get(key) === mine) this.tails.delete(key);
    }
  }
}
