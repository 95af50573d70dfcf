/**
 * MDP/0.1 (ZeroMQ RFC 7/MDP) and MMI (RFC 8/MMI): constants, frame builders and parsers.
 *
 * Every parser takes frames exactly as a socket delivers them and never throws: it returns
 * `{ ok: true, value }` or `{ ok: false, reason }`. Builders return the frames to hand to
 * `socket.send` (a ROUTER socket additionally needs the peer's routing id in front).
 *
 * Wire formats, frame 0 first (RFC 7):
 *
 * | message | frames |
 * |---|---|
 * | client REQUEST / REPLY | `""`, `"MDPC01"`, service, body 1+ |
 * | worker READY | `""`, `"MDPW01"`, `0x01`, service |
 * | worker REQUEST | `""`, `"MDPW01"`, `0x02`, client address, `""`, body 1+ |
 * | worker REPLY | `""`, `"MDPW01"`, `0x03`, client address, `""`, body 1+ |
 * | worker HEARTBEAT | `""`, `"MDPW01"`, `0x04` |
 * | worker DISCONNECT | `""`, `"MDPW01"`, `0x05` |
 *
 * The opt-in credit extension (Sluice, see PROTOCOL.md "Credit extension"): a worker asks for
 * several requests in flight with two extra frames on READY, `"SLUICE.CREDIT/1"` and the credit
 * as decimal ASCII (a reference broker reads the service frame and ignores the rest); a broker
 * that grants it answers with a HEARTBEAT carrying the same two frames (the credit granted).
 * From then on, on that connection only, every REQUEST and REPLY body starts with a 4-byte
 * request tag the broker chose, so replies are matched to requests whatever their order.
 *
 * The batch extension, on top of credit (PROTOCOL: README "Batch extension"): a worker that
 * asks for credit may also ask to exchange several requests and replies per message, with two
 * more READY frames, `"SLUICE.BATCH/1"` and the most requests per message; the grant answers
 * with the same two frames (the size granted). On such a connection either side may send a
 * BATCH (command `0x06`): `""`, `"MDPW01"`, `0x06`, then per request (broker → worker) or
 * reply (worker → broker) a 6-byte head (tag u32 BE, body frame count u16 BE), the client
 * address, and the body frames. Plain tagged REQUEST and REPLY stay valid there.
 */

/** Protocol header of MDP/Client 0.1. */
export const MDPC01: Buffer = Buffer.from('MDPC01', 'latin1');
/** Protocol header of MDP/Worker 0.1. */
export const MDPW01: Buffer = Buffer.from('MDPW01', 'latin1');

/** MDP/Worker command bytes. */
export const MDPW_READY = 0x01;
export const MDPW_REQUEST = 0x02;
export const MDPW_REPLY = 0x03;
export const MDPW_HEARTBEAT = 0x04;
export const MDPW_DISCONNECT = 0x05;
/** Batch extension: several tagged REQUESTs (broker → worker) or REPLYs (worker → broker). */
export const MDPW_BATCH = 0x06;

/** Services in this namespace are handled by the broker itself (RFC 8/MMI). */
export const MMI_PREFIX = 'mmi.';
/** The one MMI service every MMI broker implements. */
export const MMI_SERVICE = 'mmi.service';
/** MMI status codes. */
export const MMI_FOUND = '200';
export const MMI_NOT_FOUND = '404';
export const MMI_NOT_IMPLEMENTED = '501';

/** Longest service name or client address accepted (ZeroMQ routing ids are 1-255 bytes). */
export const NAME_BYTES_MAX = 255;
/** Default limit on the number of frames of one message. */
export const MESSAGE_FRAMES_MAX = 1024;

/** Names the credit extension in READY and in the broker's granting HEARTBEAT. */
export const CREDIT_EXTENSION: Buffer = Buffer.from('SLUICE.CREDIT/1', 'latin1');
/** Largest credit a worker may ask for. */
export const CREDIT_MAX = 65_535;
/** Bytes of the request tag that starts every body on a credit connection. */
export const REQUEST_TAG_BYTES = 4;
/** Names the batch extension in READY and in the broker's granting HEARTBEAT. */
export const BATCH_EXTENSION: Buffer = Buffer.from('SLUICE.BATCH/1', 'latin1');
/** Largest batch (requests or replies per message) a worker may ask for. */
export const BATCH_MAX = 1024;
/** Bytes of the head of each request or reply in a BATCH: tag (u32 BE), body frame count (u16 BE). */
export const BATCH_HEAD_BYTES = 6;

