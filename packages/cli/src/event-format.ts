import type { RecordedEvent } from '@sluice/store';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * How bytes are shown: `json` when they parse as JSON (the value itself is output), `text`
 * when they are UTF-8 but not JSON, `base64` otherwise.
 */
export type Decoded =
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'text'; readonly value: string }
  | { readonly kind: 'base64'; readonly value: string };

/** Decodes an event's payload or metadata for display. */
export function decodeBytes(bytes: Uint8Array): Decoded {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { kind: 'base64', value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
  }
  const trimmed = text.trim();
  if (trimmed.length > 0 && /^[[{"\-0-9tfn]/.test(trimmed)) {
    try {
      return { kind: 'json', value: JSON.parse(trimmed) as unknown };
    } catch {
      // text that merely starts like JSON
    }
  }
  return { kind: 'text', value: text };
}

/**
 * An event as one `--json` line: `seq`, `stream`, `version`, `type`, `timestamp` (ISO 8601),
 * the payload as `data` (JSON), `text` or `base64`, metadata likewise as `metadata`,
 * `metadataText` or `metadataBase64` when there is any, and the commit's `commandIds`,
 * `correlationId` and `causationId` on the first event of a commit that recorded them.
 */
export function eventToJson(event: RecordedEvent): Record<string, unknown> {
  const line: Record<string, unknown> = {
    seq: event.seq,
    stream: event.streamId,
    version: event.streamVersion,
    type: event.eventType,
    timestamp: new Date(event.timestamp).toISOString(),
  };
  const data = decodeBytes(event.payload);
  line[data.kind === 'json' ? 'data' : data.kind] = data.value;
  if (event.metadata.length > 0) {
    const metadata = decodeBytes(event.metadata);
    line[{ json: 'metadata', text: 'metadataText', base64: 'metadataBase64' }[metadata.kind]] = metadata.value;
  }
  const headers = event.headers;
  if (headers !== undefined) {
    if (headers.commandIds.length > 0) line.commandIds = [...headers.commandIds];
    if (headers.correlationId !== undefined) line.correlationId = headers.correlationId;
    if (headers.causationId !== undefined) line.causationId = headers.causationId;
    if (headers.level !== undefined) line.level = headers.level;
  }
  return line;
}

/** An event as one human-readable line: `#seq stream@version type payload`, then `level=<name>` on the first event of a commit that recorded one. */
export function eventToText(event: RecordedEvent): string {
  const data = decodeBytes(event.payload);
  const shown =
    data.kind === 'json' ? JSON.stringify(data.value) : data.kind === 'text' ? JSON.stringify(data.value) : `base64:${data.value}`;
  // The level is recorded on a commit's first event only, so it is shown there.
  const level = event.headers?.level;
  return `#${event.seq} ${event.streamId}@${event.streamVersion} ${event.eventType} ${shown}${level === undefined ? '' : ` level=${level}`}`;
}
