import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVENT_HEADER_BYTES, crc32c, readU32 } from '@sluice/framing';
import { MemoryLog, createMemoryStorage, openPartition, type Partition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createShipper, type Shipper, type ShipperAlert } from './index.js';

// The digest policy: the partition's reads skip the SHA-1 batch digest, shipping does not. A
// frame rewritten with a fresh CRC-32C (damage only the digest sees) is never shipped.

const te = new TextEncoder();
const STREAM = 'account-7';
const TYPE = 'Deposited';
const PAYLOAD = 'tamper-me-payload';
let directory: string;
const partitions: Partition[] = [];
const shippers: Shipper[] = [];

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-ship-digest-'));
});
afterEach(async () => {
  for (const s of shippers.splice(0)) await s.stop();
  for (const p of partitions.splice(0)) await p.close();
  await rm(directory, { recursive: true, force: true });
});

/** Changes one payload byte of the event carrying PAYLOAD in the segment files and rewrites that frame's CRC-32C. */
async function tamper(): Promise<void> {
  let found = 0;
  for (const name of await readdir(directory)) {
    const handle = await open(join(directory, name), 'r+');
    try {
      const { size } = await handle.stat();
      const bytes = new Uint8Array(size);
      await handle.read(bytes, 0, size, 0);
      const at = Buffer.from(bytes.buffer).indexOf(PAYLOAD);
      if (at < 0) continue;
      const start = at - EVENT_HEADER_BYTES - STREAM.length - TYPE.length;
      const n = EVENT_HEADER_BYTES + STREAM.length + TYPE.length + PAYLOAD.length + 4;
      expect(readU32(bytes, start)).toBe(n);
      bytes[at] ^= 0x20;
      new DataView(bytes.buffer).setUint32(start + n - 4, crc32c(bytes, start, start + n - 4), true);
      await handle.write(bytes, start, n, start);
      await handle.sync();
      found++;
    } finally {
      await handle.close();
    }
  }
  expect(found).toBe(1);
}

describe('shipping verifies batch digests', () => {
  it('refuses to ship a batch whose digest fails though every CRC is right, and alerts', async () => {
    const storage = createFileStorage({ directory, segmentBytes: 64 * 1024 });
    const p = await openPartition({ storage, name: 'payments' });
    partitions.push(p);
    await p.append({ streamId: STREAM, events: [{ type: TYPE, data: te.encode('first') }] });
    await p.append({ streamId: STREAM, events: [{ type: TYPE, data: te.encode(PAYLOAD) }] });
    await p.append({ streamId: STREAM, events: [{ type: TYPE, data: te.encode('third') }] });
    await tamper();
    let served = 0;
    for await (const e of p.read()) served += e.seq; // the partition's own read: CRCs only
    expect(served).toBe(6);
    const target = new MemoryLog();
    const shipper = createShipper({
      partition: 'payments',
      source: storage,
      targets: [{ label: 'archive', createStorage: () => createMemoryStorage({ log: target }) }],
      retry: { initialDelayMs: 5, maxDelayMs: 50 },
      lagCheckMs: 20,
    });
    shippers.push(shipper);
    const alerted = new Promise<ShipperAlert>((resolve) => shipper.on('alert', (a) => a.kind === 'source-error' && resolve(a)));
    shipper.start();
    const alert = await alerted;
    expect(alert.message).toMatch(/SHA-1/);
    await shipper.stop();
    // Nothing from the damaged batch on reached the target.
    expect(target.batches.every((b) => b.lastSeq < 2)).toBe(true);
  });
});
