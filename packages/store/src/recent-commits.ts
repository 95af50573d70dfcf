/**
 * The latest durable commits with command ids, by first seq, up to `max` entries in all (a
 * commit weighs what it holds: its command ids and its streams): a ring (FIFO) searched by
 * binary search, since commits arrive in seq order. It replaces a `Map` whose oldest key was
 * deleted on every insert, which V8 makes costly (deleted entries at the front are skipped
 * again by every new iterator until the table is rehashed): 5–8 % of the CPU of 1000
 * concurrent appends with a command id each.
 *
 * Bounded by weight, not by commits: the handler host merges hundreds of messages into one
 * commit, and 4096 such commits held about a million command ids and stream results on the
 * heap (every one promoted to the old generation, then collected there).
 *
 * A seq added out of order is not an error: it may not be found again, and a caller that
 * misses reads the commit from the log. A commit heavier than `max` is not kept.
 */
export class RecentCommits<T> {
  private seqs = new Float64Array(0);
  private weights = new Uint32Array(0);
  private items: Array<T | undefined> = [];
  /** Position of the oldest commit held. */
  private head = 0;
  private count = 0;
  private weight = 0;

  constructor(private readonly max: number) {}

  /** Commits held. */
  get size(): number {
    return this.count;
  }

  /** Holds a commit of `weight` (at least 1), evicting the oldest ones until all fit. */
  add(seq: number, item: T, weight: number): void {
    // (NaN included.)
    if (!(weight >= 1)) weight = 1;
    if (weight > this.max) return;
    while (this.weight + weight > this.max) this.evictOldest();
    // Grows (up to one slot per unit of weight) so that an idle partition holds no empty ring.
    if (this.count === this.items.length) this.grow();
    let at = this.head + this.count;
    if (at >= this.items.length) at -= this.items.length;
    this.seqs[at] = seq;
    this.weights[at] = weight;
    this.items[at] = item;
    this.count++;
    this.weight += weight;
  }

  get(seq: number): T | undefined {
    const n = this.count;
    if (n === 0) return undefined;
    const size = this.items.length;
    // Logical position k (0 = oldest) is at (head + k) mod size.
    const head = this.head;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      let at = head + mid;
      if (at >= size) at -= size;
      if (this.seqs[at] < seq) lo = mid + 1;
      else hi = mid;
    }
    if (lo === n) return undefined;
    let at = head + lo;
    if (at >= size) at -= size;
    return this.seqs[at] === seq ? this.items[at] : undefined;
  }

  private evictOldest(): void {
    const at = this.head;
    this.items[at] = undefined;
    this.weight -= this.weights[at];
    this.count--;
    this.head = at + 1 === this.items.length ? 0 : at + 1;
  }

  /** Doubles the ring (at most `max` slots: every commit weighs at least 1), oldest first. */
  private grow(): void {
    const size = Math.min(Math.max(this.max, 1), Math.max(64, this.items.length * 2));
    const seqs = new Float64Array(size);
    const weights = new Uint32Array(size);
    const items: Array<T | undefined> = new Array(size).fill(undefined);
    for (let k = 0; k < this.count; k++) {
      let at = this.head + k;
      if (at >= this.items.length) at -= this.items.length;
      seqs[k] = this.seqs[at];
      weights[k] = this.weights[at];
      items[k] = this.items[at];
    }
    this.seqs = seqs;
    this.weights = weights;
    this.items = items;
    this.head = 0;
  }
}
