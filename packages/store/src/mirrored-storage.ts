import { access, constants } from 'node:fs/promises';
import type { EventFrame, SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, checkWrite, describeIdentity, sameIdentity } from './batch-identity.js';
import { StorageError, isStorageError, type StorageErrorReason } from './errors.js';
import { checkFrameSeqs } from './frame-seqs.js';
import type { FsyncPolicy } from './fsync-policy.js';
import type { BatchIdentity, CommitReliability, PartitionStorage, StorageCapabilities, StorageReader, StorageRecovery, ReadBatchesOptions, TailOptions, TruncateOptions } from './storage.js';
import { DurableSignal, pollWait, tailBatches } from './tail.js';
import { locationIdentity } from './writer-lock.js';

/** One synchronous copy of the partition's log inside a mirror. */
export interface MirrorLocation {
  /** The storage holding this copy (not opened yet: the mirror opens it). */
  readonly storage: PartitionStorage;
  /**
   * Name of the location in messages, e.g. `"disk1"`.
   * @default `"<kind> #<index>"`, e.g. `"lmdb #1"`
   */
  readonly label?: string | undefined;
  /**
   * The local folder the storage keeps this copy in (file and LMDB backends). When given, open
   * checks before anything is opened or written that it exists, is writable, and is not the
   * folder of another location (compared by device and inode, see `locationIdentity`).
   */
  readonly directory?: string | undefined;
}

/** What open does with batches some locations hold and others do not. */
export type UnacknowledgedTailRepair = 'complete' | 'truncate';

/** Options of {@link createMirroredStorage}. */
export interface MirroredStorageOptions {
  /** The locations, in read preference order: reads go to the first healthy one. At least one. */
  readonly locations: ReadonlyArray<PartitionStorage | MirrorLocation>;
  /**
   * At open, batches held by some locations and not others were never acknowledged (an
   * acknowledgement needs every location). `complete` copies them to the locations that lack
   * them (nothing written whole is lost); `truncate` cuts them back to the point every location
   * holds. An empty or replaced location is always rebuilt from the others.
   * @default 'complete'
   */
  readonly unacknowledgedTail?: UnacknowledgedTailRepair;
  /**
   * Most bytes per write when copying raw batches to a location being completed or rebuilt.
   * @default 4194304 (4 MiB)
   */
  readonly repairBytesMax?: number;
  /** Called for each repair the mirror makes (at open, at close after a failure, by the scrubber). */
  readonly onRepair?: ((repair: MirrorRepair) => void) | undefined;
  /** The reliability level's name, reported with each acknowledged commit (`CommitResult.reliability`). */
  readonly level?: string | undefined;
}

/** A repair the mirror made to one location. */
export interface MirrorRepair {
  /** Label of the location repaired. */
  readonly location: string;
  /** `copied`: raw batches appended from `source`; `truncated`: a tail cut. */
  readonly action: 'copied' | 'truncated';
  readonly fromSeq: number;
  readonly toSeq: number;
  /** Label of the location the batches were copied from. */
  readonly source?: string | undefined;
  readonly reason: string;
}

/** What a mirror reports after opening: the storage recovery plus every location's and the repairs made. */
export interface MirrorRecovery extends StorageRecovery {
  readonly locations: ReadonlyArray<{ readonly label: string; readonly recovery: StorageRecovery }>;
  readonly repairs: readonly MirrorRepair[];
}

/** The health of one location of a mirror. */
export interface MirrorLocationState {
  readonly label: string;
  readonly kind: string;
  readonly index: number;
  /** False once a write, sync or truncate of this location failed (until the mirror is reopened). */
  readonly healthy: boolean;
  /** The location's own durable watermark (may run ahead of the mirror's during a sync). */
  readonly durableSeq: number;
  /** Why the location is unhealthy. */
  readonly failure?: StorageError | undefined;
}

/** A {@link PartitionStorage} that keeps the log on several locations at once. */
export interface MirroredStorage extends PartitionStorage {
  readonly kind: 'mirror';
  /** Each location's health and durable seq, now. */
  locationStates(): readonly MirrorLocationState[];
  /** @internal the locations and repair hooks the scrubber uses. */
  readonly internals: MirrorInternals;
}

