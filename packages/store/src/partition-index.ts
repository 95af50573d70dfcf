import { unlinkSync } from 'node:fs';
import { mkdir, open as openFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventFrame } from '@sluice/framing';
import { describeIdentity, identityOf, sameIdentity } from './batch-identity.js';
import { StorageError } from './errors.js';
import { hash64, type Hash64 } from './hash64.js';
import { BufferSource, FileSource, IndexTable, TABLE_FILE_SUFFIX, TableBuilder, type StreamEntry, type TableMeta } from './index-table.js';
import type { BatchIdentity, PartitionStorage, StorageRecovery } from './storage.js';
import type { CommitResult, StreamCommit } from './types.js';

/** What the index knows about a commit that recorded command ids. `group` is the engine's, until durable. */
export interface CommitRecord<G> {
  result: CommitResult;
  group: G | undefined;
}

/** Options of the partition index (from {@link PartitionOptions}). */
export interface PartitionIndexOptions {
  readonly name: string;
  /** Directory for persisted tables; undefined keeps the tables in memory. */
  readonly directory: string | undefined;
  /** Events in the memtable (since the last checkpoint) that trigger a checkpoint. */
  readonly checkpointEvents: number;
  /** Streams whose version is cached (LRU) beside the memtable. */
  readonly streamCacheMax: number;
  /** Command ids older than this many seqs behind the head are forgotten; undefined: never. */
  readonly commandIdRetentionSeqs: number | undefined;
  /** Called with every index error the partition survives (e.g. disk full while writing a table). */
  readonly onError: ((error: Error) => void) | undefined;
  /** @internal tests force hash collisions with it */
  readonly hash?: Hash64 | undefined;
  /** Discard every index file found on open and rebuild from the log (reindexPartition). */
  readonly rebuild?: boolean | undefined;
  /** Check every block's checksum on open (`full`), or only trailers, footers and sizes (`footer`). */
  readonly verifyOnOpen: 'full' | 'footer';
}

/** What the index did on open and since: for operators and tests. */
export interface IndexStatus {
  /** Where tables are persisted, or undefined when the index is kept in memory. */
  readonly directory: string | undefined;
  /** Seq up to which the index is held in tables (memory or disk); the memtable holds the rest. */
  readonly checkpointSeq: number;
  /** Seq up to which tables are on disk (0 without a directory). */
  readonly persistedSeq: number;
  readonly tables: number;
  /** Events in the memtable. */
  readonly memtableEvents: number;
  /** The seq the open replayed the log from (1 when it rebuilt everything), and how many frames. */
  readonly replayedFromSeq: number;
  readonly replayedFrames: number;
  /** Index files found on open and not used, with why (corrupt, other partition, stale, superseded). */
  readonly discarded: readonly string[];
  /** The last index error the partition survived, if any. */
  readonly lastError: Error | undefined;
  /** True while tables are being written or merged in the background. */
  readonly busy: boolean;
}

interface MemStream {
  version: number;
  /** Version of seqs[0]. */
  firstVersion: number;
  seqs: number[];
}

interface Table {
  table: IndexTable;
  level: number;
  /** Path once on disk. */
  file: string | undefined;
}

/** Buffers of in-memory tables are never merged past this (a Buffer is at most 4 GiB). */
const MEMORY_TABLE_BYTES_MAX = 1024 * 1024 * 1024;
const ZERO_DIGEST = new Uint8Array(20);

/**
 * The stream and command-id indexes of one partition, as a small log-structured merge tree:
 *
 * - a **memtable** (Maps keyed by the full id) holds what was appended since the last index
 *   checkpoint, including groups still in flight; it is bounded by `checkpointEvents`;
 * - at a checkpoint (a durable batch boundary) its durable part becomes an immutable, sorted
 *   **table** of 64-bit hashes bound to the batch identity there; with a directory the table
 *   is written to disk (tmp file, fsync, rename) in the background, and tables of equal level
 *   are merged, so there are O(log(log size / checkpointEvents)) of them;
 * - a bounded **LRU cache** holds stream versions found in tables.
 *
 * Lookups check the memtable, the cache, then tables newest first. A table hit names a seq;
 * it is confirmed by reading that frame from storage (hash collisions), which is why hits
 * resolve asynchronously while misses (new streams, new command ids: the common case) answer
 * synchronously.
 */
