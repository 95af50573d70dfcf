import type { RecordedEvent } from '@sluice/store';
import type { CheckpointStore } from './checkpoint-store.js';
import { decodeEvent, decodeJson, decodedEvent, reasonOf, type DecodedEvent, type PayloadDecoder } from './decoded-event.js';
import type { EventSource, Replayer } from './event-source.js';
import type { EventFilter } from './filter.js';
import { JsonRunDecoder } from './json-run.js';
import type { ParkingLot } from './parking-lot.js';
import { startSubscription, type Subscription } from './subscription.js';

/** A read model built from events. Plain TypeScript: keep the state wherever you like. */
export interface Projection {
  readonly name: string;
  readonly filter?: EventFilter;
  /** Applies one event. A throw parks the event with the reason (or stops the host, per `onError`). */
  apply(event: DecodedEvent): void | Promise<void>;
}

/** Options of {@link startProjection}. */
export interface ProjectionHostOptions {
  readonly projection: Projection;
  readonly source: EventSource;
  readonly replayer?: Replayer;
  readonly checkpoints: CheckpointStore;
  /** Where events that cannot be decoded or applied go. */
  readonly parking: ParkingLot;
  /** @default JSON */
  readonly decode?: PayloadDecoder;
  /**
   * With the default JSON decoder: most payload bytes parsed with one `JSON.parse` call (runs
   * of payloads of at most 64 bytes each, see `JsonRunDecoder`); the size of the host's scratch
   * buffer. 0 parses every payload alone.
   * @default 65536
   */
  readonly jsonRunBytesMax?: number;
  /**
   * `park`: an event that cannot be decoded or applied is parked with the reason and the
   * projection goes on; `stop`: the host stops with the error.
   * @default 'park'
   */
  readonly onError?: 'park' | 'stop';
  readonly batchSizeMax?: number;
  readonly onGap?: 'replay' | 'raise';
}

/**
 * Runs a projection on a partition: catch-up, then live, checkpointed under the projection's
 * name.
 *
 * @example
 * const balances = new Map<string, number>();
 * const host = startProjection({
 *   source: partition, checkpoints: createMemoryCheckpointStore(), parking: createMemoryParkingLot(),
 *   projection: { name: 'balances', filter: { streamPrefixes: ['account-'] },
 *     apply: (e) => { balances.set(e.streamId, (balances.get(e.streamId) ?? 0) + (e.data as { amount: number }).amount); } },
 * });
 */
export function startProjection(options: ProjectionHostOptions): Subscription {
  const { projection, source, parking } = options;
  const decode = options.decode ?? decodeJson;
  const runBytesMax = options.jsonRunBytesMax ?? 65536;
  if (!Number.isSafeInteger(runBytesMax) || runBytesMax < 0) {
    throw new RangeError(`[sluice/subscriptions] startProjection: jsonRunBytesMax must be a whole number of bytes ≥ 0 (0 parses each payload alone), got ${runBytesMax}`);
  }
  const json = options.decode === undefined && runBytesMax > 0 ? new JsonRunDecoder(runBytesMax, Math.min(64, runBytesMax - 2)) : undefined;
  const stop = options.onError === 'stop';
  const fail = async (event: RecordedEvent, stage: 'decode' | 'handle', error: unknown): Promise<void> => {
    if (stop) throw error;
    await parking.park({
      subscriber: projection.name,
      partition: source.name,
      seq: event.seq,
      streamId: event.streamId,
      eventType: event.eventType,
      reason: reasonOf(error),
      stage,
    });
  };
  return startSubscription({
    subscriber: projection.name,
    source,
    replayer: options.replayer,
    checkpoints: options.checkpoints,
    filter: projection.filter,
    batchSizeMax: options.batchSizeMax,
    onGap: options.onGap,
    handle: async (events) => {
      for (let i = 0; i < events.length; ) {
        // The default JSON decoder parses runs of small payloads with one call; a run it cannot
        // take whole (or a custom decoder) decodes event by event, each failure its own.
        const run = json?.parseRun(events, i);
        const values = run?.values;
        const start = i;
        const end = i + (run?.count ?? 1);
        for (; i < end; i++) {
          const event = events[i];
          let decoded: DecodedEvent;
          if (values !== undefined) {
            decoded = decodedEvent(source.name, event, values[i - start]);
          } else {
            try {
              decoded = decodeEvent(source.name, event, decode);
            } catch (error) {
              await fail(event, 'decode', error);
              continue;
            }
          }
          try {
            const applied = projection.apply(decoded);
            if (applied !== undefined) await applied;
          } catch (error) {
            await fail(event, 'handle', error);
          }
        }
      }
    },
  });
}
