import { isWrongExpectedVersionError } from '@sluice/store';
import { CheckpointConflictError, CorruptCheckpointError } from './errors.js';
import type { StreamWriter } from './event-source.js';

/** Where subscribers keep the last seq they processed, per partition. */
export interface CheckpointStore {
  /** The last processed seq, or 0 when the subscriber never saved one. Throws {@link CorruptCheckpointError} on unreadable data. */
  load(subscriber: string): Promise<number>;
  /** Saves `seq` as processed. Throws {@link CheckpointConflictError} when another instance advanced it since `load`. */
  save(subscriber: string, seq: number): Promise<void>;
  /** Overwrites the checkpoint whatever it holds (operator repair of a corrupt one). */
  reset(subscriber: string, seq: number): Promise<void>;
}

/** The stream a subscriber's checkpoint lives in. */
export function checkpointStreamId(subscriber: string): string {
  return `$checkpoint-${subscriber}`;
}

const CHECKPOINT_EVENT = '$Checkpoint';
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The default checkpoint store: a stream `$checkpoint-<subscriber>` in the partition itself,
 * one small event per save, appended with the expected version this instance last saw, so
 * two instances of one subscriber cannot both advance it (the second gets a
 * {@link CheckpointConflictError}). The checkpoint commits with the partition's own
 * durability.
 *
 * @example
 * const checkpoints = createStreamCheckpointStore(partition);
 * await checkpoints.save('balances', 42);
 * await checkpoints.load('balances'); // 42
 */
export function createStreamCheckpointStore(partition: StreamWriter): CheckpointStore {
  const versions = new Map<string, number>();
  return {
    async load(subscriber) {
      const streamId = checkpointStreamId(subscriber);
      const version = await partition.streamVersion(streamId);
      versions.set(subscriber, version);
      if (version === 0) return 0;
      for await (const event of partition.readStream(streamId, { fromVersion: version, maxCount: 1 })) {
        return parseCheckpoint(subscriber, event.payload);
      }
      throw new CorruptCheckpointError(subscriber, `version ${version} of ${streamId} is unreadable`);
    },
    async save(subscriber, seq) {
      const streamId = checkpointStreamId(subscriber);
      const expected = versions.get(subscriber) ?? (await partition.streamVersion(streamId));
      try {
        await partition.append({ streamId, expectedVersion: expected, events: [{ type: CHECKPOINT_EVENT, data: encoder.encode(JSON.stringify({ seq })) }] });
      } catch (error) {
        if (isWrongExpectedVersionError(error)) throw new CheckpointConflictError(subscriber, { cause: error });
        throw error;
      }
      versions.set(subscriber, expected + 1);
    },
    async reset(subscriber, seq) {
      const streamId = checkpointStreamId(subscriber);
      await partition.append({ streamId, expectedVersion: 'any', events: [{ type: CHECKPOINT_EVENT, data: encoder.encode(JSON.stringify({ seq })) }] });
      versions.set(subscriber, await partition.streamVersion(streamId));
    },
  };
}

function parseCheckpoint(subscriber: string, payload: Uint8Array): number {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (error) {
    throw new CorruptCheckpointError(subscriber, 'not JSON', { cause: error });
  }
  const seq = (value as { seq?: unknown } | null)?.seq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new CorruptCheckpointError(subscriber, `seq is ${JSON.stringify(seq)}, not a non-negative integer`);
  }
  return seq;
}

/** Checkpoints in memory: for projections rebuilt at every start, and tests. */
export function createMemoryCheckpointStore(): CheckpointStore & { readonly saved: ReadonlyMap<string, number> } {
  const saved = new Map<string, number>();
  return {
    saved,
    async load(subscriber) {
      return saved.get(subscriber) ?? 0;
    },
    async save(subscriber, seq) {
      saved.set(subscriber, seq);
    },
    async reset(subscriber, seq) {
      saved.set(subscriber, seq);
    },
  };
}
