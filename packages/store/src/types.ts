import type { CommitHeaders, EventFrame } from '@sluice/framing';
import type { CommitReliability } from './storage.js';

/** An event to append. The engine never parses `data` or `metadata`: they are the application's bytes. */
export interface EventData {
  /** Event type name, e.g. "FundsDeposited". */
  readonly type: string;
  readonly data: Uint8Array;
  readonly metadata?: Uint8Array | undefined;
}

/**
 * The version a stream must be at for the append to apply (optimistic concurrency).
 * A number is the exact version (0 = the stream has no events); `'any'` skips the check;
 * `'no-stream'` equals 0; `'exists'` requires at least one event.
 */
export type ExpectedVersion = number | 'any' | 'no-stream' | 'exists';

/** Events for one stream inside a unit of work. */
export interface StreamChange {
  readonly streamId: string;
  /** @default 'any' */
  readonly expectedVersion?: ExpectedVersion | undefined;
  readonly events: readonly EventData[];
}

/**
 * A unit of work: the changes of one or more commands, committed atomically (all or nothing),
 * recorded with the ids of the commands that caused them so a duplicate is never applied
 * twice.
 */
export interface UnitOfWork {
  readonly changes: readonly StreamChange[];
  /** Ids of the commands that caused the changes. */
  readonly commandIds?: readonly string[] | undefined;
  readonly correlationId?: string | undefined;
  readonly causationId?: string | undefined;
}

/** Append to a single stream: the common case of a unit of work. */
export interface AppendRequest extends StreamChange {
  readonly commandId?: string | undefined;
  readonly correlationId?: string | undefined;
  readonly causationId?: string | undefined;
}

/** A stream's version after a commit. */
export interface StreamCommit {
  readonly streamId: string;
  /** Version of the stream's first event in this commit. */
  readonly firstVersion: number;
  /** Version of the stream's last event in this commit (the stream's version after it). */
  readonly version: number;
}

/** What a commit did. A duplicate command gets the original commit's result with `duplicate: true`. */
export interface CommitResult {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly streams: readonly StreamCommit[];
  /** Milliseconds since the Unix epoch written into the commit's frames. */
  readonly timestamp: number;
  /** True when the command ids had been applied before: nothing new was written. */
  readonly duplicate: boolean;
  /**
   * Under which reliability level the commit was written and which locations and targets held
   * it when it was acknowledged; present when the storage reports it (mirror, ring, quorum).
   */
  readonly reliability?: CommitReliability | undefined;
}

/** An event as stored: the decoded frame. `payload` is the event's data (a view, zero-copy). */
export type RecordedEvent = EventFrame;
export type { CommitHeaders };

/**
 * An append whose events the client already encoded as framed events (`writeFramedEvents` of
 * `@sluice/framing`): one stream, its name and the commit headers (command ids, correlation,
 * causation) inside the frames, each with the CRC-32C of its body.
 */
export interface EncodedAppendRequest {
  /** One or more framed events, back to back, all of one stream; commit headers on the first. */
  readonly frames: Uint8Array;
  readonly expectedVersion?: ExpectedVersion | undefined;
}
