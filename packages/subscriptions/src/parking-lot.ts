import type { StreamWriter } from './event-source.js';

/** A message a host could not process, kept with the reason instead of being skipped silently. */
export interface ParkedMessage {
  readonly subscriber: string;
  /** Partition and seq of the event that could not be processed. */
  readonly partition: string;
  readonly seq: number;
  readonly streamId: string;
  readonly eventType: string;
  readonly reason: string;
  /** What the host was doing: `handle` (the handler threw), `decode`, `send` (a command could not be delivered). */
  readonly stage: 'decode' | 'handle' | 'send';
  /** For `send`: the command that could not be delivered, so an operator can re-drive it. */
  readonly command?: unknown;
}

/** Where parked messages go. */
export interface ParkingLot {
  park(message: ParkedMessage): Promise<void>;
}

/** Keeps parked messages in memory (tests, projections rebuilt at every start). */
export function createMemoryParkingLot(): ParkingLot & { readonly parked: ParkedMessage[] } {
  const parked: ParkedMessage[] = [];
  return {
    parked,
    async park(message) {
      parked.push(message);
    },
  };
}

/** The stream parked messages of a subscriber live in. */
export function parkedStreamId(subscriber: string): string {
  return `$parked-${subscriber}`;
}

/** Parks messages durably, in a stream `$parked-<subscriber>` of the partition: an operator reads and re-drives them. */
export function createStreamParkingLot(partition: StreamWriter): ParkingLot {
  const encoder = new TextEncoder();
  return {
    async park(message) {
      await partition.append({
        streamId: parkedStreamId(message.subscriber),
        events: [{ type: '$Parked', data: encoder.encode(JSON.stringify(message)) }],
      });
    },
  };
}
