/**
 * A growable column of numbers in one `Float64Array` (safe integers: seqs, offsets): no object
 * per entry, 8 bytes each, capacity doubling. The batch table and the frame position index of
 * a segment log are made of these.
 */
export class NumberColumn {
  private data: Float64Array;
  private size = 0;

  constructor(capacity = 64) {
    this.data = new Float64Array(Math.max(1, capacity));
  }

  get length(): number {
    return this.size;
  }

  at(i: number): number {
    return this.data[i];
  }

  push(value: number): void {
    if (this.size === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.size++] = value;
  }

  /** Appends every value of `values`. */
  append(values: Float64Array): void {
    if (this.size + values.length > this.data.length) {
      let capacity = this.data.length;
      while (capacity < this.size + values.length) capacity *= 2;
      const grown = new Float64Array(capacity);
      grown.set(this.data.subarray(0, this.size));
      this.data = grown;
    }
    this.data.set(values, this.size);
    this.size += values.length;
  }

  /** Keeps the first `length` values. */
  truncate(length: number): void {
    if (length < this.size) this.size = Math.max(0, length);
  }

  /** A copy of the values in [from, to). */
  slice(from: number, to: number): Float64Array {
    return this.data.slice(from, to);
  }

  /** Index of the first value >= `value` (the column is ascending), or `length`. */
  firstAtOrAbove(value: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.data[mid] < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the last value <= `value` (the column is ascending), or -1. */
  lastAtOrBelow(value: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.data[mid] <= value) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }
}
