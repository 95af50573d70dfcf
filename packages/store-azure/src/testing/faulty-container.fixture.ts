import type { ContainerClient } from '@azure/storage-blob';
import type { AzureAppendBlobClient, AzureContainerClient } from '../azure-client.js';

type AppendBlock = AzureAppendBlobClient['appendBlock'];
type AppendResult = Awaited<ReturnType<AppendBlock>>;

/** One `appendBlock` call seen by a {@link faultyContainer}. */
export interface AppendCall {
  readonly blobName: string;
  readonly bytes: Uint8Array;
  readonly options: Parameters<AppendBlock>[2];
  /** 0 for the first `appendBlock` through this wrapper, then 1, 2, ... */
  readonly index: number;
  /** Sends the call to Azurite unchanged. */
  real(): Promise<AppendResult>;
  /** Sends the call to Azurite with other bytes (same conditions). */
  realWith(bytes: Uint8Array): Promise<AppendResult>;
}

/** Faults to inject; anything not overridden passes through to Azurite. */
export interface Faults {
  appendBlock?: (call: AppendCall) => Promise<AppendResult>;
  /** Called for every ranged download with the real call; may alter the bytes it returns. */
  downloadToBuffer?: (call: { readonly blobName: string; readonly offset: number; readonly count: number; real(): Promise<Buffer> }) => Promise<Buffer>;
  /** Called for every lease renewal with the real call. */
  renewLease?: (real: () => Promise<unknown>) => Promise<unknown>;
}

/** A container wrapper that counts traffic and lets a test inject faults into appends. */
export interface FaultyContainer extends AzureContainerClient {
  /** `appendBlock` calls made so far. */
  readonly appendCalls: number;
  /** Bytes asked for by ranged downloads so far. */
  readonly downloadedBytes: number;
}

/**
 * Wraps a real `ContainerClient` so a test can make `appendBlock` fail in ways Azurite cannot
 * on demand (a network error after the block landed, ...). Everything else is real.
 */
export function faultyContainer(real: ContainerClient, faults: Faults = {}): FaultyContainer {
  let appendCalls = 0;
  let downloadedBytes = 0;
  return {
    get containerName() {
      return real.containerName;
    },
    get appendCalls() {
      return appendCalls;
    },
    get downloadedBytes() {
      return downloadedBytes;
    },
    createIfNotExists: (options) => real.createIfNotExists(options),
    listBlobsFlat: (options) => real.listBlobsFlat(options),
    getAppendBlobClient(blobName: string): AzureAppendBlobClient {
      const blob = real.getAppendBlobClient(blobName);
      return {
        create: (options) => blob.create(options),
        getProperties: (options) => blob.getProperties(options),
        setMetadata: (metadata, options) => blob.setMetadata(metadata, options),
        getBlobLeaseClient: (id) => {
          const lease = blob.getBlobLeaseClient(id);
          return {
            get leaseId() {
              return lease.leaseId;
            },
            acquireLease: (duration, options) => lease.acquireLease(duration, options),
            releaseLease: (options) => lease.releaseLease(options),
            renewLease: (options) => (faults.renewLease === undefined ? lease.renewLease(options) : faults.renewLease(() => lease.renewLease(options))),
          };
        },
        downloadToBuffer: (buffer, offset, count, options) => {
          downloadedBytes += count ?? 0;
          const real = (): Promise<Buffer> => blob.downloadToBuffer(buffer, offset, count, options);
          return faults.downloadToBuffer === undefined ? real() : faults.downloadToBuffer({ blobName, offset: offset ?? 0, count: count ?? 0, real });
        },
        appendBlock: (bytes, length, options) => {
          const index = appendCalls++;
          const call: AppendCall = {
            blobName,
            bytes,
            options,
            index,
            real: () => blob.appendBlock(bytes, length, options),
            realWith: (other) => blob.appendBlock(other, other.length, options),
          };
          return faults.appendBlock === undefined ? call.real() : faults.appendBlock(call);
        },
      };
    },
  };
}
