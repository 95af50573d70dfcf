import { ZERO_DIGEST, decodeBatches } from '@sluice/framing';
import { EMPTY_IDENTITY, describeIdentity, identityOf, sameIdentity } from './batch-identity.js';
import { StorageError } from './errors.js';
import type { LocationSlot, MirroredStorage } from './mirrored-storage.js';
import type { BatchIdentity, PartitionStorage, StorageReader } from './storage.js';

/** Options of {@link scrubPartition}. */
export interface ScrubOptions {
  /**
   * Repair a damaged copy of a mirror from a verified one (truncate after the last good batch,
   * then copy raw batches). Off: only verify and report.
   * @default true
   */
  readonly repair?: boolean;
  /** Ends the scrub early (the report says how far it got). */
  readonly signal?: AbortSignal | undefined;
}

/** What the scrubber found on one copy. */
export interface ScrubCopyReport {
  /** The location's label (`"memory #0"`, or the storage's kind for a single storage). */
  readonly location: string;
  /** Batches and bytes verified. */
  readonly batches: number;
  readonly bytes: number;
  /** Identity of the last batch that verified (chain included). */
  readonly verified: BatchIdentity;
  /** The first damage found, if any. */
  readonly damage?: { readonly seq: number; readonly detail: string } | undefined;
  /** True when the damage was repaired from another copy. */
  readonly repaired: boolean;
}

/** What {@link scrubPartition} found and did. */
export interface ScrubReport {
  /** True when every copy verified to the durable head (after repairs). */
  readonly ok: boolean;
  /** The durable head every copy was checked up to. */
  readonly head: BatchIdentity;
  readonly copies: readonly ScrubCopyReport[];
}

/**
 * Re-verifies every copy of a partition's log: each batch of each location is decoded in full
 * from its stored bytes (frame checksums, batch digest, the chain to the batch before it, seqs
 * without a gap) up to the durable head, whose identity every copy must reach. A damaged copy
 * of a mirror is repaired from a verified one: cut after its last good batch (an operator-level
 * truncate, recorded with the reason) and completed with the good copy's raw batches. A single
 * storage is verified and reported (there is nothing to repair it from).
 *
 * Run it on an opened storage no partition is writing to (the `sluice scrub` command opens the
 * partition's storage itself); with `repair: false` it only reads and may run any time.
 *
 * @example
 * const storage = createMirroredStorage({ locations: [a, b] });
 * await storage.open();
 * const report = await scrubPartition(storage);
 * if (!report.ok) process.exitCode = 1;
 * await storage.close();
 */
export async function scrubPartition(storage: PartitionStorage, options: ScrubOptions = {}): Promise<ScrubReport> {
  const head = await storage.head();
  if (!isMirror(storage)) {
    const copy = await verifyCopy(storage, storage.kind, head, options.signal);
    return { ok: copy.damage === undefined, head, copies: [copy] };
  }
  const repair = options.repair ?? true;
  if (repair) storage.internals.assertIdle('scrubPartition with repair');
  const slots = storage.internals.locations;
  const copies: ScrubCopyReport[] = [];
  for (const slot of slots) copies.push(await verifyCopy(slot.storage, slot.label, head, options.signal));
  if (repair) {
    const good = slots.find((_, i) => copies[i].damage === undefined);
    for (let i = 0; i < slots.length; i++) {
      const copy = copies[i];
      if (copy.damage === undefined || good === undefined) continue;
      copies[i] = await repairCopy(storage, good, slots[i], copy, head);
    }
  }
  return { ok: copies.every((c) => c.damage === undefined || c.repaired), head, copies };
}

function isMirror(storage: PartitionStorage): storage is MirroredStorage {
  return storage.kind === 'mirror' && (storage as MirroredStorage).internals !== undefined;
}

async function repairCopy(mirror: MirroredStorage, good: LocationSlot, slot: LocationSlot, copy: ScrubCopyReport, head: BatchIdentity): Promise<ScrubCopyReport> {
  const reason = `scrub: "${slot.label}" damaged at seq ${copy.damage?.seq} (${copy.damage?.detail}); cut after its last verified batch (${describeIdentity(copy.verified)}) and copied from "${good.label}"`;
  const at = copy.verified.lastSeq;
  await slot.storage.truncate(at, { operatorReason: reason });
  mirror.internals.record({ location: slot.label, action: 'truncated', fromSeq: at + 1, toSeq: head.lastSeq, reason });
  await mirror.internals.copy(good, slot, at, head.lastSeq, reason);
  const again = await verifyCopy(slot.storage, slot.label, head, undefined);
  return { ...again, damage: copy.damage, repaired: again.damage === undefined };
}

/** Decodes every stored batch of one copy from its bytes, with the chain, up to `head`. */
async function verifyCopy(reader: StorageReader, label: string, head: BatchIdentity, signal: AbortSignal | undefined): Promise<ScrubCopyReport> {
  let verified: BatchIdentity = EMPTY_IDENTITY;
  let prevDigest: Uint8Array = ZERO_DIGEST;
  let batches = 0;
  let bytes = 0;
  const report = (damage?: { seq: number; detail: string }): ScrubCopyReport => ({ location: label, batches, bytes, verified, damage, repaired: false });
  try {
    // Every batch's bytes are decoded again below, digest included: the read need not hash them
    // (and a damaged batch is then named exactly, not the whole run of batches read with it).
    for await (const batch of reader.read(1, head.lastSeq, { verifyDigests: false })) {
      if (signal?.aborted === true) return report();
      const seq = verified.lastSeq + 1;
      if (batch.firstSeq !== seq) return report({ seq, detail: `batch starts at seq ${batch.firstSeq}, expected ${seq}` });
      // The first batch of a version 1 log has no chain; later ones must name the one before.
      const { batches: decoded, report: r } = decodeBatches(batch.bytes, { firstSeq: seq, prevDigest: verified.lastSeq === 0 && batch.marker.prevDigest === undefined ? undefined : prevDigest });
      if (r.reason !== 'end' || decoded.length !== 1 || decoded[0].lastSeq !== batch.lastSeq) {
        return report({ seq, detail: `stored bytes do not verify (${r.reason}: ${r.detail})` });
      }
      const id = identityOf(decoded[0]);
      const claimed = identityOf(batch);
      if (!sameIdentity(id, claimed)) return report({ seq, detail: `the batch verifies as ${describeIdentity(id)} but was served as ${describeIdentity(claimed)}` });
      verified = id;
      prevDigest = id.digest;
      batches++;
      bytes += batch.bytes.length;
    }
  } catch (error) {
    if (error instanceof StorageError && error.reason === 'Closed') throw error;
    return report({ seq: verified.lastSeq + 1, detail: `read failed: ${error instanceof Error ? error.message : String(error)}` });
  }
  if (!sameIdentity(verified, head)) return report({ seq: verified.lastSeq + 1, detail: `the copy ends at ${describeIdentity(verified)}, the durable head is ${describeIdentity(head)}` });
  return report();
}
