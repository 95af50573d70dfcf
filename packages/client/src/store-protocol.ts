import type {
  CommitResult,
  EventData,
  ExpectedVersion,
  RecordedEvent,
  StorageErrorReason,
  StreamChange,
  StreamCommit,
  UnitOfWork,
} from '@sluice/store';
import type { CommitHeaders } from '@sluice/framing';
import { ByteReader, ByteWriter, DecodeFailure, EncodeError, utf8Bytes } from './protocol-bytes.js';

/**
 * The Sluice store protocol, version 1: the request and reply format carried inside MDP
 * bodies, after the client's correlation frame. Byte layout and rules: `PROTOCOL.md`.
 *
 * Every request and reply is exactly one frame that starts with `"SLS"` and a version byte.
 * Decoders never throw: garbage decodes to a typed error.
 */

/** The protocol version this package speaks. */
export const STORE_PROTOCOL_VERSION = 1;
/** The oldest protocol version this package still accepts. */
export const STORE_PROTOCOL_VERSION_MIN = 1;

const MAGIC_0 = 0x53; // S
const MAGIC_1 = 0x4c; // L
const MAGIC_2 = 0x53; // S
const HEADER_BYTES = 5; // magic (3), version, op or reply kind

const OP_APPEND = 1;
const OP_READ = 2;
const OP_READ_STREAM = 3;
const OP_HEAD = 4;
const OP_APPEND_MANY = 5;
const OP_SUBSCRIBE = 6;
const OP_APPEND_FRAMED = 7;

const REPLY_COMMITTED = 0x81;
const REPLY_EVENTS = 0x82;
const REPLY_HEAD = 0x83;
const REPLY_COMMITTED_MANY = 0x84;
const REPLY_ERROR = 0xee;

const EV_ANY = 0;
const EV_NO_STREAM = 1;
const EV_EXISTS = 2;
const EV_EXACT = 3;

const FLAG_CORRELATION = 1;
const FLAG_CAUSATION = 2;
/** In an event's tracing flags (replies only): the reliability level its commit recorded follows. */
const FLAG_LEVEL = 4;
const FLAG_COMMIT_FIRST = 1;
const FLAG_COMMIT_LAST = 2;
const FLAG_HEADERS = 4;

/** Append a unit of work (one or more streams, atomically) to a partition. */
export interface AppendStoreRequest {
  readonly op: 'append';
  readonly partition: string;
  readonly unit: UnitOfWork;
}

/** Read a partition's events by seq. */
export interface ReadStoreRequest {
  readonly op: 'read';
  readonly partition: string;
  /** First seq to return (1 or more). */
  readonly fromSeq: number;
  /** Last seq to return (inclusive); absent: the partition's last seq when the read starts. */
  readonly toSeq?: number | undefined;
  /** Most events to return in this page; absent or 0: as many as fit. */
  readonly maxCount?: number | undefined;
  /** Largest reply the client wants; the node caps it at its own `pageBytesMax`. */
  readonly pageBytesMax?: number | undefined;
}

/** Read one stream's events by version. */
export interface ReadStreamStoreRequest {
  readonly op: 'read-stream';
  readonly partition: string;
  readonly streamId: string;
  /** First version to return (1 or more). */
  readonly fromVersion: number;
  /** Last version to return (inclusive); absent: the stream's version when the read starts. */
  readonly toVersion?: number | undefined;
  readonly maxCount?: number | undefined;
  readonly pageBytesMax?: number | undefined;
}

/** The partition's head (last seq, epoch) and optionally one stream's version. */
export interface HeadStoreRequest {
  readonly op: 'head';
  readonly partition: string;
  readonly streamId?: string | undefined;
}

/** A decoded store protocol request. */
/**
 * Several independent units of work for one partition in one request (the client coalesces
 * concurrent appends): each is committed on its own, with its own expected versions and
 * command ids, and gets its own outcome in a `committed-many` reply, in order.
 */
export interface AppendManyStoreRequest {
  readonly op: 'append-many';
  readonly partition: string;
  readonly units: readonly UnitOfWork[];
}

/**
 * Committed events from `fromSeq`, pushed as soon as they are committed: the node answers at
 * once when events at or after `fromSeq` are committed, otherwise at the next commit, or with
 * an empty page after `waitMs` (capped by the node). Sent to the partition's subscription
 * service, `sluice.subscribe.<name>`, so waiting subscribers never hold the workers appends use.
 */
export interface SubscribeStoreRequest {
  readonly op: 'subscribe';
  readonly partition: string;
  readonly fromSeq: number;
  readonly waitMs: number;
  readonly maxCount?: number | undefined;
  readonly pageBytesMax?: number | undefined;
}

/**
 * One unit of an `append-framed` request: one stream's events, encoded once by the client as
 * framed events (`writeFramedEvents` of `@sluice/framing`: the frame format the log stores,
 * with the CRC-32C of each body); stream id and commit headers (command ids, correlation,
 * causation) are inside the frames. Make one with {@link encodeFramedUnit}.
 */
export interface FramedUnit {
  readonly expectedVersion?: ExpectedVersion | undefined;
  /** Framed events, back to back (a view; the decoder returns a view into the request). */
  readonly frames: Uint8Array;
}

/**
 * Several single-stream appends for one partition, each already framed (the fast path): the
 * node checks each body's CRC, stamps seq, epoch, timestamp and stream version, and copies the
 * frames to disk as they are. Each unit is its own commit with its own outcome, in a
 * `committed-many` reply, as for `append-many`.
 */
