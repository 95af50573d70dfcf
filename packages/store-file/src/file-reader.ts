import { stat } from 'node:fs/promises';
import type { EventFrame, SealedBatch } from '@sluice/framing';
import { StorageError, pollWait, tailBatches, type BatchIdentity, type ReadBatchesOptions, type StorageReader, type TailOptions } from '@sluice/store';
import { mapFsError } from './fs-errors.js';
import { READ_HANDLES_MAX_DEFAULT, SegmentIndex, checkFrameSeqs, listSegments, readHeaderPage, segmentName } from './segment-log.js';

/** Options of {@link openFileReader}. */
export interface FileReaderOptions {
  /** The partition's directory, as given to the writer's `createFileStorage`. */
  readonly directory: string;
  /**
   * Longest wait between two looks for new durable batches while tailing (the wait starts at
   * 5 ms and doubles while nothing new comes).
   * @default 250
   */
  readonly pollIntervalMs?: number;
  /** Segment files kept open for reads (as the writer's option of the same name). @default 256 */
  readonly readHandlesMax?: number;
}

/** A read-only view of a file partition, usable from any process while the writer runs. */
export type FileReader = StorageReader;

/**
 * Opens a read-only reader on a file partition. It takes no lock and never writes. It serves
 * batches only up to the durable watermark the writer records in the last segment's header:
 * what is written but not durable per the partition's policy is never returned. Damage below
 * the watermark (a deleted or truncated segment, a changed batch) makes reads reject with
 * reason `Corrupt`, never end early.
 *
 * @example
 * const reader = await openFileReader({ directory: './data/payments' });
 * for await (const batch of reader.tail(checkpoint + 1, { signal })) project(batch.frames);
 */
export async function openFileReader(options: FileReaderOptions): Promise<FileReader> {
  try {
    const s = await stat(options.directory);
    if (!s.isDirectory()) throw new StorageError('NotFound', `[sluice/store-file] ${options.directory} is not a directory`);
  } catch (error) {
    throw error instanceof StorageError ? error : mapFsError(error, options.directory);
  }
  const handles = options.readHandlesMax ?? READ_HANDLES_MAX_DEFAULT;
  if (!Number.isSafeInteger(handles) || handles < 1 || handles > 65_536) {
    throw new StorageError('Invalid', `[sluice/store-file] options.readHandlesMax must be an integer from 1 to 65536, got ${options.readHandlesMax}`);
  }
  const reader = new SegmentReader(options.directory, options.pollIntervalMs ?? 250, handles);
  try {
    await reader.refresh();
  } catch (error) {
    await reader.close();
    throw error;
  }
  return reader;
}

class SegmentReader implements FileReader {
  private index: SegmentIndex;
  private readonly closeController = new AbortController();
  private refreshing: Promise<void> | undefined;
  /** Durable watermark last read from the headers (batches above it are never indexed). */
  private watermark = 0;

  constructor(
    private readonly directory: string,
    private readonly pollIntervalMs: number,
    private readonly readHandlesMax: number,
  ) {
    this.index = new SegmentIndex(directory, readHandlesMax);
  }

  private get closed(): boolean {
    return this.closeController.signal.aborted;
  }

  /** Picks up batches made durable since the last look. Concurrent callers share one scan. */
  refresh(): Promise<void> {
    this.refreshing ??= this.look().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async look(): Promise<void> {
    // The watermark first: the writer records it only after the data it covers is written, so a
    // scan after reading it must reach it.
    let { watermark, versioned, successorMissing } = await this.readWatermark();
    // A slot read while the writer rewrites it fails its CRC and the older slot counts: look twice.
    if (versioned && watermark < this.watermark) ({ watermark, versioned, successorMissing } = await this.readWatermark());
    if (versioned && watermark < this.watermark && successorMissing === undefined) {
      // The writer cut its log (an operator's truncate, or recovery after a failed sync): what
      // this reader indexed above the new watermark is gone. Start over.
      const old = this.index;
      this.index = new SegmentIndex(this.directory, this.readHandlesMax);
      await old.close();
    }
    this.watermark = watermark;
    const limit = versioned ? this.watermark : Number.MAX_SAFE_INTEGER;
    // A fresh index loads the sealed segments whose sidecars can be trusted without reading them.
    if (versioned) await this.index.loadSealed(limit);
    const stop = await this.index.scanForward(limit);
    if (this.index.lastSeq < this.watermark) {
      throw new StorageError(
        'Corrupt',
        `[sluice/store-file] ${this.directory} holds seq 1..${this.index.lastSeq} (${stop.detail}) but the writer had made seq ${this.watermark} durable: ` +
          `acknowledged commits are missing or damaged; restore the partition from a copy or a shipped archive`,
      );
    }
    if (successorMissing !== undefined) {
      throw new StorageError(
        'Corrupt',
        `[sluice/store-file] ${this.directory}/${segmentName(successorMissing)} records that a later segment followed it, but there is none: ` +
          `a segment holding acknowledged commits was deleted; restore the partition from a copy or a shipped archive`,
      );
    }
  }

  /** The highest durable watermark in the headers of the last segments. */
  private async readWatermark(): Promise<{ watermark: number; versioned: boolean; successorMissing: number | undefined }> {
    let segments = await listSegments(this.directory);
    for (let attempt = 0; ; attempt++) {
      let watermark = 0;
      let versioned = this.index.incarnation !== undefined;
      let successorMissing: number | undefined;
      // The last segment with a header holds the newest watermark; one before it may too (a roll in progress).
      let seen = 0;
      for (let i = segments.length - 1; i >= 0 && seen < 2; i--) {
        const page = await readHeaderPage(this.directory, segments[i]).catch(() => undefined);
        if (page?.kind !== 'v2') continue;
        versioned = true;
        if (seen === 0 && page.slot?.successor === true) successorMissing = segments[i];
        seen++;
        if (page.slot !== undefined && page.slot.acked.lastSeq > watermark) watermark = page.slot.acked.lastSeq;
      }
      if (successorMissing === undefined || attempt > 0) return { watermark, versioned, successorMissing };
      // The writer may have just rolled: the new segment exists before the flag is set.
      segments = await listSegments(this.directory);
    }
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
    return this.index.identityAt(seq);
  }

  async *read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncGenerator<SealedBatch> {
    this.assertOpen();
    if (toSeq > this.index.lastSeq) await this.refresh();
    yield* this.index.read(fromSeq, Math.min(toSeq, this.index.lastSeq), options);
  }

  async *readFrames(seqs: readonly number[]): AsyncGenerator<EventFrame> {
    this.assertOpen();
    const where = `[sluice/store-file] reader of ${this.directory}`;
    checkFrameSeqs(seqs, Number.MAX_SAFE_INTEGER, where);
    if (seqs.length > 0 && seqs[seqs.length - 1] > this.index.lastSeq) await this.refresh();
    checkFrameSeqs(seqs, this.index.lastSeq, where);
    yield* this.index.readFrames(seqs);
  }

  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    const signal = options.signal;
    const ended = signal === undefined ? this.closeController.signal : AbortSignal.any([signal, this.closeController.signal]);
    return tailBatches(this, fromSeq, pollWait(this, 5, this.pollIntervalMs), ended);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closeController.abort();
    await this.refreshing?.catch(() => undefined);
    await this.index.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `[sluice/store-file] reader of ${this.directory} is closed`);
  }
}

