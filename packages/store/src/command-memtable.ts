import { firstAtOrAfter } from '@sluice/framing';
/**
 * The command ids of a partition's memtable (noted since the last index checkpoint), without a
 * `Map` entry per id: entries are kept in seq order in typed arrays — the id's 64-bit hash
 * (computed once per id, at its unit's look-up: {@link CommandHashes}) and the seq of its
 * commit's first frame — with an open-addressing hash table (linear probing, at most half
 * full) of entry indices over them. An entry costs 16 bytes plus 8 bytes of slots per entry of
 * capacity (measured 29–38 bytes an id, where a Map entry with its id string cost 100): a
 * checkpoint copies a prefix of the arrays (no re-hashing), and nothing per id is left for the
 * garbage collector.
 *
 * The table stores hashes, not ids, so a hit is only a candidate: while its commit is in flight
 * the entry keeps the commit's record (which names its ids, so the caller confirms the hit
 * in memory); once durable only the seq is left, and the caller confirms the hit from the
 * commit in the log (or a cached result). Entries with one hash are found oldest first.
 *
 * @typeParam R the record of a commit in flight (the engine's, with the commit's ids)
 */
export class CommandMemtable<R> {
  /** Hash high and low halves and first seq of each entry, `0..size-1`, in seq order. */
  hi: Uint32Array;
  lo: Uint32Array;
  seq: Float64Array;
  /** Entry indices found by the last {@link find}, oldest first (reused: copy before awaiting). */
  readonly hits: number[] = [];
  /**
   * Records of the entries in flight (`durableEnd..size-1`), from `inflightHead` on: only those
   * have one, so durable entries cost no array slot.
   */
  private inflight: Array<R | undefined> = [];
  private inflightHead = 0;
  private count = 0;
  /** Entries below this are durable: their records are gone. */
  private durableEnd = 0;
  /** Entry index + 1 per slot, 0 for an empty one; the length is a power of two. */
  private slots: Uint32Array;
  private mask: number;

  constructor(initialEntries = 1024) {
    const capacity = 2 ** Math.ceil(Math.log2(Math.max(16, initialEntries)));
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.seq = new Float64Array(capacity);
    this.slots = new Uint32Array(capacity * 2);
    this.mask = capacity * 2 - 1;
  }

  /** Entries held (durable, frozen for a checkpoint and in flight). */
  get size(): number {
    return this.count;
  }

  /**
   * Notes an id by its hash, for the commit starting at `seq` (not below the last entry's):
   * with the commit's `record` while it is in flight, without one for a durable commit (open's
   * replay), which only follows other durable entries. Returns false when the commit has an
   * entry of that hash already (an id named twice in one unit, or two of its ids hashing
   * alike): a table holds each (hash, seq) once, and a hit is confirmed against all the
   * commit's ids.
   */
  add(hi: number, lo: number, seq: number, record: R | undefined): boolean {
    const i = this.count;
    if (i > 0 && seq < this.seq[i - 1]) throw new Error(`[sluice/store] command memtable: seq ${seq} noted after ${this.seq[i - 1]} (bug: ids are noted in seq order)`);
    if (record === undefined && this.durableEnd !== i) throw new Error('[sluice/store] command memtable: a durable id noted after one in flight (bug)');
    // Entries are in seq order: only the commit being noted can hold an equal one.
    if (i > 0 && this.seq[i - 1] === seq && this.has(hi, lo, seq)) return false;
    if (i === this.hi.length) this.grow();
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.seq[i] = seq;
    if (record === undefined) this.durableEnd = i + 1;
    else this.inflight.push(record);
    this.count = i + 1;
    this.insert(i);
    return true;
  }

  /** Entries `0..durableCount-1` are durable; the rest are in flight. */
  get durableCount(): number {
    return this.durableEnd;
  }

  /** The record of entry `i` while its commit is in flight, else undefined. */
  record(i: number): R | undefined {
    return i < this.durableEnd ? undefined : this.inflight[this.inflightHead + i - this.durableEnd];
  }

  /**
   * The entries of `record`'s commit are durable: they keep only their hash and seq (the
   * record, its result and its streams are not kept alive until the next checkpoint). Commits
   * become durable in seq order, so these are the oldest in flight.
   */
  durable(record: R): void {
    const inflight = this.inflight;
    const head = this.inflightHead;
    if (head === inflight.length || inflight[head] !== record) throw new Error('[sluice/store] command memtable: a commit made durable is not the oldest in flight (bug)');
    let k = head;
    // Not kept alive by the queue's consumed front.
    for (; k < inflight.length && inflight[k] === record; k++) inflight[k] = undefined;
    const ids = k - head;
    this.durableEnd += ids;
    if (head + ids === inflight.length) {
      // Nothing left in flight: start the queue again (the common case under group commit).
      inflight.length = 0;
      this.inflightHead = 0;
    } else if (head + ids > 1024 && head + ids > inflight.length / 2) {
      // Compacted now and then, so the consumed front never holds more than the live part.
      this.inflight = inflight.slice(head + ids);
      this.inflightHead = 0;
    } else {
      this.inflightHead = head + ids;
    }
  }

