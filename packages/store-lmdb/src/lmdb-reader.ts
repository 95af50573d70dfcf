import type { EventFrame, SealedBatch } from '@sluice/framing';
import { EMPTY_IDENTITY, StorageError, checkFrameSeqs, identityOf, pollWait, tailBatches, type BatchIdentity, type ReadBatchesOptions, type StorageReader, type TailOptions } from '@sluice/store';
import { LAYOUT, LAYOUT_KEY, LAYOUT_V1, decodeValue, floorKey, identityInLog, isWhole, lastKey, readBatches, readFramesAt, readHead } from './batch-log.js';
import { openReaderEnv, type LmdbHandle } from './lmdb-env.js';

/** Options of {@link openLmdbReader}. */
export interface LmdbReaderOptions {
  /** The partition's directory, as given to the writer's `createLmdbStorage`. */
  readonly directory: string;
  /**
   * Shortest and longest wait between two looks for new batches while `tail` has caught up
   * (another process's commits come with no notification).
   * @default [5, 200]
   */
  readonly tailPollMs?: readonly [number, number];
}

/**
 * Opens a read-only reader on an LMDB partition, from any process, while its writer runs.
 * It opens the environment read-only (`MDB_RDONLY`: it never writes the data file and takes
 * no Sluice lock), reads up to the `head` record LMDB committed with the last batch (what
 * LMDB has committed is durable per the writer's policy, see the README), and yields only
 * batches that verify. In the writer's own process, open readers after the writer (lmdb-js
 * shares one environment per file per process and keeps the first opener's flags).
 *
 * @example
 * const reader = await openLmdbReader({ directory: './data/payments' });
 * for await (const batch of reader.tail(checkpoint + 1, { signal })) project(batch.frames);
 * await reader.close();
 */
export async function openLmdbReader(options: LmdbReaderOptions): Promise<StorageReader> {
  if (typeof options?.directory !== 'string' || options.directory.length === 0) {
    throw new StorageError('Invalid', '[sluice/store-lmdb] options.directory must be a non-empty path');
  }
  const env = openReaderEnv(options.directory);
  const found = env.meta.getBinary(LAYOUT_KEY);
  const layout = found === undefined ? undefined : new TextDecoder().decode(found);
  if (layout !== undefined && layout !== LAYOUT && layout !== LAYOUT_V1) {
    await env.close();
    throw new StorageError(
      'Invalid',
      `[sluice/store-lmdb] ${options.directory} was written with layout "${layout}", this version reads "${LAYOUT}": ` +
        `read it with the @sluice/store-lmdb version that wrote it`,
    );
  }
  return new LmdbReader(options.directory, env, options.tailPollMs ?? [5, 200]);
}

class LmdbReader implements StorageReader {
  private closed = false;
  /** Aborts every tail when the reader closes. */
  private readonly closing = new AbortController();
  /** A version 1 partition's head, found by decoding its last entry: cached by key and size. */
  private legacy: { key: number; bytes: number; head: BatchIdentity } | undefined;

  constructor(
    private readonly directory: string,
    private readonly env: LmdbHandle,
    private readonly pollMs: readonly [number, number],
  ) {}

  async *read(fromSeq: number, toSeq: number, options?: ReadBatchesOptions): AsyncGenerator<SealedBatch> {
    const head = await this.head();
    yield* readBatches(this.env.batches, this.directory, fromSeq, Math.min(toSeq, head.lastSeq), 'corrupt', () => this.assertOpen(), options?.verifyDigests ?? true);
  }

  /** Frames by seq, up to the `head` record of a fresh snapshot, found by walking their entries' length fields. */
  async *readFrames(seqs: readonly number[]): AsyncGenerator<EventFrame> {
    const head = await this.head();
    checkFrameSeqs(seqs, head.lastSeq, `[sluice/store-lmdb] reader of ${this.directory}`);
    yield* readFramesAt(this.env.batches, this.directory, seqs, () => this.assertOpen());
  }

  /** The `head` record of a fresh snapshot: the last batch LMDB committed. */
  async head(): Promise<BatchIdentity> {
    this.assertOpen();
    this.env.root.resetReadTxn(); // see commits made since this reader last looked
    return readHead(this.env.meta, this.directory) ?? this.legacyHead();
  }

  async lastSeq(): Promise<number> {
    return (await this.head()).lastSeq;
  }

  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    const head = await this.head();
    if (!(seq >= 1) || seq > head.lastSeq) return undefined;
    return identityInLog(this.env.batches, this.directory, seq);
  }

  /** Polls (`tailPollMs`): another process's commits come with no notification. Ends when the reader closes. */
  tail(fromSeq: number, options: TailOptions = {}): AsyncIterable<SealedBatch> {
    const signal = options.signal === undefined ? this.closing.signal : AbortSignal.any([options.signal, this.closing.signal]);
    // Closing aborts `signal`; the poll must not look at a closed environment meanwhile.
    const polled = { head: async (): Promise<BatchIdentity> => (this.closed ? EMPTY_IDENTITY : this.head()) };
    return tailBatches(this, fromSeq, pollWait(polled, this.pollMs[0], this.pollMs[1]), signal);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    await this.env.close();
  }

  /**
   * A version 1 partition (no head record, until its writer reopens it): the last entry that
   * verifies. A tail its writer has not recovered yet is stepped over.
   */
  private legacyHead(): BatchIdentity {
    const db = this.env.batches;
    for (let key = lastKey(db); key !== undefined; key = floorKey(db, key - 1)) {
      const fast = db.getBinaryFast(key);
      if (fast === undefined) continue;
      if (this.legacy?.key === key && this.legacy.bytes === fast.length) return this.legacy.head;
      const value = decodeValue(fast, key); // in place: only the copied identity escapes
      if (isWhole(value)) {
        const head = identityOf(value.batches[value.batches.length - 1]);
        this.legacy = { key, bytes: fast.length, head };
        return head;
      }
    }
    return EMPTY_IDENTITY;
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('Closed', `[sluice/store-lmdb] reader of ${this.directory} is closed`);
  }
}