export class PartitionIndex<G> {
  private streams = new Map<string, MemStream>();
  private commands = new Map<string, CommitRecord<G>>();
  /** The memtable's stream entries in seq order, hashed as they come: a checkpoint sorts a prefix. */
  private memHi = new Uint32Array(1024);
  private memLo = new Uint32Array(1024);
  private memVer = new Float64Array(1024);
  private memSeq = new Float64Array(1024);
  private readonly cache: VersionCache;
  private tables: Table[] = [];
  private memEvents = 0;
  private memNewStreams = 0;
  private tableNewStreams = 0;
  /** Bumped whenever tables change: answers resolved against older tables are looked up again. */
  gen = 0;
  private checkpoint = 0;
  private headSeq = 0;
  private partitionDigest: Uint8Array | undefined;
  private fetchingPartitionDigest = false;
  private durableHead: BatchIdentity = { lastSeq: 0, epoch: 0, digest: ZERO_DIGEST };
  private maintaining: Promise<void> | undefined;
  private closing = false;
  private replayedFromSeq = 1;
  private replayedFrames = 0;
  private readonly discarded: string[] = [];
  private lastError: Error | undefined;
  private readonly hash: Hash64;
  private readonly h = new Uint32Array(2);
  private readonly where: string;

  constructor(
    private readonly storage: PartitionStorage,
    private readonly options: PartitionIndexOptions,
  ) {
    this.hash = options.hash ?? hash64;
    this.cache = new VersionCache(options.streamCacheMax);
    this.where = `[sluice/store] partition "${options.name}" index`;
  }

  get status(): IndexStatus {
    let persisted = 0;
    for (const t of this.tables) {
      if (t.file === undefined) break;
      persisted = t.table.meta.toSeq;
    }
    return {
      directory: this.options.directory,
      checkpointSeq: this.checkpoint,
      persistedSeq: persisted,
      tables: this.tables.length,
      memtableEvents: this.memEvents,
      replayedFromSeq: this.replayedFromSeq,
      replayedFrames: this.replayedFrames,
      discarded: [...this.discarded],
      lastError: this.lastError,
      busy: this.maintaining !== undefined,
    };
  }

  /** Streams with at least one event (each has exactly one version-1 entry). */
  get streamCount(): number {
    return this.tableNewStreams + this.memNewStreams;
  }

  // ---------------------------------------------------------------- open

  /**
   * Loads the persisted tables that are valid for this log (checked against
   * `storage.identityAt`), then replays the log after the last one. Returns the highest epoch
   * seen in what was replayed.
   */
  async open(recovery: StorageRecovery): Promise<number> {
    const lastSeq = recovery.lastSeq;
    if (lastSeq > 0) this.partitionDigest = (await this.storage.identityAt(1))?.digest;
    if (this.options.directory !== undefined) await this.loadTables(lastSeq);
    this.headSeq = lastSeq;
    const from = this.checkpoint + 1;
    this.replayedFromSeq = from;
    let maxEpoch = this.tables.at(-1)?.table.meta.identity.epoch ?? 0;
    if (from <= lastSeq) maxEpoch = Math.max(maxEpoch, await this.replay(from, lastSeq));
    if (this.options.directory !== undefined) {
      // A long replay is checkpointed now, so the next open does not repeat it.
      if (this.memEvents > 0 && this.replayedFrames >= this.options.checkpointEvents / 2) this.flush(recovery.head);
      this.kick();
    }
    return maxEpoch;
  }

  private async loadTables(lastSeq: number): Promise<void> {
    const dir = this.options.directory as string;
    await mkdir(dir, { recursive: true });
    const found: Table[] = [];
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      if (name.endsWith(`${TABLE_FILE_SUFFIX}.tmp`)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (!name.endsWith(TABLE_FILE_SUFFIX)) continue;
      if (this.options.rebuild === true) {
        await this.discard(path, 'reindex requested');
        continue;
      }
      let source: FileSource | undefined;
      try {
        source = new FileSource(path);
        const table = IndexTable.open(source, `${this.where} table ${path}`, true);
        if (this.options.verifyOnOpen === 'full') table.verify();
        found.push({ table, level: table.meta.level, file: path });
      } catch (error) {
        source?.close();
        await this.discard(path, (error as Error).message);
      }
    }
    const used = new Set<Table>();
    let next = 1;
    const digest = this.partitionDigest ?? ZERO_DIGEST;
    for (;;) {
      // Prefer the table covering the most from `next` (merged tables supersede their inputs).
      const candidates = found
        .filter((t) => !used.has(t) && t.table.meta.fromSeq === next && t.table.meta.toSeq >= next)
        .sort((a, b) => b.table.meta.toSeq - a.table.meta.toSeq);
      let chosen: Table | undefined;
      for (const t of candidates) {
        const meta = t.table.meta;
        if (!equal(meta.partitionDigest, digest)) continue;
        if (meta.toSeq > lastSeq) continue;
        const actual = await this.storage.identityAt(meta.toSeq);
        if (actual === undefined || !sameIdentity(actual, meta.identity) || actual.lastSeq !== meta.toSeq) continue;
        chosen = t;
        break;
      }
      if (chosen === undefined) break;
      used.add(chosen);
      this.tables.push(chosen);
      next = chosen.table.meta.toSeq + 1;
    }
    for (const t of found) {
      if (used.has(t)) continue;
      const meta = t.table.meta;
      t.table.close();
      const reason = !equal(meta.partitionDigest, digest)
        ? 'from another partition or an older incarnation of this one (its first batch differs)'
        : meta.toSeq > lastSeq
          ? `checkpoint at seq ${meta.toSeq} is beyond the log's last seq ${lastSeq} (the log was cut)`
          : meta.fromSeq < next && meta.toSeq < next
            ? 'superseded by a merged table'
            : `checkpoint identity (${describeIdentity(meta.identity)}) does not match the log there, or an earlier table is missing`;
      await this.discard(t.file as string, reason);
    }
    for (const t of this.tables) {
      this.tableNewStreams += t.table.meta.newStreams;
      this.watch(t);
    }
    this.checkpoint = this.tables.at(-1)?.table.meta.toSeq ?? 0;
  }

