import { StreamDecoder, type DecodeReport, type SealedBatch } from '@sluice/framing';
import { StorageError } from '@sluice/store';
import type { BatchDatabase } from './lmdb-env.js';

/**
 * The layout of a partition in LMDB, version 1: database `batches`, one entry per `append`,
 * key = the append's first seq (an lmdb ordered-binary number, so keys sort by seq), value =
 * the appended bytes exactly (one or more sealed batches: frames and commit markers); database
 * `meta`: `layout` (this string).
 */
export const LAYOUT = 'sluice-lmdb/1 key=firstSeq value=append-bytes';

/** Keys fetched per range lookup while reading. */
const KEYS_PER_LOOKUP = 64;

/** One stored value decoded: its verified batches and where decoding stopped. */
export interface DecodedValue {
  readonly batches: SealedBatch[];
  readonly report: DecodeReport;
}

/** Decodes a stored value whose first frame must carry seq `firstSeq` (its key). */
export function decodeValue(bytes: Uint8Array, firstSeq: number): DecodedValue {
  const decoder = new StreamDecoder({ firstSeq });
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
 * recovered its log on open, uses `'corrupt'`.
 */
export async function* readBatches(
  db: BatchDatabase,
  directory: string,
  fromSeq: number,
  toSeq: number,
  tornTail: TornTail,
  assertOpen: () => void,
): AsyncGenerator<SealedBatch> {
  assertOpen();
  if (!(toSeq >= fromSeq)) return;
  let start = floorKey(db, fromSeq) ?? fromSeq;
  let expected: number | undefined;
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
      const value = decodeValue(ownedCopy(fast), key);
      if (!isWhole(value)) {
        if (tornTail === 'stop' && lastKey(db) === key) return;
        throw corrupt(directory, key, `${value.report.reason}: ${value.report.detail}`);
      }
      for (const batch of value.batches) {
        if (batch.lastSeq >= fromSeq && batch.firstSeq <= toSeq) yield batch;
      }
      expected = value.batches[value.batches.length - 1].lastSeq + 1;
    }
    if (keys.length < KEYS_PER_LOOKUP) return;
    start = keys[keys.length - 1] + 1;
  }
}

function corrupt(directory: string, key: number, detail: string): StorageError {
  return new StorageError(
    'Corrupt',
    `[sluice/store-lmdb] ${directory}: the batch at seq ${key} does not verify (${detail}): committed data was damaged; restore the partition from a copy`,
  );
}
