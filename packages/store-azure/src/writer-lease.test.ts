import { PartitionFaultedError, isStorageError, openPartition, type Partition } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAzureStorage, type AzureStorageOptions } from './index.js';
import { createTestContainer, storedBlobs, type TestContainer } from './testing/azurite-context.fixture.js';
import { faultyContainer } from './testing/faulty-container.fixture.js';

const te = new TextEncoder();
const td = new TextDecoder();

// Invariant: one writer per partition. A second writer is refused; a writer whose lease was
// broken cannot append any more; every acknowledged commit survives the take-over.
describe('writer lease', () => {
  let container: TestContainer;
  const opened: Partition[] = [];

  beforeEach(async () => {
    container = await createTestContainer();
  });
  afterEach(async () => {
    vi.useRealTimers();
    for (const p of opened.splice(0)) await p.close();
    await container.destroy();
  });

  const storage = (options: Partial<AzureStorageOptions> = {}) =>
    createAzureStorage({ connectionString: container.connectionString, container: container.name, prefix: 'p', ...options });
  const open = async (options: Partial<AzureStorageOptions> = {}): Promise<Partition> => {
    const p = await openPartition({ name: 'lease', storage: storage(options) });
    opened.push(p);
    return p;
  };
  const append = (p: Partition, text: string) => p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(text) }] });
  const payloads = async (p: Partition): Promise<string[]> => {
    const out: string[] = [];
    for await (const e of p.read()) out.push(td.decode(e.payload));
    return out;
  };
  const leaseOf = (name: string) => container.client.getAppendBlobClient(name).getBlobLeaseClient();

  it('holds a lease on the current blob while open and releases it on close', async () => {
    const p = await open();
    await append(p, 'a');
    expect((await storedBlobs(container.client, 'p')).map((b) => b.leaseState)).toEqual(['leased']);
    await p.close();
    expect((await storedBlobs(container.client, 'p')).map((b) => b.leaseState)).toEqual(['available']);
  });

  it('refuses a second writer with reason Locked and a message that says what to do', async () => {
    await open();
    const second = storage();
    const error = await second.open().catch((e: unknown) => e);
    await second.close();
    expect(isStorageError(error)).toBe(true);
    expect(error).toMatchObject({ reason: 'Locked' });
    expect((error as Error).message).toMatch(/another writer holds the partition's lease.*leaseDurationSeconds/);
  });

  it('fences a writer whose lease was broken: its next append fails with Conflict and the partition faults; reopening recovers', async () => {
    let p = await open();
    await append(p, 'one');
    await append(p, 'two');
    await leaseOf('p/00000001.log').breakLease(0);
    const error = await append(p, 'fenced').catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Conflict', retryable: false });
    expect((error as Error).message).toMatch(/lease is gone.*reopen the partition/);
    await expect(append(p, 'after')).rejects.toBeInstanceOf(PartitionFaultedError);
    await p.close();
    p = await open();
    expect(p.recovery).toMatchObject({ lastSeq: 2, droppedBytes: 0 });
    await append(p, 'three');
    expect(await payloads(p)).toEqual(['one', 'two', 'three']);
  });

  it('lets a writer that broke the lease take over while the old one can no longer write', async () => {
    const old = await open();
    await append(old, 'old');
    await leaseOf('p/00000001.log').breakLease(0);
    const next = await open();
    await append(next, 'new');
    await expect(append(old, 'stale')).rejects.toMatchObject({ reason: 'Conflict' });
    expect(await payloads(next)).toEqual(['old', 'new']);
  });

  it('moves the lease along when the log rolls to a new blob, proposing the same lease id', async () => {
    const p = await open({ blobBlocksMax: 2 });
    for (let i = 0; i < 5; i++) await append(p, `e${i}`);
    expect((await storedBlobs(container.client, 'p')).map((b) => b.leaseState)).toEqual(['available', 'available', 'leased']);
    const other = storage({ blobBlocksMax: 2 });
    await expect(other.open()).rejects.toMatchObject({ reason: 'Locked' });
    await other.close();
  });

  it('takes an infinite lease when leaseDurationSeconds is -1', async () => {
    const p = await open({ leaseDurationSeconds: -1 });
    await append(p, 'a');
    const properties = await container.client.getAppendBlobClient('p/00000001.log').getProperties();
    expect(properties).toMatchObject({ leaseState: 'leased', leaseDuration: 'infinite' });
  });

  it('renews the lease every third of its duration, and a renewal that finds it broken fences the writer', async () => {
    // Only the renewal timer is faked: Azurite's lease clock cannot be, so time is not waited out.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const renewals: Promise<unknown>[] = [];
    const client = faultyContainer(container.client, {
      renewLease: (real) => {
        const renewal = real();
        renewals.push(renewal.catch(() => undefined));
        return renewal;
      },
    });
    const p = await openPartition({ name: 'lease', storage: createAzureStorage({ containerClient: client, prefix: 'p', leaseDurationSeconds: 15 }) });
    opened.push(p);
    await append(p, 'a');
    vi.advanceTimersByTime(5000);
    expect(renewals).toHaveLength(1);
    await renewals[0];
    expect((await container.client.getAppendBlobClient('p/00000001.log').getProperties()).leaseState).toBe('leased');
    await leaseOf('p/00000001.log').breakLease(0);
    vi.advanceTimersByTime(5000);
    expect(renewals).toHaveLength(2);
    await renewals[1];
    const appendsBefore = client.appendCalls;
    await expect(append(p, 'fenced')).rejects.toMatchObject({ reason: 'Conflict' });
    expect(client.appendCalls).toBe(appendsBefore); // refused before reaching Azure
  });
});
