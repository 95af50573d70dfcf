import { scanSealedBatches, StreamDecoder, type EventFrame } from '@sluice/framing';

/**
 * Estimated bytes of one decoded frame beyond its encoded bytes: the frame object, its payload
 * view and its slot in the batch's array. Counted against the cache's limit.
 */
export const DECODED_FRAME_OVERHEAD_BYTES = 160;

/** What the partition's shared tail cache holds now (see `PartitionOptions.tailCacheBytes`). */
export interface TailCacheStatus {
  /** The configured limit. */
  readonly bytesMax: number;
  /** Bytes held: the batches' encoded bytes plus an estimate of their decoded frames. */
  readonly bytes: number;
  readonly batches: number;
  /** First and last seq held (0 when empty). */
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Batches served from the cache, and batches decoded into it (once each, for every reader). */
  readonly hits: number;
  readonly decoded: number;
}

interface Entry {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly bytes: Uint8Array;
  readonly cost: number;
  /** Decoded on first use, then shared by every reader. */
  frames: readonly EventFrame[] | undefined;
  /** True once every frame's CRC-32C was checked (by decoding or by {@link TailCache.findSealed}). */
  checked: boolean;
}

/** A batch held by the cache: its frames (shared: never modify the array) and its last seq. */
export interface CachedBatch {
  readonly frames: readonly EventFrame[];
  readonly lastSeq: number;
}

/** A committed batch as the writer sealed it: `bytes` are its event frames then its marker, exactly as stored. */
export interface SealedBatchBytes {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly bytes: Uint8Array;
}

/**
 * The last durable batches of one partition, kept in memory so that its subscribers (many
 * readers following the head) are served without each re-reading and re-decoding storage. A
 * bounded ring of consecutive batches: the oldest go first once the limit is reached. Batches
 * are kept as the bytes the writer sealed and decoded (CRC-checked, frames shared) the first
 * time a reader asks for them.
 */
export class TailCache {
  private entries: Entry[] = [];
  private head = 0;
  private held = 0;
  private hits = 0;
  private decoded = 0;

  constructor(readonly bytesMax: number) {}

  get enabled(): boolean {
    return this.bytesMax > 0;
  }

  get status(): TailCacheStatus {
    const n = this.entries.length;
    return {
      bytesMax: this.bytesMax,
      bytes: this.held,
      batches: n - this.head,
      firstSeq: n > this.head ? this.entries[this.head].firstSeq : 0,
      lastSeq: n > this.head ? this.entries[n - 1].lastSeq : 0,
      hits: this.hits,
      decoded: this.decoded,
    };
  }

  /** First seq held, or +Infinity when empty. */
  get firstSeq(): number {
    return this.entries.length > this.head ? this.entries[this.head].firstSeq : Number.POSITIVE_INFINITY;
  }

  /**
   * Adds a durable batch `firstSeq..lastSeq` sealed in `bytes` (the cache keeps `bytes`: pass a
   * copy). A batch that does not follow the last one held restarts the cache (it holds one run
   * of consecutive batches); one larger than the whole limit empties it.
   */
  add(firstSeq: number, lastSeq: number, bytes: Uint8Array): void {
    if (!this.enabled) return;
    const cost = bytes.length + (lastSeq - firstSeq + 1) * DECODED_FRAME_OVERHEAD_BYTES;
    const n = this.entries.length;
    if (cost > this.bytesMax || (n > this.head && this.entries[n - 1].lastSeq + 1 !== firstSeq)) this.clear();
    if (cost > this.bytesMax) return;
    this.entries.push({ firstSeq, lastSeq, bytes, cost, frames: undefined, checked: false });
    this.held += cost;
    while (this.held > this.bytesMax) this.held -= this.entries[this.head++].cost;
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** The batch holding `seq`, or undefined when the cache does not hold it. */
  find(seq: number): CachedBatch | undefined {
    const entry = this.entryOf(seq);
    return entry === undefined ? undefined : { frames: entry.frames ?? this.decode(entry), lastSeq: entry.lastSeq };
  }

  /** The sealed bytes (event frames, then the marker) of the batch holding `seq`, or undefined when the cache does not hold it. */
  findSealed(seq: number): SealedBatchBytes | undefined {
    const entry = this.entryOf(seq);
    if (entry !== undefined && !entry.checked) this.check(entry);
    return entry;
  }

  /** The held entry whose batch holds `seq` (counted as a hit), or undefined. */
  private entryOf(seq: number): Entry | undefined {
    const entries = this.entries;
    let lo = this.head;
    let hi = entries.length;
    if (lo === hi || seq < entries[lo].firstSeq || seq > entries[hi - 1].lastSeq) return undefined;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (entries[mid].lastSeq < seq) lo = mid + 1;
      else hi = mid;
    }
    this.hits++;
    return entries[lo];
  }

  clear(): void {
    this.entries = [];
    this.head = 0;
    this.held = 0;
  }

  /**
   * Checks a batch's frames as {@link decode} does (CRC-32C per frame, seq order, grouping,
   * marker) without decoding them: readers of sealed bytes get the same guarantees as readers
   * of frames, once per batch whoever asks first.
   */
  private check(entry: Entry): void {
    const scan = scanSealedBatches(entry.bytes, { firstSeq: entry.firstSeq, verifyDigest: false });
    if (scan.reason !== 'end' || scan.spans.length !== 1 || scan.spans[0].lastSeq !== entry.lastSeq) {
      throw new Error(`[sluice/store] bug: the tail cache's batch ${entry.firstSeq}..${entry.lastSeq} does not check (${scan.reason}: ${scan.detail})`);
    }
    entry.checked = true;
  }

  private decode(entry: Entry): readonly EventFrame[] {
    // The writer's own sealed bytes: their digest was computed, not read back; CRCs are checked.
    const decoder = new StreamDecoder({ firstSeq: entry.firstSeq, verifyDigest: false });
    const batches = decoder.push(entry.bytes);
    const report = decoder.end();
    if (batches.length !== 1 || report.reason !== 'end' || batches[0].lastSeq !== entry.lastSeq) {
      throw new Error(`[sluice/store] bug: the tail cache's batch ${entry.firstSeq}..${entry.lastSeq} does not decode (${report.reason}: ${report.detail})`);
    }
    this.decoded++;
    entry.checked = true;
    entry.frames = batches[0].frames;
    return entry.frames;
  }
}