export interface AppendFramedStoreRequest {
  readonly op: 'append-framed';
  readonly partition: string;
  readonly units: readonly FramedUnit[];
}

export type StoreRequest =
  | AppendStoreRequest
  | AppendManyStoreRequest
  | AppendFramedStoreRequest
  | ReadStoreRequest
  | ReadStreamStoreRequest
  | HeadStoreRequest
  | SubscribeStoreRequest;

/** The outcome of one unit of an `append-many` request. */
export type UnitOutcome = { readonly ok: true; readonly result: CommitResult } | { readonly ok: false; readonly error: StoreErrorInfo };

/** A partition's position, as a head request returns it. */
export interface PartitionHead {
  readonly partition: string;
  /** Seq of the last acknowledged frame; 0 when the partition is empty. */
  readonly lastSeq: number;
  /** The fencing term of the partition's writer. */
  readonly epoch: number;
  /** False once the partition is closing or faulted. */
  readonly writable: boolean;
  /** Streams with at least one event. */
  readonly streamCount: number;
  /** The asked stream's version (0 when it has no events); absent when no stream was asked. */
  readonly streamVersion?: number | undefined;
  /**
   * What recovery dropped when the node last opened the partition (at start or after a fault);
   * absent when it dropped nothing.
   */
  readonly recovery?: HeadRecovery | undefined;
}

/** What storage recovery dropped when a partition was opened. */
export interface HeadRecovery {
  /** Whole batches' seqs cut because they were never durable (after a failed sync, or a hole in the unsynced window). */
  readonly droppedSeqs: number;
  /** Bytes of torn or unsigned tail dropped. */
  readonly droppedBytes: number;
  readonly droppedReason?: string | undefined;
}

/** One page of a read. */
export interface EventsPage {
  readonly events: RecordedEvent[];
  /** Where the next page starts: a seq (read) or a version (read-stream). */
  readonly next: number;
  /** True when the page stopped at its size limit before the end of the asked range. */
  readonly more: boolean;
  /** The partition's last seq when the page was read. */
  readonly lastSeq: number;
}

/** The error codes of the store protocol. */
export type StoreErrorCode =
  | 'malformed-request'
  | 'unsupported-version'
  | 'unknown-partition'
  | 'invalid-request'
  | 'wrong-expected-version'
  | 'command-id-conflict'
  | 'storage-error'
  | 'partition-closed'
  | 'partition-faulted'
  | 'partition-overloaded'
  | 'internal'
  | 'corrupt-frame';

interface ErrorBase {
  /** The partition the request named ("" when it could not be read). */
  readonly partition: string;
  /** What went wrong and what to do, written by the node. */
  readonly message: string;
  /** Whether the same request may succeed if sent again. */
  readonly retryable: boolean;
}

/** A typed error reply. `other` is a code from a newer protocol revision this one does not know. */
export type StoreErrorInfo =
  | (ErrorBase & {
      readonly code:
        | 'malformed-request'
        | 'unknown-partition'
        | 'invalid-request'
        | 'partition-closed'
        | 'partition-faulted'
        | 'internal';
    })
  | (ErrorBase & { readonly code: 'unsupported-version'; readonly versionMin: number; readonly versionMax: number })
  | (ErrorBase & {
      readonly code: 'wrong-expected-version';
      readonly streamId: string;
      readonly expectedVersion: ExpectedVersion;
      readonly actualVersion: number;
    })
  | (ErrorBase & { readonly code: 'command-id-conflict'; readonly commandIds: readonly string[] })
  | (ErrorBase & { readonly code: 'storage-error'; readonly reason: StorageErrorReason })
  | (ErrorBase & { readonly code: 'partition-overloaded'; readonly queueMax: number })
  /** A framed event's body did not match its CRC-32C (`event`: its index in the unit); nothing of the unit was stored. */
  | (ErrorBase & { readonly code: 'corrupt-frame'; readonly event: number })
  | (ErrorBase & { readonly code: 'other'; readonly wireCode: number });

/** A decoded store protocol reply. */
export type StoreReply =
  | { readonly kind: 'committed'; readonly result: CommitResult }
  | { readonly kind: 'committed-many'; readonly outcomes: readonly UnitOutcome[] }
  | ({ readonly kind: 'events' } & EventsPage)
  | { readonly kind: 'head'; readonly head: PartitionHead }
  | { readonly kind: 'error'; readonly error: StoreErrorInfo };

/** Result of {@link decodeStoreRequest}: a request, or the error reply to send back. */
export type DecodedStoreRequest =
  | { readonly ok: true; readonly request: StoreRequest }
  | { readonly ok: false; readonly error: StoreErrorInfo };

/** Result of {@link decodeStoreReply}: a reply, or why the frames are not one. */
export type DecodedStoreReply = { readonly ok: true; readonly reply: StoreReply } | { readonly ok: false; readonly problem: string };

const ERROR_CODES: readonly (StoreErrorCode | undefined)[] = [
  undefined,
  'malformed-request',
  'unsupported-version',
  'unknown-partition',
  'invalid-request',
  'wrong-expected-version',
  'command-id-conflict',
  'storage-error',
  'partition-closed',
  'partition-faulted',
  'partition-overloaded',
  'internal',
  'corrupt-frame',
];
const ERROR_WIRE = new Map<StoreErrorCode, number>(
  ERROR_CODES.flatMap((code, index) => (code === undefined ? [] : [[code, index] as const])),
);

const STORAGE_REASONS: ReadonlySet<string> = new Set<StorageErrorReason>([
  'Conflict',
  'Locked',
  'NotFound',
  'Unavailable',
  'Corrupt',
  'Unsupported',
  'Full',
  'Unauthorized',
  'Closed',
  'Invalid',
]);