/** @internal */
export interface MirrorInternals {
  readonly locations: readonly LocationSlot[];
  copy(from: LocationSlot, to: LocationSlot, afterSeq: number, toSeq: number, reason: string): Promise<void>;
  record(repair: MirrorRepair): void;
  /** Throws unless the mirror is open and no write, sync or truncate is in flight. */
  assertIdle(what: string): void;
}

/** @internal */
export interface LocationSlot {
  readonly index: number;
  readonly label: string;
  readonly storage: PartitionStorage;
  readonly directory: string | undefined;
  failure: StorageError | undefined;
}

const WHERE = '[sluice/store] mirror';

/**
 * A mirror: one partition log kept on several locations (RAID-1 in software, across backends).
 *
 * - **write** goes to every location in parallel; **sync** syncs every location in parallel, and
 *   the mirror's durable head advances only when every location holds the batch durably
 *   (invariant 2). The engine acknowledges on that head.
 * - **Failure**: if a location's write, sync or truncate fails, the call rejects with a
 *   `StorageError` naming the location (label, kind, index) and the cause, and the mirror is
 *   failed (the storage contract's failure rule): it is **read-only and degraded** — every
 *   later write and sync rejects with the same error, reads go on from the first healthy
 *   location up to the durable head, and closing cuts every healthy location back to the
 *   mirror's durable head (nothing written after the last successful sync is served again).
 *   Repair by fixing the cause and reopening: open compares the locations and rebuilds.
 * - **Open** opens every location, compares them by batch identity and repairs: a location
 *   that lacks the tail others hold is completed by copying raw batches (or those are cut, see
 *   {@link MirroredStorageOptions.unacknowledgedTail}); an empty or replaced location is rebuilt
 *   byte for byte; locations whose content differs at the same seq are refused with
 *   `StorageError('Corrupt')` naming both and the seq: never silently picked.
 * - **Reads** come from the first healthy location (falling over to the next on an error).
 *
 * @example
 * const storage = createMirroredStorage({
 *   locations: [
 *     { storage: createFileStorage({ directory: '/disk1/payments' }), directory: '/disk1/payments', label: 'disk1' },
 *     { storage: createLmdbStorage({ directory: '/disk2/payments' }), directory: '/disk2/payments', label: 'disk2' },
 *   ],
 * });
 * const partition = await openPartition({ storage, name: 'payments' });
 */
export function createMirroredStorage(options: MirroredStorageOptions): MirroredStorage {
  const problems: string[] = [];
  const locations = options?.locations;
  if (!Array.isArray(locations) || locations.length === 0) problems.push('locations must hold at least one PartitionStorage');
  const slots: LocationSlot[] = [];
  (locations ?? []).forEach((l, index) => {
    const loc: MirrorLocation = isStorage(l) ? { storage: l } : (l as MirrorLocation);
    if (!isStorage(loc?.storage)) {
      problems.push(`location ${index} is not a PartitionStorage (pass a storage or { storage, label, directory })`);
      return;
    }
    slots.push({ index, label: loc.label ?? `${loc.storage.kind} #${index}`, storage: loc.storage, directory: loc.directory, failure: undefined });
  });
  for (let i = 0; i < slots.length; i++) {
    for (let j = 0; j < i; j++) {
      if (slots[i].storage === slots[j].storage) problems.push(`locations ${j} and ${i} are the same storage object: give each location its own storage`);
      if (slots[i].label === slots[j].label) problems.push(`locations ${j} and ${i} have the same label "${slots[i].label}"`);
    }
  }
  const repairBytesMax = options?.repairBytesMax ?? 4 * 1024 * 1024;
  if (!(Number.isSafeInteger(repairBytesMax) && repairBytesMax >= 1024)) problems.push(`repairBytesMax must be an integer of at least 1024, got ${options.repairBytesMax}`);
  const tail = options?.unacknowledgedTail ?? 'complete';
  if (tail !== 'complete' && tail !== 'truncate') problems.push(`unacknowledgedTail must be "complete" or "truncate", got ${JSON.stringify(tail)}`);
  if (problems.length > 0) throw new StorageError('Invalid', `${WHERE}: invalid options: ${problems.join('; ')}`);
  return new Mirror(slots, tail, repairBytesMax, options.onRepair, options.level);
}

