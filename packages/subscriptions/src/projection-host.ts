import {
  EVENT_HEADER_BYTES,
  EVENT_HEADERS_BYTES_AT,
  EVENT_METADATA_BYTES_AT,
  EVENT_PAYLOAD_BYTES_AT,
  EVENT_STREAM_ID_BYTES_AT,
  EVENT_STREAM_VERSION_AT,
  EVENT_TIMESTAMP_AT,
  EVENT_TYPE_BYTES_AT,
  decodeEventFrameAt,
  readU16,
  readU32,
  readU53,
} from '@sluice/framing';
import type { RecordedEvent } from '@sluice/store';
import type { CheckpointStore } from './checkpoint-store.js';
import { decodeEvent, decodeJson, decodedEvent, reasonOf, type DecodedEvent, type PayloadDecoder } from './decoded-event.js';
import type { EventSource, Replayer } from './event-source.js';
import { compileFilter, type EventFilter } from './filter.js';
import { JsonRunDecoder } from './json-run.js';
import type { ParkingLot } from './parking-lot.js';
import { NameCache } from './name-cache.js';
import { startSubscription, type FrameSpan, type Subscription } from './subscription.js';

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
  const fail = async (event: Pick<RecordedEvent, 'seq' | 'streamId' | 'eventType'>, stage: 'decode' | 'handle', error: unknown): Promise<void> => {
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
    // With the JSON run decoder, batches come as the source's sealed bytes when it has them: no
    // event object nor payload view is built, only the decoded events handed to the projection.
    handleSealed: json === undefined ? undefined : sealedHandler(source.name, projection, json, fail),
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

/** Reused per batch: where each matching frame's fields are (frame offset, payload range). */
interface FrameTable {
  seqs: number[];
  frameAt: number[];
  payloadAt: number[];
  payloadBytes: number[];
  streamIds: string[];
  types: string[];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The projection host's `handleSealed`: walks each span's frames (checked by the source), reads
 * the fields a {@link DecodedEvent} needs straight from the bytes, filters, parses the matching
 * payloads in JSON runs and applies them in seq order. Returns the events delivered.
 */
function sealedHandler(
  partition: string,
  projection: Projection,
  json: JsonRunDecoder,
  fail: (event: Pick<RecordedEvent, 'seq' | 'streamId' | 'eventType'>, stage: 'decode' | 'handle', error: unknown) => Promise<void>,
): (spans: readonly FrameSpan[]) => Promise<number> {
  const matches = compileFilter(projection.filter);
  const names = new NameCache();
  const table: FrameTable = { seqs: [], frameAt: [], payloadAt: [], payloadBytes: [], streamIds: [], types: [] };
  const probe = { streamId: '', eventType: '' };
  return async (spans) => {
    let delivered = 0;
    for (const span of spans) {
      const b = span.bytes;
      let count = 0;
      // Offsets of the last names decoded, in this span's bytes (-1: none yet).
      let lastStreamIdAt = 0;
      let lastStreamIdBytes = -1;
      let lastTypeAt = 0;
      let lastTypeBytes = -1;
      // A span's frames are consecutive seqs (the subscription checked each).
      let seq = span.lastSeq - span.count;
      for (let o = span.start; o < span.end; o += readU32(b, o)) {
        seq++;
        const streamIdAt = o + EVENT_HEADER_BYTES;
        const typeAt = streamIdAt + readU16(b, o + EVENT_STREAM_ID_BYTES_AT);
        const typeBytes = readU16(b, o + EVENT_TYPE_BYTES_AT);
        const payloadAt = typeAt + typeBytes + readU32(b, o + EVENT_HEADERS_BYTES_AT) + readU32(b, o + EVENT_METADATA_BYTES_AT);
        const streamIdBytes = typeAt - streamIdAt;
        // The previous frame's names first (a commit's frames share their stream; types repeat),
        // compared in place: cheaper than hashing them for the cache.
        if (streamIdBytes !== lastStreamIdBytes || !sameBytes(b, lastStreamIdAt, streamIdAt, streamIdBytes)) {
          probe.streamId = names.get(b, streamIdAt, typeAt);
          lastStreamIdAt = streamIdAt;
          lastStreamIdBytes = streamIdBytes;
        }
        if (typeBytes !== lastTypeBytes || !sameBytes(b, lastTypeAt, typeAt, typeBytes)) {
          probe.eventType = names.get(b, typeAt, typeAt + typeBytes);
          lastTypeAt = typeAt;
          lastTypeBytes = typeBytes;
        }
        if (!matches(probe)) continue;
        table.seqs[count] = seq;
        table.frameAt[count] = o;
        table.payloadAt[count] = payloadAt;
        table.payloadBytes[count] = readU32(b, o + EVENT_PAYLOAD_BYTES_AT);
        table.streamIds[count] = probe.streamId;
        table.types[count] = probe.eventType;
        count++;
      }
      delivered += count;
      for (let i = 0; i < count; ) {
        // Runs of small payloads with one JSON.parse; a run that cannot be taken whole decodes event by event.
        const run = json.parseRanges(b, table.payloadAt, table.payloadBytes, i, count);
        const values = run.values;
        const start = i;
        const end = i + run.count;
        for (; i < end; i++) {
          let data: unknown;
          if (values !== undefined) {
            data = values[i - start];
          } else {
            try {
              const at = table.payloadAt[i];
              data = JSON.parse(utf8.decode(b.subarray(at, at + table.payloadBytes[i])));
            } catch (error) {
              await fail({ seq: table.seqs[i], streamId: table.streamIds[i], eventType: table.types[i] }, 'decode', error);
              continue;
            }
          }
          const o = table.frameAt[i];
          const headersBytes = readU32(b, o + EVENT_HEADERS_BYTES_AT);
          const decoded: DecodedEvent = {
            partition,
            seq: table.seqs[i],
            streamId: table.streamIds[i],
            streamVersion: readU53(b, o + EVENT_STREAM_VERSION_AT),
            type: table.types[i],
            data,
            timestamp: readU53(b, o + EVENT_TIMESTAMP_AT),
            commandIds: headersBytes === 0 ? undefined : commandIdsAt(b, o),
          };
          // Awaited only when the projection returns a promise: a tick per event costs more than the rest.
          try {
            const applied = projection.apply(decoded);
            if (applied !== undefined) await applied;
          } catch (error) {
            await fail({ seq: decoded.seq, streamId: decoded.streamId, eventType: decoded.type }, 'handle', error);
          }
        }
      }
    }
    return delivered;
  };
}

/** True when `b[x, x + n)` and `b[y, y + n)` hold the same bytes. */
function sameBytes(b: Uint8Array, x: number, y: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[x + i] !== b[y + i]) return false;
  return true;
}

/** The command ids in the commit headers of the frame at `o` (rare: the first frame of a commit that has them). */
function commandIdsAt(b: Uint8Array, o: number): readonly string[] | undefined {
  // The source checked the frame's CRC; the decoder reads its headers as every reader does.
  const frame = decodeEventFrameAt(b, o, Number.MAX_SAFE_INTEGER, false);
  if (typeof frame === 'string') throw new Error(`[sluice/subscriptions] bug: a checked frame does not decode: ${frame}`);
  return frame.headers?.commandIds;
}
