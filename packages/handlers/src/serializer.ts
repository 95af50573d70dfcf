/** Turns commands, events, states and messages into bytes and back. */
export interface Serializer {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The default serializer: UTF-8 JSON. */
export const jsonSerializer: Serializer = {
  encode: (value) => encoder.encode(JSON.stringify(value)),
  decode: (bytes) => JSON.parse(decoder.decode(bytes)),
};