const EMPTY = Buffer.alloc(0);
const COMMAND_FRAMES: readonly Buffer[] = [0, 1, 2, 3, 4, 5, 6].map((byte) => Buffer.from([byte]));

/** Why a message was not valid MDP. */
export type MalformedReason =
  /** Fewer frames than the smallest message of its protocol. */
  | 'too-few-frames'
  /** More frames than the configured limit. */
  | 'too-many-frames'
  /** Frame 0 is not the empty delimiter (or, on a ROUTER, the routing id is missing). */
  | 'missing-delimiter'
  /** Frame 1 is neither "MDPC01" nor "MDPW01". */
  | 'unknown-protocol'
  /** Empty, longer than 255 bytes, or containing control characters. */
  | 'invalid-service-name'
  /** A client request without a single body frame (RFC 7 asks for 4 or more frames). */
  | 'missing-body'
  /** The worker command frame is not exactly one byte. */
  | 'invalid-command-frame'
  /** A worker command byte outside 0x01-0x06. */
  | 'unknown-command'
  /** READY, HEARTBEAT or DISCONNECT with frames beyond the RFC's. */
  | 'unexpected-frames'
  /** A worker REQUEST or REPLY without "one client address frame followed by an empty frame". */
  | 'missing-envelope'
  /** A BATCH whose heads, client addresses or body frame counts do not add up. */
  | 'malformed-batch';

/** Every {@link MalformedReason}, for counters. */
export const MALFORMED_REASONS: readonly MalformedReason[] = [
  'too-few-frames',
  'too-many-frames',
  'missing-delimiter',
  'unknown-protocol',
  'invalid-service-name',
  'missing-body',
  'invalid-command-frame',
  'unknown-command',
  'unexpected-frames',
  'missing-envelope',
  'malformed-batch',
];

/** Result of a parser: a value, or why there is none. */
export type ParseResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: MalformedReason };

/** An MDP/Client REQUEST or REPLY (they share one format). */
export interface ClientMessage {
  readonly service: Buffer;
  readonly body: readonly Buffer[];
}

/** An MDP/Worker command. */
export type WorkerMessage =
  | {
      readonly command: 'ready';
      readonly service: Buffer;
      /** Requests in flight the worker asks for (credit extension); absent for RFC 7 workers. */
      readonly credit?: number;
      /** Most requests per message the worker asks for (batch extension, with credit only). */
      readonly batch?: number;
    }
  | { readonly command: 'request'; readonly client: Buffer; readonly body: readonly Buffer[] }
  | { readonly command: 'reply'; readonly client: Buffer; readonly body: readonly Buffer[] }
  | { readonly command: 'batch'; readonly items: readonly BatchItem[] }
  | {
      readonly command: 'heartbeat';
      /** Credit granted by the broker (credit extension); absent on plain heartbeats. */
      readonly credit?: number;
      /** Batch size granted with the credit (batch extension). */
      readonly batch?: number;
    }
  | { readonly command: 'disconnect' };

/** One request or reply of a BATCH: its tag, its client's address and its body (tag not included). */
export interface BatchItem {
  readonly tag: number;
  readonly client: Buffer;
  readonly body: readonly Buffer[];
}

/** A message received on the broker's ROUTER socket, routing id split off. */
export type RouterMessage =
  | { readonly protocol: 'client'; readonly sender: Buffer; readonly message: ClientMessage }
  | { readonly protocol: 'worker'; readonly sender: Buffer; readonly message: WorkerMessage };

/** Parse options. */
export interface ParseOptions {
  /** @default 1024 */
  readonly framesMax?: number;
}

function fail(reason: MalformedReason): { readonly ok: false; readonly reason: MalformedReason } {
  return { ok: false, reason };
}

/** True when `frame` is a usable service name: 1-255 bytes, no ASCII control characters. */
export function isValidServiceName(frame: Uint8Array): boolean {
  if (frame.length === 0 || frame.length > NAME_BYTES_MAX) return false;
  for (const byte of frame) if (byte < 0x20 || byte === 0x7f) return false;
  return true;
}

function isValidAddress(frame: Uint8Array): boolean {
  return frame.length > 0 && frame.length <= NAME_BYTES_MAX;
}

/** True when the service name is in the MMI namespace ("mmi." prefix). */
export function isMmiService(service: Uint8Array): boolean {
  return (
    service.length >= 4 &&
    service[0] === 0x6d &&
    service[1] === 0x6d &&
    service[2] === 0x69 &&
    service[3] === 0x2e
  );
}