function isStorage(x: unknown): x is PartitionStorage {
  return typeof x === 'object' && x !== null && typeof (x as PartitionStorage).write === 'function' && typeof (x as PartitionStorage).open === 'function';
}

const DURABILITY_RANK = { none: 0, interval: 1, commit: 2 } as const;

/** The weakest of the locations' policies: what the mirror as a whole promises. */
function weakest(policies: readonly FsyncPolicy[]): FsyncPolicy {
  let out = policies[0];
  for (const p of policies) {
    if (DURABILITY_RANK[p.kind] < DURABILITY_RANK[out.kind]) out = p;
    else if (p.kind === 'interval' && out.kind === 'interval' && p.intervalMs > out.intervalMs) out = p;
  }
  return out;
}

class Mirror implements MirroredStorage {
  readonly kind = 'mirror' as const;
  readonly capabilities: StorageCapabilities;
  readonly internals: MirrorInternals;
  /** Present when every location has frame reads: reads fall over from one location to the next, as `read` does. */
  readonly readFrames?: (seqs: readonly number[]) => AsyncIterable<EventFrame>;
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  private writing = false;
  private syncing = false;
  private truncating = false;
  private failure: StorageError | undefined;
  private written: BatchIdentity = EMPTY_IDENTITY;
  private durable: BatchIdentity = EMPTY_IDENTITY;
  private readonly signal = new DurableSignal();
  /** Location operations still running (a failed write may leave others in flight). */
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly repairs: MirrorRepair[] = [];

  constructor(
    private readonly slots: readonly LocationSlot[],
    private readonly tailRepair: UnacknowledgedTailRepair,
    private readonly repairBytesMax: number,
    private readonly onRepair: ((repair: MirrorRepair) => void) | undefined,
    private readonly level: string | undefined,
  ) {
    const caps = slots.map((s) => s.storage.capabilities);
    this.capabilities = {
      crossProcessReaders: caps.every((c) => c.crossProcessReaders),
      durability: weakest(caps.map((c) => c.durability)),
      truncate: caps.every((c) => c.truncate === 'in-place') ? 'in-place' : 'seal-and-roll',
      frameReads: caps.every((c) => c.frameReads),
    };
    if (this.capabilities.frameReads) this.readFrames = (seqs) => this.framesFrom(seqs);
    this.internals = {
      locations: slots,
      copy: (from, to, afterSeq, toSeq, reason) => this.copy(from, to, afterSeq, toSeq, reason),
      record: (repair) => this.record(repair),
      assertIdle: (what) => {
        this.assertOpen();
        if (this.writing || this.syncing || this.truncating) throw new StorageError('Invalid', `${WHERE}: ${what} while a write, sync or truncate is in flight: run it on a mirror no partition is writing`);
      },
    };
  }

  locationStates(): readonly MirrorLocationState[] {
    return this.slots.map((s) => ({
      label: s.label,
      kind: s.storage.kind,
      index: s.index,
      healthy: s.failure === undefined,
      durableSeq: this.state === 'open' ? s.storage.durableHead().lastSeq : 0,
      failure: s.failure,
    }));
  }