// ---- requests ------------------------------------------------------------------------------

/**
 * Encodes a request as one frame. Throws `EncodeError` when a value cannot be carried (a
 * string over 65,535 UTF-8 bytes, a number that is not a safe non-negative integer, data
 * that is not a Uint8Array); the store client turns that into an `InvalidRequestError`.
 *
 * @example
 * const frame = encodeStoreRequest({ op: 'head', partition: 'bank-1' });
 * await client.request(partitionServiceName('bank-1'), [frame]);
 */
export function encodeStoreRequest(request: StoreRequest): Buffer {
  const w = new ByteWriter(
    request.op === 'append'
      ? estimateUnitBytes(request.unit)
      : request.op === 'append-many'
        ? estimateUnitsBytes(request.units)
        : request.op === 'append-framed'
          ? framedUnitsBytes(request.units)
          : 64,
  );
  writeHeader(w, opByte(request.op));
  w.string(request.partition);
  switch (request.op) {
    case 'append':
      writeUnit(w, request.unit);
      break;
    case 'append-many':
      if (!Array.isArray(request.units) || request.units.length === 0) throw new EncodeError('append-many needs at least one unit');
      w.u32(request.units.length);
      for (const unit of request.units) writeUnit(w, unit);
      break;
    case 'append-framed':
      if (!Array.isArray(request.units) || request.units.length === 0) throw new EncodeError('append-framed needs at least one unit');
      w.u32(request.units.length);
      for (const unit of request.units) {
        writeExpectedVersion(w, unit.expectedVersion);
        if (!(unit.frames instanceof Uint8Array) || unit.frames.length === 0) throw new EncodeError('a framed unit needs its framed events (encodeFramedUnit)');
        w.bytes(unit.frames);
      }
      break;
    case 'read':
      w.u53(request.fromSeq);
      w.u8(request.toSeq === undefined ? 0 : 1);
      if (request.toSeq !== undefined) w.u53(request.toSeq);
      w.u32(clampU32(request.maxCount));
      w.u32(clampU32(request.pageBytesMax));
      break;
    case 'read-stream':
      w.string(request.streamId);
      w.u53(request.fromVersion);
      w.u8(request.toVersion === undefined ? 0 : 1);
      if (request.toVersion !== undefined) w.u53(request.toVersion);
      w.u32(clampU32(request.maxCount));
      w.u32(clampU32(request.pageBytesMax));
      break;
    case 'head':
      w.u8(request.streamId === undefined ? 0 : 1);
      if (request.streamId !== undefined) w.string(request.streamId);
      break;
    case 'subscribe':
      w.u53(request.fromSeq);
      w.u32(clampU32(request.waitMs));
      w.u32(clampU32(request.maxCount));
      w.u32(clampU32(request.pageBytesMax));
      break;
    default:
      throw new EncodeError(`unknown operation ${JSON.stringify((request as { op?: unknown }).op)}`);
  }
  return w.finish();
}

/**
 * Decodes a request body (the frames after the correlation frame). Never throws: garbage
 * yields `{ ok: false, error }` with code `malformed-request`, a frame of another protocol
 * version `unsupported-version`; the node sends that error back as the reply.
 */
export function decodeStoreRequest(frames: readonly Uint8Array[]): DecodedStoreRequest {
  if (frames.length !== 1) {
    return malformed(`a store request is exactly one frame, got ${frames.length}`);
  }
  const frame = frames[0];
  if (!(frame instanceof Uint8Array)) return malformed('the request frame is not bytes');
  const versionProblem = checkHeader(frame, 'request');
  if (versionProblem !== undefined) return { ok: false, error: versionProblem };
  const r = new ByteReader(frame);
  let partition = '';
  try {
    r.u8('magic');
    r.u8('magic');
    r.u8('magic');
    r.u8('version');
    const op = r.u8('operation');
    if (op < OP_APPEND || op > OP_APPEND_FRAMED) {
      return malformed(`unknown operation ${op}: this node knows append (1), read (2), read-stream (3), head (4), append-many (5), subscribe (6) and append-framed (7)`);
    }
    partition = r.string('partition');
    let request: StoreRequest;
    switch (op) {
      case OP_APPEND:
        request = { op: 'append', partition, unit: readUnit(r) };
        break;
      case OP_READ: {
        const fromSeq = r.u53('fromSeq');
        const toSeq = r.u8('toSeq flag') === 0 ? undefined : r.u53('toSeq');
        request = { op: 'read', partition, fromSeq, toSeq, maxCount: orUndefined(r.u32('maxCount')), pageBytesMax: orUndefined(r.u32('pageBytesMax')) };
        break;
      }
      case OP_READ_STREAM: {
        const streamId = r.string('streamId');
        const fromVersion = r.u53('fromVersion');
        const toVersion = r.u8('toVersion flag') === 0 ? undefined : r.u53('toVersion');
        request = {
          op: 'read-stream',
          partition,
          streamId,
          fromVersion,
          toVersion,
          maxCount: orUndefined(r.u32('maxCount')),
          pageBytesMax: orUndefined(r.u32('pageBytesMax')),
        };
        break;
      }
      case OP_HEAD:
        request = { op: 'head', partition, streamId: r.u8('stream flag') === 0 ? undefined : r.string('streamId') };
        break;
      case OP_SUBSCRIBE:
        request = {
          op: 'subscribe',
          partition,
          fromSeq: r.u53('fromSeq'),
          waitMs: r.u32('waitMs'),
          maxCount: orUndefined(r.u32('maxCount')),
          pageBytesMax: orUndefined(r.u32('pageBytesMax')),
        };
        break;
      case OP_APPEND_MANY: {
        // Each unit takes at least 9 bytes (command id count 4, tracing flags 1, change count 4):
        // the count is bounded by the frame.
        const count = r.count('unit count', 9);
        if (count === 0) throw new DecodeFailure('append-many needs at least one unit');
        const units: UnitOfWork[] = [];
        for (let i = 0; i < count; i++) units.push(readUnit(r));
        request = { op: 'append-many', partition, units };
        break;
      }
      case OP_APPEND_FRAMED: {
        // Each unit takes at least 5 bytes (expected version 1, frames length 4).
        const count = r.count('unit count', 5);
        if (count === 0) throw new DecodeFailure('append-framed needs at least one unit');
        const units: FramedUnit[] = [];
        for (let i = 0; i < count; i++) {
          const expectedVersion = readExpectedVersion(r);
          // The frames themselves are checked by the partition (lengths, names, CRC): a view, no copy.
          units.push({ expectedVersion, frames: r.bytes('framed events') });
        }
        request = { op: 'append-framed', partition, units };
        break;
      }
      default:
        throw new DecodeFailure(`unknown operation ${op}`);
    }
    r.end('request');
    return { ok: true, request };
  } catch (error) {
    if (error instanceof DecodeFailure) return malformed(error.message, partition);
    return malformed(`undecodable request: ${String(error)}`, partition);
  }
}

