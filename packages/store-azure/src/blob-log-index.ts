import { StreamDecoder, type DecodeReport, type SealedBatch } from '@sluice/framing';
import { StorageError, firstBatchEndingAtOrAfter } from '@sluice/store';
import { SOURCE } from './azure-errors.js';
import type { LogBlob, LogBlobs } from './log-blobs.js';

/** Bytes fetched per ranged download while scanning at open. */
const SCAN_CHUNK_BYTES = 8 * 1024 * 1024;

/** Where a scan of the last blob stopped. */
export interface TailScan {
  /** The blob scanned last (0 when the log has no blob). */
  readonly blob: number;
  /** Offset just after the last verified batch in it. */
  readonly validEnd: number;
  /** How far the blob's log bytes go: its sealed length, or else its committed length. */
  readonly limit: number;
  /** Why decoding stopped. */
  readonly report: DecodeReport;
}

/** True when bytes that are not a verified batch lie between `validEnd` and `limit`. */
export function isDirty(tail: TailScan): boolean {
  return tail.validEnd < tail.limit;
}

const noop = (): void => undefined;

/**
 * The seq → (blob, offset) index of a partition's log: one entry per sealed batch, in parallel
 * number arrays. Built by scanning the blobs at open and extended by every append; reads use it
 * to download only the byte ranges they need. Shared by the writer and read-only readers.
 */
