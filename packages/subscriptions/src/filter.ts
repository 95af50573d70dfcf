import type { RecordedEvent } from '@sluice/store';

/** Which events a subscriber gets. Streams whose id starts with `$` (checkpoints, snapshots, rejections, outbox, parked) are left out unless listed. */
export interface EventFilter {
  /** Only streams whose id starts with one of these. @default every non-`$` stream */
  readonly streamPrefixes?: readonly string[];
  /** Only these event types. @default every type */
  readonly eventTypes?: readonly string[];
}

/** Compiles a filter into a predicate over frames. */
export function compileFilter(filter: EventFilter | undefined): (event: Pick<RecordedEvent, 'streamId' | 'eventType'>) => boolean {
  const prefixes = filter?.streamPrefixes;
  const types = filter?.eventTypes === undefined ? undefined : new Set(filter.eventTypes);
  return (event) => {
    const streamId = event.streamId;
    if (prefixes === undefined) {
      if (streamId.charCodeAt(0) === 36 /* $ */) return false;
    } else {
      let hit = false;
      for (const prefix of prefixes) {
        if (streamId.startsWith(prefix)) {
          hit = true;
          break;
        }
      }
      if (!hit) return false;
    }
    return types === undefined || types.has(event.eventType);
  };
}