function writeUnit(w: ByteWriter, unit: UnitOfWork): void {
  const commandIds = unit.commandIds ?? [];
  w.u32(commandIds.length);
  for (const id of commandIds) w.string(id);
  writeTracing(w, unit.correlationId, unit.causationId);
  const changes = unit.changes;
  if (!Array.isArray(changes)) throw new EncodeError('changes must be an array');
  w.u32(changes.length);
  for (const change of changes) {
    w.string(change.streamId);
    writeExpectedVersion(w, change.expectedVersion);
    const events = change.events;
    if (!Array.isArray(events)) throw new EncodeError(`stream "${change.streamId}": events must be an array`);
    w.u32(events.length);
    for (const event of events) {
      w.string(event.type);
      w.bytes(event.metadata);
      w.bytes(event.data);
    }
  }
}

function readUnit(r: ByteReader): UnitOfWork {
  const commandIdCount = r.count('command id count', 2);
  const commandIds: string[] = [];
  for (let i = 0; i < commandIdCount; i++) commandIds.push(r.string('command id'));
  const flags = r.u8('tracing flags');
  const correlationId = flags & FLAG_CORRELATION ? r.string('correlationId') : undefined;
  const causationId = flags & FLAG_CAUSATION ? r.string('causationId') : undefined;
  const changeCount = r.count('change count', 7);
  const changes: StreamChange[] = [];
  for (let c = 0; c < changeCount; c++) {
    const streamId = r.string('streamId');
    const expectedVersion = readExpectedVersion(r);
    const eventCount = r.count('event count', 10);
    const events: EventData[] = [];
    for (let i = 0; i < eventCount; i++) {
      const type = r.string('event type');
      const metadata = r.bytes('metadata');
      const data = r.bytes('data');
      events.push(metadata.length === 0 ? { type, data } : { type, data, metadata });
    }
    changes.push({ streamId, expectedVersion, events });
  }
  return {
    changes,
    commandIds: commandIds.length === 0 ? undefined : commandIds,
    correlationId,
    causationId,
  };
}

function writeTracing(w: ByteWriter, correlationId: string | undefined, causationId: string | undefined): void {
  w.u8((correlationId === undefined ? 0 : FLAG_CORRELATION) | (causationId === undefined ? 0 : FLAG_CAUSATION));
  if (correlationId !== undefined) w.string(correlationId);
  if (causationId !== undefined) w.string(causationId);
}

function writeExpectedVersion(w: ByteWriter, expected: ExpectedVersion | string | undefined): void {
  if (typeof expected === 'number') {
    w.u8(EV_EXACT);
    w.u53(expected);
  } else if (expected === undefined || expected === 'any') w.u8(EV_ANY);
  else if (expected === 'no-stream') w.u8(EV_NO_STREAM);
  else if (expected === 'exists') w.u8(EV_EXISTS);
  else throw new EncodeError(`expectedVersion ${JSON.stringify(expected)} is not a number, 'any', 'no-stream' or 'exists'`);
}

function readExpectedVersion(r: ByteReader): ExpectedVersion {
  const kind = r.u8('expectedVersion kind');
  switch (kind) {
    case EV_ANY:
      return 'any';
    case EV_NO_STREAM:
      return 'no-stream';
    case EV_EXISTS:
      return 'exists';
    case EV_EXACT:
      return r.u53('expectedVersion');
    default:
      throw new DecodeFailure(`expectedVersion kind ${kind} is not 0..3`);
  }
}

// ---- replies --------------------------------------------------------------------------------

/** Encodes a commit result (the reply to an append). */
export function encodeCommittedReply(result: CommitResult): Buffer {
  const w = new ByteWriter(64 + result.streams.length * 48);
  writeHeader(w, REPLY_COMMITTED);
  writeCommitResult(w, result);
  return w.finish();
}

function writeCommitResult(w: ByteWriter, result: CommitResult): void {
  w.u8(result.duplicate ? 1 : 0);
  w.u53(result.firstSeq);
  w.u53(result.lastSeq);
  w.u53(result.timestamp);
  w.u32(result.streams.length);
  for (const stream of result.streams) {
    w.string(stream.streamId);
    w.u53(stream.firstVersion);
    w.u53(stream.version);
  }
}

