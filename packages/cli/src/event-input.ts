import type { AppendRequest, ExpectedVersion } from '@sluice/store';
import { UsageError } from './cli-errors.js';

/** Longest stdin line accepted: above the store's default 4 MiB frame limit, with room for JSON escaping. */
export const INPUT_LINE_BYTES_MAX = 16 * 1024 * 1024;

const encoder = new TextEncoder();
const LINE_KEYS = new Set([
  'stream',
  'type',
  'data',
  'metadata',
  'expectedVersion',
  'commandId',
  'correlationId',
  'causationId',
]);

/**
 * Reads `--expected-version`: a version number (0 = the stream has no events), `any`,
 * `no-stream` or `exists`.
 */
export function parseExpectedVersion(text: string): ExpectedVersion {
  if (text === 'any' || text === 'no-stream' || text === 'exists') return text;
  if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) return Number(text);
  throw new UsageError(
    `--expected-version must be a version number (0 for a new stream), "any", "no-stream" or "exists" (got ${JSON.stringify(text)})`,
  );
}

/**
 * The bytes stored for an event's data given as a JSON value (a stdin line's `data`): a
 * string is stored as its text, anything else as its JSON.
 */
export function dataBytes(value: unknown): Uint8Array {
  return encoder.encode(typeof value === 'string' ? value : JSON.stringify(value));
}

/** The options of `sluice append --data`. */
export interface SingleEventInput {
  readonly stream: string;
  readonly type: string;
  /** Stored as given: JSON or plain text, as UTF-8. */
  readonly data: string;
  readonly metadata?: string | undefined;
  readonly expectedVersion?: ExpectedVersion | undefined;
  readonly commandId?: string | undefined;
  readonly correlationId?: string | undefined;
}

/** The append request for `--stream --type --data`. */
export function singleEventRequest(input: SingleEventInput): AppendRequest {
  return {
    streamId: input.stream,
    expectedVersion: input.expectedVersion,
    commandId: input.commandId,
    correlationId: input.correlationId,
    events: [
      {
        type: input.type,
        data: encoder.encode(input.data),
        metadata: input.metadata === undefined ? undefined : encoder.encode(input.metadata),
      },
    ],
  };
}

/** Defaults for stdin lines, from the command line. */
export interface LineDefaults {
  readonly stream?: string | undefined;
  readonly type?: string | undefined;
}

/**
 * One stdin line as an append request. A line is a JSON object: `stream`, `type`, `data`
 * (any JSON; a string is stored as its text), and optionally `metadata`, `expectedVersion`,
 * `commandId`, `correlationId`, `causationId`. `--stream` and `--type` fill in missing ones.
 */
export function lineRequest(line: string, lineNumber: number, defaults: LineDefaults): AppendRequest {
  const where = `stdin line ${lineNumber}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    throw new UsageError(`${where} is not JSON (${(error as Error).message}): give one JSON object per line`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${where} must be a JSON object like {"stream":"s-1","type":"Happened","data":{}}`);
  }
  const object = parsed as Record<string, unknown>;
  const unknown = Object.keys(object).filter((key) => !LINE_KEYS.has(key));
  if (unknown.length > 0) {
    throw new UsageError(`${where} has unknown keys ${unknown.map((k) => JSON.stringify(k)).join(', ')}: use ${[...LINE_KEYS].join(', ')}`);
  }
  const text = (key: string, fallback?: string): string | undefined => {
    const value = object[key] ?? fallback;
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) {
      throw new UsageError(`${where}: "${key}" must be a non-empty string`);
    }
    return value as string | undefined;
  };
  const stream = text('stream', defaults.stream);
  const type = text('type', defaults.type);
  if (stream === undefined) throw new UsageError(`${where} has no "stream" (or give --stream for every line)`);
  if (type === undefined) throw new UsageError(`${where} has no "type" (or give --type for every line)`);
  if (!('data' in object)) throw new UsageError(`${where} has no "data" (use null for an event without data)`);
  let expectedVersion: ExpectedVersion | undefined;
  const rawVersion = object.expectedVersion;
  if (rawVersion !== undefined) {
    expectedVersion = parseExpectedVersion(String(rawVersion));
  }
  const commandId = text('commandId');
  return {
    streamId: stream,
    expectedVersion,
    commandId,
    correlationId: text('correlationId'),
    causationId: text('causationId'),
    events: [
      {
        type,
        data: dataBytes(object.data),
        metadata: object.metadata === undefined ? undefined : dataBytes(object.metadata),
      },
    ],
  };
}

/** Splits input chunks into lines (without `\n` or `\r\n`), bounded in length. */
export async function* readLines(input: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  let pending = '';
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of input) {
    pending += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      yield pending.slice(0, newline).replace(/\r$/, '');
      pending = pending.slice(newline + 1);
    }
    if (pending.length > INPUT_LINE_BYTES_MAX) {
      throw new UsageError(`a stdin line is longer than ${INPUT_LINE_BYTES_MAX} bytes: split the event or store a reference`);
    }
  }
  pending += decoder.decode();
  if (pending.length > 0) yield pending.replace(/\r$/, '');
}