function frameCount(frames: readonly Buffer[], options: ParseOptions | undefined): MalformedReason | undefined {
  if (frames.length > (options?.framesMax ?? MESSAGE_FRAMES_MAX)) return 'too-many-frames';
  return undefined;
}

/**
 * Parses an MDP/Client message: `""`, `"MDPC01"`, service, body 1+ (what a client sends and
 * what it receives back, without any routing id).
 */
export function parseClientMessage(
  frames: readonly Buffer[],
  options?: ParseOptions,
): ParseResult<ClientMessage> {
  const tooMany = frameCount(frames, options);
  if (tooMany) return fail(tooMany);
  if (frames.length < 3) return fail('too-few-frames');
  if (frames[0].length !== 0) return fail('missing-delimiter');
  if (!frames[1].equals(MDPC01)) return fail('unknown-protocol');
  return parseClientTail(frames, 2);
}

function parseClientTail(frames: readonly Buffer[], at: number): ParseResult<ClientMessage> {
  const service = frames[at];
  if (!isValidServiceName(service)) return fail('invalid-service-name');
  if (frames.length < at + 2) return fail('missing-body');
  return { ok: true, value: { service, body: frames.slice(at + 1) } };
}

/** Parses an MDP/Worker message: `""`, `"MDPW01"`, command, ... (without any routing id). */
export function parseWorkerMessage(
  frames: readonly Buffer[],
  options?: ParseOptions,
): ParseResult<WorkerMessage> {
  const tooMany = frameCount(frames, options);
  if (tooMany) return fail(tooMany);
  if (frames.length < 3) return fail('too-few-frames');
  if (frames[0].length !== 0) return fail('missing-delimiter');
  if (!frames[1].equals(MDPW01)) return fail('unknown-protocol');
  return parseWorkerTail(frames, 2);
}

function parseWorkerTail(frames: readonly Buffer[], at: number): ParseResult<WorkerMessage> {
  const commandFrame = frames[at];
  if (commandFrame.length !== 1) return fail('invalid-command-frame');
  const rest = frames.length - at - 1;
  switch (commandFrame[0]) {
    case MDPW_READY: {
      if (rest < 1) return fail('too-few-frames');
      let credit: number | undefined;
      let batch: number | undefined;
      if (rest > 1) {
        credit = rest === 3 || rest === 5 ? parseCredit(frames[at + 2], frames[at + 3]) : undefined;
        if (credit === undefined) return fail('unexpected-frames');
        if (rest === 5) {
          batch = parseBatch(frames[at + 4], frames[at + 5]);
          if (batch === undefined) return fail('unexpected-frames');
        }
      }
      const service = frames[at + 1];
      if (!isValidServiceName(service)) return fail('invalid-service-name');
      if (credit === undefined) return { ok: true, value: { command: 'ready', service } };
      return { ok: true, value: batch === undefined ? { command: 'ready', service, credit } : { command: 'ready', service, credit, batch } };
    }
    case MDPW_REQUEST:
    case MDPW_REPLY: {
      // Precisely one client address frame, then an empty frame, then at least one body frame.
      if (rest < 2) return fail('missing-envelope');
      const client = frames[at + 1];
      if (!isValidAddress(client) || frames[at + 2].length !== 0) return fail('missing-envelope');
      if (rest < 3) return fail('missing-body');
      const body = frames.slice(at + 3);
      const command = commandFrame[0] === MDPW_REQUEST ? 'request' : 'reply';
      return { ok: true, value: { command, client, body } };
    }
    case MDPW_HEARTBEAT: {
      if (rest === 0) return { ok: true, value: HEARTBEAT };
      const credit = rest === 2 || rest === 4 ? parseCredit(frames[at + 1], frames[at + 2]) : undefined;
      if (credit === undefined) return fail('unexpected-frames');
      if (rest === 2) return { ok: true, value: { command: 'heartbeat', credit } };
      const batch = parseBatch(frames[at + 3], frames[at + 4]);
      if (batch === undefined) return fail('unexpected-frames');
      return { ok: true, value: { command: 'heartbeat', credit, batch } };
    }
    case MDPW_BATCH:
      return parseBatchItems(frames, at + 1);
    case MDPW_DISCONNECT:
      if (rest > 0) return fail('unexpected-frames');
      return { ok: true, value: { command: 'disconnect' } };
    default:
      return fail('unknown-command');
  }
}

const HEARTBEAT: WorkerMessage = { command: 'heartbeat' };