/**
 * Encodes the reply to an `append-many` request: one outcome per unit, in request order, each
 * a commit result or an error (the same bytes as a `committed` or `error` reply's body).
 */
export function encodeCommittedManyReply(outcomes: readonly UnitOutcome[]): Buffer {
  const w = new ByteWriter(16 + outcomes.length * 96);
  writeHeader(w, REPLY_COMMITTED_MANY);
  w.u32(outcomes.length);
  for (const outcome of outcomes) {
    if (outcome.ok) {
      w.u8(0);
      writeCommitResult(w, outcome.result);
    } else {
      // Length-prefixed, so a newer revision's error code (unknown details) can be skipped.
      const error = new ByteWriter(128 + outcome.error.message.length * 3);
      writeErrorBody(error, outcome.error);
      w.u8(1);
      w.bytes(error.finish());
    }
  }
  return w.finish();
}

/** Encodes the reply to a head request. */
export function encodeHeadReply(head: PartitionHead): Buffer {
  const w = new ByteWriter(64 + head.partition.length * 3);
  writeHeader(w, REPLY_HEAD);
  w.string(head.partition);
  w.u53(head.lastSeq);
  w.u32(head.epoch);
  const recovery = head.recovery;
  w.u8((head.writable ? 1 : 0) | (head.streamVersion === undefined ? 0 : 2) | (recovery === undefined ? 0 : 4));
  w.u53(head.streamCount);
  if (head.streamVersion !== undefined) w.u53(head.streamVersion);
  if (recovery !== undefined) {
    w.u53(recovery.droppedSeqs);
    w.u53(recovery.droppedBytes);
    w.string(recovery.droppedReason ?? '');
  }
  return w.finish();
}

/** Encodes an error reply. */
export function encodeErrorReply(error: StoreErrorInfo): Buffer {
  const w = new ByteWriter(128 + error.message.length * 3);
  writeHeader(w, REPLY_ERROR);
  writeErrorBody(w, error);
  return w.finish();
}

function writeErrorBody(w: ByteWriter, error: StoreErrorInfo): void {
  w.u16(error.code === 'other' ? error.wireCode : (ERROR_WIRE.get(error.code) as number));
  w.string(truncate(error.partition));
  w.string(truncate(error.message));
  w.u8(error.retryable ? 1 : 0);
  switch (error.code) {
    case 'unsupported-version':
      w.u8(error.versionMin);
      w.u8(error.versionMax);
      break;
    case 'wrong-expected-version':
      w.string(error.streamId);
      writeExpectedVersion(w, error.expectedVersion);
      w.u53(error.actualVersion);
      break;
    case 'command-id-conflict':
      w.u32(error.commandIds.length);
      for (const id of error.commandIds) w.string(id);
      break;
    case 'storage-error':
      w.string(error.reason);
      break;
    case 'partition-overloaded':
      w.u32(error.queueMax);
      break;
    case 'corrupt-frame':
      w.u32(error.event);
      break;
    default:
      break;
  }
}

/** Fixed bytes of an events page before its events. */
const PAGE_HEADER_BYTES = HEADER_BYTES + 1 + 8 + 8 + 4;
/** Fixed bytes of one event in a page (every field but the variable-length ones). */
const EVENT_FIXED_BYTES = 8 + 4 + 8 + 1 + 2 + 8 + 2 + 4 + 4 + 4;

/**
 * Builds the reply to a read, one event at a time, within a byte and event budget. The first
 * event always fits (a page must make progress, even past `bytesMax`); later ones fit while
 * the page stays within `bytesMax` bytes and `eventsMax` events.
 */
export class EventsPageBuilder {
  private readonly w: ByteWriter;
  private events = 0;

  constructor(
    readonly bytesMax: number,
    readonly eventsMax: number,
  ) {
    this.w = new ByteWriter(Math.min(bytesMax, 64 * 1024));
    writeHeader(this.w, REPLY_EVENTS);
    this.w.truncate(PAGE_HEADER_BYTES); // fields filled in by finish()
  }

  /** Events in the page so far. */
  get count(): number {
    return this.events;
  }

  /** Adds `event` when it fits; returns false (adding nothing) when the page is full. */
  tryAdd(event: RecordedEvent): boolean {
    if (this.events >= this.eventsMax) return false;
    if (this.events > 0 && this.w.length + eventBytes(event) > this.bytesMax) return false;
    const w = this.w;
    w.u53(event.seq);
    w.u32(event.epoch);
    w.u53(event.timestamp);
    const headers = event.headers;
    w.u8((event.commitFirst ? FLAG_COMMIT_FIRST : 0) | (event.commitLast ? FLAG_COMMIT_LAST : 0) | (headers ? FLAG_HEADERS : 0));
    w.string(event.streamId);
    w.u53(event.streamVersion);
    w.string(event.eventType);
    if (headers !== undefined) {
      w.u32(headers.commandIds.length);
      for (const id of headers.commandIds) w.string(id);
      const level = headers.level;
      if (level === undefined) writeTracing(w, headers.correlationId, headers.causationId);
      else {
        w.u8((headers.correlationId === undefined ? 0 : FLAG_CORRELATION) | (headers.causationId === undefined ? 0 : FLAG_CAUSATION) | FLAG_LEVEL);
        if (headers.correlationId !== undefined) w.string(headers.correlationId);
        if (headers.causationId !== undefined) w.string(headers.causationId);
        w.string(level);
      }
    }
    w.bytes(event.metadata);
    w.bytes(event.payload);
    w.u32(event.frameBytes);
    this.events += 1;
    return true;
  }

