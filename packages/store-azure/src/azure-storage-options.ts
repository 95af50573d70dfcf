import { StorageError, parseFsyncPolicy, type FsyncPolicyInput } from '@sluice/store';
import { connectContainer, type AzureContainerClient, type AzureServiceClient, type ClientSource } from './azure-client.js';
import { SOURCE } from './azure-errors.js';
import type { RetryPolicy } from './retry-policy.js';

/**
 * Where a partition's log lives and how to reach it: shared by the writer
 * ({@link AzureStorageOptions}) and read-only readers (`openAzureReader`).
 *
 * Give exactly one of `connectionString`, `accountName` + `accountKey`, `sasUrl`,
 * `serviceClient` or `containerClient`. Credentials are never logged nor put in error messages.
 */
export interface AzureConnectionOptions {
  /**
   * The container holding the partition's blobs (3–63 lowercase letters, digits and hyphens).
   * Required unless `containerClient` is given (then its name is used).
   */
  readonly container?: string;
  /**
   * Blob-name prefix of this partition's log, e.g. `"payments"`: its blobs are
   * `payments/00000001.log`, `payments/00000002.log`, ... One prefix per partition; `""` puts
   * them at the container's root.
   */
  readonly prefix: string;
  /** An Azure Storage connection string (e.g. Azurite's, or one with `SharedAccessSignature=`). */
  readonly connectionString?: string;
  /** Storage account name, with `accountKey`. */
  readonly accountName?: string;
  /** Storage account key (base64), with `accountName`: shared-key authentication. */
  readonly accountKey?: string;
  /**
   * Blob service endpoint used with `accountName` + `accountKey`.
   * @default `https://<accountName>.blob.core.windows.net`
   */
  readonly serviceUrl?: string;
  /**
   * A URL with a SAS token: the container's (`https://acct.blob.core.windows.net/<container>?sv=...`,
   * container SAS) or the service's (`https://acct.blob.core.windows.net/?sv=...`, account SAS).
   * The writer needs read, add, create, write and list permissions.
   */
  readonly sasUrl?: string;
  /** A `BlobServiceClient` (or anything with `getContainerClient`), or a function making one. */
  readonly serviceClient?: ClientSource<AzureServiceClient>;
  /** A `ContainerClient` (or the subset this package uses), or a function making one. */
  readonly containerClient?: ClientSource<AzureContainerClient>;
  /**
   * Longest wait for one request's answer before it counts as failed (and is retried).
   * @default 30000
   */
  readonly requestTimeoutMs?: number;
  /**
   * Tries per request before a transient failure (network, timeout, 408/429/5xx) is reported as
   * a `StorageError` of reason `Unavailable`. Clients this package builds have the SDK's own
   * retries turned off; injected clients keep theirs (prefer `retryOptions: { maxTries: 1 }`).
   * @default 4
   */
  readonly attemptsMax?: number;
  /**
   * Delay before the first retry; doubles with each retry, up to 5 s.
   * @default 200
   */
  readonly retryDelayMs?: number;
  /**
   * Most bytes fetched by one ranged download when reading.
   * @default 4194304 (4 MiB)
   */
  readonly readBytesMax?: number;
  /**
   * Ranged downloads a read keeps in flight ahead of its consumer.
   * @default 4
   */
  readonly readAheadMax?: number;
}

/** Options of `createAzureStorage`. */
export interface AzureStorageOptions extends AzureConnectionOptions {
  /**
   * Create the container when it is missing. When false, a missing container fails `open()`
   * with reason `NotFound`.
   * @default false
   */
  readonly createContainer?: boolean;
  /**
   * Largest block one `appendBlock` request sends; an append larger than this is sent as
   * several blocks. Azure accepts up to 4 MiB per block on every API version (100 MiB on
   * recent ones).
   * @default 4194304 (4 MiB)
   */
  readonly blockBytesMax?: number;
  /**
   * Blocks after which the log rolls to a new blob, well before Azure's 50,000-block limit per
   * append blob.
   * @default 40000
   */
  readonly blobBlocksMax?: number;
  /**
   * Bytes after which the log rolls to a new blob, well before the ~195 GiB append-blob limit.
   * @default 68719476736 (64 GiB)
   */
  readonly blobBytesMax?: number;
  /**
   * Duration of the writer's lease on the current blob: 15 to 60 seconds, renewed every third
   * of it, or -1 for an infinite lease (never renewed; after a crash it must be broken by hand).
   * A crashed writer's finite lease expires after at most this long; until then a new writer
   * gets reason `Locked`.
   * @default 60
   */
  readonly leaseDurationSeconds?: number;
  /**
   * The reliability level's fsync policy. Accepted (and validated) so one config can name it
   * for every location, but Azure has one durability: `appendBlock` is acknowledged only once
   * the block is stored per the account's redundancy, so every policy behaves as `commit`, which
   * is at least as strong (`capabilities.durability` says `commit` whatever is given here).
   * @default "commit"
   */
  readonly fsync?: FsyncPolicyInput;
}

