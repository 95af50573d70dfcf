import type { AppendRequest, CommitResult, RecordedEvent } from '@sluice/store';

/** What `sluice head` reports. Fields a target cannot tell are absent. */
export interface HeadInfo {
  /** Seq of the last committed event; 0 when the partition is empty. */
  readonly lastSeq: number;
  /** Streams with at least one event. */
  readonly streamCount: number;
  /** The asked stream's version (0 when it has no events). */
  readonly streamVersion?: number | undefined;
  /** The writer's fencing term (cluster only). */
  readonly epoch?: number | undefined;
  /** Whether the partition accepts appends (cluster only). */
  readonly writable?: boolean | undefined;
  /** What recovery dropped when the node last opened the partition (cluster only; absent: nothing). */
  readonly recovery?: { readonly droppedSeqs: number; readonly droppedBytes: number; readonly droppedReason?: string | undefined } | undefined;
}

/** Read options shared by `read`, `tail` and `head`. */
export interface ReadRange {
  readonly fromSeq: number;
  /** Inclusive. */
  readonly toSeq: number;
  /** Only this stream's events. */
  readonly streamId?: string | undefined;
  readonly signal: AbortSignal;
}

/**
 * A partition's committed log as the read commands see it: a local folder (a file reader,
 * works while a writer runs) or a partition in a cluster (through a broker).
 */
export interface EventSource {
  /** Names the partition in messages: a path, or `partition "p1" via tcp://...`. */
  readonly description: string;
  lastSeq(): Promise<number>;
  /** Batches of events in `[fromSeq, toSeq]`, in seq order. */
  read(range: ReadRange): AsyncIterable<readonly RecordedEvent[]>;
  /** Batches from `fromSeq` on, then new commits as they come, until the signal aborts. */
  tail(range: Omit<ReadRange, 'toSeq'>): AsyncIterable<readonly RecordedEvent[]>;
  /** The head; `onProgress` hears of long scans (seqs scanned so far, of `lastSeq`). */
  head(streamId: string | undefined, onProgress: (scanned: number, lastSeq: number) => void, signal: AbortSignal): Promise<HeadInfo>;
  close(): Promise<void>;
}

/** A partition the `append` command writes to. */
export interface EventSink {
  readonly description: string;
  append(request: AppendRequest): Promise<CommitResult>;
  close(): Promise<void>;
}