  /**
   * A block that fails its checksum after open: the lookup rejects (IndexCorruptError says to
   * rebuild), the error is reported, and the file is deleted at once, so the next open replays
   * the log from the table before it instead of trusting it.
   */
  private watch(t: Table): void {
    t.table.onCorrupt = (error) => {
      this.report(error);
      if (t.file !== undefined) {
        try {
          unlinkSync(t.file);
        } catch {
          // Already gone: nothing to distrust.
        }
      }
    };
  }

  private async discard(path: string, reason: string): Promise<void> {
    this.discarded.push(`${path}: ${reason}`);
    // Index files are derived: removing one never touches the log.
    await unlink(path).catch(() => undefined);
  }

  /** Rebuilds the memtable from the log `from..to`, checkpointing as it goes. */
  private async replay(from: number, to: number): Promise<number> {
    let expect = from;
    let maxEpoch = 0;
    let commitFirst = 0;
    let commitStreams: Map<string, StreamCommit> | undefined;
    let commitIds: readonly string[] | undefined;
    for await (const batch of this.storage.read(from, to)) {
      for (const frame of batch.frames) {
        if (frame.seq < from) continue;
        if (frame.seq !== expect) {
          throw new StorageError('Corrupt', `${this.where}: ${this.storage.kind} storage returned seq ${frame.seq} where ${expect} was expected`);
        }
        expect++;
        if (frame.epoch > maxEpoch) maxEpoch = frame.epoch;
        const m = this.streams.get(frame.streamId);
        if (m !== undefined && frame.streamVersion !== m.version + 1) {
          throw new StorageError('Corrupt', `${this.where}: stream "${frame.streamId}" jumps from version ${m.version} to ${frame.streamVersion} at seq ${frame.seq}`);
        }
        this.noteStream(frame.streamId, frame.streamVersion - 1, frame.seq, 1);
        if (frame.commitFirst) {
          commitFirst = frame.seq;
          commitStreams = undefined;
          commitIds = frame.headers?.commandIds;
          if (commitIds !== undefined && commitIds.length === 0) commitIds = undefined;
        }
        if (commitIds !== undefined) {
          commitStreams ??= new Map();
          const s = commitStreams.get(frame.streamId);
          commitStreams.set(frame.streamId, { streamId: frame.streamId, firstVersion: s?.firstVersion ?? frame.streamVersion, version: frame.streamVersion });
          if (frame.commitLast) {
            const record: CommitRecord<G> = {
              result: { firstSeq: commitFirst, lastSeq: frame.seq, streams: [...commitStreams.values()], timestamp: frame.timestamp, duplicate: false },
              group: undefined,
            };
            for (const id of commitIds) this.commands.set(id, record);
            commitIds = undefined;
          }
        }
        this.replayedFrames++;
      }
      if (this.memtableFull() && batch.lastSeq <= to) {
        this.flush(identityOf(batch));
      }
    }
    if (expect - 1 !== to) throw new StorageError('Corrupt', `${this.where}: storage reported last seq ${to} but holds frames up to ${expect - 1}`);
    return maxEpoch;
  }

  // ---------------------------------------------------------------- appends

