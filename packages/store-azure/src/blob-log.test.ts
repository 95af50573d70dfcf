import { openPartition, type Partition, type StorageReader } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAzureStorage, openAzureReader, type AzureStorageOptions } from './index.js';
import { appendRawToLastBlob, blobBytes, createTestContainer, storedBlobs, type TestContainer } from './testing/azurite-context.fixture.js';
import { faultyContainer } from './testing/faulty-container.fixture.js';

const te = new TextEncoder();
const td = new TextDecoder();
const GARBAGE = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);

async function payloads(p: Partition, fromSeq = 1, toSeq?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const e of p.read({ fromSeq, toSeq })) out.push(td.decode(e.payload));
  return out;
}

async function readerPayloads(reader: StorageReader): Promise<string[]> {
  const out: string[] = [];
  for await (const batch of reader.read(1, await reader.lastSeq())) for (const f of batch.frames) out.push(td.decode(f.payload));
  return out;
}

const range = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `e${from + i}`);

// Invariants: every acknowledged commit is readable after any reopen; nothing that is not a
// verified commit is ever returned; blobs roll before Azure's limits.
describe('blob layout, recovery and reads', () => {
  let container: TestContainer;
  const opened: Partition[] = [];
  const readers: StorageReader[] = [];

  beforeEach(async () => {
    container = await createTestContainer();
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) await r.close();
    for (const p of opened.splice(0)) await p.close();
    await container.destroy();
  });

  const options = (extra: Partial<AzureStorageOptions> = {}): AzureStorageOptions => ({
    connectionString: container.connectionString,
    container: container.name,
    prefix: 'log',
    ...extra,
  });
  const open = async (extra: Partial<AzureStorageOptions> = {}): Promise<Partition> => {
    const p = await openPartition({ name: 'layout', storage: createAzureStorage(options(extra)) });
    opened.push(p);
    return p;
  };
  const reopen = async (p: Partition, extra: Partial<AzureStorageOptions> = {}): Promise<Partition> => {
    await p.close();
    return open(extra);
  };
  const reader = async (): Promise<StorageReader> => {
    const r = await openAzureReader(options());
    readers.push(r);
    return r;
  };
  const fill = async (p: Partition, n: number, from = 0, size = 0): Promise<void> => {
    for (let i = from; i < from + n; i++) await p.append({ streamId: `s-${i % 3}`, events: [{ type: 'E', data: te.encode(`e${i}`.padEnd(size, '.')) }] });
  };

  it('rolls to a new blob every blobBlocksMax blocks, recording first seq and sealed length', async () => {
    let p = await open({ blobBlocksMax: 3 });
    await fill(p, 10);
    const blobs = await storedBlobs(container.client, 'log');
    expect(blobs.map((b) => b.name)).toEqual(['log/00000001.log', 'log/00000002.log', 'log/00000003.log', 'log/00000004.log']);
    expect(blobs.map((b) => b.metadata.sluicefirstseq)).toEqual(['1', '4', '7', '10']);
    expect(blobs.map((b) => b.metadata.sluicesealedbytes)).toEqual([String(blobs[0].length), String(blobs[1].length), String(blobs[2].length), undefined]);
    expect(await payloads(p)).toEqual(range(10));
    expect(await payloads(p, 3, 8)).toEqual(range(6, 2));
    p = await reopen(p, { blobBlocksMax: 3 });
    expect(p.recovery).toMatchObject({ lastSeq: 10, droppedBytes: 0 });
    expect(await payloads(p)).toEqual(range(10));
  });

  it('rolls before a blob would pass blobBytesMax', async () => {
    const p = await open({ blobBytesMax: 64 * 1024 });
    await fill(p, 12, 0, 20_000);
    const blobs = await storedBlobs(container.client, 'log');
    expect(blobs.length).toBeGreaterThanOrEqual(4);
    for (const b of blobs) expect(b.length).toBeLessThanOrEqual(64 * 1024);
    expect((await payloads(p)).map((s) => s.replace(/\.+$/, ''))).toEqual(range(12));
  });

  it('recovers a torn tail by sealing the blob at its last commit and going on in a new blob; the garbage is never read', async () => {
    let p = await open();
    await fill(p, 3);
    await p.close();
    const before = (await storedBlobs(container.client, 'log'))[0].length;
    await appendRawToLastBlob(container.client, 'log', GARBAGE);
    const watcher = await reader(); // a reader in another process sees only verified commits
    expect(await readerPayloads(watcher)).toEqual(range(3));
    p = await open();
    expect(p.recovery).toMatchObject({ lastSeq: 3, droppedBytes: GARBAGE.length });
    await fill(p, 2, 3);
    const blobs = await storedBlobs(container.client, 'log');
    expect(blobs.map((b) => [b.name, b.length, b.metadata.sluicesealedbytes])).toEqual([
      ['log/00000001.log', before + GARBAGE.length, String(before)],
      ['log/00000002.log', blobs[1].length, undefined],
    ]);
    // The garbage is still in the blob (append blobs cannot be truncated) but never read.
    expect((await blobBytes(container.client, 'log/00000001.log')).subarray(before)).toEqual(Buffer.from(GARBAGE));
    expect(await payloads(p)).toEqual(range(5));
    expect(await readerPayloads(watcher)).toEqual(range(5));
    p = await reopen(p);
    expect(p.recovery).toMatchObject({ lastSeq: 5, droppedBytes: 0 });
  });

  it('goes on in a new blob when a crash came right after sealing the last one', async () => {
    let p = await open();
    await fill(p, 2);
    await p.close();
    const [blob] = await storedBlobs(container.client, 'log');
    await container.client.getAppendBlobClient(blob.name).setMetadata({ sluicefirstseq: '1', sluicesealedbytes: String(blob.length) });
    await appendRawToLastBlob(container.client, 'log', GARBAGE); // after the seal: not part of the log
    p = await open();
    // What lies past the seal was cut when the blob was sealed; this open reports it once.
    expect(p.recovery).toMatchObject({ lastSeq: 2, droppedBytes: GARBAGE.length, droppedSeqs: 0, droppedReason: expect.stringMatching(/sealed at \d+ bytes/) });
    await fill(p, 1, 2);
    expect((await storedBlobs(container.client, 'log')).map((b) => b.name)).toEqual(['log/00000001.log', 'log/00000002.log']);
    expect(await payloads(p)).toEqual(range(3));
  });

  it('never cuts off commits that only looked torn because a read was damaged in transit', async () => {
    let p = await open();
    await fill(p, 3);
    await p.close();
    let damaged = 0;
    const client = faultyContainer(container.client, {
      downloadToBuffer: async (call) => {
        const bytes = await call.real();
        if (damaged++ === 0) bytes[bytes.length - 5] ^= 0xff; // the first read of the scan: the last commit looks torn
        return bytes;
      },
    });
    const storage = createAzureStorage({ containerClient: client, prefix: 'log' });
    const error = await storage.open().catch((e: unknown) => e);
    await storage.close();
    expect(error).toMatchObject({ reason: 'Unavailable', retryable: true, message: expect.stringMatching(/two reads .* disagree/) });
    expect((await storedBlobs(container.client, 'log')).map((b) => b.metadata.sluicesealedbytes)).toEqual([undefined]);
    p = await open();
    expect(p.recovery).toMatchObject({ lastSeq: 3, droppedBytes: 0 });
    expect(await payloads(p)).toEqual(range(3));
  });

  it('refuses damage followed by another blob as Corrupt instead of dropping acknowledged commits', async () => {
    const p = await open({ blobBlocksMax: 2 });
    await fill(p, 4);
    await p.close();
    // Garbage inside the log: blob 1 is unsealed and damaged, and blob 2 follows it.
    await container.client.getAppendBlobClient('log/00000001.log').setMetadata({ sluicefirstseq: '1' });
    await container.client.getAppendBlobClient('log/00000001.log').appendBlock(GARBAGE, GARBAGE.length);
    const storage = createAzureStorage(options({ blobBlocksMax: 2 }));
    const error = await storage.open().catch((e: unknown) => e);
    await storage.close();
    expect(error).toMatchObject({ reason: 'Corrupt' });
    expect((error as Error).message).toMatch(/log\/00000001\.log" is damaged at offset \d+ .* but blob ".*log\/00000002\.log" follows it: restore/);
  });

  it('refuses damage before a sealed length as Corrupt', async () => {
    const p = await open();
    await fill(p, 2);
    await p.close();
    await appendRawToLastBlob(container.client, 'log', GARBAGE);
    const [blob] = await storedBlobs(container.client, 'log');
    await container.client.getAppendBlobClient(blob.name).setMetadata({ sluicefirstseq: '1', sluicesealedbytes: String(blob.length) });
    const storage = createAzureStorage(options());
    await expect(storage.open()).rejects.toMatchObject({ reason: 'Corrupt', message: expect.stringMatching(/before its sealed length/) });
    await storage.close();
  });

  it('refuses a log with a missing blob as Corrupt', async () => {
    const p = await open({ blobBlocksMax: 1 });
    await fill(p, 3);
    await p.close();
    await container.client.getBlobClient('log/00000002.log').delete();
    const storage = createAzureStorage(options());
    await expect(storage.open()).rejects.toMatchObject({ reason: 'Corrupt', message: expect.stringMatching(/00000002\.log" is missing/) });
    await storage.close();
  });

  it('downloads only the byte ranges a read needs', async () => {
    const writer = await open({ blobBlocksMax: 50 });
    await fill(writer, 120, 0, 1000);
    await writer.close();
    const client = faultyContainer(container.client);
    const p = await openPartition({ name: 'layout', storage: createAzureStorage({ containerClient: client, prefix: 'log' }) });
    opened.push(p);
    const afterOpen = client.downloadedBytes;
    expect(await payloads(p, 76, 76)).toEqual(['e75'.padEnd(1000, '.')]);
    const one = client.downloadedBytes - afterOpen;
    expect(one).toBeGreaterThan(1000);
    expect(one).toBeLessThan(1300); // one batch: a frame and its marker
    expect((await payloads(p, 48, 52)).length).toBe(5); // spans blobs 1 and 2
    expect(client.downloadedBytes - afterOpen - one).toBeLessThan(5 * 1300);
  });

  it('lets a reader in another process follow the writer across rolls', async () => {
    const p = await open({ blobBlocksMax: 2 });
    const r = await reader();
    expect(await r.lastSeq()).toBe(0);
    await fill(p, 3);
    expect(await r.lastSeq()).toBe(3);
    await fill(p, 4, 3);
    expect(await readerPayloads(r)).toEqual(range(7));
    await r.close();
    await expect(r.lastSeq()).rejects.toMatchObject({ reason: 'Closed' });
  });
});
