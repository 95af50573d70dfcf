import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVENT_HEADER_BYTES, crc32c, readU32 } from '@sluice/framing';
import { openPartition, scrubPartition, type Partition, type PartitionStorage } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// The digest policy (ReadBatchesOptions): the partition's reads check CRCs, not the SHA-1 batch
// digest; everything that copies or judges bytes (recovery, scrub, shipping, mirror repair)
// verifies it. A frame rewritten with a fresh CRC-32C is exactly the damage only the digest sees.

const te = new TextEncoder();
const STREAM = 'account-7';
const TYPE = 'Deposited';
const PAYLOAD = 'tamper-me-payload';

/**
 * Changes one payload byte of the event carrying PAYLOAD in a stored file and rewrites that
 * frame's CRC-32C, wherever the file holds it (LMDB keeps older copies of a page in free pages).
 */
async function rewriteFrame(path: string): Promise<boolean> {
  const handle = await open(path, 'r+');
  try {
    const { size } = await handle.stat();
    const bytes = new Uint8Array(size);
    await handle.read(bytes, 0, size, 0);
    let found = false;
    for (let at = Buffer.from(bytes.buffer).indexOf(PAYLOAD); at >= 0; at = Buffer.from(bytes.buffer).indexOf(PAYLOAD, at + 1)) {
      const start = at - EVENT_HEADER_BYTES - STREAM.length - TYPE.length;
      const n = EVENT_HEADER_BYTES + STREAM.length + TYPE.length + PAYLOAD.length + 4;
      expect(readU32(bytes, start)).toBe(n);
      bytes[at] ^= 0x20; // 't' -> 'T'
      new DataView(bytes.buffer).setUint32(start + n - 4, crc32c(bytes, start, start + n - 4), true);
      await handle.write(bytes, start, n, start);
      found = true;
    }
    await handle.sync();
    return found;
  } finally {
    await handle.close();
  }
}

async function tamper(directory: string): Promise<void> {
  let found = 0;
  for (const name of await readdir(directory)) if (await rewriteFrame(join(directory, name))) found++;
  expect(found).toBe(1);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function writeThreeCommits(storage: PartitionStorage, opened: Partition[]): Promise<{ p: Partition; storage: PartitionStorage }> {
  const p = await openPartition({ storage, name: 'digest' });
  opened.push(p);
  await p.append({ streamId: STREAM, events: [{ type: TYPE, data: te.encode('first') }] });
  await p.append({ streamId: STREAM, events: [{ type: TYPE, data: te.encode(PAYLOAD) }] });
  await p.append({ streamId: STREAM, events: [{ type: TYPE, data: te.encode('third') }] });
  return { p, storage };
}

/**
 * Registers the digest policy tests for a backend that keeps frames as written in the files of
 * its directory (file, LMDB): a frame rewritten there with a fresh CRC-32C is served by the
 * partition's reads and refused by copy reads (`verifyDigests`), scrub and recovery.
 */
export function describeDigestPolicy(name: string, createStorage: (directory: string) => PartitionStorage): void {
  describe(`digest policy (${name})`, () => {
    let directory: string;
    const opened: Partition[] = [];
    beforeEach(async () => {
      directory = await mkdtemp(join(tmpdir(), `sluice-${name}-digest-`));
    });
    afterEach(async () => {
      for (const p of opened.splice(0)) await p.close().catch(() => undefined);
      await rm(directory, { recursive: true, force: true });
    });

    it('partition reads check CRCs only; a batch read to be copied (shipping, mirror repair) verifies the digest', async () => {
      const { p, storage } = await writeThreeCommits(createStorage(directory), opened);
      await tamper(directory);
      // The frame's CRC is right: the partition's own read serves it (no SHA-1 on reads).
      const events = await collect(p.read());
      expect(events.map((e) => new TextDecoder().decode(e.payload))).toEqual(['first', 'Tamper-me-payload', 'third']);
      // What the shipper and a mirror's repair call: the digest is verified and the batch refused.
      await expect(collect(storage.read(1, 3, { verifyDigests: true }))).rejects.toMatchObject({ reason: 'Corrupt', message: /SHA-1/ });
      await expect(collect(storage.read(1, 3, { verifyDigests: true, frames: false }))).rejects.toMatchObject({ reason: 'Corrupt', message: /SHA-1/ });
      await expect(collect(storage.read(1, 3))).rejects.toMatchObject({ reason: 'Corrupt' }); // the default
      expect((await collect(storage.read(1, 3, { verifyDigests: false }))).length).toBe(3);
      expect((await collect(storage.read(1, 3, { verifyDigests: false, frames: false }))).length).toBe(3);
    });

    it('scrub refuses the batch', async () => {
      const { storage } = await writeThreeCommits(createStorage(directory), opened);
      await tamper(directory);
      const report = await scrubPartition(storage, { repair: false });
      expect(report.ok).toBe(false);
      expect(report.copies[0].damage).toMatchObject({ seq: 2 });
      expect(report.copies[0].damage?.detail).toMatch(/SHA-1/);
    });

    it('recovery refuses the batch when it opens the log', async () => {
      const { p } = await writeThreeCommits(createStorage(directory), opened);
      await p.close();
      await tamper(directory);
      const error = await openPartition({ storage: createStorage(directory), name: 'digest' }).then(
        (q) => {
          opened.push(q);
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ reason: 'Corrupt', message: /SHA-1/ });
    });
  });
}