  /** Records `count` events appended to a stream at seqs `firstSeq..`, its version before them being `base`. */
  noteStream(streamId: string, base: number, firstSeq: number, count: number): void {
    let m = this.streams.get(streamId);
    if (m === undefined) {
      m = { version: base, firstVersion: base + 1, seqs: [] };
      this.streams.set(streamId, m);
    }
    if (base === 0) this.memNewStreams++;
    this.hash(streamId, this.h);
    const hi = this.h[0];
    const lo = this.h[1];
    let at = this.memEvents;
    if (at + count > this.memSeq.length) this.growMemtable(at + count);
    for (let i = 0; i < count; i++, at++) {
      m.seqs.push(firstSeq + i);
      this.memHi[at] = hi;
      this.memLo[at] = lo;
      this.memVer[at] = base + 1 + i;
      this.memSeq[at] = firstSeq + i;
    }
    m.version += count;
    this.memEvents += count;
    if (firstSeq + count - 1 > this.headSeq) this.headSeq = firstSeq + count - 1;
  }

  /** Events and command ids both count: a unit may carry many ids for few events. */
  private memtableFull(): boolean {
    return this.memEvents + this.commands.size >= this.options.checkpointEvents;
  }

  private growMemtable(needed: number): void {
    const size = Math.max(needed, this.memSeq.length * 2);
    const grow = <T extends Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.memHi = grow(this.memHi, (n) => new Uint32Array(n));
    this.memLo = grow(this.memLo, (n) => new Uint32Array(n));
    this.memVer = grow(this.memVer, (n) => new Float64Array(n));
    this.memSeq = grow(this.memSeq, (n) => new Float64Array(n));
  }

  noteCommand(commandId: string, record: CommitRecord<G>): void {
    this.commands.set(commandId, record);
  }

  /**
   * Called once a durable head is known (the engine cleared the records' groups first): takes a
   * checkpoint when the memtable is full.
   */
  afterDurable(head: BatchIdentity): void {
    this.durableHead = head;
    if (this.partitionDigest === undefined && head.lastSeq > 0) {
      // The first batch names the partition in every table; learn it once, off the hot path.
      if (!this.fetchingPartitionDigest) {
        this.fetchingPartitionDigest = true;
        this.storage.identityAt(1).then(
          (id) => {
            this.partitionDigest = id?.digest;
            this.fetchingPartitionDigest = false;
            if (this.partitionDigest !== undefined && !this.closing) this.afterDurable(this.durableHead);
          },
          (error: unknown) => {
            this.fetchingPartitionDigest = false;
            this.report(error);
          },
        );
      }
      return;
    }
    if (!this.memtableFull() || head.lastSeq <= this.checkpoint) return;
    this.flush(head);
    this.kick();
  }

  // ---------------------------------------------------------------- lookups

  /**
   * A stream's version from memory, or undefined when a table holds its hash and the answer
   * must be confirmed by {@link resolveVersion}. `resolved` holds answers confirmed earlier for
   * the current {@link gen}.
   */
  versionNow(streamId: string, resolved?: Resolved<G>): number | undefined {
    const m = this.streams.get(streamId);
    if (m !== undefined) return m.version;
    if (resolved !== undefined && resolved.gen === this.gen) {
      const v = resolved.versions.get(streamId);
      if (v !== undefined) return v;
    }
    const cached = this.cache.get(streamId);
    if (cached !== undefined) return cached;
    if (this.tables.length === 0) return 0;
    this.hash(streamId, this.h);
    const hi = this.h[0];
    const lo = this.h[1];
    for (let i = this.tables.length - 1; i >= 0; i--) if (this.tables[i].table.streamLast(hi, lo) !== undefined) return undefined;
    return 0;
  }

  /** A stream's version, unconfirmed when a table must be asked (for the synchronous `streamVersion` getter). */
  versionUnconfirmed(streamId: string): number {
    const v = this.versionNow(streamId);
    if (v !== undefined) return v;
    this.hash(streamId, this.h);
    for (let i = this.tables.length - 1; i >= 0; i--) {
      const e = this.tables[i].table.streamLast(this.h[0], this.h[1]);
      if (e !== undefined) return e.version;
    }
    return 0;
  }