/** Options of `openAzureReader`: where the log is and how to reach it. */
export type AzureReaderOptions = AzureConnectionOptions;

/** Defaults of {@link AzureStorageOptions} and {@link AzureConnectionOptions}. */
export function azureStorageDefaults(): {
  createContainer: boolean;
  blockBytesMax: number;
  blobBlocksMax: number;
  blobBytesMax: number;
  leaseDurationSeconds: number;
  requestTimeoutMs: number;
  attemptsMax: number;
  retryDelayMs: number;
  readBytesMax: number;
  readAheadMax: number;
} {
  return {
    createContainer: false,
    blockBytesMax: 4 * 1024 * 1024,
    blobBlocksMax: 40_000,
    blobBytesMax: 64 * 1024 ** 3,
    leaseDurationSeconds: 60,
    requestTimeoutMs: 30_000,
    attemptsMax: 4,
    retryDelayMs: 200,
    readBytesMax: 4 * 1024 * 1024,
    readAheadMax: 4,
  };
}

/** Azure's limit of committed blocks in one append blob. */
export const APPEND_BLOB_BLOCKS_LIMIT = 50_000;
/** Azure's size limit of one append blob (50,000 blocks of 4 MiB, ~195 GiB). */
export const APPEND_BLOB_BYTES_LIMIT = 50_000 * 4 * 1024 * 1024;
const BLOCK_BYTES_LIMIT = 100 * 1024 * 1024;

/** Validated connection settings. Credentials stay inside the `connect` closure, so printing this object shows none. */
export interface ResolvedConnection {
  /** The container's name, for messages (known once connected when a container client was injected). */
  container: string;
  readonly prefix: string;
  readonly retry: RetryPolicy;
  readonly readBytesMax: number;
  readonly readAheadMax: number;
  /** Builds (or takes) the container client. */
  readonly connect: () => Promise<AzureContainerClient>;
}

/** Validated writer settings. */
export interface ResolvedStorageOptions {
  readonly connection: ResolvedConnection;
  readonly createContainer: boolean;
  readonly blockBytesMax: number;
  readonly blobBlocksMax: number;
  readonly blobBytesMax: number;
  readonly leaseDurationSeconds: number;
}

const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