/** The credit of the extension's two frames, or `undefined` when they are not that. */
function parseCredit(name: Buffer, value: Buffer): number | undefined {
  if (!name.equals(CREDIT_EXTENSION)) return undefined;
  const credit = parseDecimal(value);
  return credit !== undefined && credit >= 1 && credit <= CREDIT_MAX ? credit : undefined;
}

/** The batch size of the batch extension's two frames, or `undefined` when they are not that. */
function parseBatch(name: Buffer, value: Buffer): number | undefined {
  if (!name.equals(BATCH_EXTENSION)) return undefined;
  const batch = parseDecimal(value);
  return batch !== undefined && batch >= 1 && batch <= BATCH_MAX ? batch : undefined;
}

function parseDecimal(value: Buffer): number | undefined {
  if (value.length === 0 || value.length > 5) return undefined;
  let n = 0;
  for (const byte of value) {
    if (byte < 0x30 || byte > 0x39) return undefined;
    n = n * 10 + (byte - 0x30);
  }
  return n;
}

/** The requests or replies of a BATCH from `at`: head, client address, body frames, repeated. */
function parseBatchItems(frames: readonly Buffer[], at: number): ParseResult<WorkerMessage> {
  if (at >= frames.length) return fail('malformed-batch');
  const items: BatchItem[] = [];
  let i = at;
  while (i < frames.length) {
    const head = frames[i];
    if (head.length !== BATCH_HEAD_BYTES || i + 1 >= frames.length) return fail('malformed-batch');
    const count = head.readUInt16BE(4);
    const client = frames[i + 1];
    const end = i + 2 + count;
    if (count === 0 || end > frames.length || !isValidAddress(client)) return fail('malformed-batch');
    items.push({ tag: head.readUInt32BE(0), client, body: frames.slice(i + 2, end) });
    i = end;
  }
  return { ok: true, value: { command: 'batch', items } };
}

/**
 * Appends one request or reply to a BATCH being built (`frames` starts with the BATCH's own
 * frames, {@link workerBatchFrames}): head, client address, body frames.
 */
export function pushBatchItem(frames: Buffer[], tag: number, client: Buffer, body: readonly Buffer[], from = 0): void {
  const head = Buffer.allocUnsafe(BATCH_HEAD_BYTES);
  head.writeUInt32BE(tag, 0);
  head.writeUInt16BE(body.length - from, 4);
  frames.push(head, client);
  for (let i = from; i < body.length; i += 1) frames.push(body[i]);
}

/**
 * The start of a BATCH (items follow, {@link pushBatchItem}): with the worker's routing id when
 * the broker's ROUTER sends it, without from the worker's DEALER.
 */
export function workerBatchFrames(worker?: Buffer): Buffer[] {
  return worker === undefined ? [EMPTY, MDPW01, COMMAND_FRAMES[MDPW_BATCH]] : [worker, EMPTY, MDPW01, COMMAND_FRAMES[MDPW_BATCH]];
}

/** Why a ROUTER message could not be parsed, with its sender when there was one. */
export interface RouterParseFailure {
  readonly ok: false;
  readonly reason: MalformedReason;
  /** The routing id, when the message had one. */
  readonly sender: Buffer | undefined;
  /** The protocol named by the header, when it named a known one. */
  readonly protocol: 'client' | 'worker' | undefined;
}

/**
 * Parses a message as received by the broker's ROUTER socket: routing id, then a client or
 * worker message. Never throws.
 */
export function parseRouterMessage(
  frames: readonly Buffer[],
  options?: ParseOptions,
): { readonly ok: true; readonly value: RouterMessage } | RouterParseFailure {
  // The broker's hot path: no closures, and the header compared byte by byte (Buffer#equals
  // is a native call).
  const sender = frames.length > 0 && frames[0].length > 0 ? frames[0] : undefined;
  const framesMax = options?.framesMax ?? MESSAGE_FRAMES_MAX;
  if (frames.length > framesMax + 1) return routerFailure('too-many-frames', sender, undefined);
  if (sender === undefined) return routerFailure('missing-delimiter', sender, undefined);
  if (frames.length < 4) return routerFailure('too-few-frames', sender, undefined);
  if (frames[1].length !== 0) return routerFailure('missing-delimiter', sender, undefined);
  const header = frames[2];
  const kind = headerKind(header);
  if (kind === 'client') {
    const parsed = parseClientTail(frames, 3);
    if (!parsed.ok) return routerFailure(parsed.reason, sender, 'client');
    return { ok: true, value: { protocol: 'client', sender, message: parsed.value } };
  }
  if (kind === 'worker') {
    const parsed = parseWorkerTail(frames, 3);
    if (!parsed.ok) return routerFailure(parsed.reason, sender, 'worker');
    return { ok: true, value: { protocol: 'worker', sender, message: parsed.value } };
  }
  return routerFailure('unknown-protocol', sender, undefined);
}