  async open(): Promise<MirrorRecovery> {
    if (this.state !== 'new') throw new StorageError('Invalid', `${WHERE}: open() was already called; create a new mirror to reopen`);
    this.state = 'opening';
    await this.checkDirectories();
    const opened = await Promise.allSettled(this.slots.map((s) => s.storage.open()));
    const failed = opened.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      await this.closeAll();
      this.state = 'closed';
      throw this.locationError(this.slots[failed], 'open', (opened[failed] as PromiseRejectedResult).reason, 'fix the location (or move a damaged one aside: the mirror rebuilds an empty location from the others) and open again');
    }
    const recoveries = opened.map((r) => (r as PromiseFulfilledResult<StorageRecovery>).value);
    let dropped = { bytes: 0, seqs: 0, reason: undefined as string | undefined };
    for (const r of recoveries) {
      dropped.bytes += r.droppedBytes;
      if (r.droppedSeqs > dropped.seqs) dropped = { ...dropped, seqs: r.droppedSeqs };
      dropped.reason ??= r.droppedReason;
    }
    try {
      const heads = recoveries.map((r) => r.head);
      const cut = await this.reconcile(heads);
      if (cut > 0) {
        dropped.seqs = Math.max(dropped.seqs, cut);
        dropped.reason ??= 'batches some locations did not hold (never acknowledged) were cut';
      }
    } catch (error) {
      await this.closeAll();
      this.state = 'closed';
      throw error;
    }
    this.state = 'open';
    const head = await this.slots[0].storage.head();
    this.written = head;
    this.durable = head;
    return {
      lastSeq: head.lastSeq,
      head,
      droppedBytes: dropped.bytes,
      droppedSeqs: dropped.seqs,
      droppedReason: dropped.reason,
      locations: this.slots.map((s, i) => ({ label: s.label, recovery: recoveries[i] })),
      repairs: [...this.repairs],
    };
  }

  /** Bad locations are refused before anything is opened or written. */
  private async checkDirectories(): Promise<void> {
    const seen = new Map<string, LocationSlot>();
    const problems: string[] = [];
    for (const slot of this.slots) {
      if (slot.directory === undefined) continue;
      try {
        await access(slot.directory, constants.W_OK | constants.X_OK);
      } catch (error) {
        problems.push(`location "${slot.label}" (${slot.storage.kind}, index ${slot.index}): ${slot.directory} is not a writable folder (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
        continue;
      }
      const id = await locationIdentity(slot.directory);
      const other = seen.get(id.key);
      if (other !== undefined) {
        problems.push(`locations "${other.label}" (index ${other.index}) and "${slot.label}" (index ${slot.index}) are the same folder ${id.label}: each copy needs its own folder, ideally its own disk`);
      } else seen.set(id.key, slot);
    }
    if (problems.length > 0) {
      this.state = 'closed';
      throw new StorageError('Invalid', `${WHERE}: ${problems.join('; ')}`);
    }
  }

  /**
   * Compares the locations' heads by batch identity and makes them hold one log. Returns how
   * many seqs were cut (truncate mode).
   */
  private async reconcile(heads: readonly BatchIdentity[]): Promise<number> {
    let ref = 0;
    for (let i = 1; i < heads.length; i++) if (heads[i].lastSeq > heads[ref].lastSeq) ref = i;
    const reference = this.slots[ref];
    for (let i = 0; i < heads.length; i++) {
      if (i === ref || heads[i].lastSeq === 0) continue;
      const there = await reference.storage.identityAt(heads[i].lastSeq);
      if (there === undefined || !sameIdentity(there, heads[i])) {
        throw new StorageError(
          'Corrupt',
          `${WHERE}: locations "${this.slots[i].label}" (${this.slots[i].storage.kind}, index ${i}) and "${reference.label}" (${reference.storage.kind}, index ${ref}) hold different logs at seq ${heads[i].lastSeq} ` +
            `(${describeIdentity(heads[i])} vs ${there === undefined ? 'no batch ending there' : describeIdentity(there)}): the mirror does not pick one; ` +
            `find out which copy is right (sluice verify), move the other aside and reopen: the mirror rebuilds it`,
        );
      }
    }
    const top = heads[ref];
    if (this.tailRepair === 'complete' || heads.every((h) => h.lastSeq === 0 || h.lastSeq === top.lastSeq)) {
      // Completing also rebuilds empty locations (the 'truncate' mode rebuilds them too: an
      // empty location holds nothing to compare, it is a new or replaced copy).
      for (let i = 0; i < heads.length; i++) {
        if (heads[i].lastSeq >= top.lastSeq) continue;
        const why = heads[i].lastSeq === 0 ? 'the location is empty (new or replaced): rebuilt from the others' : `the location lacks seqs ${heads[i].lastSeq + 1}..${top.lastSeq} that "${reference.label}" holds (never acknowledged): completed`;
        await this.copy(reference, this.slots[i], heads[i].lastSeq, top.lastSeq, why);
      }
      return 0;
    }
    // truncate: cut to the shortest non-empty copy, then rebuild the empty ones.
    const nonEmpty = heads.filter((h) => h.lastSeq > 0);
    const common = nonEmpty.reduce((a, b) => (b.lastSeq < a.lastSeq ? b : a));
    for (let i = 0; i < heads.length; i++) {
      if (heads[i].lastSeq <= common.lastSeq) continue;
      const reason = `mirror open: seqs ${common.lastSeq + 1}..${heads[i].lastSeq} are not held by every location, so they were never acknowledged: cut (unacknowledgedTail: truncate)`;
      await this.slots[i].storage.truncate(common.lastSeq, { operatorReason: reason }).catch((e: unknown) => {
        throw this.locationError(this.slots[i], 'truncate', e, 'fix the location and open again');
      });
      this.record({ location: this.slots[i].label, action: 'truncated', fromSeq: common.lastSeq + 1, toSeq: heads[i].lastSeq, reason });
    }
    const source = this.slots[heads.findIndex((h) => h.lastSeq === common.lastSeq)];
    for (let i = 0; i < heads.length; i++) {
      if (heads[i].lastSeq === 0 && common.lastSeq > 0) await this.copy(source, this.slots[i], 0, common.lastSeq, 'the location is empty (new or replaced): rebuilt from the others');
    }
    return top.lastSeq - common.lastSeq;
  }

  /** Appends `from`'s raw batches after `afterSeq` up to `toSeq` to `to`, then syncs it. */
  private async copy(from: LocationSlot, to: LocationSlot, afterSeq: number, toSeq: number, reason: string): Promise<void> {
    const chunk: SealedBatch[] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      const joined = new Uint8Array(bytes);
      let at = 0;
      for (const b of chunk) {
        joined.set(b.bytes, at);
        at += b.bytes.length;
      }
      await to.storage.write(joined, chunk[0].firstSeq, chunk[chunk.length - 1].lastSeq);
      chunk.length = 0;
      bytes = 0;
    };
    try {
      // The bytes leave this location: their batch digests are verified, whatever reads skip.
      for await (const batch of from.storage.read(afterSeq + 1, toSeq, { verifyDigests: true, frames: false })) {
        if (batch.lastSeq <= afterSeq) continue;
        if (bytes > 0 && bytes + batch.bytes.length > this.repairBytesMax) await flush();
        // Copies: the source may reuse the buffers its batches are views of.
        chunk.push({ ...batch, bytes: Uint8Array.from(batch.bytes) });
        bytes += batch.bytes.length;
      }
      await flush();
      const head = await to.storage.sync();
      if (head.lastSeq !== toSeq) throw new StorageError('Corrupt', `${WHERE}: copying to "${to.label}" ended at seq ${head.lastSeq}, not ${toSeq}`);
    } catch (error) {
      throw this.locationError(to, `rebuild from "${from.label}"`, error, 'fix the location and open again');
    }
    this.record({ location: to.label, action: 'copied', fromSeq: afterSeq + 1, toSeq, source: from.label, reason });
  }

  private record(repair: MirrorRepair): void {
    this.repairs.push(repair);
    this.onRepair?.(repair);
  }

  async write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    this.assertWritable();
    if (this.writing) throw new StorageError('Invalid', `${WHERE}: write() called while another write is in flight: one write at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${WHERE}: write() while a truncate runs`);
    // Refusals (gap, chain, epoch) leave the mirror working, as they do a single location.
    const next = checkWrite(bytes, firstSeq, lastSeq, this.written, WHERE);
    this.writing = true;
    try {
      await this.onEvery('write', (s) => s.write(bytes, firstSeq, lastSeq));
      this.written = next;
      // Backends durable on write (interval/none policies, Azure) move their heads here.
      if (this.slots.every((s) => s.storage.durableHead().lastSeq >= next.lastSeq)) this.makeDurable(next);
    } finally {
      this.writing = false;
    }
  }

  async sync(): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.syncing) throw new StorageError('Invalid', `${WHERE}: sync() called while another sync is in flight: one sync at a time`);
    if (this.truncating) throw new StorageError('Invalid', `${WHERE}: sync() while a truncate runs`);
    this.syncing = true;
    const covered = this.written;
    try {
      const heads = await this.onEvery('sync', (s) => s.sync());
      heads.forEach((h, i) => {
        if (h.lastSeq < covered.lastSeq) {
          throw this.fail(this.slots[i], 'sync', new StorageError('Corrupt', `synced up to seq ${h.lastSeq}, not ${covered.lastSeq} as written`));
        }
      });
      this.makeDurable(covered);
      return this.durable;
    } finally {
      this.syncing = false;
    }
  }

  durableHead(): BatchIdentity {
    return this.durable;
  }

  reliability(seq: number): CommitReliability {
    return {
      level: this.level,
      durability: this.capabilities.durability,
      locations: this.slots.filter((s) => s.failure === undefined && s.storage.durableHead().lastSeq >= seq).map((s) => s.label),
    };
  }

  async truncate(afterSeq: number, options: TruncateOptions = {}): Promise<BatchIdentity> {
    this.assertWritable();
    if (this.writing || this.syncing || this.truncating) throw new StorageError('Invalid', `${WHERE}: truncate() while a write or sync is in flight: wait for them first`);
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0 || afterSeq > this.written.lastSeq) {
      throw new StorageError('Invalid', `${WHERE}: cannot truncate after seq ${afterSeq}: the head is ${describeIdentity(this.written)}`);
    }
    const operator = options.operatorReason?.trim();
    if (afterSeq < this.durable.lastSeq && (operator === undefined || operator === '')) {
      throw new StorageError('Invalid', `${WHERE}: truncating after seq ${afterSeq} would remove durable (acknowledged) seqs up to ${this.durable.lastSeq}: pass operatorReason to do it deliberately`);
    }
    this.truncating = true;
    try {
      const heads = await this.onEvery('truncate', (s) => {
        // A location may have made durable what the mirror has not acknowledged yet (its sync
        // finished, another's did not): cutting that is the mirror's call, not an operator's.
        const reason = operator ?? (afterSeq < s.durableHead().lastSeq ? `mirror: cut seqs after ${afterSeq}, not durable on every location (never acknowledged)` : undefined);
        return s.truncate(afterSeq, { operatorReason: reason });
      });
      for (let i = 1; i < heads.length; i++) {
        if (!sameIdentity(heads[i], heads[0])) throw this.fail(this.slots[i], 'truncate', new StorageError('Corrupt', `head after truncate is ${describeIdentity(heads[i])}, "${this.slots[0].label}" has ${describeIdentity(heads[0])}`));
      }
      this.written = heads[0];
      if (this.durable.lastSeq > afterSeq) this.durable = heads[0];
      return heads[0];
    } finally {
      this.truncating = false;
    }
  }

  /** Runs `op` on every location in parallel; the first failure fails the mirror, naming its location. */
  private async onEvery<T>(what: string, op: (s: PartitionStorage) => Promise<T>): Promise<T[]> {
    const running = this.slots.map((slot) => {
      const p = op(slot.storage);
      this.inFlight.add(p);
      void p.then(
        () => this.inFlight.delete(p),
        () => this.inFlight.delete(p),
      );
      return p;
    });
    const settled = await Promise.allSettled(running);
    let error: StorageError | undefined;
    settled.forEach((r, i) => {
      if (r.status === 'rejected') {
        const e = this.fail(this.slots[i], what, r.reason);
        error ??= e;
      }
    });
    if (error !== undefined) throw error;
    return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
  }

  /** Marks `slot` (and so the mirror) failed; returns the mirror's error. */
  private fail(slot: LocationSlot, what: string, cause: unknown): StorageError {
    const error = this.locationError(slot, what, cause, 'the mirror is failed and read-only: fix the location, then close and reopen the partition (open repairs the locations from each other)');
    slot.failure ??= error;
    this.failure ??= error;
    return this.failure;
  }

  private locationError(slot: LocationSlot, what: string, cause: unknown, todo: string): StorageError {
    const reason: StorageErrorReason = isStorageError(cause) ? cause.reason : 'Unavailable';
    const message = cause instanceof Error ? cause.message : String(cause);
    return new StorageError(
      reason,
      `${WHERE}: location "${slot.label}" (${slot.storage.kind}, index ${slot.index}) ${what} failed: ${message} — ${todo}`,
      { cause, retryable: isStorageError(cause) ? cause.retryable : false },
    );
  }

  read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncIterable<SealedBatch> {
    return this.readFrom(fromSeq, toSeq, options);
  }

  private async *readFrom(fromSeq: number, toSeq: number, options: ReadBatchesOptions | undefined): AsyncGenerator<SealedBatch> {
    this.assertOpen();
    const durable = this.durable.lastSeq;
    const limit = Math.min(toSeq, durable);
    let next = fromSeq;
    let firstError: unknown;
    for (const slot of this.readOrder()) {
      try {
        for await (const batch of slot.storage.read(next, limit, options)) {
          if (batch.lastSeq < next) continue;
          if (batch.firstSeq > limit || batch.lastSeq > durable) return;
          yield batch;
          next = batch.lastSeq + 1;
        }
        return;
      } catch (error) {
        // A closed mirror ends here; a location that cannot serve hands over to the next one.
        if (this.state !== 'open') throw new StorageError('Closed', `${WHERE} is closed`, { cause: error });
        firstError ??= error;
      }
    }
    throw firstError;
  }

  private async *framesFrom(seqs: readonly number[]): AsyncGenerator<EventFrame> {
    this.assertOpen();
    checkFrameSeqs(seqs, this.durable.lastSeq, WHERE);
    // As in read: a closed mirror ends here; a location that cannot serve hands over to the next one.
    yield* framesFromFirst(
      this.readOrder().map((slot) => slot.storage),
      seqs,
      (error) => (this.state !== 'open' ? new StorageError('Closed', `${WHERE} is closed`, { cause: error }) : undefined),
    );
  }

  /** Healthy locations first, in configured order, then the failed ones (they may still read). */
  private readOrder(): LocationSlot[] {
    return [...this.slots.filter((s) => s.failure === undefined), ...this.slots.filter((s) => s.failure !== undefined)];
  }

  async head(): Promise<BatchIdentity> {
    this.assertOpen();
    return this.durable;
  }

  async lastSeq(): Promise<number> {
    this.assertOpen();
    return this.durable.lastSeq;
  }

  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    this.assertOpen();
    if (seq < 1 || seq > this.durable.lastSeq) return undefined;
    let firstError: unknown;
    for (const slot of this.readOrder()) {
      try {
        return await slot.storage.identityAt(seq);
      } catch (error) {
        firstError ??= error;
      }
    }
    throw firstError;
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return tailBatches(this, fromSeq, this.signal.wait, options.signal);
  }

  async openReader(): Promise<StorageReader> {
    if (!this.capabilities.crossProcessReaders) {
      const without = this.slots.filter((s) => !s.storage.capabilities.crossProcessReaders).map((s) => `"${s.label}" (${s.storage.kind})`);
      throw new StorageError('Unsupported', `${WHERE}: location ${without.join(', ')} has no cross-process readers, so the mirror has none: read in process, or use file/LMDB/Azure locations`);
    }
    const opened = await Promise.allSettled(this.slots.map((s) => s.storage.openReader()));
    const readers = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = opened.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      await Promise.allSettled(readers.map((r) => r.close()));
      throw this.locationError(this.slots[failed], 'openReader', (opened[failed] as PromiseRejectedResult).reason, 'check the location');
    }
    return new MirrorReader(readers);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.signal.close();
    if (wasOpen && this.failure !== undefined) {
      // Failure rule: what was written after the last successful sync is never served again.
      await Promise.allSettled([...this.inFlight]);
      const reason = `mirror failed (${this.failure.message.slice(0, 200)}): cut back to the mirror's durable head seq ${this.durable.lastSeq}`;
      for (const slot of this.slots) {
        if (slot.failure !== undefined) continue;
        try {
          // Always: a write that failed elsewhere may have landed here, unsynced and unseen.
          const head = slot.storage.durableHead();
          await slot.storage.truncate(this.durable.lastSeq, { operatorReason: reason });
          if (head.lastSeq > this.durable.lastSeq) this.record({ location: slot.label, action: 'truncated', fromSeq: this.durable.lastSeq + 1, toSeq: head.lastSeq, reason });
        } catch {
          // Best effort: the next open compares the locations again.
        }
      }
    }
    await this.closeAll();
  }

  private async closeAll(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    const closed = await Promise.allSettled(this.slots.map((s) => s.storage.close()));
    const failed = closed.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) throw this.locationError(this.slots[failed], 'close', (closed[failed] as PromiseRejectedResult).reason, 'check the location');
  }

  private makeDurable(head: BatchIdentity): void {
    if (head.lastSeq <= this.durable.lastSeq) return;
    this.durable = head;
    this.signal.advance(head.lastSeq);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.failure !== undefined) throw this.failure;
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new StorageError('Closed', `${WHERE} is ${this.state === 'new' || this.state === 'opening' ? 'not open yet: call open() first' : 'closed'}`);
  }
}