  /** Entries whose hash is `hi:lo`, oldest first, into {@link hits}; returns how many. */
  find(hi: number, lo: number): number {
    const hits = this.hits;
    hits.length = 0;
    if (this.count === 0) return 0;
    const slots = this.slots;
    const mask = this.mask;
    for (let s = slotOf(hi, lo, mask); ; s = (s + 1) & mask) {
      const e = slots[s];
      if (e === 0) return hits.length;
      if (this.lo[e - 1] === lo && this.hi[e - 1] === hi) hits.push(e - 1);
    }
  }

  /** How many entries (a prefix) have a seq at or below `limit`. */
  countAtOrBelow(limit: number): number {
    // Seqs are integers: the entries at or below `limit` end where those from `limit + 1` start.
    return firstAtOrAfter(this.seq.subarray(0, this.count), limit + 1);
  }

  /** Removes the first `n` entries (durable ones, now in a table). */
  drop(n: number): void {
    if (n === 0) return;
    if (n > this.durableEnd) throw new Error(`[sluice/store] command memtable: dropping ${n} entries, of which only ${this.durableEnd} are durable (bug)`);
    const rest = this.count - n;
    this.hi.copyWithin(0, n, this.count);
    this.lo.copyWithin(0, n, this.count);
    this.seq.copyWithin(0, n, this.count);
    this.count = rest;
    this.durableEnd -= n;
    this.slots.fill(0);
    for (let i = 0; i < rest; i++) this.insert(i);
  }

  private has(hi: number, lo: number, seq: number): boolean {
    const slots = this.slots;
    const mask = this.mask;
    for (let s = slotOf(hi, lo, mask); ; s = (s + 1) & mask) {
      const e = slots[s];
      if (e === 0) return false;
      if (this.seq[e - 1] === seq && this.lo[e - 1] === lo && this.hi[e - 1] === hi) return true;
    }
  }

  private insert(i: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let s = slotOf(this.hi[i], this.lo[i], mask);
    while (slots[s] !== 0) s = (s + 1) & mask;
    slots[s] = i + 1;
  }

  /** Doubles the entry arrays and the slots (kept at most half full), re-inserting from the stored hashes. */
  private grow(): void {
    const capacity = this.hi.length * 2;
    const widen = <T extends Uint32Array | Float64Array>(a: T, b: T): T => {
      b.set(a);
      return b;
    };
    this.hi = widen(this.hi, new Uint32Array(capacity));
    this.lo = widen(this.lo, new Uint32Array(capacity));
    this.seq = widen(this.seq, new Float64Array(capacity));
    this.slots = new Uint32Array(capacity * 2);
    this.mask = capacity * 2 - 1;
    for (let i = 0; i < this.count; i++) this.insert(i);
  }
}

/** The home slot of a hash: both halves mixed, so ids differing in either half spread. */
function slotOf(hi: number, lo: number, mask: number): number {
  return (lo ^ Math.imul(hi, 0x9e3779b1)) & mask;
}

/** Ids a {@link CommandHashes} remembers per unit (beyond that, they are hashed again when noted). */
const UNIT_HASHES_MAX = 4096;

/**
 * The 64-bit hashes of the command ids a unit was looked up with, handed back when the same
 * ids are noted: the engine looks a unit's ids up, then notes them, in the same order, so a
 * handler host's unit of hundreds of ids is hashed once, not twice. A look-up after a note
 * starts the next unit. Anything else (an id not where it was looked up) is just hashed again:
 * the hash is a function of the id, so the memo can only save work, never change an answer.
 */
export class CommandHashes {
  /** The hash of the id last looked up or noted. */
  hi = 0;
  lo = 0;
  private readonly ids: string[] = [];
  private readonly his = new Uint32Array(UNIT_HASHES_MAX);
  private readonly los = new Uint32Array(UNIT_HASHES_MAX);
  private next = 0;
  private noting = false;
  private readonly out = new Uint32Array(2);

  constructor(private readonly hash: (s: string, out: Uint32Array) => void) {}

  /** Hashes an id being looked up into {@link hi}/{@link lo}, and remembers it. */
  lookUp(id: string): void {
    if (this.noting) {
      this.ids.length = 0;
      this.next = 0;
      this.noting = false;
    }
    this.hash(id, this.out);
    this.hi = this.out[0];
    this.lo = this.out[1];
    const n = this.ids.length;
    if (n < UNIT_HASHES_MAX) {
      this.ids.push(id);
      this.his[n] = this.hi;
      this.los[n] = this.lo;
    }
  }

  /** The hash of an id being noted into {@link hi}/{@link lo}: remembered from its look-up, or computed. */
  note(id: string): void {
    this.noting = true;
    const k = this.next;
    if (k < this.ids.length && this.ids[k] === id) {
      this.hi = this.his[k];
      this.lo = this.los[k];
      this.next = k + 1;
      return;
    }
    this.hash(id, this.out);
    this.hi = this.out[0];
    this.lo = this.out[1];
  }
}
