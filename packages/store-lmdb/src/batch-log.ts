import { SHA1_BYTES, StreamDecoder, readU32, readU53, type DecodeReport, type SealedBatch } from '@sluice/framing';
import { StorageError, identityOf, type BatchIdentity } from '@sluice/store';
import type { BatchDatabase, MetaDatabase } from './lmdb-env.js';

/**
 * The layout of a partition in LMDB, version 2: database `batches`, one entry per `write`,
 * key = the write's first seq (an lmdb ordered-binary number, so keys sort by seq), value =
 * the written bytes exactly (one or more sealed batches: frames and commit markers); database
 * `meta`: `layout` (this string), `head` (the identity of the last batch, written in the same
 * transaction as that batch, see {@link encodeIdentity}), `truncations` (JSON lines: operator
 * cuts below the durable head).
 */
export const LAYOUT = 'sluice-lmdb/2 key=firstSeq value=write-bytes meta=head';
/** Version 1 had no `head` record: opening it as the writer adds one and upgrades the layout. */
export const LAYOUT_V1 = 'sluice-lmdb/1 key=firstSeq value=append-bytes';

export const LAYOUT_KEY = 'layout';
export const HEAD_KEY = 'head';
export const TRUNCATIONS_KEY = 'truncations';

const IDENTITY_BYTES = 8 + 4 + SHA1_BYTES;

/** `head` record: u64 lastSeq, u32 epoch, 20-byte digest (little-endian, like the frames). */
export function encodeIdentity(id: BatchIdentity): Uint8Array {
  const b = new Uint8Array(IDENTITY_BYTES);
  const view = new DataView(b.buffer);
  view.setUint32(0, id.lastSeq % 0x1_0000_0000, true);
  view.setUint32(4, Math.floor(id.lastSeq / 0x1_0000_0000), true);
  view.setUint32(8, id.epoch, true);
  b.set(id.digest, 12);
  return b;
}

/** Reads the `head` record, or undefined when there is none (an empty or version 1 partition). */
export function readHead(meta: MetaDatabase, directory: string): BatchIdentity | undefined {
  const b = meta.getBinary(HEAD_KEY);
  if (b === undefined) return undefined;
  if (b.length !== IDENTITY_BYTES || readU53(b, 0) < 0) {
    throw new StorageError('Corrupt', `[sluice/store-lmdb] ${directory}: the head record is damaged (${b.length} bytes): restore the partition from a copy`);
  }
  return { lastSeq: readU53(b, 0), epoch: readU32(b, 8), digest: Uint8Array.from(b.subarray(12, 12 + SHA1_BYTES)) };
}

/** Keys fetched per range lookup while reading. */
const KEYS_PER_LOOKUP = 64;

/** One stored value decoded: its verified batches and where decoding stopped. */
export interface DecodedValue {
  readonly batches: SealedBatch[];
  readonly report: DecodeReport;
}

/**
 * Decodes a stored value whose first frame must carry seq `firstSeq` (its key); with
 * `prevDigest`, its first batch must also chain to it.
 */
export function decodeValue(bytes: Uint8Array, firstSeq: number, prevDigest?: Uint8Array, verifyDigest = true): DecodedValue {
  const decoder = new StreamDecoder({ firstSeq, prevDigest, verifyDigest });
  const batches = decoder.push(bytes);
  return { batches, report: decoder.end() };
}

/** True when the value is exactly one or more whole sealed batches. */
export function isWhole(value: DecodedValue): boolean {
  return value.report.reason === 'end' && value.batches.length > 0;
}

/** The greatest key, or undefined when the log is empty. */
export function lastKey(db: BatchDatabase): number | undefined {
  for (const key of db.getKeys({ reverse: true, limit: 1 })) return key;
  return undefined;
}

/** The greatest key <= seq, or undefined. */
export function floorKey(db: BatchDatabase, seq: number): number | undefined {
  for (const key of db.getKeys({ start: seq, reverse: true, limit: 1 })) return key;
  return undefined;
}

/**
 * Copies a value out of lmdb's reused read buffer into memory the caller owns. lmdb-js hands
 * out one buffer per environment that the next read overwrites; decoded frames are views
 * into their input, so anything yielded to a caller must sit in its own memory.
 */
