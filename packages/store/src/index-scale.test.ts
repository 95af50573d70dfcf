import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ZERO_DIGEST, decodeBatches, type SealedBatch } from '@sluice/framing';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_IDENTITY,
  StorageError,
  checkWrite,
  firstBatchEndingAtOrAfter,
  openPartition,
  type BatchIdentity,
  type PartitionStorage,
  type StorageRecovery,
} from './index.js';

/**
 * A lean in-memory log for scale tests: it keeps each write's raw bytes (about 40 bytes a
 * frame) and decodes on read, as a disk backend does. The reference memory storage keeps
 * decoded frame objects, a few hundred bytes of heap each: too much for 2^24 frames.
 */
class RawLog {
  readonly writes: Uint8Array[] = [];
  readonly lastSeqs: number[] = [];
  readonly ids: BatchIdentity[] = [];
  head: BatchIdentity = EMPTY_IDENTITY;
}

function rawStorage(log: RawLog): PartitionStorage {
  const unsupported = (): never => {
    throw new StorageError('Unsupported', 'raw test storage: not supported');
  };
  const identityAt = async (seq: number): Promise<BatchIdentity | undefined> => {
    if (seq < 1 || seq > log.head.lastSeq) return undefined;
    return log.ids[firstBatchEndingAtOrAfter(log.lastSeqs, seq)];
  };
  async function* read(fromSeq: number, toSeq: number): AsyncGenerator<SealedBatch> {
    for (let i = firstBatchEndingAtOrAfter(log.lastSeqs, fromSeq); i < log.writes.length; i++) {
      const first = i === 0 ? 1 : log.lastSeqs[i - 1] + 1;
      if (first > toSeq) return;
      const { batches } = decodeBatches(log.writes[i], { firstSeq: first, prevDigest: i === 0 ? ZERO_DIGEST : log.ids[i - 1].digest });
      yield* batches;
    }
  }
  return {
    kind: 'raw',
    capabilities: { crossProcessReaders: false, durability: { kind: 'commit' }, truncate: 'in-place', frameReads: false },
    open: async (): Promise<StorageRecovery> => ({ lastSeq: log.head.lastSeq, head: log.head, droppedBytes: 0, droppedSeqs: 0 }),
    write: async (bytes, firstSeq, lastSeq) => {
      const next = checkWrite(bytes, firstSeq, lastSeq, log.head, 'raw test storage');
      log.writes.push(Uint8Array.from(bytes));
      log.lastSeqs.push(lastSeq);
      log.ids.push(next);
      log.head = next;
    },
    sync: async () => log.head,
    durableHead: () => log.head,
    head: async () => log.head,
    lastSeq: async () => log.head.lastSeq,
    identityAt,
    read,
    tail: unsupported,
    truncate: unsupported,
    openReader: unsupported,
    close: async () => undefined,
  };
}

const TWO_24 = 2 ** 24;
const PER_UNIT = 64;
/**
 * Past 2^24 ids and streams (16.8 M events: about 4 minutes of CPU) with SLUICE_SCALE=1 (or a
 * unit count in SLUICE_SCALE_UNITS); by default the same test at 2^18 events, so the suite
 * stays quick on a shared machine while the code path is the same.
 */
const UNITS = Number(
  process.env.SLUICE_SCALE_UNITS ?? (process.env.SLUICE_SCALE === '1' ? Math.ceil((TWO_24 + 1000) / PER_UNIT) : 2 ** 18 / PER_UNIT),
);

describe('an index past V8 Map limits', () => {
  it(
    `holds ${UNITS * PER_UNIT} command ids and as many streams (more than 2^24 with SLUICE_SCALE=1): no RangeError, and after reopening duplicates are still recognised`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sluice-index-scale-'));
      try {
        const log = new RawLog();
        const options = { indexDirectory: dir, indexCheckpointEvents: 1_048_576 };
        const p = await openPartition({ storage: rawStorage(log), ...options });
        const data = new Uint8Array(0);
        const events = [{ type: 'E', data }];
        let acks: Array<Promise<unknown>> = [];
        for (let u = 0; u < UNITS; u++) {
          const changes = [];
          const commandIds = [];
          for (let k = 0; k < PER_UNIT; k++) {
            changes.push({ streamId: `${u}.${k}`, events });
            commandIds.push(`${u}:${k}`);
          }
          acks.push(p.commit({ changes, commandIds }));
          if (acks.length === 512) {
            await Promise.all(acks);
            acks = [];
          }
        }
        await Promise.all(acks);
        const total = UNITS * PER_UNIT;
        expect(p.lastSeq).toBe(total);
        expect(p.streamCount).toBe(total);
        await p.close();
        expect(p.indexStatus.lastError).toBeUndefined();
        expect(p.indexStatus.persistedSeq).toBe(total);

        const q = await openPartition({ storage: rawStorage(log), ...options });
        expect(q.indexStatus.replayedFrames).toBe(0);
        expect(q.streamCount).toBe(total);
        for (const u of [0, 1, UNITS >> 1, UNITS - 1]) {
          const dup = await q.commit({ changes: [{ streamId: 'retry', events }], commandIds: [`${u}:${PER_UNIT - 1}`] });
          expect(dup).toMatchObject({ duplicate: true, firstSeq: u * PER_UNIT + 1 });
          expect(await q.currentVersion(`${u}.5`)).toBe(1);
        }
        const fresh = await q.commit({ changes: [{ streamId: `${UNITS - 1}.0`, expectedVersion: 1, events }], commandIds: ['new'] });
        expect(fresh).toMatchObject({ duplicate: false, firstSeq: total + 1, streams: [{ firstVersion: 2, version: 2 }] });
        const read: number[] = [];
        for await (const e of q.readStream(`${UNITS - 1}.0`)) read.push(e.seq);
        expect(read).toEqual([(UNITS - 1) * PER_UNIT + 1, total + 1]);
        await q.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    60 * 60_000,
  );
});