export class BlobLogIndex {
  private readonly firstSeqs: number[] = [];
  private readonly lastSeqs: number[] = [];
  private readonly blobs: number[] = [];
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];
  /** Blob and offset where the next batch goes / is looked for (blob 0: no blob yet). */
  endBlob = 0;
  endOffset = 0;

  constructor(
    private readonly log: LogBlobs,
    private readonly readBytesMax: number,
    private readonly readAheadMax: number,
  ) {}

  get lastSeq(): number {
    return this.lastSeqs.length === 0 ? 0 : this.lastSeqs[this.lastSeqs.length - 1];
  }

  get batchCount(): number {
    return this.lastSeqs.length;
  }

  add(firstSeq: number, lastSeq: number, blob: number, offset: number, length: number): void {
    // An index out of order would serve wrong bytes: a bug, not an error to handle.
    if (firstSeq !== this.lastSeq + 1 || lastSeq < firstSeq || blob < this.endBlob || (blob === this.endBlob && offset !== this.endOffset)) {
      throw new Error(`${SOURCE} bug: batch ${firstSeq}..${lastSeq} at ${blob}:${offset} does not follow ${this.lastSeq} at ${this.endBlob}:${this.endOffset}`);
    }
    this.firstSeqs.push(firstSeq);
    this.lastSeqs.push(lastSeq);
    this.blobs.push(blob);
    this.offsets.push(offset);
    this.lengths.push(length);
    this.endBlob = blob;
    this.endOffset = offset + length;
  }

  /** Seq of the first batch stored in `blob`, or the next seq when it holds none. */
  firstSeqIn(blob: number): number {
    let i = this.blobs.length;
    while (i > 0 && this.blobs[i - 1] >= blob) i--;
    return i < this.blobs.length && this.blobs[i] === blob ? this.firstSeqs[i] : this.lastSeq + 1;
  }

  /** Moves the end to a new, empty blob (the writer rolled to it). */
  startBlob(blob: number): void {
    this.endBlob = blob;
    this.endOffset = 0;
  }

  /**
   * Scans forward from the end of the index through `blobs` (a fresh listing), adding every
   * verified batch, and returns the scan of the last blob: where the next batch goes and
   * whether anything else lies after it. A blob whose log bytes do not end on a verified batch
   * but that is followed by another blob is refused as `Corrupt`: that damage is not a torn tail.
   */
  async scanForward(blobs: readonly LogBlob[]): Promise<TailScan> {
    let tail: TailScan = { blob: this.endBlob, validEnd: this.endOffset, limit: this.endOffset, report: cleanReport(this.endOffset, this.lastSeq + 1) };
    for (const entry of blobs) {
      if (entry.blob < this.endBlob) continue;
      const current = entry.blob === this.endBlob;
      if (!current) {
        if (isDirty(tail)) {
          throw new StorageError(
            'Corrupt',
            `${SOURCE} ${this.log.describe(tail.blob)} is damaged at offset ${tail.validEnd} (${tail.report.reason}: ${tail.report.detail}) ` +
              `but ${this.log.describe(entry.blob)} follows it: restore the partition from a copy or a shipped archive`,
          );
        }
        if (entry.firstSeq !== undefined && entry.firstSeq !== this.lastSeq + 1) {
          throw new StorageError(
            'Corrupt',
            `${SOURCE} ${this.log.describe(entry.blob)} starts at seq ${entry.firstSeq} but the log before it ends at seq ${this.lastSeq}: ` +
              `blobs were deleted or copied in from another partition; restore the partition from a copy`,
          );
        }
        this.startBlob(entry.blob);
      }
      if (entry.sealedBytes !== undefined && entry.sealedBytes > entry.contentLength) {
        throw new StorageError(
          'Corrupt',
          `${SOURCE} ${this.log.describe(entry.blob)} is sealed at ${entry.sealedBytes} bytes but holds only ${entry.contentLength}: restore the partition from a copy`,
        );
      }
      const limit = entry.sealedBytes ?? entry.contentLength;
      tail = await this.scanBlob(entry.blob, this.endOffset, limit);
      if (entry.sealedBytes !== undefined && isDirty(tail)) {
        // A writer sealed this length after verifying it: damage inside it is not a torn tail.
        throw new StorageError(
          'Corrupt',
          `${SOURCE} ${this.log.describe(entry.blob)} is damaged at offset ${tail.validEnd} (${tail.report.reason}: ${tail.report.detail}) ` +
            `before its sealed length ${entry.sealedBytes}: restore the partition from a copy or a shipped archive`,
        );
      }
    }
    return tail;
  }

  /**
   * Reads a dirty tail a second time before recovery cuts it off, so that bytes damaged on the
   * way (not in the blob) can never make acknowledged commits look torn. Rejects with a
   * retryable `Unavailable` when the second read finds a verified batch the first one did not.
   */
  async confirmTorn(tail: TailScan): Promise<void> {
    if (!isDirty(tail)) return;
    const bytes = await this.log.download(tail.blob, tail.validEnd, tail.limit - tail.validEnd);
    const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1 });
    if (decoder.push(bytes).length > 0) {
      throw new StorageError(
        'Unavailable',
        `${SOURCE} two reads of ${this.log.describe(tail.blob)} after offset ${tail.validEnd} disagree: data was damaged in transit; open the partition again`,
        { retryable: true },
      );
    }
  }

  /** Decodes `blob` from `start` to `limit`, downloading ahead while it decodes. */
  private async scanBlob(blob: number, start: number, limit: number): Promise<TailScan> {
    const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1 });
    const fetch = (from: number): Promise<Buffer> | undefined => {
      if (from >= limit) return undefined;
      const p = this.log.download(blob, from, Math.min(SCAN_CHUNK_BYTES, limit - from));
      p.catch(noop); // awaited below, or abandoned when decoding stops early
      return p;
    };
    let position = start;
    let next = fetch(position);
    while (next !== undefined) {
      const chunk = await next;
      position += chunk.length;
      next = fetch(position);
      for (const b of decoder.push(chunk)) this.add(b.firstSeq, b.lastSeq, blob, start + b.byteOffset, b.byteLength);
      if (decoder.isStopped) break;
    }
    const report = decoder.end();
    return { blob, validEnd: start + report.validBytes, limit, report };
  }

  /**
   * Verified batches overlapping `[fromSeq, toSeq]` among those indexed. Adjacent batches of one
   * blob are fetched with one ranged download of up to `readBytesMax` bytes; up to
   * `readAheadMax` downloads run ahead of the consumer.
   */
  async *read(fromSeq: number, toSeq: number): AsyncGenerator<SealedBatch> {
    let i = firstBatchEndingAtOrAfter(this.lastSeqs, fromSeq);
    const ahead: { first: number; last: number; blob: number; start: number; bytes: Promise<Buffer> }[] = [];
    const plan = (): boolean => {
      if (i >= this.lastSeqs.length || this.firstSeqs[i] > toSeq) return false;
      const blob = this.blobs[i];
      const start = this.offsets[i];
      let j = i;
      let end = start + this.lengths[i];
      while (
        j + 1 < this.lastSeqs.length &&
        this.firstSeqs[j + 1] <= toSeq &&
        this.blobs[j + 1] === blob &&
        this.offsets[j + 1] === end &&
        end + this.lengths[j + 1] - start <= this.readBytesMax
      ) {
        j++;
        end += this.lengths[j];
      }
      const bytes = this.log.download(blob, start, end - start);
      bytes.catch(noop); // awaited in order below, or abandoned if the consumer stops early
      ahead.push({ first: i, last: j, blob, start, bytes });
      i = j + 1;
      return true;
    };
    while (ahead.length < this.readAheadMax && plan());
    while (ahead.length > 0) {
      const range = ahead.shift() as (typeof ahead)[number];
      const buffer = await range.bytes;
      while (ahead.length < this.readAheadMax && plan());
      const decoder = new StreamDecoder({ firstSeq: this.firstSeqs[range.first] });
      const batches = decoder.push(buffer);
      const expected = range.last - range.first + 1;
      if (batches.length !== expected || batches.at(-1)?.lastSeq !== this.lastSeqs[range.last]) {
        const report = decoder.end();
        throw new StorageError(
          'Corrupt',
          `${SOURCE} ${this.log.describe(range.blob)} changed under a reader at offset ${range.start + report.offset} ` +
            `(${report.reason}: ${report.detail}): committed data was damaged; restore the partition from a copy`,
        );
      }
      for (const batch of batches) yield batch;
    }
  }

}

function cleanReport(offset: number, nextSeq: number): DecodeReport {
  return { validBytes: 0, reason: 'end', clean: true, offset, detail: 'no data', nextSeq, unsealedFrames: 0 };
}
