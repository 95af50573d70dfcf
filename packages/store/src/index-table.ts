import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32c } from '@sluice/framing';
import { StorageError } from './errors.js';
import type { BatchIdentity } from './storage.js';

/**
 * One immutable index table: the stream index `(hash64(streamId), version) → seq`, in runs, and the
 * command-id index `hash64(commandId) → seq of the commit's first frame`, both sorted, for the
 * frames of seqs `fromSeq..toSeq`, bound to the batch identity at `toSeq` and to the
 * partition (the digest of its first batch).
 *
 * The same bytes serve in memory (a Buffer) and on disk (a file read with pread), so the
 * in-memory index and the persisted one share every line of lookup code.
 *
 * Layout (little-endian):
 * ```
 * stream entries   N × 28  hashHi u32 · hashLo u32 · version f64 · seq f64 · count u32
 *                          a run: versions version-count+1..version of one stream at seqs seq-count+1..seq,
 *                          sorted by (hash, version, seq), keyed by their last version and seq
 * command entries  M × 16  hashHi u32 · hashLo u32 · seq f64                 sorted by (hash, seq)
 * footer           per stream block: first key (hi u32, lo u32, version f64) · then per block crc32c u32
 *                  per command block: first key (hi u32, lo u32) · then per block crc32c u32
 * bloom filters    stream hashes, then command hashes (10 bits per entry, 7 probes by double hashing)
 * trailer          160 bytes (see TableBuilder.finish), crc32c over its first 156 bytes
 * ```
 * The footer is the sparse midpoint array (one key per block, loaded on open); a lookup
 * binary-searches it, then reads and checks one block (or the few holding one hash). The
 * Bloom filters (loaded on open) answer most misses (new streams, new command ids) without a
 * read.
 *
 * Stream entries are runs: the events of one stream at consecutive seqs (an append of 1000 events
 * to a stream, or single appends to one stream in a row) are one entry, so the index costs per
 * run, not per event. A run is keyed by its last version: every run holding a version ≥ v sorts
 * at or after (hash, v), even when two streams share a hash, so a read from version v starts
 * there and never scans a stream's older runs.
 */
export const TABLE_MAGIC = 'SLXINDEX';
export const TABLE_FORMAT = 2;
export const TABLE_FILE_SUFFIX = '.sxi';
export const STREAM_ENTRY_BYTES = 28;
export const COMMAND_ENTRY_BYTES = 16;
export const TRAILER_BYTES = 160;
/** Bloom filter bits per entry (about 1% false positives with 7 probes), and its cap per table and index. */
export const BLOOM_BITS_PER_ENTRY = 10;
export const BLOOM_PROBES = 7;
export const BLOOM_BYTES_MAX = 64 * 1024 * 1024;
/** Entries per checksummed block: 3.5 KiB of stream entries, 4 KiB of command entries. */
export const STREAM_BLOCK_ENTRIES = 128;
export const COMMAND_BLOCK_ENTRIES = 256;

/** What a table says about itself. */
export interface TableMeta {
  readonly level: number;
  readonly streamCount: number;
  readonly commandCount: number;
  /** Runs starting at version 1: streams started in this table's seqs (streamCount of the partition sums them). */
  readonly newStreams: number;
  readonly fromSeq: number;
  readonly toSeq: number;
  /** The batch identity at `toSeq` when the table was written. */
  readonly identity: BatchIdentity;
  /** Digest of the partition's first batch: which partition (and incarnation) the table belongs to. */
  readonly partitionDigest: Uint8Array;
  readonly streamBlockEntries: number;
  readonly commandBlockEntries: number;
}

/** Where a table's bytes are. */
export interface TableSource {
  /** Bytes `[offset, offset + length)`; may return a shared buffer valid until the next call. */
  read(offset: number, length: number): Uint8Array;
  readonly size: number;
  close(): void;
}

