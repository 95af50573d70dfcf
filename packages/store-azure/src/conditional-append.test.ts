import { RestError } from '@azure/storage-blob';
import { decodeBatches } from '@sluice/framing';
import { PartitionFaultedError, isStorageError, openPartition, type Partition } from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAzureStorage, type AzureStorageOptions } from './index.js';
import { blobBytes, createTestContainer, storedBlobs, type TestContainer } from './testing/azurite-context.fixture.js';
import { faultyContainer, type Faults } from './testing/faulty-container.fixture.js';

const te = new TextEncoder();
const td = new TextDecoder();
const networkError = (): RestError => new RestError('socket hang up', { code: 'ECONNRESET' });

async function payloads(p: Partition): Promise<string[]> {
  const out: string[] = [];
  for await (const e of p.read()) out.push(td.decode(e.payload));
  return out;
}

// Invariant checked throughout: an append is acknowledged only if its bytes are in the blob
// exactly once, and the log never holds an acknowledged commit twice or a foreign one.
describe('conditional appends', () => {
  let container: TestContainer;
  const opened: Partition[] = [];

  beforeEach(async () => {
    container = await createTestContainer();
  });
  afterEach(async () => {
    for (const p of opened.splice(0)) await p.close();
    await container.destroy();
  });

  const open = async (faults?: Faults, options: Partial<AzureStorageOptions> = {}): Promise<Partition> => {
    const client = faults === undefined ? container.client : faultyContainer(container.client, faults);
    const p = await openPartition({ name: 'conditional', storage: createAzureStorage({ containerClient: client, prefix: 'p', retryDelayMs: 1, ...options }) });
    opened.push(p);
    return p;
  };
  const reopen = async (p: Partition): Promise<Partition> => {
    await p.close();
    return open();
  };
  const append = (p: Partition, text: string, commandId?: string) => p.append({ streamId: 's', commandId, events: [{ type: 'E', data: te.encode(text) }] });

  it('acknowledges a retried append whose first try landed, and writes it once', async () => {
    let tries = 0;
    let p = await open({
      appendBlock: async (call) => {
        tries++;
        if (call.index === 0) {
          await call.real(); // Azurite commits the block...
          throw networkError(); // ...but the answer is lost.
        }
        return call.real();
      },
    });
    expect(await append(p, 'once', 'cmd-1')).toMatchObject({ firstSeq: 1, lastSeq: 1, duplicate: false });
    expect(tries).toBe(2);
    await append(p, 'next');
    const [blob] = await storedBlobs(container.client, 'p');
    const bytes = await blobBytes(container.client, blob.name);
    const { batches, report } = decodeBatches(bytes);
    expect(batches.map((b) => [b.firstSeq, b.lastSeq])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(report).toMatchObject({ reason: 'end', validBytes: bytes.length });
    p = await reopen(p);
    expect(p.recovery).toMatchObject({ lastSeq: 2, droppedBytes: 0 });
    expect(await payloads(p)).toEqual(['once', 'next']);
    expect((await append(p, 'once', 'cmd-1')).duplicate).toBe(true);
  });

  it('sends a try again when it failed before reaching Azure', async () => {
    const p = await open({
      appendBlock: async (call) => {
        if (call.index === 0) throw new RestError('connect ECONNREFUSED 127.0.0.1:1', { code: 'ECONNREFUSED' });
        return call.real();
      },
    });
    await append(p, 'a');
    expect(await payloads(p)).toEqual(['a']);
    const [blob] = await storedBlobs(container.client, 'p');
    expect(decodeBatches(await blobBytes(container.client, blob.name)).batches).toHaveLength(1);
  });

  it('fails with Conflict, never success, when the bytes at its position are not its own', async () => {
    let p = await open({
      appendBlock: async (call) => {
        if (call.index === 1) {
          const foreign = Uint8Array.from(call.bytes);
          foreign[foreign.length - 1] ^= 0xff; // same length, other bytes: not this writer's block
          await call.realWith(foreign);
          throw networkError();
        }
        return call.real();
      },
    });
    await append(p, 'acknowledged');
    const error = await append(p, 'lost').catch((e: unknown) => e);
    expect(isStorageError(error)).toBe(true);
    expect(error).toMatchObject({ reason: 'Conflict', retryable: false });
    expect((error as Error).message).toMatch(/bytes there are not this writer's/);
    await expect(append(p, 'after')).rejects.toBeInstanceOf(PartitionFaultedError);
    p = await reopen(p);
    // Recovery drops the foreign bytes (they fail their checksum) and keeps the acknowledged commit.
    expect(p.recovery.lastSeq).toBe(1);
    expect(p.recovery.droppedBytes).toBeGreaterThan(0);
    expect(await payloads(p)).toEqual(['acknowledged']);
    await append(p, 'after');
    expect(await payloads(p)).toEqual(['acknowledged', 'after']);
  });

  it('gives up after attemptsMax transient failures with a retryable Unavailable; reopening recovers', async () => {
    let p = await open(
      {
        appendBlock: async (call) => {
          if (call.index >= 1) throw new RestError('Server busy', { statusCode: 503, code: 'ServerBusy' });
          return call.real();
        },
      },
      { attemptsMax: 3 },
    );
    await append(p, 'kept');
    const error = await append(p, 'refused').catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Unavailable', retryable: true });
    await expect(append(p, 'after')).rejects.toBeInstanceOf(PartitionFaultedError);
    p = await reopen(p);
    expect(p.recovery).toMatchObject({ lastSeq: 1, droppedBytes: 0 });
    expect(await payloads(p)).toEqual(['kept']);
  });

  it('splits a batch larger than blockBytesMax into blocks, and recovers when one of them fails', async () => {
    const big = 'x'.repeat(5000);
    let failFrom = Number.POSITIVE_INFINITY;
    let p = await open(
      {
        appendBlock: async (call) => {
          if (call.index >= failFrom) throw new RestError('Internal error', { statusCode: 500, code: 'InternalError' });
          return call.real();
        },
      },
      { blockBytesMax: 1024, attemptsMax: 1 },
    );
    await append(p, big);
    const blocksPerBatch = (await container.client.getAppendBlobClient('p/00000001.log').getProperties()).blobCommittedBlockCount as number;
    expect(blocksPerBatch).toBeGreaterThanOrEqual(5);
    expect(await payloads(p)).toEqual([big]);
    failFrom = blocksPerBatch + 2; // the third block of the next batch fails: a torn batch stays
    await expect(append(p, big)).rejects.toMatchObject({ reason: 'Unavailable' });
    p = await reopen(p);
    expect(p.recovery).toMatchObject({ lastSeq: 1, droppedBytes: 2048 });
    expect(p.recovery.droppedReason).toMatch(/sealed at/);
    expect(await payloads(p)).toEqual([big]);
    const blobs = await storedBlobs(container.client, 'p');
    expect(blobs.map((b) => [b.name, b.metadata.sluicesealedbytes, b.metadata.sluicefirstseq])).toEqual([
      ['p/00000001.log', String(blobs[0].length - 2048), '1'],
      ['p/00000002.log', undefined, '2'],
    ]);
  });
});