function integerIn(problems: string[], name: string, value: unknown, min: number, max: number): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${typeof value === 'number' ? value : typeof value}`);
  }
}

function invalid(problems: string[]): StorageError {
  return new StorageError('Invalid', `${SOURCE} invalid options:\n- ${problems.join('\n- ')}`, { retryable: false });
}

function checkConnection(options: AzureConnectionOptions, problems: string[]): void {
  const ways = [
    options.connectionString !== undefined && 'connectionString',
    (options.accountKey !== undefined || options.accountName !== undefined) && 'accountName + accountKey',
    options.sasUrl !== undefined && 'sasUrl',
    options.serviceClient !== undefined && 'serviceClient',
    options.containerClient !== undefined && 'containerClient',
  ].filter((w): w is string => w !== false);
  if (ways.length === 0) problems.push('give one of connectionString, accountName + accountKey, sasUrl, serviceClient or containerClient');
  if (ways.length > 1) problems.push(`give only one of ${ways.join(', ')}`);
  // Values of credentials are never echoed: only their names and types.
  for (const key of ['connectionString', 'accountName', 'accountKey', 'serviceUrl', 'sasUrl'] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) problems.push(`${key} must be a non-empty string`);
  }
  if ((options.accountKey === undefined) !== (options.accountName === undefined)) problems.push('accountName and accountKey go together: give both');
  if (options.serviceUrl !== undefined && options.accountKey === undefined) problems.push('serviceUrl is only used with accountName + accountKey');
  for (const key of ['serviceUrl', 'sasUrl'] as const) {
    const value = options[key];
    if (typeof value === 'string' && value.length > 0 && !URL.canParse(value)) problems.push(`${key} is not a valid URL`);
  }
  if (typeof options.sasUrl === 'string' && URL.canParse(options.sasUrl) && !new URL(options.sasUrl).searchParams.has('sig')) {
    problems.push('sasUrl has no SAS token (no "sig" in its query): append one, or use another way to authenticate');
  }
  for (const key of ['serviceClient', 'containerClient'] as const) {
    const value = options[key];
    if (value !== undefined && (value === null || (typeof value !== 'object' && typeof value !== 'function'))) problems.push(`${key} must be a client or a function returning one`);
  }
  if (options.container === undefined) {
    if (options.containerClient === undefined) problems.push('container is required: the name of the container holding the partition');
  } else if (typeof options.container !== 'string' || !CONTAINER_NAME.test(options.container)) {
    problems.push(`container ${JSON.stringify(options.container)} is not a valid container name: 3-63 lowercase letters, digits and single hyphens`);
  }
  if (typeof options.prefix !== 'string') {
    problems.push('prefix is required: the blob-name prefix of this partition, e.g. "payments" ("" for the container root)');
  } else if (options.prefix.startsWith('/') || options.prefix.includes('//') || options.prefix.length > 900 || options.prefix.includes('\\')) {
    problems.push(`prefix ${JSON.stringify(options.prefix)} must not start with "/", contain "//" or "\\", or exceed 900 characters`);
  }
  integerIn(problems, 'requestTimeoutMs', options.requestTimeoutMs, 1, 3_600_000);
  integerIn(problems, 'attemptsMax', options.attemptsMax, 1, 20);
  integerIn(problems, 'retryDelayMs', options.retryDelayMs, 0, 60_000);
  integerIn(problems, 'readBytesMax', options.readBytesMax, 64 * 1024, 256 * 1024 * 1024);
  integerIn(problems, 'readAheadMax', options.readAheadMax, 1, 64);
}

function resolveConnection(options: AzureConnectionOptions): ResolvedConnection {
  const d = azureStorageDefaults();
  const { connectionString, accountName, accountKey, serviceUrl, sasUrl, serviceClient, containerClient } = options;
  const credentials = { connectionString, accountName, accountKey, serviceUrl, sasUrl, serviceClient, containerClient };
  const resolved: ResolvedConnection = {
    container: options.container ?? 'injected container client',
    prefix: options.prefix.replace(/\/+$/, ''),
    retry: {
      attemptsMax: options.attemptsMax ?? d.attemptsMax,
      retryDelayMs: options.retryDelayMs ?? d.retryDelayMs,
      requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
    },
    readBytesMax: options.readBytesMax ?? d.readBytesMax,
    readAheadMax: options.readAheadMax ?? d.readAheadMax,
    connect: async () => {
      const client = await connectContainer(credentials, options.container);
      resolved.container = client.containerName;
      return client;
    },
  };
  return resolved;
}

/** Validates reader options, reporting every problem at once as a `StorageError` of reason `Invalid`. */
export function resolveConnectionOptions(options: AzureConnectionOptions): ResolvedConnection {
  if (typeof options !== 'object' || options === null) throw invalid(['options must be an object']);
  const problems: string[] = [];
  checkConnection(options, problems);
  if (problems.length > 0) throw invalid(problems);
  return resolveConnection(options);
}

/** Validates writer options, reporting every problem at once as a `StorageError` of reason `Invalid`. */
export function resolveStorageOptions(options: AzureStorageOptions): ResolvedStorageOptions {
  if (typeof options !== 'object' || options === null) throw invalid(['options must be an object']);
  const problems: string[] = [];
  checkConnection(options, problems);
  const d = azureStorageDefaults();
  if (options.createContainer !== undefined && typeof options.createContainer !== 'boolean') problems.push('createContainer must be true or false');
  integerIn(problems, 'blockBytesMax', options.blockBytesMax, 1024, BLOCK_BYTES_LIMIT);
  integerIn(problems, 'blobBlocksMax', options.blobBlocksMax, 1, APPEND_BLOB_BLOCKS_LIMIT);
  integerIn(problems, 'blobBytesMax', options.blobBytesMax, 64 * 1024, APPEND_BLOB_BYTES_LIMIT);
  const lease = options.leaseDurationSeconds;
  if (lease !== undefined && lease !== -1 && !(Number.isSafeInteger(lease) && lease >= 15 && lease <= 60)) {
    problems.push(`leaseDurationSeconds must be from 15 to 60, or -1 for an infinite lease, got ${lease}`);
  }
  if (options.fsync !== undefined) {
    try {
      parseFsyncPolicy(options.fsync);
    } catch {
      problems.push(`fsync ${JSON.stringify(options.fsync)} is not a policy: use "commit", "none" or "interval:<ms>ms" (Azure stores every policy as "commit")`);
    }
  }
  if (problems.length > 0) throw invalid(problems);
  return {
    connection: resolveConnection(options),
    createContainer: options.createContainer ?? d.createContainer,
    blockBytesMax: options.blockBytesMax ?? d.blockBytesMax,
    blobBlocksMax: options.blobBlocksMax ?? d.blobBlocksMax,
    blobBytesMax: options.blobBytesMax ?? d.blobBytesMax,
    leaseDurationSeconds: lease ?? d.leaseDurationSeconds,
  };
}
