/**
 * The Sluice correlation frame: the first body frame of a correlated MDP request and reply.
 *
 * MDP/0.1 replies carry no request id: a client knows which request a reply answers only by
 * sending one request at a time per service. A Sluice client pipelines, and two workers of
 * one service may answer in any order, so the client puts this frame first in the body, the
 * worker echoes it unchanged as the first frame of its reply, and the client matches replies
 * by id. Brokers never need it to route (it is plain body to them); a Sluice broker uses it
 * only to answer a correlated request it cannot serve with an immediate rejection instead of
 * silence.
 *
 * Layout, 13 bytes: `"SLC"` (0x53 0x4c 0x43), version `0x01`, kind (u8), id (u64 big-endian).
 *
 * | kind | sent by | meaning |
 * |---|---|---|
 * | 0 `message` | client, echoed by the worker | a request, or its reply |
 * | 1 `broker-rejected` | broker | followed by a status frame ("502", "503", "504") and a reason |
 * | 2 `worker-failed` | worker | the handler threw: followed by "500" and the error message |
 *
 * A body whose first frame is not exactly this shape is a plain RFC 7 body, so reference
 * clients (which know nothing of it) and Sluice clients share brokers and workers.
 */

/** Bytes of a correlation frame. */
export const CORRELATION_FRAME_BYTES = 13;
const VERSION = 0x01;

/** What a correlated body carries. */
export type CorrelationKind = 'message' | 'broker-rejected' | 'worker-failed';

const KIND_BYTES: Readonly<Record<CorrelationKind, number>> = {
  message: 0,
  'broker-rejected': 1,
  'worker-failed': 2,
};
const KINDS: readonly CorrelationKind[] = ['message', 'broker-rejected', 'worker-failed'];

/** A decoded correlation frame. */
export interface Correlation {
  readonly kind: CorrelationKind;
  readonly id: bigint;
}

/** Encodes a correlation frame. `id` must fit in 64 unsigned bits. */
export function encodeCorrelation(kind: CorrelationKind, id: bigint): Buffer {
  const frame = Buffer.allocUnsafe(CORRELATION_FRAME_BYTES);
  frame[0] = 0x53;
  frame[1] = 0x4c;
  frame[2] = 0x43;
  frame[3] = VERSION;
  frame[4] = KIND_BYTES[kind];
  frame.writeBigUInt64BE(id, 5);
  return frame;
}

/** Decodes a correlation frame, or returns `undefined` when `frame` is not one. Never throws. */
export function decodeCorrelation(frame: Uint8Array | undefined): Correlation | undefined {
  if (frame === undefined || frame.length !== CORRELATION_FRAME_BYTES) return undefined;
  if (frame[0] !== 0x53 || frame[1] !== 0x4c || frame[2] !== 0x43 || frame[3] !== VERSION) {
    return undefined;
  }
  const kind = KINDS[frame[4]];
  if (kind === undefined) return undefined;
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  return { kind, id: view.readBigUInt64BE(5) };
}

/** The same frame with another kind (broker and worker answer with the client's id). */
export function withCorrelationKind(frame: Uint8Array, kind: CorrelationKind): Buffer {
  const copy = Buffer.from(frame);
  copy[4] = KIND_BYTES[kind];
  return copy;
}
