import { randomUUID } from 'node:crypto';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { inject } from 'vitest';
import { LOG_BLOB_SUFFIX, logBlobName } from '../log-blobs.js';
import { AZURITE_ACCOUNT_NAME, azuriteConnectionString } from './azurite-process.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Port of the in-memory Azurite started by `azurite-global-setup.ts`. */
    azuriteBlobPort: number;
  }
}

/** Blob endpoint of the shared test Azurite. */
export function azuriteEndpoint(): string {
  return `http://127.0.0.1:${inject('azuriteBlobPort')}/${AZURITE_ACCOUNT_NAME}`;
}

/** Connection string of the shared test Azurite. */
export function azuriteConnection(): string {
  return azuriteConnectionString(azuriteEndpoint());
}

/** A client of the shared test Azurite (SDK retries off: tests see failures as they happen). */
export function testServiceClient(connectionString = azuriteConnection()): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 1 } });
}

let created = 0;

/** A unique, valid container name. */
export function uniqueContainerName(): string {
  created += 1;
  return `t-${process.pid}-${created}-${randomUUID().slice(0, 8)}`;
}

/** A fresh container for one test. */
export interface TestContainer {
  readonly name: string;
  readonly client: ContainerClient;
  readonly connectionString: string;
  destroy(): Promise<void>;
}

/** Creates a fresh, empty container on the shared test Azurite. */
export async function createTestContainer(): Promise<TestContainer> {
  const connectionString = azuriteConnection();
  const name = uniqueContainerName();
  const client = testServiceClient(connectionString).getContainerClient(name);
  await client.create();
  return { name, client, connectionString, destroy: async () => void (await client.deleteIfExists()) };
}

/** One log blob as the container holds it. */
export interface StoredBlob {
  readonly name: string;
  readonly length: number;
  readonly metadata: Record<string, string>;
  readonly leaseState: string | undefined;
}

/** The log blobs under `prefix`, ascending. */
export async function storedBlobs(container: ContainerClient, prefix: string): Promise<StoredBlob[]> {
  const out: StoredBlob[] = [];
  for await (const item of container.listBlobsFlat({ prefix: `${prefix}/`, includeMetadata: true })) {
    if (!item.name.endsWith(LOG_BLOB_SUFFIX)) continue;
    out.push({ name: item.name, length: item.properties.contentLength ?? 0, metadata: item.metadata ?? {}, leaseState: item.properties.leaseState });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Appends raw bytes as one block to the last log blob under `prefix`, bypassing the storage,
 * as a crash in the middle of a write leaves them. The storage must be closed (lease released).
 */
export async function appendRawToLastBlob(container: ContainerClient, prefix: string, bytes: Uint8Array): Promise<void> {
  const blobs = await storedBlobs(container, prefix);
  const name = blobs.at(-1)?.name ?? logBlobName(prefix, 1);
  const blob = container.getAppendBlobClient(name);
  if (blobs.length === 0) await blob.create({ metadata: { sluicefirstseq: '1' } });
  await blob.appendBlock(bytes, bytes.length);
}

/** Every byte of a blob. */
export async function blobBytes(container: ContainerClient, name: string): Promise<Buffer> {
  return container.getBlobClient(name).downloadToBuffer();
}