  /** A stream's version, confirmed against the log when a table holds its hash. */
  async resolveVersion(streamId: string): Promise<number> {
    const now = this.versionNow(streamId);
    if (now !== undefined) return now;
    const gen = this.gen;
    this.hash(streamId, this.h);
    const hi = this.h[0];
    const lo = this.h[1];
    let version = 0;
    const tables = this.tables;
    let collided = false;
    for (let i = tables.length - 1; i >= 0; i--) {
      const e = tables[i].table.streamLast(hi, lo);
      if (e === undefined) continue;
      if ((await this.frameAt(e.seq)).streamId === streamId) version = e.version;
      else collided = true;
      break;
    }
    if (collided) {
      // Another stream shares the hash: walk every entry for it, newest version first.
      // (this.tables, not `tables`: a merge may have replaced and closed those while we read.)
      const entries: StreamEntry[] = [];
      for (const t of this.tables) t.table.streamEntries(hi, lo, 1, entries);
      entries.sort((a, b) => b.seq - a.seq);
      for (const e of entries) {
        if ((await this.frameAt(e.seq)).streamId === streamId) {
          version = e.version;
          break;
        }
      }
    }
    if (gen === this.gen && !this.streams.has(streamId)) this.cacheSet(streamId, version);
    return version;
  }

  /**
   * The commit a command id produced, from memory: the record, `null` when the id is unknown
   * (or past retention), undefined when a table holds its hash and {@link resolveCommand} must
   * confirm it.
   */
  commandNow(commandId: string, resolved?: Resolved<G>): CommitRecord<G> | null | undefined {
    const r = this.commands.get(commandId);
    if (r !== undefined) return this.retained(r.result.firstSeq) ? r : null;
    if (resolved !== undefined && resolved.gen === this.gen) {
      const c = resolved.commands.get(commandId);
      if (c !== undefined) return c;
    }
    if (this.tables.length === 0) return null;
    this.hash(commandId, this.h);
    const seqs: number[] = [];
    for (let i = this.tables.length - 1; i >= 0; i--) this.tables[i].table.commandSeqs(this.h[0], this.h[1], seqs);
    for (const s of seqs) if (this.retained(s)) return undefined;
    return null;
  }

  /** The commit a command id produced (reading it from the log when a table holds it), or null. */
  async resolveCommand(commandId: string): Promise<CommitRecord<G> | null> {
    const now = this.commandNow(commandId);
    if (now !== undefined) return now;
    this.hash(commandId, this.h);
    const seqs: number[] = [];
    for (let i = this.tables.length - 1; i >= 0; i--) this.tables[i].table.commandSeqs(this.h[0], this.h[1], seqs);
    for (const seq of seqs) {
      if (!this.retained(seq)) continue;
      const commit = await this.commitAt(seq);
      if (commit.commandIds.includes(commandId)) return { result: commit.result, group: undefined };
    }
    return null;
  }

  /** Resolves every stream version and command id of a unit that memory alone cannot answer. */
  async resolve(streamIds: readonly string[], commandIds: readonly string[]): Promise<Resolved<G>> {
    for (;;) {
      const gen = this.gen;
      const versions = new Map<string, number>();
      const commands = new Map<string, CommitRecord<G> | null>();
      for (const id of streamIds) versions.set(id, await this.resolveVersion(id));
      for (const id of commandIds) commands.set(id, await this.resolveCommand(id));
      if (gen === this.gen) return { gen, versions, commands };
    }
  }

  /**
   * Seqs of a stream's events from `fromVersion` on, ascending, up to `limitSeq`. With a hash
   * collision the list holds another stream's seqs too: readers compare the frame's stream id.
   */
  streamSeqs(streamId: string, fromVersion: number, limitSeq: number): number[] {
    const out: number[] = [];
    const m = this.streams.get(streamId);
    const tableTo = m === undefined ? Number.MAX_VALUE : m.firstVersion - 1;
    if (fromVersion <= tableTo && this.tables.length > 0) {
      this.hash(streamId, this.h);
      const entries: StreamEntry[] = [];
      for (const t of this.tables) t.table.streamEntries(this.h[0], this.h[1], fromVersion, entries);
      for (const e of entries) if (e.version <= tableTo && e.seq <= limitSeq) out.push(e.seq);
      out.sort((a, b) => a - b);
    }
    if (m !== undefined) {
      for (let v = Math.max(fromVersion, m.firstVersion); v <= m.version; v++) {
        const seq = m.seqs[v - m.firstVersion];
        if (seq > limitSeq) break;
        out.push(seq);
      }
    }
    return out;
  }

  private retained(seq: number): boolean {
    const keep = this.options.commandIdRetentionSeqs;
    return keep === undefined || seq > this.headSeq - keep;
  }

  private cacheSet(streamId: string, version: number): void {
    this.cache.set(streamId, version);
  }

  private async frameAt(seq: number): Promise<EventFrame> {
    for await (const batch of this.storage.read(seq, seq)) {
      const frame = batch.frames[seq - batch.firstSeq];
      if (frame?.seq === seq) return frame;
    }
    throw new StorageError('Corrupt', `${this.where}: the index names seq ${seq}, which the log does not hold: rebuild the index (reindexPartition / \`sluice reindex\`)`);
  }