export class IndexCorruptError extends StorageError {
  constructor(where: string, detail: string) {
    super('Corrupt', `${where}: ${detail}: the index is derived data; delete it or run \`sluice reindex\` (reindexPartition) to rebuild it from the log, which is untouched`);
  }
}

export class BufferSource implements TableSource {
  constructor(readonly buffer: Buffer) {}
  get size(): number {
    return this.buffer.length;
  }
  read(offset: number, length: number): Uint8Array {
    return this.buffer.subarray(offset, offset + length);
  }
  close(): void {}
}

export class FileSource implements TableSource {
  readonly size: number;
  private fd: number | undefined;
  private scratch = Buffer.allocUnsafe(64 * 1024);
  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    try {
      this.size = fstatSync(this.fd).size;
    } catch (error) {
      closeSync(this.fd);
      throw error;
    }
  }
  read(offset: number, length: number): Uint8Array {
    if (this.fd === undefined) throw new StorageError('Closed', `[sluice/store] index table ${this.path} is closed`);
    if (this.scratch.length < length) this.scratch = Buffer.allocUnsafe(Math.max(length, this.scratch.length * 2));
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, this.scratch, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    if (done !== length) throw new IndexCorruptError(`[sluice/store] index table ${this.path}`, `truncated: wanted ${length} bytes at ${offset}, got ${done}`);
    return this.scratch.subarray(0, length);
  }
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** An entry of the stream index as a lookup returns it. */
export interface StreamEntry {
  readonly version: number;
  readonly seq: number;
}

/** A run of the stream index: versions `version - count + 1..version` at seqs `seq - count + 1..seq`. */
export interface StreamRun extends StreamEntry {
  readonly count: number;
}

/** Compares (hi, lo) hash pairs of unsigned 32-bit halves. */
function cmpHash(ahi: number, alo: number, bhi: number, blo: number): number {
  return ahi !== bhi ? (ahi < bhi ? -1 : 1) : alo !== blo ? (alo < blo ? -1 : 1) : 0;
}

/** A loaded table: its metadata and midpoints in memory, its entries in its source. */
export class IndexTable {
  private readonly sHi: Uint32Array;
  private readonly sLo: Uint32Array;
  private readonly sVer: Float64Array;
  private readonly sCrc: Uint32Array;
  private readonly cHi: Uint32Array;
  private readonly cLo: Uint32Array;
  private readonly cCrc: Uint32Array;
  private readonly sBloom: Uint32Array;
  private readonly cBloom: Uint32Array;

  private constructor(
    readonly source: TableSource,
    readonly meta: TableMeta,
    /** Check block checksums on every read (files: yes; buffers built in this process: no). */
    private readonly verifyBlocks: boolean,
    footer: Uint8Array,
    blooms: [Uint32Array, Uint32Array],
    readonly where: string,
  ) {
    [this.sBloom, this.cBloom] = blooms;
    const f = Buffer.from(footer.buffer, footer.byteOffset, footer.length);
    const sb = blocks(meta.streamCount, meta.streamBlockEntries);
    const cb = blocks(meta.commandCount, meta.commandBlockEntries);
    this.sHi = new Uint32Array(sb);
    this.sLo = new Uint32Array(sb);
    this.sVer = new Float64Array(sb);
    this.sCrc = new Uint32Array(sb);
    this.cHi = new Uint32Array(cb);
    this.cLo = new Uint32Array(cb);
    this.cCrc = new Uint32Array(cb);
    let o = 0;
    for (let b = 0; b < sb; b++, o += 16) {
      this.sHi[b] = f.readUInt32LE(o);
      this.sLo[b] = f.readUInt32LE(o + 4);
      this.sVer[b] = f.readDoubleLE(o + 8);
    }
    for (let b = 0; b < sb; b++, o += 4) this.sCrc[b] = f.readUInt32LE(o);
    for (let b = 0; b < cb; b++, o += 8) {
      this.cHi[b] = f.readUInt32LE(o);
      this.cLo[b] = f.readUInt32LE(o + 4);
    }
    for (let b = 0; b < cb; b++, o += 4) this.cCrc[b] = f.readUInt32LE(o);
  }

