import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import type { SealedBatch } from '@sluice/framing';
import { openPartition, type PartitionStorage } from '@sluice/store';
import { createAzureStorage, type AzureStorageOptions } from '@sluice/store-azure';
import { startAzurite, type AzuriteInstance } from '@sluice/store-azure/testing';
import { createFileStorage } from '@sluice/store-file';
import { expect, it } from 'vitest';
import { createShipper, type ShipperAlert } from './index.js';

const te = new TextEncoder();

async function batchesOf(storage: PartitionStorage): Promise<SealedBatch[]> {
  await storage.open();
  try {
    const out: SealedBatch[] = [];
    for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) out.push({ ...b, bytes: Uint8Array.from(b.bytes) });
    return out;
  } finally {
    await storage.close();
  }
}

// Invariant 7 with a real Azure Blob target: Azurite is stopped while the partition keeps
// committing and the shipper keeps trying, then started again; every acknowledged commit
// reaches the blob target exactly once, in order, byte for byte, and the file target never
// stops. The shipped blob log opens and reads with @sluice/store-azure like any partition log.
it('ships to Azurite across a stop and restart of the service: every acknowledged commit exactly once, in order', { timeout: 180_000 }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'sluice-ship-'));
  await mkdir(join(root, 'azurite'));
  let azurite: AzuriteInstance = await startAzurite({ location: join(root, 'azurite') });
  const container = `ship-${process.pid}`;
  await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(container).create();
  const azureOptions = (): AzureStorageOptions => ({
    connectionString: azurite.connectionString,
    container,
    prefix: 'payments',
    attemptsMax: 2,
    retryDelayMs: 20,
    requestTimeoutMs: 2000,
    leaseDurationSeconds: 15,
  });
  const sourceStorage = createFileStorage({ directory: join(root, 'source') });
  const partition = await openPartition({ storage: sourceStorage, name: 'payments' });
  const shipper = createShipper({
    source: sourceStorage,
    partition: 'payments',
    targets: [
      { label: 'azurite', createStorage: () => createAzureStorage(azureOptions()) },
      { label: 'file', createStorage: () => createFileStorage({ directory: join(root, 'target-file') }) },
    ],
    retry: { initialDelayMs: 50, maxDelayMs: 1000 },
    operationTimeoutMs: 10_000,
    alertLagMs: 500,
    lagCheckMs: 100,
  });
  const alerts: ShipperAlert[] = [];
  shipper.on('alert', (a) => alerts.push(a));
  shipper.start();
  try {
    let acknowledged = 0;
    let sent = 0;
    const commit = async (n: number): Promise<void> => {
      await Promise.all(
        Array.from({ length: n }, () => partition.append({ streamId: `s-${acknowledged % 7}`, events: [{ type: 'E', data: te.encode(`commit-${sent++}`.padEnd(200, '.')) }] }).then(() => void acknowledged++)),
      );
    };
    for (let i = 0; i < 20; i++) await commit(10);
    await shipper.waitFor(partition.lastSeq, { timeoutMs: 30_000 });

    // Stop the service mid-shipping: commits keep coming.
    const stopping = azurite.stop();
    for (let i = 0; i < 20; i++) await commit(10);
    await stopping;
    for (let i = 0; i < 10; i++) await commit(10);
    await shipper.waitFor(partition.lastSeq, { quorum: 1, timeoutMs: 30_000 });
    await expect.poll(() => shipper.status()[0].state, { timeout: 30_000 }).toBe('retrying');
    await expect.poll(() => alerts.some((a) => a.kind === 'lag' && a.target === 'azurite'), { timeout: 10_000 }).toBe(true);
    expect(alerts.find((a) => a.kind === 'target-down')?.target).toBe('azurite');

    azurite = await startAzurite({ location: join(root, 'azurite'), port: azurite.port });
    for (let i = 0; i < 10; i++) await commit(10);
    const last = partition.lastSeq;
    expect(acknowledged).toBe(last);
    const [azureStatus] = await shipper.waitFor(last, { timeoutMs: 120_000 });
    expect(azureStatus.lagSeqs).toBe(0);
    expect(alerts.map((a) => a.kind)).toContain('target-recovered');
    await shipper.stop();
    await partition.close();

    const source = await batchesOf(createFileStorage({ directory: join(root, 'source') }));
    const onAzure = await batchesOf(createAzureStorage(azureOptions()));
    const onFile = await batchesOf(createFileStorage({ directory: join(root, 'target-file') }));
    expect(source.at(-1)?.lastSeq).toBe(last);
    for (const copy of [onAzure, onFile]) {
      expect(copy.map((b) => [b.firstSeq, b.lastSeq])).toEqual(source.map((b) => [b.firstSeq, b.lastSeq]));
      expect(copy.every((b, i) => Buffer.compare(b.bytes, source[i].bytes) === 0)).toBe(true);
    }
    // A shipped log is a partition log: it opens with the engine and holds every commit once.
    const reopened = await openPartition({ storage: createAzureStorage(azureOptions()), name: 'payments-archive' });
    const seen = new Set<string>();
    for await (const e of reopened.read()) seen.add(new TextDecoder().decode(e.payload).replace(/\.+$/, ''));
    expect(seen.size).toBe(last);
    await reopened.close();
  } finally {
    await shipper.stop();
    await partition.close().catch(() => undefined);
    await azurite.stop();
    await rm(root, { recursive: true, force: true });
  }
});