export function ownedCopy(fast: Uint8Array): Uint8Array {
  const n = fast.length; // lmdb sets `length` to the value's size; byteLength is the whole buffer
  const owned = new Uint8Array(n);
  owned.set(n === fast.byteLength ? fast : fast.subarray(0, n));
  return owned;
}

/** How a read treats a last entry that does not decode to whole sealed batches. */
export type TornTail = 'stop' | 'corrupt';

/**
 * Verified batches overlapping [fromSeq, toSeq], in seq order, found by key range: the entry
 * at or before `fromSeq`, then every entry with a key up to `toSeq`. Each value is copied
 * once and decoded in place (payloads are views into that copy). Entries must follow each
 * other without a gap.
 *
 * `tornTail: 'stop'` (readers in other processes) ends quietly at a last entry that does not
 * decode: an abandoned tail the writer's recovery has not removed yet. The writer, which
 * recovered its log on open, uses `'corrupt'`. `verifyDigest: false` skips the SHA-1 of each
 * batch (CRCs and the chain are still checked): see `ReadBatchesOptions` for who may.
 */
export async function* readBatches(
  db: BatchDatabase,
  directory: string,
  fromSeq: number,
  toSeq: number,
  tornTail: TornTail,
  assertOpen: () => void,
  verifyDigest = true,
): AsyncGenerator<SealedBatch> {
  assertOpen();
  if (!(toSeq >= fromSeq)) return;
  let start = floorKey(db, fromSeq) ?? fromSeq;
  let expected: number | undefined;
  let prevDigest: Uint8Array | undefined;
  for (;;) {
    const keys = Array.from(db.getKeys({ start, end: toSeq + 1, limit: KEYS_PER_LOOKUP }));
    for (const key of keys) {
      assertOpen();
      if (expected !== undefined && key !== expected) {
        throw new StorageError(
          'Corrupt',
          `[sluice/store-lmdb] ${directory}: the batch after seq ${expected - 1} starts at seq ${key}: committed data is missing; restore the partition from a copy`,
        );
      }
      const fast = db.getBinaryFast(key);
      if (fast === undefined) {
        if (tornTail === 'stop') return; // removed by the writer's recovery since the key lookup
        throw corrupt(directory, key, 'the entry vanished while it was read');
      }
      // Entries after the first must chain to the one before: a copy spliced from another history is damage.
      const value = decodeValue(ownedCopy(fast), key, prevDigest, verifyDigest);
      if (!isWhole(value)) {
        if (tornTail === 'stop' && lastKey(db) === key) return;
        throw corrupt(directory, key, `${value.report.reason}: ${value.report.detail}`);
      }
      for (const batch of value.batches) {
        if (batch.lastSeq >= fromSeq && batch.firstSeq <= toSeq) yield batch;
      }
      const last = value.batches[value.batches.length - 1];
      expected = last.lastSeq + 1;
      prevDigest = last.marker.digest;
    }
    if (keys.length < KEYS_PER_LOOKUP) return;
    start = keys[keys.length - 1] + 1;
  }
}

/**
 * The identity of the batch holding `seq` (decoded from its entry, verified). With
 * `mustEnd`, the batch must end exactly at `seq`. Undefined when no stored batch holds it.
 */
export function identityInLog(db: BatchDatabase, directory: string, seq: number, mustEnd = false): BatchIdentity | undefined {
  const key = floorKey(db, seq);
  if (key === undefined) return undefined;
  const fast = db.getBinaryFast(key);
  if (fast === undefined) return undefined;
  const value = decodeValue(fast, key); // in place: only copied identities escape
  for (const batch of value.batches) {
    if (batch.firstSeq <= seq && seq <= batch.lastSeq) return mustEnd && batch.lastSeq !== seq ? undefined : identityOf(batch);
  }
  if (!isWhole(value)) {
    throw new StorageError(
      'Corrupt',
      `[sluice/store-lmdb] ${directory}: the batch at seq ${key} does not verify (${value.report.reason}: ${value.report.detail}): committed data was damaged; restore the partition from a copy`,
    );
  }
  return undefined;
}

function corrupt(directory: string, key: number, detail: string): StorageError {
  return new StorageError(
    'Corrupt',
    `[sluice/store-lmdb] ${directory}: the batch at seq ${key} does not verify (${detail}): committed data was damaged; restore the partition from a copy`,
  );
}