  /**
   * Opens a table from its source: checks the trailer, the sizes and the footer checksum (not
   * every block: blocks are checked as they are read, so opening costs O(blocks), not O(entries)).
   */
  static open(source: TableSource, where: string, verifyBlocks: boolean): IndexTable {
    if (source.size < TRAILER_BYTES) throw new IndexCorruptError(where, `truncated: ${source.size} bytes, shorter than its trailer`);
    const t = Buffer.from(source.read(source.size - TRAILER_BYTES, TRAILER_BYTES));
    if (t.toString('latin1', 0, 8) !== TABLE_MAGIC) throw new IndexCorruptError(where, 'not an index table (bad magic), or truncated');
    if (crc32c(t, 0, TRAILER_BYTES - 4) !== t.readUInt32LE(TRAILER_BYTES - 4)) throw new IndexCorruptError(where, 'trailer checksum mismatch');
    const format = t.readUInt32LE(8);
    if (format !== TABLE_FORMAT) throw new IndexCorruptError(where, `format ${format}, this version reads ${TABLE_FORMAT}`);
    const meta: TableMeta = {
      level: t.readUInt32LE(12),
      streamCount: t.readDoubleLE(16),
      commandCount: t.readDoubleLE(24),
      newStreams: t.readDoubleLE(32),
      fromSeq: t.readDoubleLE(40),
      toSeq: t.readDoubleLE(48),
      identity: { lastSeq: t.readDoubleLE(48), epoch: t.readUInt32LE(56), digest: Uint8Array.from(t.subarray(72, 92)) },
      partitionDigest: Uint8Array.from(t.subarray(92, 112)),
      streamBlockEntries: t.readUInt32LE(60),
      commandBlockEntries: t.readUInt32LE(64),
    };
    const footerCrc = t.readUInt32LE(68);
    const footerOffset = t.readDoubleLE(112);
    const sBloomBytes = t.readUInt32LE(120);
    const cBloomBytes = t.readUInt32LE(124);
    const bloomCrc = t.readUInt32LE(128);
    const sb = blocks(meta.streamCount, meta.streamBlockEntries);
    const cb = blocks(meta.commandCount, meta.commandBlockEntries);
    const footerBytes = sb * 20 + cb * 12;
    if (
      meta.streamBlockEntries < 1 ||
      meta.commandBlockEntries < 1 ||
      footerOffset !== meta.streamCount * STREAM_ENTRY_BYTES + meta.commandCount * COMMAND_ENTRY_BYTES ||
      footerOffset + footerBytes + sBloomBytes + cBloomBytes + TRAILER_BYTES !== source.size ||
      sBloomBytes % 4 !== 0 ||
      cBloomBytes % 4 !== 0 ||
      !(meta.fromSeq >= 1 && meta.toSeq >= meta.fromSeq - 1)
    ) {
      throw new IndexCorruptError(where, `sizes do not add up (${source.size} bytes for ${meta.streamCount} stream and ${meta.commandCount} command entries): truncated or damaged`);
    }
    const footer = Uint8Array.from(source.read(footerOffset, footerBytes));
    if (crc32c(footer, 0, footer.length) !== footerCrc) throw new IndexCorruptError(where, 'footer checksum mismatch');
    const bloomBytes = Uint8Array.from(source.read(footerOffset + footerBytes, sBloomBytes + cBloomBytes));
    if (crc32c(bloomBytes, 0, bloomBytes.length) !== bloomCrc) throw new IndexCorruptError(where, 'Bloom filter checksum mismatch');
    const blooms: [Uint32Array, Uint32Array] = [
      new Uint32Array(bloomBytes.buffer, bloomBytes.byteOffset, sBloomBytes / 4),
      new Uint32Array(bloomBytes.buffer, bloomBytes.byteOffset + sBloomBytes, cBloomBytes / 4),
    ];
    return new IndexTable(source, meta, verifyBlocks, footer, blooms, where);
  }

