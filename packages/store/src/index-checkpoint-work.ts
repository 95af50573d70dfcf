import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { StorageError } from './errors.js';
import { BufferSource, COMMAND_ENTRY_BYTES, FileSource, IndexTable, STREAM_ENTRY_BYTES, TableBuilder, tableBytesMax, type TableMeta } from './index-table.js';

/**
 * The CPU-heavy part of index checkpoints — sorting a frozen memtable into a table, merging two
 * tables of a level, writing the result (tmp file, fsync, rename, fsync of the directory) —
 * as plain functions of plain data, so the same code runs in the checkpoint worker thread
 * (`index-checkpoint-worker.ts`) and, when no worker can be started, inline.
 */

/** The metadata a new table is given (counts come from its entries). */
export type NewTableMeta = Omit<TableMeta, 'streamCount' | 'commandCount' | 'newStreams' | 'streamBlockEntries' | 'commandBlockEntries'>;

/** Where a table's bytes are: a file, or a shared buffer (in-memory tables; shared, so no copy). */
export type TableRef = { readonly path: string } | { readonly bytes: SharedArrayBuffer };

interface JobBase {
  readonly meta: NewTableMeta;
  /** Write the table here (with its directory fsync'd); undefined: return it in memory. */
  readonly path: string | undefined;
  readonly directory: string | undefined;
  /** `[sluice/store] partition "x" index`: prefixes error messages. */
  readonly where: string;
}

/**
 * Sort the memtable's durable prefix and the command hashes into a table. Stream entry `i` is a
 * run: `sCnt[i]` events of the stream hashed `(sHi[i], sLo[i])`, ending at version `sVer[i]`
 * and seq `sSeq[i]`.
 */
export interface BuildJob extends JobBase {
  readonly kind: 'build';
  readonly sHi: Uint32Array;
  readonly sLo: Uint32Array;
  readonly sVer: Float64Array;
  readonly sSeq: Float64Array;
  readonly sCnt: Uint32Array;
  readonly cHi: Uint32Array;
  readonly cLo: Uint32Array;
  readonly cSeq: Float64Array;
}

/** Merge two adjacent tables of one level; command entries at or below `commandSeqFloor` are dropped (retention). */
export interface MergeJob extends JobBase {
  readonly kind: 'merge';
  readonly a: TableRef;
  readonly b: TableRef;
  readonly commandSeqFloor: number;
}

export type CheckpointJob = BuildJob | MergeJob;

export interface CheckpointJobResult {
  /** The table's bytes, unless it was written to `path`. */
  readonly bytes: SharedArrayBuffer | undefined;
  /** True when the table is at `path`. */
  readonly written: boolean;
  /** Why writing failed (the bytes are returned instead): `{ reason, message }` of a StorageError. */
  readonly writeError: { readonly reason: string; readonly message: string } | undefined;
}

/** Runs one job to completion (synchronously: it is meant for a worker thread, or for the inline fallback). */
export function runCheckpointJob(job: CheckpointJob): CheckpointJobResult {
  return job.kind === 'build' ? build(job) : merge(job);
}

function build(job: BuildJob): CheckpointJobResult {
  const { sHi, sLo, sVer, sSeq, sCnt, cHi, cLo, cSeq } = job;
  const n = sHi.length;
  const m = cHi.length;
  const sOrder = sortedOrder(n, sHi, sLo, (a, b) => sHi[a] - sHi[b] || sLo[a] - sLo[b] || sVer[a] - sVer[b] || sSeq[a] - sSeq[b]);
  const cOrder = sortedOrder(m, cHi, cLo, (a, b) => cHi[a] - cHi[b] || cLo[a] - cLo[b] || cSeq[a] - cSeq[b]);
  // An in-memory table is built in place in the shared buffer it is handed over in (no chunks, no concatenation).
  const shared = job.path === undefined ? new SharedArrayBuffer(tableBytesMax(n, m)) : undefined;
  const builder = new TableBuilder(n, m, shared === undefined ? undefined : Buffer.from(shared));
  for (const i of sOrder) builder.addStream(sHi[i], sLo[i], sVer[i], sSeq[i], sCnt[i]);
  for (const i of cOrder) builder.addCommand(cHi[i], cLo[i], cSeq[i]);
  builder.finish(job.meta);
  if (shared !== undefined) return { bytes: exactly(shared, builder.byteLength), written: false, writeError: undefined };
  return output(job, builder.takeChunks());
}

/** `shared` cut to the table's `bytes` (a copy only when the table came out smaller than its bound). */
function exactly(shared: SharedArrayBuffer, bytes: number): SharedArrayBuffer {
  if (bytes > shared.byteLength) throw new Error(`[sluice/store] index table builder: ${bytes} bytes written into ${shared.byteLength} (bug)`);
  return bytes === shared.byteLength ? shared : shared.slice(0, bytes);
}

