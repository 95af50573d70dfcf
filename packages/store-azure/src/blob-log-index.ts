import { MARKER_BYTES, StreamDecoder, type DecodeReport, type SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, StorageError, firstBatchEndingAtOrAfter, identityOf, type BatchIdentity } from '@sluice/store';
import { SOURCE } from './azure-errors.js';
import { identityOfBatchEnd } from './batch-markers.js';
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

/** What lies after a blob's sealed length: what a cut left behind. */
export interface PastSeal {
  /** Seqs of whole verified batches there, chained to the log (e.g. a write whose answer was lost). */
  readonly seqs: number;
  /** Bytes there that are not such batches. */
  readonly bytes: number;
}

/** A place in the log: a blob and an offset in it. */
export interface LogPosition {
  readonly blob: number;
  readonly offset: number;
}

/**
 * The seq → (blob, offset) index of a partition's log: one entry per sealed batch, in parallel
 * number arrays, plus the identity of the last batch. Built by scanning the blobs at open
 * (verifying the hash chain across blobs) and extended by every write; reads use it to download
 * only the byte ranges they need, and `identityAt` to read one marker. Shared by the writer and
 * read-only readers. Memory: five numbers per batch.
 */
export class BlobLogIndex {
  private readonly firstSeqs: number[] = [];
  private readonly lastSeqs: number[] = [];
  private readonly blobs: number[] = [];
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];
  private last: BatchIdentity = EMPTY_IDENTITY;
  /** Set after the first scan: a reader's later scans find cuts made under it. */
  private scanned = false;
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

  /** Identity of the last batch indexed (lastSeq 0 when none). */
  get head(): BatchIdentity {
    return this.last;
  }

  add(firstSeq: number, lastSeq: number, blob: number, offset: number, length: number, identity: BatchIdentity): void {
    // An index out of order would serve wrong bytes: a bug, not an error to handle.
    if (
      firstSeq !== this.lastSeq + 1 ||
      lastSeq < firstSeq ||
      identity.lastSeq !== lastSeq ||
      blob < this.endBlob ||
      (blob === this.endBlob && offset !== this.endOffset)
    ) {
      throw new Error(`${SOURCE} bug: batch ${firstSeq}..${lastSeq} at ${blob}:${offset} does not follow ${this.lastSeq} at ${this.endBlob}:${this.endOffset}`);
    }
    this.last = identity;
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

  /** True when a batch ends exactly at `seq` (0, the start of the log, counts). */
  isBoundary(seq: number): boolean {
    if (seq === 0) return true;
    const i = firstBatchEndingAtOrAfter(this.lastSeqs, seq);
    return i < this.lastSeqs.length && this.lastSeqs[i] === seq;
  }

  /** Where the log is cut to keep everything up to `seq`, a batch boundary. */
  cutPoint(seq: number): LogPosition {
    if (seq === 0) return { blob: this.blobs.length === 0 ? this.endBlob : this.blobs[0], offset: 0 };
    const i = firstBatchEndingAtOrAfter(this.lastSeqs, seq);
    return { blob: this.blobs[i], offset: this.offsets[i] + this.lengths[i] };
  }

  /** Forgets every batch after the one ending at `seq` (a boundary), whose identity is `identity`. */
  truncateAfter(seq: number, identity: BatchIdentity): void {
    const keep = seq === 0 ? 0 : firstBatchEndingAtOrAfter(this.lastSeqs, seq) + 1;
    const cut = this.cutPoint(seq);
    for (const a of [this.firstSeqs, this.lastSeqs, this.blobs, this.offsets, this.lengths]) a.length = keep;
    this.last = identity;
    this.endBlob = cut.blob;
    this.endOffset = cut.offset;
  }

  /**
   * Identity of the batch holding `seq`, among the indexed ones up to `limitSeq`: the last
   * batch's is kept, any other's is read from its marker (the batch's last bytes).
   */
  async identityAt(seq: number, limitSeq: number): Promise<BatchIdentity | undefined> {
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > Math.min(limitSeq, this.lastSeq)) return undefined;
    const i = firstBatchEndingAtOrAfter(this.lastSeqs, seq);
    if (i === this.lastSeqs.length - 1) return this.last;
    const end = this.offsets[i] + this.lengths[i];
    const tail = await this.log.download(this.blobs[i], end - MARKER_BYTES, MARKER_BYTES);
    const identity = identityOfBatchEnd(tail);
    if (identity === undefined || identity.lastSeq !== this.lastSeqs[i]) {
      throw new StorageError(
        'Corrupt',
        `${SOURCE} ${this.log.describe(this.blobs[i])} holds no marker of seq ${this.lastSeqs[i]} at offset ${end - MARKER_BYTES}: committed data was damaged; restore the partition from a copy`,
      );
    }
    return identity;
  }

  /**
   * Scans forward from the end of the index through `blobs` (a fresh listing), adding every
   * verified batch, and returns the scan of the last blob: where the next batch goes and
   * whether anything else lies after it. A blob whose log bytes do not end on a verified batch
   * but that is followed by another blob is refused as `Corrupt`: that damage is not a torn tail.
   */
  async scanForward(blobs: readonly LogBlob[]): Promise<TailScan> {
    const following = this.scanned;
    let tail: TailScan = { blob: this.endBlob, validEnd: this.endOffset, limit: this.endOffset, report: cleanReport(this.endOffset, this.lastSeq + 1) };
    for (const entry of blobs) {
      if (entry.blob < this.endBlob) continue;
      const current = entry.blob === this.endBlob;
      if (current && following && (entry.sealedBytes ?? entry.contentLength) < this.endOffset) throw this.cutUnderReader(entry.blob);
      if (!current) {
        if (isDirty(tail)) {
          throw new StorageError(
            'Corrupt',
            `${SOURCE} ${this.log.describe(tail.blob)} is damaged at offset ${tail.validEnd} (${tail.report.reason}: ${tail.report.detail}) ` +
              `but ${this.log.describe(entry.blob)} follows it: restore the partition from a copy or a shipped archive`,
          );
        }
        // A blob sealed at 0 bytes holds nothing (a truncate emptied it): its first seq is moot.
        if (entry.firstSeq !== undefined && entry.firstSeq !== this.lastSeq + 1 && entry.sealedBytes !== 0) {
          if (following && entry.firstSeq <= this.lastSeq) throw this.cutUnderReader(entry.blob);
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
    this.scanned = true;
    return tail;
  }

  private cutUnderReader(blob: number): StorageError {
    return new StorageError(
      'Conflict',
      `${SOURCE} the log was cut at ${this.log.describe(blob)} below seq ${this.lastSeq}, which this reader had already seen ` +
        `(a truncate, or a failed write sealed away): open a new reader and compare identities with identityAt()`,
      { retryable: false },
    );
  }

  /**
   * What lies in `blob` between its sealed length and its end, decoded as a continuation of the
   * log: whole verified batches (a write sealed away after it failed) and other bytes. Batches
   * are counted in the first 8 MiB only; the rest counts as bytes.
   */
  async pastSeal(blob: LogBlob): Promise<PastSeal> {
    const from = blob.sealedBytes ?? blob.contentLength;
    const count = blob.contentLength - from;
    if (count <= 0) return { seqs: 0, bytes: 0 };
    // Only for the report: a truncate may have left gigabytes there; look at the start only.
    const bytes = await this.log.download(blob.blob, from, Math.min(count, SCAN_CHUNK_BYTES));
    const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1, prevDigest: this.last.digest });
    let seqs = 0;
    for (const b of decoder.push(bytes)) seqs += b.lastSeq - b.firstSeq + 1;
    return { seqs, bytes: count - decoder.end().validBytes };
  }

  /**
   * Reads a dirty tail a second time before recovery cuts it off, so that bytes damaged on the
   * way (not in the blob) can never make acknowledged commits look torn. Rejects with a
   * retryable `Unavailable` when the second read finds a verified batch the first one did not.
   */
  async confirmTorn(tail: TailScan): Promise<void> {
    if (!isDirty(tail)) return;
    const bytes = await this.log.download(tail.blob, tail.validEnd, tail.limit - tail.validEnd);
    const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1, prevDigest: this.last.digest });
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
    // Chained to the last batch indexed, in this blob or the one before: the chain is verified across blobs.
    const decoder = new StreamDecoder({ firstSeq: this.lastSeq + 1, prevDigest: this.last.digest });
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
      for (const b of decoder.push(chunk)) this.add(b.firstSeq, b.lastSeq, blob, start + b.byteOffset, b.byteLength, identityOf(b));
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