  private async commitAt(seq: number): Promise<{ commandIds: readonly string[]; result: CommitResult }> {
    for await (const batch of this.storage.read(seq, seq)) {
      const frames = batch.frames;
      let i = seq - batch.firstSeq;
      const first = frames[i];
      if (first?.seq !== seq || !first.commitFirst) break;
      const streams = new Map<string, StreamCommit>();
      let last = first;
      for (; i < frames.length; i++) {
        const f = frames[i];
        last = f;
        const s = streams.get(f.streamId);
        streams.set(f.streamId, { streamId: f.streamId, firstVersion: s?.firstVersion ?? f.streamVersion, version: f.streamVersion });
        if (f.commitLast) break;
      }
      return {
        commandIds: first.headers?.commandIds ?? [],
        result: { firstSeq: seq, lastSeq: last.seq, streams: [...streams.values()], timestamp: last.timestamp, duplicate: false },
      };
    }
    throw new StorageError('Corrupt', `${this.where}: the index names a commit at seq ${seq}, which the log does not hold: rebuild the index (reindexPartition / \`sluice reindex\`)`);
  }

  // ---------------------------------------------------------------- checkpoints

  /**
   * Moves the memtable's durable part (seqs ≤ `cp.lastSeq`, a batch boundary) into a new table
   * bound to `cp`. Synchronous: it sorts at most the memtable.
   */
  private flush(cp: BatchIdentity): void {
    const limit = cp.lastSeq;
    if (limit <= this.checkpoint) return;
    // Entries are in seq order: the durable part is a prefix.
    const n = countAtOrBelow(this.memSeq.subarray(0, this.memEvents), limit);
    const sHi = this.memHi;
    const sLo = this.memLo;
    const sVer = this.memVer;
    const sSeq = this.memSeq;
    let newStreams = 0;
    for (let i = 0; i < n; i++) if (sVer[i] === 1) newStreams++;
    // Rebuild the Maps with what stays instead of deleting from them (cheaper in V8).
    const streams = new Map<string, MemStream>();
    for (const [id, m] of this.streams) {
      const c = countAtOrBelow(m.seqs, limit);
      if (c === m.seqs.length) {
        this.cacheSet(id, m.version);
      } else {
        if (c > 0) {
          m.seqs = m.seqs.slice(c);
          m.firstVersion += c;
        }
        streams.set(id, m);
      }
    }
    this.streams = streams;
    const commands = new Map<string, CommitRecord<G>>();
    const cHiL: number[] = [];
    const cLoL: number[] = [];
    const cSeqL: number[] = [];
    for (const [id, r] of this.commands) {
      if (r.group !== undefined || r.result.firstSeq > limit) {
        commands.set(id, r);
        continue;
      }
      if (!this.retained(r.result.firstSeq)) continue;
      this.hash(id, this.h);
      cHiL.push(this.h[0]);
      cLoL.push(this.h[1]);
      cSeqL.push(r.result.firstSeq);
    }
    this.commands = commands;
    const sOrder = sortedOrder(n, sHi, sLo, (a, b) => sHi[a] - sHi[b] || sLo[a] - sLo[b] || sVer[a] - sVer[b] || sSeq[a] - sSeq[b]);
    const cOrder = sortedOrder(cHiL.length, Uint32Array.from(cHiL), Uint32Array.from(cLoL), (a, b) => cHiL[a] - cHiL[b] || cLoL[a] - cLoL[b] || cSeqL[a] - cSeqL[b]);
    const builder = new TableBuilder(n, cHiL.length);
    for (const i of sOrder) builder.addStream(sHi[i], sLo[i], sVer[i], sSeq[i]);
    for (const i of cOrder) builder.addCommand(cHiL[i], cLoL[i], cSeqL[i]);
    // Keep the entries above the checkpoint (groups in flight) at the front.
    sHi.copyWithin(0, n, this.memEvents);
    sLo.copyWithin(0, n, this.memEvents);
    sVer.copyWithin(0, n, this.memEvents);
    sSeq.copyWithin(0, n, this.memEvents);
    builder.finish({ level: 0, fromSeq: this.checkpoint + 1, toSeq: limit, identity: cp, partitionDigest: this.partitionDigest ?? ZERO_DIGEST });
    const table = IndexTable.open(new BufferSource(Buffer.concat(builder.takeChunks())), `${this.where} memory table`, false);
    this.tables.push({ table, level: 0, file: undefined });
    this.gen++;
    this.checkpoint = limit;
    this.memEvents -= n;
    this.memNewStreams -= newStreams;
    this.tableNewStreams += newStreams;
    if (this.options.directory === undefined) this.mergeInMemory();
  }

