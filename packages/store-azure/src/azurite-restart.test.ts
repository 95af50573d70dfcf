import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { PartitionFaultedError, isStorageError, openPartition, type Partition } from '@sluice/store';
import { expect, it } from 'vitest';
import { createAzureStorage, type AzureStorageOptions } from './index.js';
import { startAzurite, type AzuriteInstance } from './testing/azurite-process.js';
import { uniqueContainerName } from './testing/azurite-context.fixture.js';

const te = new TextEncoder();
const td = new TextDecoder();

async function payloads(p: Partition): Promise<string[]> {
  const out: string[] = [];
  for await (const e of p.read()) out.push(td.decode(e.payload));
  return out;
}

// Invariants: while the service is down, appends fail with a typed, retryable `Unavailable`
// and nothing more is acknowledged; after it is back, the failed writer seals its log at the
// durable head as it closes, so reopening finds every acknowledged commit, in order, and
// nothing else: not even a commit whose block reached Azure but whose answer was lost
// (invariant 9: nothing written after the last sync is served after a failure).
it('fails appends with Unavailable while Azurite is stopped and keeps every acknowledged commit once it restarts', { timeout: 120_000 }, async () => {
  // Its own Azurite, persisting to a temp folder, so it can be stopped and started again.
  const location = await mkdtemp(join(tmpdir(), 'sluice-azurite-'));
  let azurite: AzuriteInstance = await startAzurite({ location });
  try {
    const container = uniqueContainerName();
    await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(container).create();
    const options: AzureStorageOptions = {
      connectionString: azurite.connectionString,
      container,
      prefix: 'p',
      attemptsMax: 2,
      retryDelayMs: 20,
      requestTimeoutMs: 5000,
    };
    let p = await openPartition({ name: 'restart', storage: createAzureStorage(options) });

    const acknowledged: string[] = [];
    let reached: () => void = () => undefined;
    const twentyAcknowledged = new Promise<void>((resolve) => {
      reached = resolve;
    });
    let failure: unknown;
    const writing = (async () => {
      for (let i = 0; ; i++) {
        try {
          await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(`c${i}`) }] });
        } catch (error) {
          failure = error;
          return;
        }
        acknowledged.push(`c${i}`);
        if (acknowledged.length === 20) reached();
      }
    })();
    await twentyAcknowledged;
    await azurite.stop(); // while the writer keeps appending
    await writing;

    expect(isStorageError(failure)).toBe(true);
    expect(failure).toMatchObject({ reason: 'Unavailable', retryable: true });
    expect((failure as Error).message).toMatch(/^\[sluice\/store-azure\] append \d+ bytes at offset \d+ of blob ".*p\/00000001\.log": the service could not be reached/);
    await expect(p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('refused') }] })).rejects.toBeInstanceOf(PartitionFaultedError);

    azurite = await startAzurite({ location, port: azurite.port });
    await p.close(); // seals the log at the durable head and releases the lease, now that Azurite answers again
    const first = await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(container).getBlobClient('p/00000001.log').getProperties();
    expect(decodeURIComponent(first.metadata?.sluicesealreason ?? '')).toMatch(new RegExp(`^a write failed after seq ${acknowledged.length} \\(Unavailable\\)`));
    p = await openPartition({ name: 'restart', storage: createAzureStorage(options) });
    const stored = await payloads(p);
    expect(stored).toEqual(acknowledged);
    expect(p.recovery.lastSeq).toBe(acknowledged.length);
    expect(p.recovery.droppedSeqs).toBeLessThanOrEqual(1); // the commit whose answer was lost, if its block landed
    const next = await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('after') }] });
    expect(next.firstSeq).toBe(stored.length + 1);
    await p.close();
  } finally {
    await azurite.stop();
    await rm(location, { recursive: true, force: true });
  }
});