  /** Closes the page; `next` is where the following page starts. */
  finish(page: Omit<EventsPage, 'events'>): Buffer {
    const frame = this.w.finish();
    let o = HEADER_BYTES;
    frame[o++] = page.more ? 1 : 0;
    o = writeU53At(frame, o, page.next);
    o = writeU53At(frame, o, page.lastSeq);
    frame.writeUInt32LE(this.events, o);
    return frame;
  }
}

/** Encodes a whole page of events at once (tests and small replies). */
export function encodeEventsReply(page: EventsPage): Buffer {
  const builder = new EventsPageBuilder(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  for (const event of page.events) builder.tryAdd(event);
  return builder.finish(page);
}

/**
 * Decodes a reply body (the frames after the correlation frame). Never throws: anything that
 * is not a well-formed reply of a supported version yields `{ ok: false, problem }`.
 * Payloads and metadata of events are views into the frame (zero-copy).
 */
export function decodeStoreReply(frames: readonly Uint8Array[]): DecodedStoreReply {
  if (frames.length !== 1) return { ok: false, problem: `a store reply is exactly one frame, got ${frames.length}` };
  const frame = frames[0];
  if (!(frame instanceof Uint8Array)) return { ok: false, problem: 'the reply frame is not bytes' };
  const headerProblem = checkHeader(frame, 'reply');
  if (headerProblem !== undefined) return { ok: false, problem: headerProblem.message };
  const r = new ByteReader(frame.subarray(HEADER_BYTES));
  try {
    const kind = frame[HEADER_BYTES - 1];
    let reply: StoreReply;
    switch (kind) {
      case REPLY_COMMITTED:
        reply = { kind: 'committed', result: readCommitResult(r) };
        break;
      case REPLY_COMMITTED_MANY: {
        const count = r.count('outcome count', 2);
        const outcomes: UnitOutcome[] = [];
        for (let i = 0; i < count; i++) {
          const status = r.u8('outcome status');
          if (status === 0) outcomes.push({ ok: true, result: readCommitResult(r) });
          else if (status === 1) outcomes.push({ ok: false, error: readOutcomeError(r) });
          else throw new DecodeFailure(`outcome status ${status} is not 0 (committed) or 1 (error)`);
        }
        reply = { kind: 'committed-many', outcomes };
        break;
      }
      case REPLY_EVENTS:
        reply = { kind: 'events', ...readEventsPage(r) };
        break;
      case REPLY_HEAD:
        reply = { kind: 'head', head: readHead(r) };
        break;
      case REPLY_ERROR: {
        const error = readError(r);
        if (error.code === 'other') return { ok: true, reply: { kind: 'error', error } };
        reply = { kind: 'error', error };
        break;
      }
      default:
        return { ok: false, problem: `unknown reply kind 0x${kind.toString(16)}` };
    }
    r.end('reply');
    return { ok: true, reply };
  } catch (error) {
    return { ok: false, problem: error instanceof DecodeFailure ? error.message : `undecodable reply: ${String(error)}` };
  }
}

function readCommitResult(r: ByteReader): CommitResult {
  const duplicate = r.u8('duplicate flag') === 1;
  const firstSeq = r.u53('firstSeq');
  const lastSeq = r.u53('lastSeq');
  const timestamp = r.u53('timestamp');
  const count = r.count('stream count', 18);
  const streams: StreamCommit[] = [];
  for (let i = 0; i < count; i++) {
    streams.push({ streamId: r.string('streamId'), firstVersion: r.u53('firstVersion'), version: r.u53('version') });
  }
  return { firstSeq, lastSeq, streams, timestamp, duplicate };
}

function readHead(r: ByteReader): PartitionHead {
  const partition = r.string('partition');
  const lastSeq = r.u53('lastSeq');
  const epoch = r.u32('epoch');
  const flags = r.u8('head flags');
  const streamCount = r.u53('streamCount');
  const streamVersion = flags & 2 ? r.u53('streamVersion') : undefined;
  let recovery: HeadRecovery | undefined;
  if (flags & 4) {
    const droppedSeqs = r.u53('droppedSeqs');
    const droppedBytes = r.u53('droppedBytes');
    const reason = r.string('droppedReason');
    recovery = { droppedSeqs, droppedBytes, droppedReason: reason === '' ? undefined : reason };
  }
  return { partition, lastSeq, epoch, writable: (flags & 1) === 1, streamCount, streamVersion, recovery };
}

function readEventsPage(r: ByteReader): EventsPage {
  const more = r.u8('more flag') === 1;
  const next = r.u53('next');
  const lastSeq = r.u53('lastSeq');
  const count = r.count('event count', EVENT_FIXED_BYTES);
  const events: RecordedEvent[] = [];
  for (let i = 0; i < count; i++) {
    const seq = r.u53('seq');
    const epoch = r.u32('epoch');
    const timestamp = r.u53('timestamp');
    const flags = r.u8('event flags');
    const streamId = r.string('streamId');
    const streamVersionOfEvent = r.u53('streamVersion');
    const eventType = r.string('eventType');
    let headers: RecordedEvent['headers'];
    if (flags & FLAG_HEADERS) {
      const idCount = r.count('command id count', 2);
      const commandIds: string[] = [];
      for (let k = 0; k < idCount; k++) commandIds.push(r.string('command id'));
      const tracing = r.u8('tracing flags');
      if ((tracing & ~(FLAG_CORRELATION | FLAG_CAUSATION | FLAG_LEVEL)) !== 0) throw new DecodeFailure(`unknown event tracing flags ${tracing} at byte ${r.offset - 1}: upgrade @sluice/client`);
      const correlationId = tracing & FLAG_CORRELATION ? r.string('correlationId') : undefined;
      const causationId = tracing & FLAG_CAUSATION ? r.string('causationId') : undefined;
      headers = tracing & FLAG_LEVEL ? { commandIds, correlationId, causationId, level: r.string('level') } : { commandIds, correlationId, causationId };
    }
    const metadata = r.bytes('metadata');
    const payload = r.bytes('payload');
    const frameBytes = r.u32('frameBytes');
    events.push({
      seq,
      epoch,
      timestamp,
      commitFirst: (flags & FLAG_COMMIT_FIRST) !== 0,
      commitLast: (flags & FLAG_COMMIT_LAST) !== 0,
      streamId,
      streamVersion: streamVersionOfEvent,
      eventType,
      headers,
      metadata,
      payload,
      frameBytes,
    });
  }
  return { events, next, more, lastSeq };
}

function readOutcomeError(r: ByteReader): StoreErrorInfo {
  const body = new ByteReader(r.bytes('unit error'));
  const error = readError(body);
  if (error.code !== 'other') body.end('unit error');
  return error;
}

function readError(r: ByteReader): StoreErrorInfo {
  const wire = r.u16('error code');
  const partition = r.string('partition');
  const message = r.string('message');
  const retryable = r.u8('retryable flag') === 1;
  const base = { partition, message, retryable };
  const code = ERROR_CODES[wire];
  switch (code) {
    case undefined:
      // A newer revision's code: keep what every error carries, ignore its details.
      r.skipRest();
      return { ...base, code: 'other', wireCode: wire };
    case 'unsupported-version':
      return { ...base, code, versionMin: r.u8('versionMin'), versionMax: r.u8('versionMax') };
    case 'wrong-expected-version':
      return {
        ...base,
        code,
        streamId: r.string('streamId'),
        expectedVersion: readExpectedVersion(r),
        actualVersion: r.u53('actualVersion'),
      };
    case 'command-id-conflict': {
      const count = r.count('command id count', 2);
      const commandIds: string[] = [];
      for (let i = 0; i < count; i++) commandIds.push(r.string('command id'));
      return { ...base, code, commandIds };
    }
    case 'storage-error': {
      const reason = r.string('reason');
      if (!STORAGE_REASONS.has(reason)) throw new DecodeFailure(`storage error reason ${JSON.stringify(reason)} is unknown`);
      return { ...base, code, reason: reason as StorageErrorReason };
    }
    case 'partition-overloaded':
      return { ...base, code, queueMax: r.u32('queueMax') };
    case 'corrupt-frame':
      return { ...base, code, event: r.u32('corrupt event') };
    default:
      return { ...base, code };
  }
}

// ---- shared ---------------------------------------------------------------------------------

function writeHeader(w: ByteWriter, kind: number): void {
  w.u8(MAGIC_0);
  w.u8(MAGIC_1);
  w.u8(MAGIC_2);
  w.u8(STORE_PROTOCOL_VERSION);
  w.u8(kind);
}

/** Checks magic and version; returns the error to reply with, or undefined. */
function checkHeader(frame: Uint8Array, what: 'request' | 'reply'): StoreErrorInfo | undefined {
  if (frame.length < HEADER_BYTES || frame[0] !== MAGIC_0 || frame[1] !== MAGIC_1 || frame[2] !== MAGIC_2) {
    return malformedInfo(`the ${what} does not start with "SLS" and a version byte: it is not a Sluice store protocol frame`, '');
  }
  const version = frame[3];
  if (version < STORE_PROTOCOL_VERSION_MIN || version > STORE_PROTOCOL_VERSION) {
    return {
      code: 'unsupported-version',
      partition: '',
      message:
        `[sluice/client] store protocol version ${version} is not supported here (supported: ` +
        `${STORE_PROTOCOL_VERSION_MIN}..${STORE_PROTOCOL_VERSION}): upgrade the older side`,
      retryable: false,
      versionMin: STORE_PROTOCOL_VERSION_MIN,
      versionMax: STORE_PROTOCOL_VERSION,
    };
  }
  return undefined;
}

function malformedInfo(problem: string, partition: string): StoreErrorInfo {
  return {
    code: 'malformed-request',
    partition,
    message: `[sluice/client] malformed store request: ${problem}; send requests encoded by encodeStoreRequest`,
    retryable: false,
  };
}

function malformed(problem: string, partition = ''): DecodedStoreRequest {
  return { ok: false, error: malformedInfo(problem, partition) };
}

function opByte(op: StoreRequest['op']): number {
  switch (op) {
    case 'append':
      return OP_APPEND;
    case 'read':
      return OP_READ;
    case 'read-stream':
      return OP_READ_STREAM;
    case 'head':
      return OP_HEAD;
    case 'append-many':
      return OP_APPEND_MANY;
    case 'subscribe':
      return OP_SUBSCRIBE;
    case 'append-framed':
      return OP_APPEND_FRAMED;
    default:
      throw new EncodeError(`unknown operation ${JSON.stringify(op)}`);
  }
}

function clampU32(value: number | undefined): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0) throw new EncodeError(`${value} is not a non-negative integer`);
  return Math.min(value, 0xffff_ffff);
}

