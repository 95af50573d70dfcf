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

/** What {@link redriveParked} did. */
export interface RedriveReport {
  /** Parked `send` messages delivered now (or recognized as already applied by their target). */
  readonly delivered: number;
  /** Still undeliverable, with the reason. */
  readonly failed: ReadonlyArray<{ readonly seq: number; readonly reason: string }>;
  /** Parked for another reason (decode, handle): they need a fix in code or data, not a resend. */
  readonly skipped: number;
}

/**
 * Sends the commands a saga host parked (stage `send`) again, under their original ids: a
 * target that applied one meanwhile answers with the original outcome, so re-driving is safe
 * to repeat. Run it once the target partition is back.
 *
 * @example
 * const report = await redriveParked({ partition, subscriber: 'transfers', sender: router });
 */
export async function redriveParked(options: {
  readonly partition: StreamWriter;
  readonly subscriber: string;
  readonly sender: { send(message: never): Promise<unknown> };
}): Promise<RedriveReport> {
  const decoder = new TextDecoder();
  let delivered = 0;
  let skipped = 0;
  const failed: Array<{ seq: number; reason: string }> = [];
  for await (const event of options.partition.readStream(parkedStreamId(options.subscriber))) {
    const parked = JSON.parse(decoder.decode(event.payload)) as ParkedMessage;
    if (parked.stage !== 'send' || parked.command === undefined) {
      skipped++;
      continue;
    }
    try {
      await options.sender.send(parked.command as never);
      delivered++;
    } catch (error) {
      failed.push({ seq: parked.seq, reason: error instanceof Error ? error.message : String(error) });
    }
  }
  return { delivered, failed, skipped };
}