  /** Without a directory: merges the newest tables while two share a level. */
  private mergeInMemory(): void {
    for (;;) {
      const n = this.tables.length;
      if (n < 2) return;
      const a = this.tables[n - 2];
      const b = this.tables[n - 1];
      if (a.level !== b.level || a.table.source.size + b.table.source.size > MEMORY_TABLE_BYTES_MAX) return;
      const builder = new TableBuilder(a.table.meta.streamCount + b.table.meta.streamCount, a.table.meta.commandCount + b.table.meta.commandCount);
      const chunks: Buffer[] = [];
      for (const _ of mergeTables(a.table, b.table, builder, this.retentionFloor())) chunks.push(...builder.takeChunks());
      builder.finish(this.mergedMeta(a, b));
      chunks.push(...builder.takeChunks());
      const table = IndexTable.open(new BufferSource(Buffer.concat(chunks)), `${this.where} memory table`, false);
      this.tables.splice(n - 2, 2, { table, level: a.level + 1, file: undefined });
      this.gen++;
    }
  }

  private mergedMeta(a: Table, b: Table): Omit<TableMeta, 'streamCount' | 'commandCount' | 'newStreams' | 'streamBlockEntries' | 'commandBlockEntries'> {
    return {
      level: a.level + 1,
      fromSeq: a.table.meta.fromSeq,
      toSeq: b.table.meta.toSeq,
      identity: b.table.meta.identity,
      partitionDigest: b.table.meta.partitionDigest,
    };
  }

  private retentionFloor(): number {
    const keep = this.options.commandIdRetentionSeqs;
    return keep === undefined ? 0 : this.headSeq - keep;
  }

