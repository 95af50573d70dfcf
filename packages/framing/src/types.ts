/** Command ids and tracing ids recorded with a commit, so duplicates are detected. */
export interface CommitHeaders {
  /** Ids of the commands that caused the commit. */
  readonly commandIds: readonly string[];
  readonly correlationId?: string | undefined;
  readonly causationId?: string | undefined;
  /**
   * Name of the reliability level the commit was written under (e.g. `"critical"`), when the
   * writer recorded one. Stored only from format version 3 on (see `layout.ts`); absent in
   * older logs and in commits written without a level.
   */
  readonly level?: string | undefined;
}

/** One decoded event frame. `payload` and `metadata` are views into the decoded bytes (zero-copy). */
export interface EventFrame {
  readonly seq: number;
  readonly epoch: number;
  /** Milliseconds since the Unix epoch, set by the writer when it wrote the frame. */
  readonly timestamp: number;
  /** First frame of its commit. */
  readonly commitFirst: boolean;
  /** Last frame of its commit. */
  readonly commitLast: boolean;
  readonly streamId: string;
  readonly streamVersion: number;
  readonly eventType: string;
  /** Present on the first frame of a commit that recorded headers. */
  readonly headers: CommitHeaders | undefined;
  readonly metadata: Uint8Array;
  readonly payload: Uint8Array;
  /** Encoded size of the frame in bytes. */
  readonly frameBytes: number;
}

/** The marker that seals a run of event frames. */
export interface CommitMarker {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly frameCount: number;
  readonly epoch: number;
  readonly timestamp: number;
  /** Format version of the marker: 2 chains batches; 1 (older logs) does not. */
  readonly formatVersion: number;
  readonly digestAlgorithm: 'sha1';
  /** The batch digest: SHA-1 of the sealed frames and (version 2) the marker up to this field. */
  readonly digest: Uint8Array;
  /** Digest of the batch before this one (20 zero bytes for a log's first); undefined in version 1. */
  readonly prevDigest: Uint8Array | undefined;
}

/** Event frames sealed by one verified marker: one or more whole commits. */
export interface SealedBatch {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly frames: readonly EventFrame[];
  readonly marker: CommitMarker;
  /** Offset of the batch's first byte, counted from the start of the decoded input. */
  readonly byteOffset: number;
  /** Bytes of the batch, marker included. */
  readonly byteLength: number;
  /**
   * The batch's exact stored bytes (frames and marker): appending them to another location
   * reproduces the log byte for byte. A view into the decoded input when the batch arrived in
   * one chunk.
   */
  readonly bytes: Uint8Array;
}

/**
 * Why decoding stopped. `end` and `zero-fill` are clean ends (the input ended after a
 * marker, or reached unwritten zero-filled space); every other reason marks an abandoned or
 * damaged tail that a reader ignores and recovery cuts off.
 */
export type StopReason =
  | 'end'
  | 'zero-fill'
  | 'torn-frame'
  | 'bad-checksum'
  | 'unsupported-version'
  | 'frame-too-large'
  | 'malformed-frame'
  | 'unsigned-commit'
  | 'bad-digest'
  | 'broken-chain'
  | 'bad-sequence'
  | 'bad-commit-grouping';

/** Where valid data ends and why. */
export interface DecodeReport {
  /** Bytes from the start of the input up to the end of the last verified marker. */
  readonly validBytes: number;
  readonly reason: StopReason;
  /** True for `end` and `zero-fill`. */
  readonly clean: boolean;
  /** Byte offset where the problem was found (equals validBytes for clean ends). */
  readonly offset: number;
  /** Human-readable explanation. */
  readonly detail: string;
  /** Seq the next sealed frame would have, when known. */
  readonly nextSeq: number | undefined;
  /** Event frames read after the last marker and not sealed (abandoned). */
  readonly unsealedFrames: number;
}