function orUndefined(value: number): number | undefined {
  return value === 0 ? undefined : value;
}

/** Strings in error replies are capped so an error can always be encoded. */
function truncate(text: string): string {
  return text.length > 16_000 ? `${text.slice(0, 16_000)}…` : text;
}

function writeU53At(b: Buffer, o: number, value: number): number {
  const low = value % 0x1_0000_0000;
  b.writeUInt32LE(low, o);
  b.writeUInt32LE((value - low) / 0x1_0000_0000, o + 4);
  return o + 8;
}

/** Exact encoded size of one event in a page. */
function eventBytes(event: RecordedEvent): number {
  let size = EVENT_FIXED_BYTES + utf8Bytes(event.streamId) + utf8Bytes(event.eventType) + event.metadata.length + event.payload.length;
  const headers = event.headers;
  if (headers !== undefined) {
    size += 4 + 1;
    for (const id of headers.commandIds) size += 2 + utf8Bytes(id);
    if (headers.correlationId !== undefined) size += 2 + utf8Bytes(headers.correlationId);
    if (headers.causationId !== undefined) size += 2 + utf8Bytes(headers.causationId);
    if (headers.level !== undefined) size += 2 + utf8Bytes(headers.level);
  }
  return size;
}

/** A first guess at an append's size, so the writer rarely grows. */
function estimateUnitsBytes(units: readonly UnitOfWork[]): number {
  let size = 16;
  if (Array.isArray(units)) for (const unit of units) size += estimateUnitBytes(unit);
  return size;
}

