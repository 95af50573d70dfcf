/** Turns commands, events, states and messages into bytes and back. */
export interface Serializer {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The default serializer: UTF-8 JSON. Encoding goes through `Buffer.from`, whose small
 * results are slices of a shared pool (no backing store allocated per value, as
 * `TextEncoder.encode` does): the bytes are copied into the commit, never kept.
 */
export const jsonSerializer: Serializer = {
  encode: (value) => Buffer.from(JSON.stringify(value) ?? '', 'utf8'),
  decode: (bytes) => JSON.parse(decoder.decode(bytes)),
};
