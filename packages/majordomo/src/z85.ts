/**
 * Z85 ([ZeroMQ RFC 32](https://rfc.zeromq.org/spec/32/)): the text form of CURVE keys.
 * Four bytes become five printable characters, so a 32-byte key is 40 characters.
 */
const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const DIGITS = new Int16Array(128).fill(-1);
for (let index = 0; index < ALPHABET.length; index += 1) DIGITS[ALPHABET.charCodeAt(index)] = index;

/**
 * Encodes bytes as Z85. The length must be a multiple of 4 (RFC 32).
 *
 * @example
 * encodeZ85(Buffer.from('864fd26fb559f75b', 'hex')); // "HelloWorld"
 */
export function encodeZ85(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new RangeError(`[sluice/majordomo] Z85 needs a multiple of 4 bytes (got ${bytes.length})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let text = '';
  for (let offset = 0; offset < bytes.length; offset += 4) {
    let value = view.getUint32(offset);
    let chunk = '';
    for (let digit = 0; digit < 5; digit += 1) {
      chunk = ALPHABET[value % 85] + chunk;
      value = Math.floor(value / 85);
    }
    text += chunk;
  }
  return text;
}

/** Decodes Z85 text; `undefined` when it is not valid Z85 (wrong length or characters, overflow). */
export function decodeZ85(text: string): Buffer | undefined {
  if (typeof text !== 'string' || text.length % 5 !== 0) return undefined;
  const bytes = Buffer.alloc((text.length / 5) * 4);
  for (let offset = 0; offset < text.length; offset += 5) {
    let value = 0;
    for (let index = offset; index < offset + 5; index += 1) {
      const code = text.charCodeAt(index);
      const digit = code < 128 ? DIGITS[code] : -1;
      if (digit < 0) return undefined;
      value = value * 85 + digit;
    }
    if (value > 0xffff_ffff) return undefined;
    bytes.writeUInt32BE(value, (offset / 5) * 4);
  }
  return bytes;
}