function framedUnitsBytes(units: readonly FramedUnit[]): number {
  let size = 16;
  if (Array.isArray(units)) for (const unit of units) size += 16 + (unit?.frames?.length ?? 0);
  return size;
}

/**
 * Encodes a single-stream unit of work once, as the framed events the node copies to disk
 * (the `append-framed` fast path): the client's CRC-32C of each event travels with it. Throws
 * `EncodeError` for a unit of several streams (send it with `append`/`append-many`) or one
 * whose names or events cannot be framed.
 *
 * @example
 * const unit = encodeFramedUnit({ changes: [{ streamId: 'acct-1', expectedVersion: 0, events }], commandIds: ['c1'] });
 * const frame = encodeStoreRequest({ op: 'append-framed', partition: 'bank-1', units: [unit] });
 */
export function encodeFramedUnit(unit: UnitOfWork): FramedUnit {
  const { change, headers } = framable(unit);
  const w = new ByteWriter(estimateUnitBytes(unit) + 64 * change.events.length);
  w.framedEvents(change.streamId, change.events, headers);
  return { expectedVersion: change.expectedVersion, frames: w.finish().subarray(4) };
}

/**
 * Encodes an `append-framed` request straight from single-stream units of work: each unit's
 * events are framed once, directly into the request (what the store client sends). Throws
 * `EncodeError` like {@link encodeFramedUnit}.
 */
export function encodeAppendFramedRequest(partition: string, units: readonly UnitOfWork[]): Buffer {
  if (!Array.isArray(units) || units.length === 0) throw new EncodeError('append-framed needs at least one unit');
  const w = new ByteWriter(estimateUnitsBytes(units) + 64 * units.length);
  writeHeader(w, OP_APPEND_FRAMED);
  w.string(partition);
  w.u32(units.length);
  for (const unit of units) {
    const { change, headers } = framable(unit);
    writeExpectedVersion(w, change.expectedVersion);
    w.framedEvents(change.streamId, change.events, headers);
  }
  return w.finish();
}

/** The one change and the commit headers of a unit that can be framed, or `EncodeError`. */
function framable(unit: UnitOfWork): { change: StreamChange; headers: CommitHeaders | undefined } {
  const changes = unit?.changes;
  if (!Array.isArray(changes) || changes.length !== 1) throw new EncodeError('a framed unit is one stream: send a unit of several streams with append');
  const change = changes[0];
  const events = change?.events;
  if (typeof change?.streamId !== 'string' || change.streamId.length === 0) throw new EncodeError('streamId must be a non-empty string');
  if (!Array.isArray(events) || events.length === 0) throw new EncodeError(`stream "${change.streamId}": at least one event is needed`);
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (typeof e?.type !== 'string' || e.type.length === 0) throw new EncodeError(`stream "${change.streamId}" event ${i}: type must be a non-empty string`);
    if (!(e.data instanceof Uint8Array)) throw new EncodeError(`stream "${change.streamId}" event ${i}: data must be a Uint8Array (serialize it first)`);
    if (e.metadata !== undefined && !(e.metadata instanceof Uint8Array)) throw new EncodeError(`stream "${change.streamId}" event ${i}: metadata must be a Uint8Array`);
  }
  const commandIds = unit.commandIds ?? [];
  const headers: CommitHeaders | undefined =
    commandIds.length > 0 || unit.correlationId !== undefined || unit.causationId !== undefined
      ? { commandIds, correlationId: unit.correlationId, causationId: unit.causationId }
      : undefined;
  return { change, headers };
}

/** Bytes a unit takes in a request, roughly (the coalescing client keeps requests under a limit with it). */
export function estimateUnitBytes(unit: UnitOfWork): number {
  let size = 64;
  const changes = Array.isArray(unit?.changes) ? unit.changes : [];
  for (const change of changes) {
    size += 16 + (change?.streamId?.length ?? 0) * 3;
    const events = Array.isArray(change?.events) ? change.events : [];
    for (const event of events) {
      size += 12 + (event?.type?.length ?? 0) * 3 + (event?.data?.length ?? 0) + (event?.metadata?.length ?? 0);
    }
  }
  return size;
}
