import {
  FRAME_BYTES_MIN,
  KIND_EVENT,
  KIND_MARKER,
  MARKER_BYTES,
  MARKER_V1_BYTES,
  SHA1_BYTES,
  StreamDecoder,
  decodeEventFrameAt,
  readU32,
  readU53,
  type DecodeReport,
  type EventFrame,
  type SealedBatch,
} from '@sluice/framing';
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

/**
 * The last seq of an entry, read from the commit marker its bytes end with (version 2, else
 * version 1), or undefined when the end does not look like a marker (the walk then finds out).
 */
function entryLastSeq(value: Uint8Array): number | undefined {
  for (const size of [MARKER_BYTES, MARKER_V1_BYTES]) {
    const at = value.length - size;
    if (at >= 0 && readU32(value, at) === size && value[at + 5] === KIND_MARKER) {
      const lastSeq = readU53(value, at + 32);
      return lastSeq >= 1 ? lastSeq : undefined;
    }
  }
  return undefined;
}

/** The smallest key > `key`, or undefined. */
function keyAfter(db: BatchDatabase, key: number): number | undefined {
  for (const next of db.getKeys({ start: key + 1, limit: 1 })) return next;
  return undefined;
}

/**
 * The event frames with exactly `seqs` (ascending, checked by the caller against the durable
 * head), each CRC-checked, without decoding or hashing their batches: the entry holding a seq
 * is found by key (its first seq), and the frames' length fields are walked from the entry's
 * start to the seq (a few reads of 4 bytes per frame passed over; markers are stepped over).
 * Every frame of one entry asked for is taken in one walk. Each frame is copied out of
 * lmdb-js's reused read buffer into its own bytes, so what is yielded stays valid.
 *
 * lmdb-js copies a value under 16 MiB out of the memory map on every get (its
 * `SHARED_BUFFER_THRESHOLD`): the copy of the entry, not the walk, is most of the cost; see
 * the README's "Frame reads".
 */
export async function* readFramesAt(db: BatchDatabase, directory: string, seqs: readonly number[], assertOpen: () => void): AsyncGenerator<EventFrame> {
  const out: EventFrame[] = [];
  let i = 0;
  while (i < seqs.length) {
    assertOpen();
    const first = seqs[i];
    const key = floorKey(db, first);
    if (key === undefined) throw corrupt(directory, first, `no entry holds seq ${first}`);
    // The value is only valid until the next read on this environment: no await until it is done with.
    const fast = db.getBinaryFast(key);
    if (fast === undefined) throw corrupt(directory, key, 'the entry vanished while it was read');
    // A plain view of the same bytes (lmdb-js's buffer redefines `length`).
    const n = fast.length;
    const value = new Uint8Array(fast.buffer, fast.byteOffset, n);
    // The entry's last seq, from the marker that ends it (a key lookup for the next entry costs more).
    let end = (entryLastSeq(value) ?? first - 1) + 1;
    if (end <= first) end = keyAfter(db, key) ?? Number.POSITIVE_INFINITY;
    if (end <= first) throw corrupt(directory, key, `no entry holds seq ${first}`);
    let offset = 0;
    let expected = key;
    for (; i < seqs.length && seqs[i] < end; i++) {
      const want = seqs[i];
      for (;;) {
        const frameBytes = offset + 8 <= n ? readU32(value, offset) : 0;
        if (frameBytes < FRAME_BYTES_MIN || offset + frameBytes > n) {
          throw corrupt(directory, key, `no frame with seq ${want} before byte ${offset} of ${n} (length field ${frameBytes})`);
        }
        const kind = value[offset + 5];
        if (kind === KIND_EVENT) {
          const seq = readU53(value, offset + 8);
          if (seq !== expected) throw corrupt(directory, key, `the frame at byte ${offset} has seq ${seq}, not ${expected}`);
          if (seq === want) break;
          expected++;
        } else if (kind !== KIND_MARKER) {
          throw corrupt(directory, key, `the frame at byte ${offset} is of unknown kind ${kind}`);
        }
        offset += frameBytes;
      }
      const frameBytes = readU32(value, offset);
      const owned = new Uint8Array(frameBytes);
      owned.set(value.subarray(offset, offset + frameBytes));
      const frame = decodeEventFrameAt(owned, 0);
      if (typeof frame === 'string') throw corrupt(directory, key, `seq ${want}: ${frame}`);
      out.push(frame);
      offset += frameBytes;
      expected++;
    }
    for (let k = 0; k < out.length; k++) yield out[k];
    out.length = 0;
  }
}

function corrupt(directory: string, key: number, detail: string): StorageError {
  return new StorageError(
    'Corrupt',
    `[sluice/store-lmdb] ${directory}: the batch at seq ${key} does not verify (${detail}): committed data was damaged; restore the partition from a copy`,
  );
}