/**
 * A reader of a mirror from another process: it serves a batch once every location holds it
 * durably (the lowest head of all), which is exactly what the writer can acknowledge, and reads
 * from the first location that answers.
 */
class MirrorReader implements StorageReader {
  private closed = false;
  private readonly closeSignal = new AbortController();

  /** Present when every location's reader reads frames (the mirror's `frameReads`). */
  readonly readFrames?: (seqs: readonly number[]) => AsyncIterable<EventFrame>;

  constructor(private readonly readers: readonly StorageReader[]) {
    if (readers.every((r) => typeof r.readFrames === 'function')) this.readFrames = (seqs) => this.framesFrom(seqs);
  }

  /** As {@link readRange}: the first reader that serves, handing over to the next from where it stopped. */
  private async *framesFrom(seqs: readonly number[]): AsyncGenerator<EventFrame> {
    checkFrameSeqs(seqs, (await this.head()).lastSeq, `${WHERE} reader`);
    yield* framesFromFirst(this.readers, seqs, (error) => (this.closed ? error : undefined));
  }

  async head(): Promise<BatchIdentity> {
    this.assertOpen();
    const heads = await Promise.all(this.readers.map((r) => r.head()));
    return heads.reduce((a, b) => (b.lastSeq < a.lastSeq ? b : a));
  }

