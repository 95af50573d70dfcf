import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { SealedBatch } from '@sluice/framing';
import { StorageError, type StorageReader } from '@sluice/store';
import { SegmentIndex } from './segment-log.js';
import { mapFsError } from './fs-errors.js';

/** Options of {@link openFileReader}. */
export interface FileReaderOptions {
  /** The partition's directory, as given to the writer's `createFileStorage`. */
  readonly directory: string;
  /**
   * How often `tail` looks for new commits when the file system sends no change event.
   * @default 250
   */
  readonly pollIntervalMs?: number;
}

/** Options of {@link FileReader.tail}. */
export interface TailOptions {
  /** @default 1 */
  readonly fromSeq?: number;
  /** Ends the tail. */
  readonly signal?: AbortSignal;
}

/** A read-only view of a file partition, usable from any process while the writer runs. */
export interface FileReader extends StorageReader {
  /** Committed batches from `fromSeq` on, then new ones as the writer adds them, until aborted or closed. */
  tail(options?: TailOptions): AsyncIterable<SealedBatch>;
}

/**
 * Opens a read-only reader on a file partition. It takes no lock, never writes, and sees a
 * batch once the writer has written it whole with its marker.
 *
 * @example
 * const reader = await openFileReader({ directory: './data/payments' });
 * for await (const batch of reader.tail({ fromSeq: checkpoint + 1, signal })) project(batch.frames);
 */
export async function openFileReader(options: FileReaderOptions): Promise<FileReader> {
  try {
    const s = await stat(options.directory);
    if (!s.isDirectory()) throw new StorageError('NotFound', `[sluice/store-file] ${options.directory} is not a directory`);
  } catch (error) {
    throw error instanceof StorageError ? error : mapFsError(error, options.directory);
  }
  const reader = new SegmentReader(options.directory, options.pollIntervalMs ?? 250);
  await reader.refresh();
  return reader;
}

class SegmentReader implements FileReader {
  private readonly index: SegmentIndex;
  private closed = false;
  private refreshing: Promise<void> | undefined;
  private readonly wakers = new Set<() => void>();

  constructor(
    private readonly directory: string,
    private readonly pollIntervalMs: number,
  ) {
    this.index = new SegmentIndex(directory);
  }

  /** Picks up batches written since the last look. Concurrent callers share one scan. */
  refresh(): Promise<void> {
    this.refreshing ??= this.index.scanForward('reader').then(
      () => {
        this.refreshing = undefined;
      },
      (error: unknown) => {
        this.refreshing = undefined;
        throw error;
      },
    );
    return this.refreshing;
  }

  async lastSeq(): Promise<number> {
    this.assertOpen();
    await this.refresh();
    return this.index.lastSeq;
  }

  async *read(fromSeq: number, toSeq: number): AsyncGenerator<SealedBatch> {
    this.assertOpen();
    if (toSeq > this.index.lastSeq) await this.refresh();
    yield* this.index.read(fromSeq, toSeq);
  }

  async *tail(options: TailOptions = {}): AsyncGenerator<SealedBatch> {
    let next = Math.max(1, options.fromSeq ?? 1);
    const signal = options.signal;
    let watcher: FSWatcher | undefined;
    let wake: (() => void) | undefined;
    const poke = (): void => wake?.();
    try {
      watcher = watch(this.directory, { persistent: false }, poke);
      watcher.on('error', () => undefined); // polling still covers it
    } catch {
      watcher = undefined;
    }
    signal?.addEventListener('abort', poke);
    try {
      while (!this.closed && !isAborted(signal)) {
        await this.refresh();
        if (next <= this.index.lastSeq) {
          for await (const batch of this.index.read(next, this.index.lastSeq)) {
            next = batch.lastSeq + 1;
            yield batch;
            if (this.closed || isAborted(signal)) return;
          }
          continue;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, this.pollIntervalMs);
          function done(): void {
            clearTimeout(timer);
            resolve();
          }
          wake = done;
          this.wakers.add(done);
        });
        if (wake !== undefined) this.wakers.delete(wake);
        wake = undefined;
      }
    } finally {
      watcher?.close();
      signal?.removeEventListener('abort', poke);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.wakers) w();
    await this.refreshing?.catch(() => undefined);
    await this.index.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `[sluice/store-file] reader of ${this.directory} is closed`);
  }
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