  close(): void {
    this.source.close();
  }

  /** Called once when a block read after open fails its checksum (the owner drops the file). */
  onCorrupt: ((error: IndexCorruptError) => void) | undefined;

  private corrupt(detail: string): IndexCorruptError {
    const error = new IndexCorruptError(this.where, detail);
    const hook = this.onCorrupt;
    this.onCorrupt = undefined;
    hook?.(error);
    return error;
  }

  /**
   * Checks every block's checksum, reading about 1 MiB at a time: what open does before it
   * trusts a table file (a flipped bit in an entry would otherwise name a wrong seq).
   */
  verify(): void {
    const sections = [
      { base: 0, count: this.meta.streamCount, per: this.meta.streamBlockEntries, bytes: STREAM_ENTRY_BYTES, crcs: this.sCrc, what: 'stream' },
      { base: this.meta.streamCount * STREAM_ENTRY_BYTES, count: this.meta.commandCount, per: this.meta.commandBlockEntries, bytes: COMMAND_ENTRY_BYTES, crcs: this.cCrc, what: 'command' },
    ];
    for (const { base, count, per, bytes, crcs, what } of sections) {
      const blockBytes = per * bytes;
      const blocksPerRead = Math.max(1, Math.floor((1024 * 1024) / blockBytes));
      for (let b = 0; b < crcs.length; b += blocksPerRead) {
        const end = Math.min(count * bytes, (b + blocksPerRead) * blockBytes);
        const chunk = this.source.read(base + b * blockBytes, end - b * blockBytes);
        for (let i = 0; i * blockBytes < chunk.length; i++) {
          const from = i * blockBytes;
          if (crc32c(chunk, from, Math.min(chunk.length, from + blockBytes)) !== crcs[b + i]) throw new IndexCorruptError(this.where, `${what} block ${b + i} checksum mismatch`);
        }
      }
    }
  }

  /** Bytes of memory the table holds (its buffer when in memory, else its midpoints). */
  get memoryBytes(): number {
    return (this.source instanceof BufferSource ? this.source.size : 0) + this.sHi.length * 20 + this.cHi.length * 12 + this.sBloom.byteLength + this.cBloom.byteLength;
  }

