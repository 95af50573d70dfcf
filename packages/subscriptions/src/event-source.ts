import type { RecordedEvent, SealedBatchBytes } from '@sluice/store';
import type { FrameRun } from './broadcast-codec.js';

/**
 * Where a subscriber reads a partition's committed log. An embedded `Partition` is one as it
 * is; {@link createRemoteEventSource} is one over the client SDK's push subscriptions, so
 * subscribers do not care where the partition runs.
 */
export interface EventSource {
  /** The partition's name: part of deterministic ids derived from its seqs. */
  readonly name: string;
  /** Seq of the last committed frame. */
  readonly lastSeq: number;
  /** Committed events from `fromSeq` on, in batches, then live. Ends when the signal aborts or the source closes. */
  subscribe(options: { readonly fromSeq?: number; readonly signal?: AbortSignal }): AsyncIterable<RecordedEvent[]>;
  /**
   * Optional: the same batches as their sealed bytes (event frames then marker, as stored), so
   * relays such as the broadcast publisher forward frames without decoding them. An embedded
   * `Partition` has it; a batch may start before `fromSeq`.
   */
  subscribeSealed?(options: { readonly fromSeq?: number; readonly signal?: AbortSignal }): AsyncIterable<SealedBatchBytes>;
}

/** Random access to a partition's log: the replayer that fills gaps and serves full replays. */
export interface Replayer {
  read(options: { readonly fromSeq?: number; readonly toSeq?: number; readonly maxCount?: number }): AsyncIterable<RecordedEvent>;
  /**
   * Optional: the same range as runs of verified, undecoded frames (e.g. broadcast datagrams a
   * remote replayer sends back). Broadcast receivers repair through it when present, so a repair
   * costs no event objects either. Runs must be consecutive from `fromSeq`.
   */
  readFrames?(options: { readonly fromSeq: number; readonly toSeq?: number }): AsyncIterable<FrameRun>;
}

/**
 * The part of a partition's write API checkpoints and parking lots use. An embedded
 * `Partition` answers `streamVersion` at once; a remote one asks its node (a promise).
 */
export interface StreamWriter {
  readonly name: string;
  streamVersion(streamId: string): number | Promise<number>;
  readStream(streamId: string, options?: { readonly fromVersion?: number; readonly maxCount?: number }): AsyncIterable<RecordedEvent>;
  append(request: {
    readonly streamId: string;
    readonly expectedVersion?: number | 'any' | 'no-stream' | 'exists';
    readonly events: readonly { readonly type: string; readonly data: Uint8Array }[];
  }): Promise<unknown>;
}