function merge(job: MergeJob): CheckpointJobResult {
  const a = openRef(job.a, job.where);
  let b: IndexTable | undefined;
  try {
    b = openRef(job.b, job.where);
    const streams = a.meta.streamCount + b.meta.streamCount;
    const commands = a.meta.commandCount + b.meta.commandCount;
    if (job.path !== undefined) {
      const builder = new TableBuilder(streams, commands);
      // Written out as it is merged: memory stays at a block or two, however large the tables.
      const file = new TableFileWriter(job.path, job.directory as string, job.where);
      try {
        for (const _ of mergeTables(a, b, builder, job.commandSeqFloor)) file.write(builder.takeChunks());
        builder.finish(job.meta);
        file.write(builder.takeChunks());
      } catch (error) {
        file.abort();
        throw error;
      }
      file.finish();
      return { bytes: undefined, written: true, writeError: undefined };
    }
    // In memory: built in place in a shared buffer sized for every entry (retention may drop commands: then cut to size).
    const shared = new SharedArrayBuffer(tableBytesMax(streams, commands));
    const builder = new TableBuilder(streams, commands, Buffer.from(shared));
    for (const _ of mergeTables(a, b, builder, job.commandSeqFloor)) {
      // Nothing to write out between steps: the table grows in place.
    }
    builder.finish(job.meta);
    return { bytes: exactly(shared, builder.byteLength), written: false, writeError: undefined };
  } finally {
    a.close();
    b?.close();
  }
}

function openRef(ref: TableRef, where: string): IndexTable {
  if ('path' in ref) return IndexTable.open(new FileSource(ref.path), `${where} table ${ref.path}`, true);
  return IndexTable.open(new BufferSource(Buffer.from(ref.bytes)), `${where} memory table`, false);
}

function output(job: CheckpointJob, chunks: readonly Buffer[]): CheckpointJobResult {
  if (job.path !== undefined) {
    try {
      writeTableFileSync(job.path, job.directory as string, chunks, job.where);
      return { bytes: undefined, written: true, writeError: undefined };
    } catch (error) {
      if (!(error instanceof StorageError) || job.kind === 'merge') throw error;
      // A checkpoint that cannot be written stays in memory (written at a later checkpoint).
      return { bytes: concatShared(chunks), written: false, writeError: { reason: error.reason, message: error.message } };
    }
  }
  return { bytes: concatShared(chunks), written: false, writeError: undefined };
}

function concatShared(chunks: readonly Buffer[]): SharedArrayBuffer {
  let total = 0;
  for (const c of chunks) total += c.length;
  const shared = new SharedArrayBuffer(total);
  const view = new Uint8Array(shared);
  let o = 0;
  for (const c of chunks) {
    view.set(c, o);
    o += c.length;
  }
  return shared;
}

/** The error of a failed index file write: says the partition keeps working and what to do. */
export function indexWriteError(where: string, path: string, directory: string, error: unknown): StorageError {
  return new StorageError(
    (error as NodeJS.ErrnoException).code === 'ENOSPC' ? 'Full' : 'Unavailable',
    `${where}: could not write ${path} (${(error as Error).message}); the partition keeps working with this part of the index in memory and retries at the next checkpoint: free space in ${directory}`,
    { cause: error },
  );
}

/** Writes a file whole or not at all: tmp file, fsync, rename, fsync of the directory. */
function writeTableFileSync(path: string, directory: string, chunks: readonly Buffer[], where: string): void {
  const file = new TableFileWriter(path, directory, where);
  file.write(chunks);
  file.finish();
}

/**
 * A table file written as its chunks come (a `.tmp` file), then made whole at once: fsync,
 * rename, fsync of the directory. A failure removes the tmp file and throws
 * {@link indexWriteError}; `abort()` removes it after another failure.
 */
class TableFileWriter {
  private readonly tmp: string;
  private fd: number | undefined;

  constructor(
    private readonly path: string,
    private readonly directory: string,
    private readonly where: string,
  ) {
    this.tmp = `${path}.tmp`;
    try {
      this.fd = openSync(this.tmp, 'w');
    } catch (error) {
      throw indexWriteError(where, path, directory, error);
    }
  }

  write(chunks: readonly Buffer[]): void {
    try {
      for (const c of chunks) {
        let done = 0;
        while (done < c.length) done += writeSync(this.fd as number, c, done, c.length - done);
      }
    } catch (error) {
      this.abort();
      throw indexWriteError(this.where, this.path, this.directory, error);
    }
  }

  finish(): void {
    try {
      fsyncSync(this.fd as number);
      closeSync(this.fd as number);
      this.fd = undefined;
    } catch (error) {
      this.abort();
      throw indexWriteError(this.where, this.path, this.directory, error);
    }
    renameSync(this.tmp, this.path);
    const dir = openSync(this.directory, 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  /** Closes and removes the tmp file (after a failure: the failure is the error to report). */
  abort(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // Closing a file that failed to write: the write's error is the one to report.
      }
      this.fd = undefined;
    }
    try {
      unlinkSync(this.tmp);
    } catch {
      // Never created, or already gone.
    }
  }
}

