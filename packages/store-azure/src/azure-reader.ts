import type { SealedBatch } from '@sluice/framing';
import { StorageError, type StorageReader } from '@sluice/store';
import { SOURCE } from './azure-errors.js';
import { resolveConnectionOptions, type AzureReaderOptions, type ResolvedConnection } from './azure-storage-options.js';
import { BlobLogIndex } from './blob-log-index.js';
import { LogBlobs } from './log-blobs.js';

/**
 * Opens a read-only reader of a partition's Azure log, in any process, while its writer runs.
 * It takes no lease. It sees verified batches only, never past the last one durably
 * committed, and never bytes after a blob's sealed length; `lastSeq()` looks for new batches
 * (a listing plus a download of what was appended since).
 *
 * @example
 * const reader = await openAzureReader({ connectionString, container: 'sluice', prefix: 'payments' });
 * for await (const batch of reader.read(1, await reader.lastSeq())) for (const frame of batch.frames) handle(frame);
 * await reader.close();
 */
export async function openAzureReader(options: AzureReaderOptions): Promise<StorageReader> {
  return openReaderOn(resolveConnectionOptions(options));
}

/** Opens a reader on validated connection settings (shared with the writer's `openReader`). */
export async function openReaderOn(connection: ResolvedConnection): Promise<StorageReader> {
  const container = await connection.connect();
  const log = new LogBlobs(container, connection.container, connection.prefix, connection.retry);
  const reader = new AzureReader(new BlobLogIndex(log, connection.readBytesMax, connection.readAheadMax), log);
  await reader.refresh();
  return reader;
}

class AzureReader implements StorageReader {
  private closed = false;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly index: BlobLogIndex,
    private readonly log: LogBlobs,
  ) {}

  /** Indexes what was appended since the last look (one refresh at a time). */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        await this.index.scanForward(await this.log.list());
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    return (async function* (reader: AzureReader) {
      reader.assertOpen();
      if (toSeq > reader.index.lastSeq) await reader.refresh();
      yield* reader.index.read(fromSeq, toSeq);
    })(this);
  }

  async lastSeq(): Promise<number> {
    this.assertOpen();
    await this.refresh();
    return this.index.lastSeq;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.refreshing?.catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `${SOURCE} this reader of "${this.log.containerName}/${this.log.prefix}" is closed: open another with openAzureReader()`);
  }
}
