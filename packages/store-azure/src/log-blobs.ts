import { StorageError } from '@sluice/store';
import type { AzureAppendBlobClient, AzureContainerClient } from './azure-client.js';
import { SOURCE } from './azure-errors.js';
import { withRetries, type RetryPolicy } from './retry-policy.js';

/** Log blobs are named by their number under the partition's prefix: `<prefix>/00000001.log`. */
export const LOG_BLOB_SUFFIX = '.log';
/** Blob metadata: seq of the first frame the blob holds (set when the blob is created). */
export const METADATA_FIRST_SEQ = 'sluicefirstseq';
/**
 * Blob metadata: bytes of the blob that belong to the log, set when the writer leaves the blob
 * for the next one. Anything after them (a torn tail found by recovery) is never read.
 */
export const METADATA_SEALED_BYTES = 'sluicesealedbytes';
/**
 * Blob metadata: why the blob was sealed where it was, when that was not an ordinary roll (a
 * torn tail found by recovery, a failed write, a truncate with the operator's reason),
 * URI-encoded (metadata values are ASCII).
 */
export const METADATA_SEAL_REASON = 'sluicesealreason';
/** Longest seal reason kept in metadata, in characters before encoding (Azure allows 8 KiB of metadata). */
export const SEAL_REASON_LENGTH_MAX = 1024;

/** The name of log blob number `blob` under `prefix`. */
export function logBlobName(prefix: string, blob: number): string {
  const file = `${String(blob).padStart(8, '0')}${LOG_BLOB_SUFFIX}`;
  return prefix === '' ? file : `${prefix}/${file}`;
}

/** What the container says about one log blob. */
export interface LogBlob {
  /** The blob's number: 1, 2, ... */
  readonly blob: number;
  /** Committed length. */
  readonly contentLength: number;
  /** `sluicefirstseq` metadata, when set. */
  readonly firstSeq: number | undefined;
  /** `sluicesealedbytes` metadata, when the writer has left this blob. */
  readonly sealedBytes: number | undefined;
  /** `sluicesealreason` metadata (decoded), when the seal was not an ordinary roll. */
  readonly sealReason?: string | undefined;
  /** Committed blocks, when known (from properties, not from listings). */
  readonly blockCount?: number | undefined;
}

function metadataValue(metadata: Record<string, string> | undefined, key: string): string | undefined {
  if (metadata === undefined) return undefined;
  // Metadata names are case-insensitive; some services return them in another case.
  return Object.entries(metadata).find(([k]) => k.toLowerCase() === key)?.[1];
}