function routerFailure(reason: MalformedReason, sender: Buffer | undefined, protocol: 'client' | 'worker' | undefined): RouterParseFailure {
  return { ok: false, reason, sender, protocol };
}

/** "MDPC01" → client, "MDPW01" → worker. */
function headerKind(header: Buffer): 'client' | 'worker' | undefined {
  if (header.length !== 6) return undefined;
  // "MDP" ... "01"
  if (header[0] !== 0x4d || header[1] !== 0x44 || header[2] !== 0x50 || header[4] !== 0x30 || header[5] !== 0x31) return undefined;
  if (header[3] === 0x43) return 'client';
  if (header[3] === 0x57) return 'worker';
  return undefined;
}

function toFrame(value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/** Client REQUEST as sent on a DEALER: `""`, `"MDPC01"`, service, body... */
export function clientRequestFrames(service: Buffer | string, body: readonly Buffer[]): Buffer[] {
  return [EMPTY, MDPC01, toFrame(service), ...body];
}

/** Client REPLY as the broker's ROUTER sends it: client address, `""`, `"MDPC01"`, service, body... */
export function clientReplyFrames(client: Buffer, service: Buffer, body: readonly Buffer[], from = 0): Buffer[] {
  const frames = [client, EMPTY, MDPC01, service];
  for (let i = from; i < body.length; i += 1) frames.push(body[i]);
  return frames;
}

/**
 * Worker READY as sent on the worker's DEALER; with `credit`, the credit extension's frames
 * follow the service (a reference broker ignores them).
 */
export function workerReadyFrames(service: Buffer | string, credit?: number, batch?: number): Buffer[] {
  const frames = [EMPTY, MDPW01, COMMAND_FRAMES[MDPW_READY], toFrame(service)];
  if (credit !== undefined) frames.push(CREDIT_EXTENSION, Buffer.from(String(credit), 'latin1'));
  if (credit !== undefined && batch !== undefined) frames.push(BATCH_EXTENSION, Buffer.from(String(batch), 'latin1'));
  return frames;
}

/** The broker's HEARTBEAT granting the credit extension, as its ROUTER sends it. */
export function workerCreditGrantFrames(worker: Buffer, credit: number, batch?: number): Buffer[] {
  const frames = [worker, EMPTY, MDPW01, COMMAND_FRAMES[MDPW_HEARTBEAT], CREDIT_EXTENSION, Buffer.from(String(credit), 'latin1')];
  if (batch !== undefined) frames.push(BATCH_EXTENSION, Buffer.from(String(batch), 'latin1'));
  return frames;
}

/**
 * Worker REQUEST as the broker's ROUTER sends it (routing id of the worker first); with
 * `tag` (a credit connection) the request tag goes first in the body.
 */
export function workerRequestFrames(worker: Buffer, client: Buffer, body: readonly Buffer[], tag?: Buffer): Buffer[] {
  const frames = [worker, EMPTY, MDPW01, COMMAND_FRAMES[MDPW_REQUEST], client, EMPTY];
  if (tag !== undefined) frames.push(tag);
  for (let i = 0; i < body.length; i += 1) frames.push(body[i]);
  return frames;
}

/** Worker REPLY as sent on the worker's DEALER. */
export function workerReplyFrames(client: Buffer, body: readonly Buffer[]): Buffer[] {
  return [EMPTY, MDPW01, COMMAND_FRAMES[MDPW_REPLY], client, EMPTY, ...body];
}

/** Worker HEARTBEAT; pass the worker's routing id when sending from the broker's ROUTER. */
export function workerHeartbeatFrames(worker?: Buffer): Buffer[] {
  const frames = [EMPTY, MDPW01, COMMAND_FRAMES[MDPW_HEARTBEAT]];
  return worker ? [worker, ...frames] : frames;
}

/** Worker DISCONNECT; pass the worker's routing id when sending from the broker's ROUTER. */
export function workerDisconnectFrames(worker?: Buffer): Buffer[] {
  const frames = [EMPTY, MDPW01, COMMAND_FRAMES[MDPW_DISCONNECT]];
  return worker ? [worker, ...frames] : frames;
}
