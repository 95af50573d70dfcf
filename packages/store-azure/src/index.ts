export { createAzureStorage } from './azure-storage.js';
export { TAIL_POLL_MAX_MS, TAIL_POLL_MIN_MS, openAzureReader } from './azure-reader.js';
export {
  APPEND_BLOB_BLOCKS_LIMIT,
  APPEND_BLOB_BYTES_LIMIT,
  azureStorageDefaults,
  type AzureConnectionOptions,
  type AzureReaderOptions,
  type AzureStorageOptions,
} from './azure-storage-options.js';
export type { AzureAppendBlobClient, AzureBlobItem, AzureContainerClient, AzureLeaseClient, AzureServiceClient, ClientSource } from './azure-client.js';
export { azureErrorCode, azureStatus, mapAzureError, redactSecrets } from './azure-errors.js';
export { LOG_BLOB_SUFFIX, METADATA_FIRST_SEQ, METADATA_SEALED_BYTES, METADATA_SEAL_REASON, SEAL_REASON_LENGTH_MAX, logBlobName } from './log-blobs.js';
