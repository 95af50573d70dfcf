import type { RecordedEvent } from '@sluice/store';

/** An event as projections and sagas see it: its payload decoded. */
export interface DecodedEvent<T = unknown> {
  /** The partition it was committed in. */
  readonly partition: string;
  readonly seq: number;
  readonly streamId: string;
  readonly streamVersion: number;
  readonly type: string;
  readonly data: T;
  readonly timestamp: number;
  /** Command ids of the commit, on its first frame. */
  readonly commandIds: readonly string[] | undefined;
}

/** Turns an event's payload bytes into a value. */
export type PayloadDecoder = (payload: Uint8Array, event: RecordedEvent) => unknown;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The default decoder: UTF-8 JSON. */
export const decodeJson: PayloadDecoder = (payload) => JSON.parse(utf8.decode(payload));

export function decodeEvent(partition: string, event: RecordedEvent, decode: PayloadDecoder): DecodedEvent {
  return decodedEvent(partition, event, decode(event.payload, event));
}

/** @internal `event` with its payload already decoded to `data`. */
export function decodedEvent(partition: string, event: RecordedEvent, data: unknown): DecodedEvent {
  return {
    partition,
    seq: event.seq,
    streamId: event.streamId,
    streamVersion: event.streamVersion,
    type: event.eventType,
    data,
    timestamp: event.timestamp,
    commandIds: event.headers?.commandIds,
  };
}

export function reasonOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