/** Bits of the entry index packed into a sort key (indexCheckpointEvents is at most 2^22). */
const ORDER_INDEX_BITS = 22;
const ORDER_INDEX_MASK = (1 << ORDER_INDEX_BITS) - 1;

/**
 * The order of entries `0..n-1` by hash then `cmp`: sorts 64-bit keys (hash high half · top 10
 * bits of the low half · entry index) natively, which is several times faster than a
 * comparator sort, then sorts with `cmp` only the runs whose keys tie (one stream's versions,
 * which the index already keeps in seq order, or rare partial-hash ties).
 */
function sortedOrder(n: number, hi: Uint32Array, lo: Uint32Array, cmp: (a: number, b: number) => number): Uint32Array {
  if (n > ORDER_INDEX_MASK + 1) throw new Error(`[sluice/store] index: ${n} entries in one checkpoint exceed 2^${ORDER_INDEX_BITS} (bug: indexCheckpointEvents is validated)`);
  const keys = new BigUint64Array(n);
  const words = new Uint32Array(keys.buffer);
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  const low = little ? 0 : 1;
  const high = 1 - low;
  for (let i = 0; i < n; i++) {
    words[2 * i + high] = hi[i];
    words[2 * i + low] = ((lo[i] & ~ORDER_INDEX_MASK) | i) >>> 0;
  }
  keys.sort();
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = words[2 * i + low] & ORDER_INDEX_MASK;
  // Runs of equal packed hash: put them in `cmp` order where the index order is not it.
  for (let start = 0; start < n; ) {
    let end = start + 1;
    const h = words[2 * start + high];
    const l = words[2 * start + low] & ~ORDER_INDEX_MASK;
    while (end < n && words[2 * end + high] === h && (words[2 * end + low] & ~ORDER_INDEX_MASK) === l) end++;
    if (end - start > 1) {
      let sorted = true;
      for (let i = start + 1; i < end && sorted; i++) sorted = cmp(order[i - 1], order[i]) < 0;
      if (!sorted) order.subarray(start, end).sort(cmp);
    }
    start = end;
  }
  return order;
}


/** Reads entries from a table's blocks one at a time (through a DataView: inlined, unlike Buffer's read*LE). */
class Cursor {
  private block: DataView | undefined;
  private o = 0;
  hi = 0;
  lo = 0;
  a = 0;
  b = 0;
  /** A stream run's event count (stream entries only). */
  n = 0;
  done = false;
  constructor(
    private readonly blocks: Generator<Buffer>,
    private readonly entryBytes: number,
  ) {
    this.next();
  }
  next(): void {
    while (this.block === undefined || this.o >= this.block.byteLength) {
      const r = this.blocks.next();
      if (r.done === true) {
        this.done = true;
        return;
      }
      // Valid until the next block is asked for (streamCursor): read once, never kept.
      this.block = new DataView(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      this.o = 0;
    }
    const blk = this.block;
    this.hi = blk.getUint32(this.o, true);
    this.lo = blk.getUint32(this.o + 4, true);
    this.a = blk.getFloat64(this.o + 8, true);
    if (this.entryBytes === STREAM_ENTRY_BYTES) {
      this.b = blk.getFloat64(this.o + 16, true);
      this.n = blk.getUint32(this.o + 24, true);
    }
    this.o += this.entryBytes;
  }
}

function before(x: Cursor, y: Cursor): boolean {
  return (x.hi - y.hi || x.lo - y.lo || x.a - y.a || x.b - y.b) < 0;
}

/**
 * Merges two tables' entries into `builder`, yielding every few thousand entries so the caller
 * can write chunks out (and let other work run). Command entries below `commandSeqFloor` are
 * dropped (retention).
 */
export function* mergeTables(a: IndexTable, b: IndexTable, builder: TableBuilder, commandSeqFloor: number): Generator<void> {
  let n = 0;
  const x = new Cursor(a.streamCursor(), STREAM_ENTRY_BYTES);
  const y = new Cursor(b.streamCursor(), STREAM_ENTRY_BYTES);
  while (!x.done || !y.done) {
    const c = y.done || (!x.done && before(x, y)) ? x : y;
    builder.addStream(c.hi, c.lo, c.a, c.b, c.n);
    c.next();
    if (++n % 16384 === 0) yield;
  }
  const p = new Cursor(a.commandCursor(), COMMAND_ENTRY_BYTES);
  const q = new Cursor(b.commandCursor(), COMMAND_ENTRY_BYTES);
  while (!p.done || !q.done) {
    const c = q.done || (!p.done && before(p, q)) ? p : q;
    if (c.a > commandSeqFloor) builder.addCommand(c.hi, c.lo, c.a);
    c.next();
    if (++n % 16384 === 0) yield;
  }
}
