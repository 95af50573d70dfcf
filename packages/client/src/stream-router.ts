import { UnroutableStreamError } from './store-errors.js';

/**
 * Which partition holds a stream. Prefix rules are tried first (the longest matching prefix
 * wins, so their order does not matter); a stream no rule matches is hashed over the `hash`
 * list.
 *
 * Routing is part of the data: a stream must always route to the partition that holds its
 * history. Once events are written, never reorder or remove `hash` entries, and never change
 * a prefix rule's partition; moving streams between partitions is repartitioning, which
 * needs a copy of their events (not supported yet). The hash is a jump consistent hash, so
 * when repartitioning comes, appending one partition to `hash` moves only about 1/n of the
 * hashed streams.
 */
export interface RoutingConfig {
  /**
   * Partitions streams are spread over by a stable hash of the stream id, in a fixed order.
   * @default none: every stream must match a prefix rule
   */
  readonly hash?: readonly string[] | undefined;
  /**
   * Stream-id prefix → partition, e.g. `{ "account-": "bank-1", "order-": "shop" }`. An
   * empty prefix `""` matches every stream.
   * @default none
   */
  readonly prefixes?: Readonly<Record<string, string>> | undefined;
}

/**
 * Routes stream ids to partitions per a {@link RoutingConfig}.
 *
 * @example
 * const router = new StreamRouter({ prefixes: { 'audit-': 'audit' }, hash: ['p1', 'p2', 'p3'] });
 * router.partitionOf('audit-7');   // 'audit'
 * router.partitionOf('account-42'); // one of p1..p3, the same on every machine and release
 */
export class StreamRouter {
  /** Every partition the routing names, each once, in first-mentioned order. */
  readonly partitions: readonly string[];
  private readonly hash: readonly string[];
  private readonly prefixes: readonly (readonly [string, string])[];

  constructor(readonly routing: RoutingConfig) {
    this.hash = [...(routing.hash ?? [])];
    this.prefixes = Object.entries(routing.prefixes ?? {}).sort((a, b) => b[0].length - a[0].length);
    this.partitions = [...new Set([...this.prefixes.map(([, partition]) => partition), ...this.hash])];
  }

  /** The partition of `streamId`; throws `UnroutableStreamError` when no rule matches. */
  partitionOf(streamId: string): string {
    for (const [prefix, partition] of this.prefixes) {
      if (streamId.startsWith(prefix)) return partition;
    }
    if (this.hash.length === 0) throw new UnroutableStreamError(streamId);
    // A jump hash over one bucket is always bucket 0: skip the hashing (the append hot path).
    if (this.hash.length === 1) return this.hash[0];
    return this.hash[jumpHash(streamHash(streamId), this.hash.length)];
  }
}

const FNV_OFFSET_HIGH = 0xcbf29ce4;
const FNV_OFFSET_LOW = 0x84222325;
const encoder = new TextEncoder();

/**
 * FNV-1a, 64-bit, over the UTF-8 bytes of `streamId`, as a BigInt. Computed in two 32-bit
 * halves: the FNV prime is 2^40 + 0x1b3, so `x * prime = (x << 40) + x * 0x1b3 (mod 2^64)`.
 */
export function streamHash(streamId: string): bigint {
  // ASCII ids (the common case) are their own UTF-8 bytes: hash the char codes, no encoding.
  let ascii = true;
  for (let i = 0; i < streamId.length; i++) {
    if (streamId.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  const bytes = ascii ? undefined : encoder.encode(streamId);
  const length = bytes === undefined ? streamId.length : bytes.length;
  let high = FNV_OFFSET_HIGH;
  let low = FNV_OFFSET_LOW;
  for (let i = 0; i < length; i++) {
    low = (low ^ (bytes === undefined ? streamId.charCodeAt(i) : bytes[i])) >>> 0;
    const lowTimes = low * 0x1b3; // < 2^41: exact in a double
    const carry = Math.floor(lowTimes / 0x1_0000_0000);
    const nextLow = lowTimes >>> 0;
    high = (Math.imul(high, 0x1b3) + carry + ((low << 8) >>> 0)) >>> 0;
    low = nextLow;
  }
  return (BigInt(high) << 32n) | BigInt(low);
}

const MASK_64 = (1n << 64n) - 1n;

/**
 * Jump consistent hash (Lamping & Veach, 2014): a bucket in `[0, buckets)` for a 64-bit
 * key; growing `buckets` by one moves only 1/(buckets + 1) of the keys, all to the new one.
 */
export function jumpHash(key: bigint, buckets: number): number {
  let k = key & MASK_64;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & MASK_64;
    // Same operation order as the paper's C++, so every implementation agrees bit for bit.
    j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
  }
  return b;
}