  private streamBlock(b: number): Buffer {
    const per = this.meta.streamBlockEntries;
    const n = Math.min(per, this.meta.streamCount - b * per);
    const bytes = this.source.read(b * per * STREAM_ENTRY_BYTES, n * STREAM_ENTRY_BYTES);
    if (this.verifyBlocks && crc32c(bytes, 0, bytes.length) !== this.sCrc[b]) throw this.corrupt(`stream block ${b} checksum mismatch`);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  private commandBlock(b: number): Buffer {
    const per = this.meta.commandBlockEntries;
    const n = Math.min(per, this.meta.commandCount - b * per);
    const base = this.meta.streamCount * STREAM_ENTRY_BYTES;
    const bytes = this.source.read(base + b * per * COMMAND_ENTRY_BYTES, n * COMMAND_ENTRY_BYTES);
    if (this.verifyBlocks && crc32c(bytes, 0, bytes.length) !== this.cCrc[b]) throw this.corrupt(`command block ${b} checksum mismatch`);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  /** Index of the last stream block whose first key is ≤ (hi, lo, version), or -1. */
  private lastStreamBlockAtOrBefore(hi: number, lo: number, version: number): number {
    let l = 0;
    let h = this.sHi.length;
    while (l < h) {
      const m = (l + h) >>> 1;
      const c = cmpHash(this.sHi[m], this.sLo[m], hi, lo) || (this.sVer[m] <= version ? -1 : 1);
      if (c <= 0) l = m + 1;
      else h = m;
    }
    return l - 1;
  }

  /** The last event of the run with the highest version for a hash (the stream's latest version if no other stream shares the hash). */
  streamLast(hi: number, lo: number): StreamEntry | undefined {
    if (!bloomHas(this.sBloom, hi, lo)) return undefined;
    const b = this.lastStreamBlockAtOrBefore(hi, lo, Number.MAX_VALUE);
    if (b < 0) return undefined;
    const block = this.streamBlock(b);
    for (let o = block.length - STREAM_ENTRY_BYTES; o >= 0; o -= STREAM_ENTRY_BYTES) {
      const c = cmpHash(block.readUInt32LE(o), block.readUInt32LE(o + 4), hi, lo);
      if (c === 0) return { version: block.readDoubleLE(o + 8), seq: block.readDoubleLE(o + 16) };
      if (c < 0) return undefined;
    }
    return undefined;
  }

  /**
   * Every run for a hash holding a version ≥ `fromVersion`, ascending by (last version, last
   * seq). Runs of two streams that share the hash interleave (their version ranges may overlap).
   */
  streamRuns(hi: number, lo: number, fromVersion: number, out: StreamRun[]): void {
    if (!bloomHas(this.sBloom, hi, lo)) return;
    // Runs ending before fromVersion sort before (hash, fromVersion); runs of equal key (a
    // collision) may straddle blocks: start at the last block whose first key is below it.
    let b = Math.max(0, this.lastStreamBlockAtOrBefore(hi, lo, fromVersion - 0.5));
    for (; b < this.sHi.length; b++) {
      if (cmpHash(this.sHi[b], this.sLo[b], hi, lo) > 0) return;
      const block = this.streamBlock(b);
      for (let o = 0; o < block.length; o += STREAM_ENTRY_BYTES) {
        const c = cmpHash(block.readUInt32LE(o), block.readUInt32LE(o + 4), hi, lo);
        if (c < 0) continue;
        if (c > 0) return;
        const version = block.readDoubleLE(o + 8);
        if (version >= fromVersion) out.push({ version, seq: block.readDoubleLE(o + 16), count: block.readUInt32LE(o + 24) });
      }
    }
  }

  /**
   * Every event for a hash with version ≥ `fromVersion`: the runs of {@link streamRuns},
   * expanded, each ascending by version (runs of streams that share the hash interleave).
   */
  streamEntries(hi: number, lo: number, fromVersion: number, out: StreamEntry[]): void {
    const runs: StreamRun[] = [];
    this.streamRuns(hi, lo, fromVersion, runs);
    for (const r of runs) {
      for (let v = Math.max(fromVersion, r.version - r.count + 1); v <= r.version; v++) out.push({ version: v, seq: r.seq - (r.version - v) });
    }
  }

  /** Seqs of the commits recorded under a command-id hash (usually none or one). */
  commandSeqs(hi: number, lo: number, out: number[]): void {
    if (!bloomHas(this.cBloom, hi, lo)) return;
    let l = 0;
    let h = this.cHi.length;
    while (l < h) {
      const m = (l + h) >>> 1;
      if (cmpHash(this.cHi[m], this.cLo[m], hi, lo) < 0) l = m + 1;
      else h = m;
    }
    // Entries for the hash may start in the block before the first whose first key is ≥ it.
    for (let b = Math.max(0, l - 1); b < this.cHi.length; b++) {
      if (b > l - 1 && cmpHash(this.cHi[b], this.cLo[b], hi, lo) > 0) return;
      const block = this.commandBlock(b);
      for (let o = 0; o < block.length; o += COMMAND_ENTRY_BYTES) {
        const c = cmpHash(block.readUInt32LE(o), block.readUInt32LE(o + 4), hi, lo);
        if (c < 0) continue;
        if (c > 0) return;
        out.push(block.readDoubleLE(o + 8));
      }
    }
  }

  /**
   * Reads the stream entries in order, a block at a time (for merging). A block is valid until
   * the next one is asked for (a file table reads them into one scratch buffer): a merge reads
   * each entry once, so no block is copied.
   */
  *streamCursor(): Generator<Buffer> {
    for (let b = 0; b < this.sHi.length; b++) yield this.streamBlock(b);
  }

  /** As {@link streamCursor}, for the command entries. */
  *commandCursor(): Generator<Buffer> {
    for (let b = 0; b < this.cHi.length; b++) yield this.commandBlock(b);
  }
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Bloom filter words for `entries` entries (0 words: the filter answers "maybe" to everything). */
export function bloomWords(entries: number): number {
  return Math.min(BLOOM_BYTES_MAX / 4, Math.ceil((entries * BLOOM_BITS_PER_ENTRY) / 32));
}

function bloomAdd(bits: Uint32Array, hi: number, lo: number): void {
  const m = bits.length * 32;
  if (m === 0) return;
  let h = hi;
  const step = lo | 1;
  for (let i = 0; i < BLOOM_PROBES; i++) {
    const bit = h % m;
    bits[bit >>> 5] |= 1 << (bit & 31);
    h = (h + step) >>> 0;
  }
}

function bloomHas(bits: Uint32Array, hi: number, lo: number): boolean {
  const m = bits.length * 32;
  if (m === 0) return true;
  let h = hi;
  const step = lo | 1;
  for (let i = 0; i < BLOOM_PROBES; i++) {
    const bit = h % m;
    if ((bits[bit >>> 5] & (1 << (bit & 31))) === 0) return false;
    h = (h + step) >>> 0;
  }
  return true;
}

function blocks(count: number, per: number): number {
  return per < 1 ? 0 : Math.ceil(count / per);
}

/**
 * Writes a table: stream entries in order, then command entries in order, then `finish`.
 * Bytes accumulate in chunks the caller takes ({@link takeChunks}) to write them out as it
 * goes, so merging two large tables never holds either in memory.
 */
export class TableBuilder {
  private chunks: Buffer[] = [];
  private block: Buffer;
  /** `block` as a DataView: its setters are inlined by the optimizing compiler, Buffer's write*LE are calls. */
  private view: DataView;
  private blockUsed = 0;
  private section: 'streams' | 'commands' = 'streams';
  private readonly sMid: number[] = [];
  private readonly sCrc: number[] = [];
  private readonly cMid: number[] = [];
  private readonly cCrc: number[] = [];
  streamCount = 0;
  commandCount = 0;
  newStreams = 0;
  private lastHi = 0;
  private lastLo = 0;
  private lastVer = -1;
  private lastSeq = -1;
  private readonly sBloom: Uint32Array;
  private readonly cBloom: Uint32Array;

  /** Where the table goes when it is built in place ({@link TableBuilder.into}); undefined: in chunks. */
  private readonly out: Buffer | undefined;
  private outBytes = 0;

  /**
   * `streamsMax` and `commandsMax` (upper bounds of the entries to come) size the Bloom filters.
   * With `out` (at least {@link tableBytesMax} of them), the table is written into it in place
   * instead of in chunks: no chunk is allocated or copied, {@link takeChunks} returns nothing and
   * {@link byteLength} says how much of `out` the table holds.
   */
  constructor(streamsMax: number, commandsMax: number, out?: Buffer) {
    this.out = out;
    this.block = out === undefined ? Buffer.allocUnsafe(STREAM_BLOCK_ENTRIES * STREAM_ENTRY_BYTES) : out.subarray(0, STREAM_BLOCK_ENTRIES * STREAM_ENTRY_BYTES);
    this.view = viewOf(this.block);
    this.sBloom = new Uint32Array(bloomWords(streamsMax));
    this.cBloom = new Uint32Array(bloomWords(commandsMax));
  }

  /**
   * Appends a stream run (`count` events ending at `version` and `seq`); runs must come sorted
   * by (hash, version, seq).
   */
  addStream(hi: number, lo: number, version: number, seq: number, count: number): void {
    const c = cmpHash(hi, lo, this.lastHi, this.lastLo) || version - this.lastVer || seq - this.lastSeq;
    if (this.streamCount > 0 && c <= 0) throw new Error(`[sluice/store] index table builder: stream entries out of order (bug)`);
    if (!(count >= 1 && count <= version && count <= seq)) throw new Error(`[sluice/store] index table builder: a run of ${count} events ending at version ${version}, seq ${seq} (bug)`);
    if (this.blockUsed === 0) this.sMid.push(hi, lo, version);
    if (hi !== this.lastHi || lo !== this.lastLo || this.streamCount === 0) bloomAdd(this.sBloom, hi, lo);
    const o = this.blockUsed * STREAM_ENTRY_BYTES;
    const v = this.view;
    v.setUint32(o, hi, true);
    v.setUint32(o + 4, lo, true);
    v.setFloat64(o + 8, version, true);
    v.setFloat64(o + 16, seq, true);
    v.setUint32(o + 24, count, true);
    this.lastHi = hi;
    this.lastLo = lo;
    this.lastVer = version;
    this.lastSeq = seq;
    this.streamCount++;
    if (version === count) this.newStreams++;
    if (++this.blockUsed === STREAM_BLOCK_ENTRIES) this.endBlock(this.sCrc, STREAM_ENTRY_BYTES);
  }

  /** Appends a command entry, after every stream entry; sorted by (hash, seq). */
  addCommand(hi: number, lo: number, seq: number): void {
    if (this.section === 'streams') {
      if (this.blockUsed > 0) this.endBlock(this.sCrc, STREAM_ENTRY_BYTES);
      this.section = 'commands';
      this.block = this.nextBlock(COMMAND_BLOCK_ENTRIES * COMMAND_ENTRY_BYTES);
      this.view = viewOf(this.block);
      this.lastSeq = -1;
    } else if ((cmpHash(hi, lo, this.lastHi, this.lastLo) || seq - this.lastSeq) <= 0) {
      throw new Error(`[sluice/store] index table builder: command entries out of order (bug)`);
    }
    if (this.blockUsed === 0) this.cMid.push(hi, lo);
    bloomAdd(this.cBloom, hi, lo);
    const o = this.blockUsed * COMMAND_ENTRY_BYTES;
    const v = this.view;
    v.setUint32(o, hi, true);
    v.setUint32(o + 4, lo, true);
    v.setFloat64(o + 8, seq, true);
    this.lastHi = hi;
    this.lastLo = lo;
    this.lastSeq = seq;
    this.commandCount++;
    if (++this.blockUsed === COMMAND_BLOCK_ENTRIES) this.endBlock(this.cCrc, COMMAND_ENTRY_BYTES);
  }

  /** Hands the full block over as a chunk (no copy) and starts a fresh one of the same size. */
  private endBlock(crcs: number[], entryBytes: number): void {
    const bytes = this.block.subarray(0, this.blockUsed * entryBytes);
    crcs.push(crc32c(bytes, 0, bytes.length));
    if (this.out === undefined) this.chunks.push(bytes);
    else this.outBytes += bytes.length;
    this.block = this.nextBlock(this.block.length);
    this.view = viewOf(this.block);
    this.blockUsed = 0;
  }

  /** A fresh block: the next `bytes` of `out` when building in place, else a new buffer. */
  private nextBlock(bytes: number): Buffer {
    // A block is never written past the entries announced (streamsMax, commandsMax), so a view clamped at the end of `out` is enough.
    return this.out === undefined ? Buffer.allocUnsafe(bytes) : this.out.subarray(this.outBytes, this.outBytes + bytes);
  }

  /** Bytes of the table written into `out` so far (all of it after {@link finish}). */
  get byteLength(): number {
    return this.outBytes;
  }

  /** Chunks written so far (the caller writes them out and drops them). */
  takeChunks(): Buffer[] {
    const chunks = this.chunks;
    this.chunks = [];
    return chunks;
  }

  /** Seals the table: footer and trailer. Take the last chunks after it. */
  finish(meta: Omit<TableMeta, 'streamCount' | 'commandCount' | 'newStreams' | 'streamBlockEntries' | 'commandBlockEntries'>): void {
    if (this.blockUsed > 0) this.endBlock(this.section === 'streams' ? this.sCrc : this.cCrc, this.section === 'streams' ? STREAM_ENTRY_BYTES : COMMAND_ENTRY_BYTES);
    const sb = this.sCrc.length;
    const cb = this.cCrc.length;
    const footer = Buffer.alloc(sb * 20 + cb * 12);
    let o = 0;
    for (let b = 0; b < sb; b++, o += 16) {
      footer.writeUInt32LE(this.sMid[b * 3], o);
      footer.writeUInt32LE(this.sMid[b * 3 + 1], o + 4);
      footer.writeDoubleLE(this.sMid[b * 3 + 2], o + 8);
    }
    for (let b = 0; b < sb; b++, o += 4) footer.writeUInt32LE(this.sCrc[b], o);
    for (let b = 0; b < cb; b++, o += 8) {
      footer.writeUInt32LE(this.cMid[b * 2], o);
      footer.writeUInt32LE(this.cMid[b * 2 + 1], o + 4);
    }
    for (let b = 0; b < cb; b++, o += 4) footer.writeUInt32LE(this.cCrc[b], o);
    const t = Buffer.alloc(TRAILER_BYTES);
    t.write(TABLE_MAGIC, 0, 'latin1');
    t.writeUInt32LE(TABLE_FORMAT, 8);
    t.writeUInt32LE(meta.level, 12);
    t.writeDoubleLE(this.streamCount, 16);
    t.writeDoubleLE(this.commandCount, 24);
    t.writeDoubleLE(this.newStreams, 32);
    t.writeDoubleLE(meta.fromSeq, 40);
    t.writeDoubleLE(meta.toSeq, 48);
    t.writeUInt32LE(meta.identity.epoch, 56);
    t.writeUInt32LE(STREAM_BLOCK_ENTRIES, 60);
    t.writeUInt32LE(COMMAND_BLOCK_ENTRIES, 64);
    t.writeUInt32LE(crc32c(footer, 0, footer.length), 68);
    t.set(meta.identity.digest.subarray(0, 20), 72);
    t.set(meta.partitionDigest.subarray(0, 20), 92);
    t.writeDoubleLE(this.streamCount * STREAM_ENTRY_BYTES + this.commandCount * COMMAND_ENTRY_BYTES, 112);
    const sBloom = Buffer.from(this.sBloom.buffer, this.sBloom.byteOffset, this.sBloom.byteLength);
    const cBloom = Buffer.from(this.cBloom.buffer, this.cBloom.byteOffset, this.cBloom.byteLength);
    t.writeUInt32LE(sBloom.length, 120);
    t.writeUInt32LE(cBloom.length, 124);
    t.writeUInt32LE(crc32c(cBloom, 0, cBloom.length, crc32c(sBloom, 0, sBloom.length)), 128);
    t.writeUInt32LE(crc32c(t, 0, TRAILER_BYTES - 4), TRAILER_BYTES - 4);
    if (this.out === undefined) {
      this.chunks.push(footer, sBloom, cBloom, t);
      return;
    }
    for (const c of [footer, sBloom, cBloom, t]) {
      this.out.set(c, this.outBytes);
      this.outBytes += c.length;
    }
  }
}

/**
 * The size of a table of at most `streams` stream entries and `commands` command entries (exact
 * when it holds that many), built by a {@link TableBuilder} constructed with these two counts.
 */
export function tableBytesMax(streams: number, commands: number): number {
  const sb = Math.ceil(streams / STREAM_BLOCK_ENTRIES);
  const cb = Math.ceil(commands / COMMAND_BLOCK_ENTRIES);
  return streams * STREAM_ENTRY_BYTES + commands * COMMAND_ENTRY_BYTES + sb * 20 + cb * 12 + 4 * (bloomWords(streams) + bloomWords(commands)) + TRAILER_BYTES;
}
