import {
  AnonymousCredential,
  BlobServiceClient,
  ContainerClient,
  StorageSharedKeyCredential,
  type AppendBlobAppendBlockOptions,
  type AppendBlobCreateOptions,
  type BlobDownloadToBufferOptions,
  type BlobGetPropertiesOptions,
  type BlobSetMetadataOptions,
  type ContainerCreateOptions,
  type ContainerListBlobsOptions,
  type LeaseOperationOptions,
  type StoragePipelineOptions,
} from '@azure/storage-blob';

/** The lease operations this backend uses: the subset of the SDK's `BlobLeaseClient`. */
export interface AzureLeaseClient {
  readonly leaseId: string;
  acquireLease(duration: number, options?: LeaseOperationOptions): Promise<unknown>;
  renewLease(options?: LeaseOperationOptions): Promise<unknown>;
  releaseLease(options?: LeaseOperationOptions): Promise<unknown>;
}

/** The append-blob operations this backend uses: the subset of the SDK's `AppendBlobClient`. */
export interface AzureAppendBlobClient {
  create(options?: AppendBlobCreateOptions): Promise<unknown>;
  appendBlock(body: Uint8Array, contentLength: number, options?: AppendBlobAppendBlockOptions): Promise<{ readonly blobCommittedBlockCount?: number }>;
  getProperties(options?: BlobGetPropertiesOptions): Promise<{
    readonly contentLength?: number;
    readonly blobCommittedBlockCount?: number;
    readonly metadata?: Record<string, string>;
  }>;
  downloadToBuffer(buffer: Buffer, offset?: number, count?: number, options?: BlobDownloadToBufferOptions): Promise<Buffer>;
  setMetadata(metadata?: Record<string, string>, options?: BlobSetMetadataOptions): Promise<unknown>;
  getBlobLeaseClient(proposeLeaseId?: string): AzureLeaseClient;
}

/** One listed blob, as far as this backend reads it. */
export interface AzureBlobItem {
  readonly name: string;
  readonly properties: { readonly contentLength?: number };
  readonly metadata?: Record<string, string>;
}

/**
 * The container operations this backend uses: the subset of the SDK's `ContainerClient`. A real
 * `ContainerClient` fits; tests wrap one to inject faults.
 */
export interface AzureContainerClient {
  readonly containerName: string;
  createIfNotExists(options?: ContainerCreateOptions): Promise<unknown>;
  listBlobsFlat(options?: ContainerListBlobsOptions): AsyncIterable<AzureBlobItem>;
  getAppendBlobClient(blobName: string): AzureAppendBlobClient;
}

/** What this backend needs of a `BlobServiceClient`: a container client by name. */
export interface AzureServiceClient {
  getContainerClient(containerName: string): AzureContainerClient;
}

/** An instance, or a function that makes one (called once per storage or reader opened). */
export type ClientSource<T> = T | (() => T | Promise<T>);

/** Credentials and endpoints as given in options; exactly one way is set. */
export interface AzureCredentialOptions {
  readonly connectionString?: string | undefined;
  readonly accountName?: string | undefined;
  readonly accountKey?: string | undefined;
  readonly serviceUrl?: string | undefined;
  readonly sasUrl?: string | undefined;
  readonly serviceClient?: ClientSource<AzureServiceClient> | undefined;
  readonly containerClient?: ClientSource<AzureContainerClient> | undefined;
}

/**
 * SDK retries are off in clients this package builds: it retries itself, so that an append
 * whose answer was lost is checked before it is tried again (see `appendBlockOnce`).
 */
const PIPELINE: StoragePipelineOptions = {
  retryOptions: { maxTries: 1 },
  userAgentOptions: { userAgentPrefix: 'sluice-store-azure' },
};

async function resolveSource<T>(source: ClientSource<T>): Promise<T> {
  return typeof source === 'function' ? await (source as () => T | Promise<T>)() : source;
}

/**
 * Builds (or takes) the container client described by `credentials`. The caller has validated
 * that exactly one way is set.
 */
export async function connectContainer(credentials: AzureCredentialOptions, container: string | undefined): Promise<AzureContainerClient> {
  if (credentials.containerClient !== undefined) return resolveSource(credentials.containerClient);
  const name = container as string;
  if (credentials.serviceClient !== undefined) return (await resolveSource(credentials.serviceClient)).getContainerClient(name);
  if (credentials.connectionString !== undefined) {
    return BlobServiceClient.fromConnectionString(credentials.connectionString, PIPELINE).getContainerClient(name);
  }
  if (credentials.accountKey !== undefined) {
    const accountName = credentials.accountName as string;
    const url = credentials.serviceUrl ?? `https://${accountName}.blob.core.windows.net`;
    const credential = new StorageSharedKeyCredential(accountName, credentials.accountKey);
    return new BlobServiceClient(url, credential, PIPELINE).getContainerClient(name);
  }
  const sasUrl = credentials.sasUrl as string;
  const path = new URL(sasUrl).pathname.split('/').filter((s) => s.length > 0);
  // A container SAS URL ends with the container's name; an account SAS URL is the service's.
  if (path.at(-1) === name) return new ContainerClient(sasUrl, new AnonymousCredential(), PIPELINE);
  return new BlobServiceClient(sasUrl, new AnonymousCredential(), PIPELINE).getContainerClient(name);
}
