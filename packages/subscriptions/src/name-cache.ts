/**
 * Stream ids and event types decoded from frame bytes, cached by their bytes: the sealed-batch
 * path of the projection host meets the same few names millions of times, and a `TextDecoder`
 * call per name would cost more than the rest of the frame. A direct-mapped cache of `slots`
 * names of at most `nameBytesMax` bytes (longer ones are decoded each time); a collision just
 * replaces the slot.
 */
export class NameCache {
  private readonly keys: Uint8Array;
  private readonly lengths: Int32Array;
  private readonly names: string[];

  constructor(
    readonly slots = 256,
    readonly nameBytesMax = 64,
  ) {
    if (!Number.isInteger(Math.log2(slots))) throw new RangeError(`[sluice/subscriptions] NameCache: slots must be a power of two, got ${slots}`);
    this.keys = new Uint8Array(slots * nameBytesMax);
    this.lengths = new Int32Array(slots).fill(-1);
    this.names = new Array<string>(slots).fill('');
  }

  /** The UTF-8 name in `b[s, e)` (throws a `TypeError` when it is not valid UTF-8). */
  get(b: Uint8Array, s: number, e: number): string {
    const n = e - s;
    if (n === 0) return '';
    if (n > this.nameBytesMax) return utf8.decode(b.subarray(s, e));
    let h = n;
    for (let i = s; i < e; i++) h = Math.imul(h ^ b[i], 0x01000193);
    const slot = (h ^ (h >>> 15)) & (this.slots - 1);
    const base = slot * this.nameBytesMax;
    const keys = this.keys;
    if (this.lengths[slot] === n) {
      let i = 0;
      while (i < n && keys[base + i] === b[s + i]) i++;
      if (i === n) return this.names[slot];
    }
    const name = utf8.decode(b.subarray(s, e));
    for (let i = 0; i < n; i++) keys[base + i] = b[s + i];
    this.lengths[slot] = n;
    this.names[slot] = name;
    return name;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