function metadataNumber(metadata: Record<string, string> | undefined, key: string): number | undefined {
  const value = metadataValue(metadata, key);
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function metadataReason(metadata: Record<string, string> | undefined): string | undefined {
  const value = metadataValue(metadata, METADATA_SEAL_REASON);
  if (value === undefined) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** What a blob's metadata says, as a {@link LogBlob} without length. */
function fromMetadata(metadata: Record<string, string> | undefined): Pick<LogBlob, 'firstSeq' | 'sealedBytes' | 'sealReason'> {
  return {
    firstSeq: metadataNumber(metadata, METADATA_FIRST_SEQ),
    sealedBytes: metadataNumber(metadata, METADATA_SEALED_BYTES),
    sealReason: metadataReason(metadata),
  };
}

/**
 * A partition's log blobs in one container: names, listing, properties and ranged downloads,
 * each request timed out, retried when transient and mapped onto `StorageError`s.
 */
export class LogBlobs {
  private readonly clients = new Map<number, AzureAppendBlobClient>();
  private readonly pattern: RegExp;

  constructor(
    readonly container: AzureContainerClient,
    readonly containerName: string,
    readonly prefix: string,
    readonly retry: RetryPolicy,
  ) {
    const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.pattern = new RegExp(`^${prefix === '' ? '' : `${escaped}/`}(\\d{8})\\${LOG_BLOB_SUFFIX}$`);
  }

  /** `blob "container/prefix/00000001.log"`, for messages. */
  describe(blob: number): string {
    return `blob "${this.containerName}/${logBlobName(this.prefix, blob)}"`;
  }

  /** The client of log blob `blob` (cached). */
  client(blob: number): AzureAppendBlobClient {
    let client = this.clients.get(blob);
    if (client === undefined) {
      client = this.container.getAppendBlobClient(logBlobName(this.prefix, blob));
      this.clients.set(blob, client);
    }
    return client;
  }

  /** Runs an idempotent request with this log's retry policy. */
  call<T>(action: string, request: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return withRetries(this.retry, action, this.containerName, request);
  }

  /** Creates the container when missing. */
  async createContainer(): Promise<void> {
    await this.call(`create container "${this.containerName}"`, (abortSignal) => this.container.createIfNotExists({ abortSignal }));
  }

  /** The partition's log blobs, ascending. A missing container is reason `NotFound`. */
  async list(): Promise<LogBlob[]> {
    const where = this.prefix === '' ? `container "${this.containerName}"` : `"${this.containerName}/${this.prefix}/"`;
    const blobs = await this.call(`list the log blobs in ${where}`, async (abortSignal) => {
      const out: LogBlob[] = [];
      const listing = this.container.listBlobsFlat({ prefix: this.prefix === '' ? undefined : `${this.prefix}/`, includeMetadata: true, abortSignal });
      for await (const item of listing) {
        const m = this.pattern.exec(item.name);
        if (m === null) continue;
        out.push({
          blob: Number(m[1]),
          contentLength: item.properties.contentLength ?? 0,
          ...fromMetadata(item.metadata),
        });
      }
      return out;
    });
    blobs.sort((a, b) => a.blob - b.blob);
    for (let i = 1; i < blobs.length; i++) {
      if (blobs[i].blob !== blobs[i - 1].blob + 1) {
        throw new StorageError(
          'Corrupt',
          `${SOURCE} ${this.describe(blobs[i - 1].blob + 1)} is missing between ${this.describe(blobs[i - 1].blob)} and ${this.describe(blobs[i].blob)}: ` +
            `part of the log was deleted; restore it from a copy or a shipped archive`,
        );
      }
    }
    return blobs;
  }

  /** Fresh properties of one blob, block count included. */
  async properties(blob: number): Promise<LogBlob> {
    const p = await this.call(`read the properties of ${this.describe(blob)}`, (abortSignal) => this.client(blob).getProperties({ abortSignal }));
    return {
      blob,
      contentLength: p.contentLength ?? 0,
      ...fromMetadata(p.metadata),
      blockCount: p.blobCommittedBlockCount ?? 0,
    };
  }

  /** Downloads `count` bytes of `blob` from `offset` (one request per `blockSize`, in parallel). */
  async download(blob: number, offset: number, count: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(count);
    await this.call(`read ${count} bytes at offset ${offset} of ${this.describe(blob)}`, (abortSignal) =>
      this.client(blob).downloadToBuffer(buffer, offset, count, { abortSignal, blockSize: 4 * 1024 * 1024, concurrency: 4, maxRetryRequestsPerBlock: 0 }),
    );
    return buffer;
  }

  /**
   * Creates log blob `blob`, empty, recording the seq it starts at; only if it does not exist.
   * Returns false when it existed already.
   */
  async create(blob: number, firstSeq: number): Promise<boolean> {
    try {
      await this.call(`create ${this.describe(blob)}`, (abortSignal) =>
        this.client(blob).create({ metadata: { [METADATA_FIRST_SEQ]: String(firstSeq) }, conditions: { ifNoneMatch: '*' }, abortSignal }),
      );
      return true;
    } catch (error) {
      // BlobAlreadyExists: made by another writer, or by a try of ours whose answer was lost.
      if (error instanceof StorageError && error.reason === 'Conflict') return false;
      throw error;
    }
  }

  /**
   * Records on `blob` that its log ends at `sealedBytes` (the writer is leaving it, or cutting
   * the log there), and why when it is not an ordinary roll. Conditional on `leaseId` when given:
   * the writer's own (leased) blob; earlier blobs are no longer leased.
   */
  async seal(blob: number, firstSeq: number, sealedBytes: number, leaseId: string | undefined, reason?: string): Promise<void> {
    const metadata: Record<string, string> = { [METADATA_FIRST_SEQ]: String(firstSeq), [METADATA_SEALED_BYTES]: String(sealedBytes) };
    if (reason !== undefined) metadata[METADATA_SEAL_REASON] = encodeURIComponent(reason.slice(0, SEAL_REASON_LENGTH_MAX));
    await this.call(`seal ${this.describe(blob)} at ${sealedBytes} bytes`, (abortSignal) =>
      this.client(blob).setMetadata(metadata, { conditions: leaseId === undefined ? {} : { leaseId }, abortSignal }),
    );
  }
}
