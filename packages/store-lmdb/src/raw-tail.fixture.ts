import { decodeValue, isWhole, lastKey, ownedCopy } from './batch-log.js';
import { openWriterEnv } from './lmdb-env.js';

/**
 * Stores raw bytes after the last entry of an LMDB partition, bypassing the storage, as the
 * conformance suite's `appendRaw` asks. LMDB commits are atomic, so a crash never tears an
 * entry; this writes what recovery must cope with anyway: an extra entry keyed by the seq
 * that would come next, holding whatever bytes it is given. When a raw entry is already
 * there (it does not verify), the bytes extend it, as appending to a file would.
 * Call it only while no storage of the partition is open.
 */
export async function appendRawToLmdbLog(directory: string, bytes: Uint8Array): Promise<void> {
  const env = openWriterEnv(directory, { kind: 'commit' }, 1024 * 1024);
  try {
    const db = env.batches;
    const last = lastKey(db);
    if (last === undefined) {
      await db.put(1, Uint8Array.from(bytes));
      return;
    }
    const stored = ownedCopy(db.getBinaryFast(last) as Uint8Array);
    const value = decodeValue(stored, last);
    if (isWhole(value)) {
      await db.put(value.batches[value.batches.length - 1].lastSeq + 1, Uint8Array.from(bytes));
    } else {
      const joined = new Uint8Array(stored.length + bytes.length);
      joined.set(stored);
      joined.set(bytes, stored.length);
      await db.put(last, joined);
    }
  } finally {
    await env.close();
  }
}