  async lastSeq(): Promise<number> {
    return (await this.head()).lastSeq;
  }

  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    const head = await this.head();
    if (seq < 1 || seq > head.lastSeq) return undefined;
    return this.readers[0].identityAt(seq);
  }

  read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncIterable<SealedBatch> {
    return this.readRange(fromSeq, toSeq, options);
  }

  private async *readRange(fromSeq: number, toSeq: number, options: ReadBatchesOptions | undefined): AsyncGenerator<SealedBatch> {
    const limit = Math.min(toSeq, (await this.head()).lastSeq);
    let next = fromSeq;
    let firstError: unknown;
    for (const reader of this.readers) {
      try {
        for await (const batch of reader.read(next, limit, options)) {
          if (batch.lastSeq < next) continue;
          if (batch.firstSeq > limit || batch.lastSeq > limit) return;
          yield batch;
          next = batch.lastSeq + 1;
        }
        return;
      } catch (error) {
        if (this.closed) throw error;
        firstError ??= error;
      }
    }
    throw firstError;
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    const signal = options.signal === undefined ? this.closeSignal.signal : AbortSignal.any([options.signal, this.closeSignal.signal]);
    return tailBatches(this, fromSeq, pollWait(this), signal);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeSignal.abort();
    await Promise.allSettled(this.readers.map((r) => r.close()));
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `${WHERE} reader is closed`);
  }
}

/**
 * Frames of `seqs` from the first reader that serves them; a reader that fails hands over to the
 * next from the first seq not yet served. `stop` turns an error into one to throw at once (the
 * mirror closed), or undefined to try the next reader.
 */
async function* framesFromFirst(readers: readonly StorageReader[], seqs: readonly number[], stop: (error: unknown) => unknown): AsyncGenerator<EventFrame> {
  let done = 0;
  let firstError: unknown;
  for (const reader of readers) {
    try {
      const readFrames = reader.readFrames as NonNullable<StorageReader['readFrames']>;
      for await (const frame of readFrames.call(reader, done === 0 ? seqs : seqs.slice(done))) {
        yield frame;
        done++;
      }
      return;
    } catch (error) {
      const fatal = stop(error);
      if (fatal !== undefined) throw fatal;
      firstError ??= error;
    }
  }
  throw firstError;
}
