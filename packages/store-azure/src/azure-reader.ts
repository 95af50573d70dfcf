import type { SealedBatch } from '@sluice/framing';
import { StorageError, pollWait, tailBatches, type BatchIdentity, type StorageReader, type TailOptions, type WaitForDurable } from '@sluice/store';
import { SOURCE } from './azure-errors.js';
import { resolveConnectionOptions, type AzureReaderOptions, type ResolvedConnection } from './azure-storage-options.js';
import { BlobLogIndex } from './blob-log-index.js';
import { LogBlobs } from './log-blobs.js';

/** Shortest wait between two looks for new batches in a reader's `tail` (each new batch resets it). */
export const TAIL_POLL_MIN_MS = 20;
/** Longest wait between two looks for new batches in a reader's `tail` (it doubles while idle). */
export const TAIL_POLL_MAX_MS = 1000;

/**
 * Opens a read-only reader of a partition's Azure log, in any process, while its writer runs.
 * It takes no lease. It sees verified, chained batches only, and never bytes after a blob's
 * sealed length; `head()` and `lastSeq()` look for new batches (a listing plus a download of
 * what was appended since). Every block in Azure was durable once appended, so its head is
 * the last verified batch stored. `tail()` polls, backing off from 20 ms to 1 s while idle.
 * If the log is cut below what it has seen (a truncate), it rejects with reason `Conflict`:
 * open a new reader.
 *
 * @example
 * const reader = await openAzureReader({ connectionString, container: 'sluice', prefix: 'payments' });
 * for await (const batch of reader.tail(1, { signal })) for (const frame of batch.frames) handle(frame);
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
  private readonly closing = new AbortController();
  /** What `tail` reads through: like the reader, but quiet once closed (the tail then ends). */
  private readonly tailSource: Pick<StorageReader, 'read' | 'head'>;
  private readonly wait: WaitForDurable;

  constructor(
    private readonly index: BlobLogIndex,
    private readonly log: LogBlobs,
  ) {
    this.tailSource = {
      head: async () => {
        if (!this.closed) await this.refresh();
        return this.index.head;
      },
      read: (fromSeq, toSeq) => this.index.read(fromSeq, toSeq),
    };
    this.wait = pollWait(this.tailSource, TAIL_POLL_MIN_MS, TAIL_POLL_MAX_MS);
  }

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

  async head(): Promise<BatchIdentity> {
    this.assertOpen();
    await this.refresh();
    return this.index.head;
  }

  async lastSeq(): Promise<number> {
    return (await this.head()).lastSeq;
  }

  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    this.assertOpen();
    if (seq > this.index.lastSeq) await this.refresh();
    return this.index.identityAt(seq, this.index.lastSeq);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    return (async function* (reader: AzureReader) {
      reader.assertOpen();
      // Closing the reader ends its tails as an abort would.
      const signal = options.signal === undefined ? reader.closing.signal : AbortSignal.any([options.signal, reader.closing.signal]);
      yield* tailBatches(reader.tailSource, fromSeq, reader.wait, signal);
    })(this);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    await this.refreshing?.catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `${SOURCE} this reader of "${this.log.containerName}/${this.log.prefix}" is closed: open another with openAzureReader()`);
  }
}
