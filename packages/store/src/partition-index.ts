import { unlinkSync } from 'node:fs';
import { mkdir, open as openFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { firstAtOrAfter, type EventFrame } from '@sluice/framing';
import { describeIdentity, identityOf, sameIdentity } from './batch-identity.js';
import { StorageError, type StorageErrorReason } from './errors.js';
import { hash64, type Hash64 } from './hash64.js';
import { CommandHashes, CommandMemtable } from './command-memtable.js';
import { checkpointRunner, type CheckpointRunner } from './index-checkpoint-runner.js';
import { indexWriteError, type BuildJob, type CheckpointJobResult, type NewTableMeta, type TableRef } from './index-checkpoint-work.js';
import { BufferSource, FileSource, IndexTable, TABLE_FILE_SUFFIX, type StreamEntry, type StreamRun } from './index-table.js';
import { RecentCommits } from './recent-commits.js';
import type { BatchIdentity, PartitionStorage, StorageRecovery } from './storage.js';
import type { CommitResult, StreamCommit } from './types.js';

/** What the index knows about a commit that recorded command ids. `group` is the engine's, until durable. */
export interface CommitRecord<G> {
  result: CommitResult;
  group: G | undefined;
  /** The commit's command ids (a copy of the unit's): {@link PartitionIndex.commandsDurable} needs them. */
  readonly commandIds: readonly string[];
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
  /** Results of the latest durable commits with command ids kept in memory (a duplicate of one needs no read). */
  readonly commandResultCacheMax: number;
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
  /** True while tables are being built, written or merged in the background. */
  readonly busy: boolean;
  /** Checkpoints started and installed since open (at most one is in flight). */
  readonly checkpointsStarted: number;
  readonly checkpointsInstalled: number;
  /** Times appends waited for the checkpoint in flight because the memtable held twice `checkpointEvents`. */
  readonly checkpointWaits: number;
  /** Table merges started since open, and how many of them while open replayed the log (always 0: open never waits behind a merge). */
  readonly mergesStarted: number;
  readonly mergesDuringReplay: number;
  /** Where checkpoint tables are sorted, encoded, written and merged: a worker thread, or inline when none could start. */
  readonly checkpointThread: 'worker' | 'inline';
}

interface MemStream {
  version: number;
  /**
   * Id of the stream's newest run in the memtable arrays (run ids count from the partition's
   * first run: the run at index `i` is `memBase + i`); `memPrev` links it to the one before.
   * Kept in the typed arrays rather than a JS array per stream: with thousands of streams each
   * appended to in turn, growing those arrays cost ~20 % of an append's CPU (their storage was
   * copied by every scavenge).
   */
  last: number;
  /** hash64 of the stream id, computed once per stream while it is in the memtable (each new run of it needs it). */
  hi: number;
  lo: number;
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
/** Commits read back from the log kept for more duplicates of the same commit: at most this many, */
const READ_BACK_MAX = 64;
/** holding at most this many command ids and streams in all (the latest one is kept whatever its size). */
const READ_BACK_WEIGHT_MAX = 65_536;

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
  /** The memtable entry versionNow found last, and its stream: noteStream usually follows for the same stream. */
  private foundId: string | undefined;
  private found: MemStream | undefined;
  /**
   * Command ids of the memtable by 64-bit hash (no Map entry per id): the record while its
   * commit is in flight, then only the commit's first seq (a durable duplicate reads its
   * result from the log, as a table hit does, unless `recentResults` holds it). A hit is a
   * candidate until the record's ids, a cached result or the log confirm it.
   */
  private readonly commands = new CommandMemtable<CommitRecord<G>>();
  /** Hashes of the ids {@link commandNow} looked up: {@link noteCommand} of the same unit does not hash them again. */
  private readonly commandHashes: CommandHashes;
  /** Table hits of {@link commandNow} (synchronous: one array for every look-up). */
  private readonly seqScratch: number[] = [];
  /**
   * The memtable's stream runs in seq order, hashed as they come (a checkpoint sorts a prefix):
   * run `i` is `memCnt[i]` events of one stream ending at version `memVer[i]` and seq `memSeq[i]`.
   * Events of a stream at consecutive seqs extend its run, so a batch of 1000 events to one
   * stream is one entry here, in the checkpoint and in the table.
   */
  private memHi = new Uint32Array(1024);
  private memLo = new Uint32Array(1024);
  private memVer = new Float64Array(1024);
  private memSeq = new Float64Array(1024);
  private memCnt = new Uint32Array(1024);
  /** Id of the same stream's previous run, or -1: a stream's runs, newest first, without an array per stream. */
  private memPrev = new Float64Array(1024);
  /** Runs in the memtable arrays (memEvents counts their events). */
  private memRuns = 0;
  /** Id of the run at index 0 (runs leave the front when a checkpoint is installed). */
  private memBase = 0;
  /**
   * Runs at the front that the checkpoint in flight covers (they stay in the arrays, answering
   * reads, until it is installed), and how many events of the run after them it covers too (a
   * run the checkpoint's seq splits).
   */
  private frozenRuns = 0;
  private frozenSplit = 0;
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
  /** True while open replays the log after the last checkpoint (merges wait until it is done). */
  private replaying = false;
  /** The checkpoint in flight: built off the main thread, installed when done. */
  private building: Promise<void> | undefined;
  /** Command ids of the memtable that the checkpoint in flight covers (they leave the Map when it is installed). */
  private frozenCommands = 0;
  private checkpointsStarted = 0;
  private mergesStarted = 0;
  private mergesDuringReplay = 0;
  private checkpointsInstalled = 0;
  private backpressured = 0;
  private readonly runner: CheckpointRunner = checkpointRunner();
  private closing = false;
  private replayedFromSeq = 1;
  private replayedFrames = 0;
  private readonly discarded: string[] = [];
  private lastError: Error | undefined;
  private readonly hash: Hash64;
  private readonly h = new Uint32Array(2);
  private readonly where: string;
  /** First seq → record (command ids and result) of the latest durable commits with ids (FIFO, `commandResultCacheMax` ids and streams in all). */
  private readonly recentResults: RecentCommits<CommitRecord<G>>;
  /** Commits read back from the log by first seq, the latest (see {@link commitAt}): a durable commit never changes while the index is open. */
  private readonly readBack = new Map<number, { readonly read: Promise<{ commandIds: readonly string[]; result: CommitResult }>; weight: number }>();
  /** Command ids and streams of the commits in {@link readBack}, as they were read. */
  private readBackWeight = 0;

  constructor(
    private readonly storage: PartitionStorage,
    private readonly options: PartitionIndexOptions,
  ) {
    this.hash = options.hash ?? hash64;
    this.commandHashes = new CommandHashes(this.hash);
    this.cache = new VersionCache(options.streamCacheMax);
    this.recentResults = new RecentCommits(options.commandResultCacheMax);
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
      busy: this.maintaining !== undefined || this.building !== undefined,
      checkpointsStarted: this.checkpointsStarted,
      mergesStarted: this.mergesStarted,
      mergesDuringReplay: this.mergesDuringReplay,
      checkpointsInstalled: this.checkpointsInstalled,
      checkpointWaits: this.backpressured,
      checkpointThread: this.runner.thread,
    };
  }

  /** Streams with at least one event (each has exactly one run starting at version 1: version === count). */
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
    if (from <= lastSeq) {
      // No merges while open replays: its checkpoints would wait behind a merge of the large
      // tables (seconds at 20 M events), and open with them. They start once open is done.
      this.replaying = true;
      try {
        maxEpoch = Math.max(maxEpoch, await this.replay(from, lastSeq));
      } finally {
        this.replaying = false;
      }
    }
    if (this.options.directory !== undefined) {
      // A long replay is checkpointed now, so the next open does not repeat it.
      if (this.memEvents > 0 && this.replayedFrames >= this.options.checkpointEvents / 2) this.flush(recovery.head);
      else this.kick();
      // Merges held back during the replay: once the background work running now is done.
      void (this.maintaining ?? Promise.resolve()).then(() => this.kick());
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
          commitIds = frame.headers?.commandIds;
          if (commitIds !== undefined && commitIds.length === 0) commitIds = undefined;
        }
        if (commitIds !== undefined && frame.commitLast) {
          // Durable: the first seq is enough (a duplicate reads the commit's result from the log).
          for (const id of commitIds) {
            this.hash(id, this.h);
            this.commands.add(this.h[0], this.h[1], commitFirst, undefined);
          }
          commitIds = undefined;
        }
        this.replayedFrames++;
      }
      if (this.memtableFull() && batch.lastSeq <= to) {
        // Open waits for each checkpoint, so the memtable stays bounded however long the replay.
        await this.building;
        if (this.flush(identityOf(batch))) await this.building;
      }
    }
    if (expect - 1 !== to) throw new StorageError('Corrupt', `${this.where}: storage reported last seq ${to} but holds frames up to ${expect - 1}`);
    return maxEpoch;
  }

  // ---------------------------------------------------------------- appends

  /** Records `count` events appended to a stream at seqs `firstSeq..`, its version before them being `base`. */
  noteStream(streamId: string, base: number, firstSeq: number, count: number): void {
    // The engine asked versionNow for this stream just before: skip a second Map lookup.
    let m = streamId === this.foundId ? this.found : this.streams.get(streamId);
    if (m === undefined) {
      this.hash(streamId, this.h);
      m = { version: base, last: -1, hi: this.h[0], lo: this.h[1] };
      this.streams.set(streamId, m);
    }
    if (base === 0) this.memNewStreams++;
    const lastSeq = firstSeq + count - 1;
    const at = this.memRuns - 1;
    if (at >= this.frozenRuns && m.last === this.memBase + at && this.memSeq[at] === firstSeq - 1) {
      // The memtable's last run is this stream's and ends at the seq just before: extend it
      // instead of adding one (not a run the checkpoint in flight took whole).
      this.memVer[at] += count;
      this.memSeq[at] = lastSeq;
      this.memCnt[at] += count;
    } else {
      const i = this.memRuns;
      if (i === this.memSeq.length) this.growMemtable(i + 1);
      this.memHi[i] = m.hi;
      this.memLo[i] = m.lo;
      this.memVer[i] = base + count;
      this.memSeq[i] = lastSeq;
      this.memCnt[i] = count;
      this.memPrev[i] = m.last;
      m.last = this.memBase + i;
      this.memRuns = i + 1;
    }
    m.version += count;
    this.memEvents += count;
    if (lastSeq > this.headSeq) this.headSeq = lastSeq;
  }

  /** Events and command ids both count: a unit may carry many ids for few events. */
  private memtableFull(): boolean {
    return this.memEvents + this.commands.size >= this.options.checkpointEvents;
  }

  /** The memtable's run columns (a checkpoint job's `sHi, sLo, sVer, sSeq, sCnt`, then the stream links). */
  private memColumns(): [Uint32Array, Uint32Array, Float64Array, Float64Array, Uint32Array, Float64Array] {
    return [this.memHi, this.memLo, this.memVer, this.memSeq, this.memCnt, this.memPrev];
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
    this.memCnt = grow(this.memCnt, (n) => new Uint32Array(n));
    this.memPrev = grow(this.memPrev, (n) => new Float64Array(n));
  }

  /** Records a command id of a commit being encoded (ids are noted in seq order). */
  noteCommand(commandId: string, record: CommitRecord<G>): void {
    const hashes = this.commandHashes;
    hashes.note(commandId);
    this.commands.add(hashes.hi, hashes.lo, record.result.firstSeq, record);
  }

  /**
   * The commits of `records` are durable (the engine cleared their groups): their ids keep only
   * the first seq from now on (see {@link commands}).
   */
  commandsDurable(records: readonly CommitRecord<G>[]): void {
    const commands = this.commands;
    const recent = this.recentResults;
    for (const record of records) {
      const firstSeq = record.result.firstSeq;
      commands.durable(record);
      // The latest durable commits' results: a client's resend after a fail-over (duplicates
      // of what was just acknowledged) is answered without a read of the log each.
      // Weighed by what it holds: its ids and its streams' results.
      recent.add(firstSeq, record, record.commandIds.length + record.result.streams.length);
    }
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
  }

  // ---------------------------------------------------------------- lookups

  /**
   * A stream's version from memory, or undefined when a table holds its hash and the answer
   * must be confirmed by {@link resolveVersion}. `resolved` holds answers confirmed earlier for
   * the current {@link gen}.
   */
  versionNow(streamId: string, resolved?: Resolved<G>): number | undefined {
    const m = this.streams.get(streamId);
    if (m !== undefined) {
      this.foundId = streamId;
      this.found = m;
      return m.version;
    }
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
      // Another stream shares the hash: walk its runs, newest first (a run is one stream's, so
      // the stream's newest run is the first whose last frame is the stream's).
      // (this.tables, not `tables`: a merge may have replaced and closed those while we read.)
      const entries: StreamRun[] = [];
      for (const t of this.tables) t.table.streamRuns(hi, lo, 1, entries);
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
    const mem = this.commands;
    if (mem.size === 0 && this.tables.length === 0) return null;
    this.commandHashes.lookUp(commandId);
    const hi = this.commandHashes.hi;
    const lo = this.commandHashes.lo;
    // Memtable hits, newest first; each only a candidate until confirmed (64-bit hashes collide).
    let unconfirmed = false;
    const hits = mem.hits;
    for (let k = mem.find(hi, lo) - 1; k >= 0; k--) {
      const e = hits[k];
      const record = mem.record(e);
      if (record !== undefined) {
        // In flight: the record names the commit's ids.
        if (record.commandIds.includes(commandId)) return this.retained(record.result.firstSeq) ? record : null;
        continue;
      }
      const seq = mem.seq[e];
      if (!this.retained(seq)) continue;
      // Durable: one of the latest commits' cached results, or the log (resolveCommand).
      const recent = this.recentResults.get(seq);
      if (recent === undefined) unconfirmed = true;
      else if (recent.commandIds.includes(commandId)) return recent;
    }
    if (resolved !== undefined && resolved.gen === this.gen) {
      const c = resolved.commands.get(commandId);
      if (c !== undefined) return c;
    }
    if (unconfirmed) return undefined;
    if (this.tables.length === 0) return null;
    const seqs = this.seqScratch;
    seqs.length = 0;
    for (let i = this.tables.length - 1; i >= 0; i--) this.tables[i].table.commandSeqs(hi, lo, seqs);
    for (const s of seqs) if (this.retained(s)) return undefined;
    return null;
  }

  /** The commit a command id produced (reading it from the log when a table holds it), or null. */
  async resolveCommand(commandId: string): Promise<CommitRecord<G> | null> {
    const now = this.commandNow(commandId);
    if (now !== undefined) return now;
    // commandNow hashed the id (it answers without hashing only when it has no candidates).
    const hi = this.commandHashes.hi;
    const lo = this.commandHashes.lo;
    // Durable memtable hits (newest first), then table hits: each confirmed from its commit in the log.
    const seqs: number[] = [];
    const mem = this.commands;
    for (let k = mem.find(hi, lo) - 1; k >= 0; k--) {
      const e = mem.hits[k];
      if (mem.record(e) === undefined) seqs.push(mem.seq[e]);
    }
    for (let i = this.tables.length - 1; i >= 0; i--) this.tables[i].table.commandSeqs(hi, lo, seqs);
    for (const seq of seqs) {
      if (!this.retained(seq)) continue;
      const commit = await this.commitAt(seq);
      if (commit.commandIds.includes(commandId)) return { result: commit.result, group: undefined, commandIds: commit.commandIds };
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
    // The stream's runs in the memtable, newest first (ids below memBase have left it), back to
    // the one holding `fromVersion`: tables hold only versions below the oldest run's.
    const runs: number[] = [];
    let tableTo = Number.MAX_VALUE;
    for (let id = m === undefined ? -1 : m.last; id >= this.memBase; id = this.memPrev[id - this.memBase]) {
      const i = id - this.memBase;
      runs.push(i);
      tableTo = this.memVer[i] - this.memCnt[i];
      if (tableTo < fromVersion) break;
    }
    if (fromVersion <= tableTo && this.tables.length > 0) {
      this.hash(streamId, this.h);
      const entries: StreamEntry[] = [];
      for (const t of this.tables) t.table.streamEntries(this.h[0], this.h[1], fromVersion, entries);
      for (const e of entries) if (e.version <= tableTo && e.seq <= limitSeq) out.push(e.seq);
      out.sort((a, b) => a - b);
    }
    for (let r = runs.length - 1; r >= 0; r--) {
      const i = runs[r];
      const count = this.memCnt[i];
      const first = this.memSeq[i] - count + 1;
      const firstVersion = this.memVer[i] - count + 1;
      for (let j = Math.max(0, fromVersion - firstVersion); j < count; j++) {
        if (first + j > limitSeq) return out;
        out.push(first + j);
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

  /**
   * The commit at `seq` (its first seq), from the recent results or read back from the log. The
   * latest few read back are kept ({@link READ_BACK_MAX}): the duplicates a restarted sender
   * resends come from a few merged commits of hundreds of ids each, and reading one commit reads
   * and decodes its whole batch (up to 1 MiB): 1000 resent saga commands read ~4 commits, not 1000.
   */
  private commitAt(seq: number): Promise<{ commandIds: readonly string[]; result: CommitResult }> {
    const recent = this.recentResults.get(seq);
    if (recent !== undefined) return Promise.resolve(recent);
    const known = this.readBack.get(seq);
    if (known !== undefined) return known.read;
    const entry = { read: this.readCommit(seq), weight: 0 };
    if (this.readBack.size >= READ_BACK_MAX) this.forgetReadBack();
    this.readBack.set(seq, entry);
    entry.read.then(
      (commit) => {
        if (this.readBack.get(seq) !== entry) return;
        entry.weight = commit.commandIds.length + commit.result.streams.length;
        this.readBackWeight += entry.weight;
        while (this.readBackWeight > READ_BACK_WEIGHT_MAX && this.readBack.size > 1) this.forgetReadBack();
      },
      // A failed read is not remembered.
      () => this.readBack.get(seq) === entry && this.readBack.delete(seq),
    );
    return entry.read;
  }

  /** Forgets the oldest commit read back. */
  private forgetReadBack(): void {
    const [oldest, entry] = this.readBack.entries().next().value as [number, { weight: number }];
    this.readBack.delete(oldest);
    this.readBackWeight -= entry.weight;
  }

  private async readCommit(seq: number): Promise<{ commandIds: readonly string[]; result: CommitResult }> {
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
   * Starts a checkpoint of the memtable's durable part (seqs ≤ `cp.lastSeq`, a batch boundary):
   * freezes it — its entries are copied into shared memory for the worker, and stay in the
   * memtable (arrays and Maps), answering lookups and reads — and hands the sort, the table
   * encoding and (with a directory) the file write to the checkpoint runner, a worker thread.
   * When the table is built it is installed and the frozen part leaves the memtable, in one
   * synchronous step, so every lookup sees either the memtable or the table. At most one
   * checkpoint is in flight: while one is, this returns false and the next durable head tries
   * again (and appends wait beyond twice `checkpointEvents`: {@link backpressure}).
   */
  private flush(cp: BatchIdentity): boolean {
    const limit = cp.lastSeq;
    if (limit <= this.checkpoint || this.building !== undefined) return false;
    const commands = this.commands;
    const m = commands.countAtOrBelow(limit);
    if (m > commands.durableCount) {
      // The engine checkpoints only at heads it made durable itself (so this is a bug): reported,
      // and nothing changed, never thrown into the engine's completion path.
      this.report(new Error(`${this.where}: a command id of a commit in flight is at or below the checkpoint at seq ${limit} (bug): checkpoint skipped`));
      return false;
    }
    // Runs are in seq order: the durable part is a prefix, and maybe the first part of the next
    // run (runs of one stream grow across batch boundaries): it is split at the limit.
    const n = firstAtOrAfter(this.memSeq.subarray(0, this.memRuns), limit + 1);
    const split = n < this.memRuns && this.memSeq[n] - this.memCnt[n] < limit ? limit - (this.memSeq[n] - this.memCnt[n]) : 0;
    const k = split > 0 ? n + 1 : n;
    // Copied into shared memory: posted to the checkpoint worker without being copied again.
    const sHi = sharedCopy(this.memHi.subarray(0, k));
    const sLo = sharedCopy(this.memLo.subarray(0, k));
    const sVer = sharedCopy(this.memVer.subarray(0, k));
    const sSeq = sharedCopy(this.memSeq.subarray(0, k));
    const sCnt = sharedCopy(this.memCnt.subarray(0, k));
    if (split > 0) {
      // The frozen part ends at the limit; the rest of the run stays (same last version and
      // seq, fewer events once the table is installed).
      sVer[n] -= this.memCnt[n] - split;
      sSeq[n] = limit;
      sCnt[n] = split;
    }
    let frozenEvents = 0;
    for (let i = 0; i < k; i++) frozenEvents += sCnt[i];
    // Command ids are in seq order too, hashed when noted: the durable part is a prefix, copied.
    let cHi = sharedCopy(commands.hi.subarray(0, m));
    let cLo = sharedCopy(commands.lo.subarray(0, m));
    let cSeq = sharedCopy(commands.seq.subarray(0, m));
    if (this.options.commandIdRetentionSeqs !== undefined) {
      // Ids past retention are left out of the table (they leave the memtable with the rest).
      let kept = 0;
      for (let i = 0; i < m; i++) {
        if (!this.retained(cSeq[i])) continue;
        cHi[kept] = cHi[i];
        cLo[kept] = cLo[i];
        cSeq[kept] = cSeq[i];
        kept++;
      }
      if (kept < m) {
        cHi = sharedCopy(cHi.subarray(0, kept));
        cLo = sharedCopy(cLo.subarray(0, kept));
        cSeq = sharedCopy(cSeq.subarray(0, kept));
      }
    }
    // The frozen runs stay at the front of the arrays until the table is installed.
    this.frozenRuns = n;
    this.frozenSplit = split;
    this.memEvents -= frozenEvents;
    this.frozenCommands = m;
    const fromSeq = this.checkpoint + 1;
    const path = this.options.directory === undefined ? undefined : this.tablePath(fromSeq, limit);
    const job: BuildJob = {
      kind: 'build',
      meta: { level: 0, fromSeq, toSeq: limit, identity: cp, partitionDigest: this.partitionDigest ?? ZERO_DIGEST },
      path,
      directory: this.options.directory,
      where: this.where,
      sHi,
      sLo,
      sVer,
      sSeq,
      sCnt,
      cHi,
      cLo,
      cSeq,
    };
    this.checkpointsStarted++;
    this.building = this.runner
      .run(job)
      .then((result) => this.install(job, result))
      .catch((error: unknown) => {
        // The log is complete without the index: report, and the frozen entries are the memtable's again.
        this.report(error);
        this.unfreeze(job);
      })
      .finally(() => {
        this.building = undefined;
        this.frozenCommands = 0;
        this.kick();
      });
    return true;
  }

  /** A built checkpoint table goes in, and the part of the memtable it covers goes out. */
  private install(job: BuildJob, result: CheckpointJobResult): void {
    const limit = job.meta.toSeq;
    const path = job.path;
    let t: Table;
    if (result.written && path !== undefined) {
      t = { table: IndexTable.open(new FileSource(path), `${this.where} table ${path}`, true), level: 0, file: path };
      this.watch(t);
    } else {
      t = { table: IndexTable.open(new BufferSource(Buffer.from(result.bytes as SharedArrayBuffer)), `${this.where} memory table`, false), level: 0, file: undefined };
      if (result.writeError !== undefined) this.report(new StorageError(result.writeError.reason as StorageErrorReason, result.writeError.message));
    }
    let newStreams = 0;
    for (let i = 0; i < job.sVer.length; i++) if (job.sVer[i] === job.sCnt[i]) newStreams++;
    // The frozen runs leave the front of the arrays (a split run keeps its part above the limit).
    const n = this.frozenRuns;
    if (this.frozenSplit > 0) this.memCnt[n] -= this.frozenSplit;
    for (const column of this.memColumns()) column.copyWithin(0, n, this.memRuns);
    this.memRuns -= n;
    this.memBase += n;
    this.frozenRuns = 0;
    this.frozenSplit = 0;
    // Rebuild the Maps with what stays instead of deleting from them (cheaper in V8): a stream
    // whose newest run has left is all in the table now.
    const streams = new Map<string, MemStream>();
    for (const [id, m] of this.streams) {
      if (m.last < this.memBase) this.cacheSet(id, m.version);
      else streams.set(id, m);
    }
    this.streams = streams;
    this.foundId = undefined;
    this.found = undefined;
    // The frozen command ids (a prefix, with any noted since behind it) leave the memtable.
    this.commands.drop(this.frozenCommands);
    this.tables.push(t);
    this.gen++;
    this.checkpoint = limit;
    this.memNewStreams -= newStreams;
    this.tableNewStreams += newStreams;
    this.checkpointsInstalled++;
  }

  /** A checkpoint that failed: its runs, still at the front of the memtable arrays, are the memtable's again. */
  private unfreeze(job: BuildJob): void {
    this.frozenRuns = 0;
    this.frozenSplit = 0;
    for (let i = 0; i < job.sCnt.length; i++) this.memEvents += job.sCnt[i];
  }

  /**
   * Undefined, or a promise to wait for before admitting more appends: while a checkpoint is in
   * flight the memtable takes up to twice `checkpointEvents` (events plus command ids), then
   * appends wait until the checkpoint is installed. This bounds the memtable whatever the disk.
   */
  backpressure(): Promise<void> | undefined {
    if (this.building === undefined) return undefined;
    if (this.memEvents + this.commands.size - this.frozenCommands < 2 * this.options.checkpointEvents) return undefined;
    this.backpressured++;
    return this.building;
  }

  private mergedMeta(a: Table, b: Table): NewTableMeta {
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
    if (this.maintaining !== undefined) return;
    this.maintaining = this.maintain()
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        this.maintaining = undefined;
      });
  }

  private async maintain(): Promise<void> {
    if (this.options.directory !== undefined) {
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
    }
    // Merges share the runner with checkpoints, which go first: one installed kicks this again.
    while (!this.closing && !this.replaying && this.building === undefined) {
      const i = this.mergeable();
      if (i < 0) return;
      try {
        await this.merge(i);
      } catch (error) {
        this.report(error);
        return;
      }
    }
  }

  /** The newest pair of adjacent tables of one level that can merge (both on disk, or both in memory and small enough), or -1. */
  private mergeable(): number {
    const onDisk = this.options.directory !== undefined;
    for (let i = this.tables.length - 2; i >= 0; i--) {
      const a = this.tables[i];
      const b = this.tables[i + 1];
      if (a.level !== b.level) continue;
      if (onDisk ? a.file !== undefined && b.file !== undefined : a.table.source.size + b.table.source.size <= MEMORY_TABLE_BYTES_MAX) return i;
      if (!onDisk) return -1;
    }
    return -1;
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
      throw indexWriteError(this.where, path, this.options.directory as string, error);
    }
    await rename(tmp, path);
    const dir = await openFile(this.options.directory as string, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Merges tables i and i + 1 (one level) on the runner, then swaps the merged table in. */
  private async merge(i: number): Promise<void> {
    this.mergesStarted++;
    if (this.replaying) this.mergesDuringReplay++;
    const a = this.tables[i];
    const b = this.tables[i + 1];
    const meta = this.mergedMeta(a, b);
    const path = this.options.directory === undefined ? undefined : this.tablePath(meta.fromSeq, meta.toSeq);
    const result = await this.runner.run({
      kind: 'merge',
      meta,
      path,
      directory: this.options.directory,
      where: this.where,
      a: tableRef(a),
      b: tableRef(b),
      commandSeqFloor: this.retentionFloor(),
    });
    // Tables are only ever appended to by checkpoints, and only this loop merges, so i is still where a and b are.
    const merged: Table =
      path !== undefined && result.written
        ? { table: IndexTable.open(new FileSource(path), `${this.where} table ${path}`, true), level: meta.level, file: path }
        : { table: IndexTable.open(new BufferSource(Buffer.from(result.bytes as SharedArrayBuffer)), `${this.where} memory table`, false), level: meta.level, file: undefined };
    if (merged.file !== undefined) this.watch(merged);
    this.tables.splice(i, 2, merged);
    this.gen++;
    for (const old of [a, b]) {
      old.table.close();
      if (old.file !== undefined) await unlink(old.file).catch(() => undefined);
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
    await this.building;
    await this.maintaining;
    if (this.options.directory !== undefined) {
      try {
        if (head.lastSeq > this.checkpoint && this.partitionDigest === undefined && head.lastSeq > 0) {
          this.partitionDigest = (await this.storage.identityAt(1))?.digest;
        }
        this.flush(head);
        await this.building;
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

/**
 * A copy of `a` backed by a SharedArrayBuffer: a checkpoint job's arrays are read, never
 * written, by the worker, so posting them shares this memory instead of cloning it (a clone
 * costs a copy on this thread and an allocation and a copy on the worker's).
 */
function sharedCopy<T extends Uint32Array | Float64Array>(a: T): T {
  const copy = new (a.constructor as new (buffer: SharedArrayBuffer) => T)(new SharedArrayBuffer(a.byteLength));
  copy.set(a);
  return copy;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** How the runner reaches a table's bytes: its file, or its in-memory buffer (shared, not copied, when it can be). */
function tableRef(t: Table): TableRef {
  if (t.file !== undefined) return { path: t.file };
  const buffer = (t.table.source as BufferSource).buffer;
  if (buffer.buffer instanceof SharedArrayBuffer && buffer.byteOffset === 0 && buffer.length === buffer.buffer.byteLength) return { bytes: buffer.buffer };
  const shared = new SharedArrayBuffer(buffer.length);
  new Uint8Array(shared).set(buffer);
  return { bytes: shared };
}