  /** Starts the background work (persisting tables, then merging) unless it runs already. */
  private kick(): void {
    if (this.options.directory === undefined || this.maintaining !== undefined) return;
    this.maintaining = this.maintain()
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        this.maintaining = undefined;
      });
  }

  private async maintain(): Promise<void> {
    // Tables go to disk in seq order: a table after a missing one could never be used.
    for (const t of this.tables) {
      if (t.file !== undefined) continue;
      try {
        await this.persist(t);
      } catch (error) {
        // Disk full, permissions...: the table stays in memory and is written at the next checkpoint.
        this.report(error);
        return;
      }
    }
    while (!this.closing) {
      const n = this.tables.length;
      let i = n - 2;
      while (i >= 0 && !(this.tables[i].level === this.tables[i + 1].level && this.tables[i].file !== undefined && this.tables[i + 1].file !== undefined)) i--;
      if (i < 0) return;
      try {
        await this.mergeOnDisk(i);
      } catch (error) {
        this.report(error);
        return;
      }
    }
  }

  private tablePath(fromSeq: number, toSeq: number): string {
    return join(this.options.directory as string, `${String(fromSeq).padStart(16, '0')}-${String(toSeq).padStart(16, '0')}${TABLE_FILE_SUFFIX}`);
  }

  private async persist(t: Table): Promise<void> {
    const meta = t.table.meta;
    const path = this.tablePath(meta.fromSeq, meta.toSeq);
    const bytes = (t.table.source as BufferSource).buffer;
    await this.writeFile(path, async (write) => write(bytes));
    const table = IndexTable.open(new FileSource(path), `${this.where} table ${path}`, true);
    const old = t.table;
    t.table = table;
    t.file = path;
    this.watch(t);
    old.close();
  }

  /** Writes a file whole or not at all: tmp file, fsync, rename, fsync of the directory. */
  private async writeFile(path: string, body: (write: (b: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
    const tmp = `${path}.tmp`;
    const fh = await openFile(tmp, 'w');
    try {
      await body(async (b) => {
        let done = 0;
        while (done < b.length) done += (await fh.write(b, done, b.length - done)).bytesWritten;
      });
      await fh.sync();
      await fh.close();
    } catch (error) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw new StorageError(
        (error as NodeJS.ErrnoException).code === 'ENOSPC' ? 'Full' : 'Unavailable',
        `${this.where}: could not write ${path} (${(error as Error).message}); the partition keeps working with this part of the index in memory and retries at the next checkpoint: free space in ${this.options.directory}`,
        { cause: error },
      );
    }
    await rename(tmp, path);
    const dir = await openFile(this.options.directory as string, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  private async mergeOnDisk(i: number): Promise<void> {
    const a = this.tables[i];
    const b = this.tables[i + 1];
    const meta = this.mergedMeta(a, b);
    const path = this.tablePath(meta.fromSeq, meta.toSeq);
    await this.writeFile(path, async (write) => {
      const builder = new TableBuilder(a.table.meta.streamCount + b.table.meta.streamCount, a.table.meta.commandCount + b.table.meta.commandCount);
      for (const _ of mergeTables(a.table, b.table, builder, this.retentionFloor())) {
        const chunks = builder.takeChunks();
        if (chunks.length > 0) await write(Buffer.concat(chunks));
      }
      builder.finish(meta);
      await write(Buffer.concat(builder.takeChunks()));
    });
    const table = IndexTable.open(new FileSource(path), `${this.where} table ${path}`, true);
    // Tables are only ever appended to by checkpoints, so i is still where a and b are.
    const merged: Table = { table, level: meta.level, file: path };
    this.watch(merged);
    this.tables.splice(i, 2, merged);
    this.gen++;
    for (const old of [a, b]) {
      old.table.close();
      await unlink(old.file as string).catch(() => undefined);
    }
  }

  private report(error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    this.lastError = e;
    this.options.onError?.(e);
  }

  /**
   * Takes a last checkpoint at the durable head (nothing above it) and waits for the tables to
   * be on disk. Errors are reported, not thrown: the log is complete without the index.
   */
  async close(head: BatchIdentity): Promise<void> {
    this.closing = true;
    await this.maintaining;
    if (this.options.directory !== undefined) {
      try {
        if (head.lastSeq > this.checkpoint && this.partitionDigest === undefined && head.lastSeq > 0) {
          this.partitionDigest = (await this.storage.identityAt(1))?.digest;
        }
        this.flush(head);
        this.kick();
        await this.maintaining;
      } catch (error) {
        this.report(error);
      }
    }
    for (const t of this.tables) t.table.close();
  }
}

/** Answers {@link PartitionIndex.resolve} confirmed, valid while `gen` is current. */
export interface Resolved<G> {
  readonly gen: number;
  readonly versions: ReadonlyMap<string, number>;
  readonly commands: ReadonlyMap<string, CommitRecord<G> | null>;
}

/**
 * A bounded cache of stream versions with LRU-like eviction in O(1): two generations of Maps;
 * writes and hits go to the young one, and when it is full the old one is dropped whole. (A
 * single Map evicting its first key is quadratic in V8: deleted entries at the front are
 * skipped again by every new iterator until the table is rehashed.)
 */
class VersionCache {
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly half: number;
  constructor(max: number) {
    this.half = Math.max(1, Math.floor(max / 2));
  }
  get(key: string): number | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o !== undefined) this.set(key, o);
    return o;
  }
  set(key: string, value: number): void {
    this.young.set(key, value);
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
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

function countAtOrBelow(seqs: ArrayLike<number>, limit: number): number {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (seqs[mid] <= limit) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reads entries from a table's blocks one at a time. */
class Cursor {
  private block: Buffer | undefined;
  private o = 0;
  hi = 0;
  lo = 0;
  a = 0;
  b = 0;
  done = false;
  constructor(
    private readonly blocks: Generator<Buffer>,
    private readonly entryBytes: number,
  ) {
    this.next();
  }
  next(): void {
    while (this.block === undefined || this.o >= this.block.length) {
      const r = this.blocks.next();
      if (r.done === true) {
        this.done = true;
        return;
      }
      this.block = r.value;
      this.o = 0;
    }
    const blk = this.block;
    this.hi = blk.readUInt32LE(this.o);
    this.lo = blk.readUInt32LE(this.o + 4);
    this.a = blk.readDoubleLE(this.o + 8);
    this.b = this.entryBytes === 24 ? blk.readDoubleLE(this.o + 16) : 0;
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
function* mergeTables(a: IndexTable, b: IndexTable, builder: TableBuilder, commandSeqFloor: number): Generator<void> {
  let n = 0;
  const x = new Cursor(a.streamCursor(), 24);
  const y = new Cursor(b.streamCursor(), 24);
  while (!x.done || !y.done) {
    const c = y.done || (!x.done && before(x, y)) ? x : y;
    builder.addStream(c.hi, c.lo, c.a, c.b);
    c.next();
    if (++n % 16384 === 0) yield;
  }
  const p = new Cursor(a.commandCursor(), 16);
  const q = new Cursor(b.commandCursor(), 16);
  while (!p.done || !q.done) {
    const c = q.done || (!p.done && before(p, q)) ? p : q;
    if (c.a > commandSeqFloor) builder.addCommand(c.hi, c.lo, c.a);
    c.next();
    if (++n % 16384 === 0) yield;
  }
}
